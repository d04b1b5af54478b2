-- The bind-card workflow end to end from plain Lua (libcurl transport) against the sandbox in
-- nginx; the card rules themselves are in spec/card_spec.lua.
local dws = require "dws"
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local sandbox = require "helpers.sandbox"

local CLIENT_ID = "SANDBOX_BIND0000000001"
local CUSTOMER = "2162878776333"
local ENV = { terminalType = "WEB", clientIp = "127.0.0.1" }
local SECRETS = { "4111111111111111", "4000056655665556", "4000000000000077", "4000000000000101", "4000000000000119",
                  "378282246310005", "4111111111111112", "5555555555554444", "731", "7319" }

local dir, sb, client
local captured = {}   -- every log line, outcome and error string the suite produced

-- SHA-256 (hex) of a string, by sha256sum (dws.core has no digest call of its own).
local function sha256_hex(s)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb")); f:write(s); f:close()
  local p = assert(io.popen("sha256sum " .. path))
  local out = p:read("a"); p:close()
  os.remove(path)
  return out:match("^(%x+)")
end

local function capture(s)
  captured[#captured + 1] = s
end

local function card(number, over)
  local c = { cardNo = number, securityCode = #number == 15 and "7319" or "731",
              expiryYear = tostring(tonumber(os.date("!%Y")) + 2), expiryMonth = "06",
              instUserName = { firstName = "Ann", lastName = "Lee" } }
  for k, v in pairs(over or {}) do c[k] = v end
  return c
end

local function bind(number, over, customer)
  local outcome, err = client:bind_card{ customerId = customer or CUSTOMER, env = ENV, card = card(number, over),
                                         referenceCustomerId = "merchant-customer-7" }
  if outcome then capture(core.json_encode(outcome)) end
  if err then
    capture(tostring(err))
    capture(err.message)
  end
  return outcome, err
end

setup(function()
  dir = nginx.tmpdir("dws-bind")
  local priv = nginx.make_keypair(dir, "merchant")
  sb = assert(sandbox.start{
    clients = { [CLIENT_ID] = { public_key = nginx.read_file(dir .. "/merchant_public.pem"),
                                notify_url = "http://127.0.0.1:9/notify" } },
    notify_scale = 0.001,
  })
  client = dws.client{
    client_id = CLIENT_ID,
    private_key = nginx.read_file(priv),
    dws_public_key = sb.dws_public_key,
    gateway = sb.https_url,
    ca_file = sb.ca_file,
    logger = function(level, message, fields)
      capture(level .. " " .. tostring(message) .. " " .. (core.json_encode(fields or {}) or ""))
    end,
  }
end)

teardown(function()
  if sb then sb:stop() end
  nginx.rmdir(dir)
end)

describe("bind_card", function()
  it("binds 4111111111111111: ACCEPTED with masked details and no card token (only a notification has one)", function()
    local outcome = assert(bind("4111111111111111"))
    assert.are.equal("ACCEPTED", outcome.status)
    assert.is_nil(outcome.cardToken)
    assert.are.equal("411111******1111", outcome.mask)
    assert.are.equal("1111", outcome.last4)
    assert.are.equal("VISA", outcome.brand)
    assert.is_string(outcome.requestId)
    assert.is_string(outcome.expiryTime)
    assert.is_nil(outcome.actionForm)
  end)

  it("keeps a requestId the caller gives", function()
    local outcome = assert(client:bind_card{ customerId = CUSTOMER, env = ENV, card = card("5555555555554444"),
                                             requestId = "merchant-bind-0001" })
    assert.are.equal("merchant-bind-0001", outcome.requestId)
    assert.are.equal("MASTERCARD", outcome.brand)
    assert.are.equal("ACCEPTED", outcome.status)
  end)

  it("reports ACTION_REQUIRED with the sms challenge for 4000056655665556", function()
    local outcome = assert(bind("4000056655665556"))
    assert.are.equal("ACTION_REQUIRED", outcome.status)
    assert.are.equal("sms", outcome.actionForm.challengeType)
    assert.are.equal("+6222***508", outcome.actionForm.challengeRenderValue)
    assert.is_nil(outcome.cardToken)
    assert.are.equal("5556", outcome.last4)
  end)

  it("reports ACCEPTED for 4000000000000077 (no token, no action yet)", function()
    local outcome = assert(bind("4000000000000077"))
    assert.are.equal("ACCEPTED", outcome.status)
    assert.is_nil(outcome.cardToken)
    assert.is_nil(outcome.actionForm)
    assert.is_string(outcome.requestId)
  end)

  it("refuses a card that fails Luhn or has expired as CARD_INVALID, before calling DWS", function()
    local _, err = bind("4111111111111112")
    assert.are.equal("CARD_INVALID", err.code)
    assert.are.equal("F", err.status)
    assert.are.equal("card.cardNo", err.field)
    assert.matches("Luhn", err.message)
    _, err = bind("4111111111111111", { expiryYear = "2020", expiryMonth = "01" })
    assert.are.equal("CARD_INVALID", err.code)
    assert.matches("expired", err.message)
  end)

  it("refuses AMEX as PAYMENT_METHOD_NOT_ADDABLE, naming the brand and what is supported", function()
    local _, err = bind("378282246310005")
    assert.are.equal("PAYMENT_METHOD_NOT_ADDABLE", err.code)
    assert.are.equal("F", err.status)
    assert.matches("AMEX is not supported by the MIXEDCARD option", err.message)
    assert.matches("VISA", err.message)
    assert.matches("MASTERCARD", err.message)
  end)

  it("refuses when the customer's card option is disabled", function()
    local _, err = bind("4111111111111111", nil, "2188000000000002")
    assert.are.equal("PAYMENT_METHOD_NOT_ADDABLE", err.code)
    assert.matches("MIXEDCARD option is not enabled", err.message)
  end)

  it("passes DWS's own failures through: RISK_REJECT and USER_NOT_EXIST", function()
    local _, err = bind("4000000000000101")
    assert.are.equal("RISK_REJECT", err.code)
    assert.are.equal("F", err.status)
    assert.is_string(err.request_id)
    _, err = bind("4111111111111111", nil, "2199999999999")
    assert.are.equal("USER_NOT_EXIST", err.code)
  end)

  it("calls consult, cacheCard and addPaymentMethod in order, and nothing for a card refused locally", function()
    local function apis()
      local out = {}
      for _, r in ipairs(sb:requests()) do out[#out + 1] = r.api end
      return out
    end
    local before = #apis()
    assert(bind("4111111111111111"))
    local after = apis()
    assert.are.same({ "consultAddablePaymentMethod", "cacheCard", "addPaymentMethod" },
      { after[before + 1], after[before + 2], after[before + 3] })
    assert.are.equal(before + 3, #after)
    bind("4111111111111112")
    bind("4111111111111111", { expiryYear = "2020" })
    assert.are.equal(before + 3, #apis())
  end)

  it("keeps card numbers out of the sandbox's logs too", function()
    local log = sb:error_log()
    assert.is_true(#log > 0)
    for _, secret in ipairs(SECRETS) do
      if #secret > 4 then assert.is_nil(log:find(secret, 1, true), "card number in the sandbox log") end
    end
  end)

  it("retries DWS's U answers with the same requestId and still binds", function()
    local outcome = assert(bind("4000000000000119", nil, "2188000000000003"))
    assert.are.equal("ACCEPTED", outcome.status)
    local adds, consults = {}, 0
    for _, r in ipairs(sb:requests()) do
      if r.api == "addPaymentMethod" and r.requestId == outcome.requestId then adds[#adds + 1] = r end
    end
    assert.are.equal(2, #adds)
    assert.are.equal("U", adds[1].resultStatus)
    assert.are.equal("S", adds[2].resultStatus)
    for _, r in ipairs(sb:requests()) do
      if r.api == "consultAddablePaymentMethod" and r.resultStatus == "U" then consults = consults + 1 end
    end
    assert.are.equal(1, consults)
  end)

  it("journals the binding: client:binding(requestId) reads the record back", function()
    local outcome = assert(bind("4111111111111111"))
    local b = assert(client:binding(outcome.requestId))
    assert.are.same({ "ACCEPTED", "411111******1111", "1111", "VISA", 1, 1, "merchant-customer-7" },
      { b.state, b.mask, b.last4, b.brand, b.sends, b.attempts, b.referenceCustomerId })
  end)

  it("journals the exact body bytes the sandbox received (same SHA-256), without the card number", function()
    local outcome = assert(bind("4111111111111111"))
    local raw = assert(client.journal.store:get("dws:binding:" .. outcome.requestId))
    local rec = dws.decode_json(raw)
    local sha
    for _, r in ipairs(sb:requests()) do
      if r.api == "addPaymentMethod" and r.requestId == outcome.requestId then sha = r.body_sha256 end
    end
    assert.are.equal(sha, sha256_hex(rec.body))
    -- Card numbers anywhere; a security code (a bare "731" can occur by chance inside a UUID or a
    -- time in the record) as a JSON string value: quoted, or escaped inside the journaled body text.
    for _, secret in ipairs(SECRETS) do
      if #secret > 4 then
        assert.is_nil(raw:find(secret, 1, true), "secret in the journal")
      else
        assert.is_nil(raw:find('"' .. secret .. '"', 1, true), "security code in the journal")
        assert.is_nil(raw:find('"' .. secret .. '\\"', 1, true), "security code in the journaled body")
      end
    end
  end)

  it("journals a FAILED record for an F answer and still returns nil, err", function()
    local _, err = bind("4000000000000101")
    assert.are.equal("RISK_REJECT", err.code)
    assert.are.equal("FAILED", client:binding(err.request_id).state)
  end)

  it("refuses a requestId that is already journaled (resume_binding is for that)", function()
    local first = assert(bind("4111111111111111"))
    local _, err = client:bind_card{ customerId = CUSTOMER, env = ENV, card = card("4111111111111111"),
                                     requestId = first.requestId }
    assert.are.equal("REQUEST_ID_REUSED", err.code)
  end)

  it("passes isTemporary, referenceUserId and paymentMethodDetailMetadata through to addPaymentMethod", function()
    local outcome = assert(client:bind_card{ customerId = CUSTOMER, env = ENV, card = card("4111111111111111"),
      referenceUserId = "user-9", isTemporary = false, paymentMethodDetailMetadata = '{"k":"v"}' })
    local body = dws.decode_json(dws.decode_json(client.journal.store:get("dws:binding:" .. outcome.requestId)).body)
    assert.are.same({ "user-9", "false", '{"k":"v"}' }, { body.referenceUserId, body.isTemporary,
      body.paymentMethodDetail.card.paymentMethodDetailMetadata })
  end)

  it("never lets a card number or security code into an outcome, error or log line", function()
    assert.is_true(#captured > 10)
    for _, s in ipairs(captured) do
      for _, secret in ipairs(SECRETS) do
        if #secret > 4 then
          assert.is_nil(s:find(secret, 1, true), "card number in: " .. s:sub(1, 200))
        else
          assert.is_nil(s:find('"' .. secret .. '"', 1, true), "security code in: " .. s:sub(1, 200))
        end
      end
    end
  end)
end)

describe("bind_card option choice", function()
  local bind_card = require "dws.bind_card"
  local function option(kind, enabled, detail)
    return { paymentMethodType = kind, paymentMethodCategory = kind, enabled = enabled, paymentOptionDetail = detail }
  end
  local VISA_MC = '{"card":{"bankInfos":[],"supportCardBrands":[{"cardBrand":"MASTERCARD"},{"cardBrand":"VISA"}]},' ..
    '"type":"card"}'
  -- The consult page's own sample: JSON inside the string that is itself malformed.
  local PAGE_SAMPLE = '{"card":{"bankInfos":[],"supportCardBrands":[{"cardBrand":"MASTERCARD"}]},"type":"card",' ..
    '"businessScenes": "["BINDCARD","TOPUP"]"}'

  it("picks the enabled card option that lists the brand", function()
    local chosen, brands = bind_card.choose_option({ option("GCASH_EBANK", true, VISA_MC),
      option("MIXEDCARD", "true", VISA_MC) }, "VISA")
    assert.are.equal("MIXEDCARD", chosen.paymentMethodType)
    assert.are.same({ "MASTERCARD", "VISA" }, brands)
  end)

  it("says why no option fits", function()
    local _, why = bind_card.choose_option({ option("GCASH_EBANK", true, VISA_MC) }, "VISA")
    assert.matches("no card option among the addable payment methods %(GCASH_EBANK%)", why)
    _, why = bind_card.choose_option({ option("MIXEDCARD", true, PAGE_SAMPLE) }, "MASTERCARD")
    assert.matches("MIXEDCARD option cannot be used: its paymentOptionDetail is not valid JSON", why)
    _, why = bind_card.choose_option({ option("DEBITCARD", false, VISA_MC), option("CARD", true, VISA_MC) }, "JCB")
    assert.matches("DEBITCARD option is not enabled", why)
    assert.matches("JCB is not supported by the CARD option %(it supports MASTERCARD, VISA%)", why)
    _, why = bind_card.choose_option(nil, "VISA")
    assert.matches("no card option", why)
  end)

  it("accepts cacheCard's answer only for the card sent (mask, last4, brand)", function()
    local n = "5239450000001949"
    assert.is_true(bind_card.same_card(n, "MASTERCARD",
      { mask = "523945******1949", last4 = "1949", brand = "MASTERCARD" }))
    assert.is_nil((bind_card.same_card(n, "MASTERCARD", { mask = "411111******1111" })))
    assert.is_nil((bind_card.same_card(n, "MASTERCARD", { last4 = "1111" })))
    assert.is_nil((bind_card.same_card(n, "MASTERCARD", { brand = "VISA" })))
    assert.is_nil((bind_card.same_card(n, "MASTERCARD", { mask = "5239450000001949" })))
  end)

  it("reports NEW and SENT records as UNKNOWN and never a token unless BOUND", function()
    assert.are.equal("UNKNOWN", bind_card.outcome_of{ state = "SENT", cardToken = "T" }.status)
    assert.is_nil(bind_card.outcome_of{ state = "ACCEPTED", cardToken = "T" }.cardToken)
    assert.are.equal("T", bind_card.outcome_of{ state = "BOUND", cardToken = "T" }.cardToken)
end)
end)
