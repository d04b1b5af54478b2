-- Hardening on the client side: card data never reaches a log line or an error string, TLS is
-- verified and plain http refused off loopback, and bad input of any shape is refused cleanly.
local core = require "dws.core"
local dws = require "dws"
local httpd = require "helpers.httpd"
local sandbox = require "helpers.sandbox"
local files = require "helpers.files"

local EXAMPLE = files.EXAMPLE

local read = files.read

local MERCHANT_PRIVATE = read(EXAMPLE .. "/merchant_private.pem")
-- The echo gateway's own key pair: dws.client refuses the merchant's public key as the DWS key.
local GATEWAY_PRIVATE, GATEWAY_PUBLIC = require("helpers.keys").pair("dws")
-- Parsed once for the fake gateway's answers and the clients made here (key loading from text has
-- specs of its own): a private key's pair-wise check costs ~30 ms each time.
local GATEWAY_KEY = assert(core.private_key(GATEWAY_PRIVATE))
local MERCHANT_KEY = assert(core.private_key(MERCHANT_PRIVATE))

local CARDS = { "4111111111111111", "5555555555554444", "378282246310005" }
local CVC = "7373"

-- Everything a value holds, flattened to one string (to search it for card data).
local function dump(v, seen)
  seen = seen or {}
  if type(v) ~= "table" then return tostring(v) end
  if seen[v] then return "" end
  seen[v] = true
  local out = {}
  for k, x in pairs(v) do out[#out + 1] = tostring(k) .. "=" .. dump(x, seen) end
  return table.concat(out, " ")
end

local function assert_clean(text)
  for _, card in ipairs(CARDS) do
    assert.is_nil(text:find(card, 1, true), "card number leaked")
  end
  assert.is_nil(text:find('"securityCode":"' .. CVC, 1, true), "security code leaked")
  assert.is_nil(text:find('securityCode=' .. CVC, 1, true), "security code leaked")
end

-- A transport that answers like DWS would, echoing the card data back in the response body
-- (the worst case for a logger), signed with a key of its own standing in for the DWS key.
local function echo_gateway(status)
  return {
    request = function(_, req)
      local sent = core.json_decode(req.body)
      local body = core.json_encode{
        result = { resultStatus = status, resultCode = status == "S" and "SUCCESS" or "RISK_REJECT",
          resultMessage = "card " .. (sent.paymentMethodDetail and sent.paymentMethodDetail.card.cardNo or "") },
        echo = sent,
        meta = core.json_encode(sent),
      }
      local path = req.url:match("^https?://[^/]+(/.*)$")
      local now = string.format("%d", core.time_ms())
      return { status = 200, body = body, headers = { ["response-time"] = now,
        signature = dws.signature.sign{ private_key = GATEWAY_KEY, method = "POST", path = path,
          client_id = req.headers["Client-Id"], time = now, body = body } } }
    end,
    sleep = function() end,
  }
end

local function client(over)
  local opts = { client_id = "HARDEN", private_key = MERCHANT_KEY, dws_public_key = GATEWAY_PUBLIC,
    gateway = "https://dws.example", retry_base_delay = 0.001 }
  for k, v in pairs(over or {}) do opts[k] = v end
  return dws.client(opts)
end

local function cache_request(card_no)
  return { paymentMethodDetail = { paymentMethodDetailType = "card", card = { cardNo = card_no,
    securityCode = CVC, expiryYear = "2031", expiryMonth = "01", brand = "VISA" } } }
end

describe("client hardening", function()
  -- One sandbox for the file: starting nginx is the slow part of these specs.
  local sb

  setup(function()
    -- A port lost to another process between probe and bind is retried where ports are chosen
    -- (dws_sandbox.control.start), not here: a start that fails is a failure.
    sb = assert(sandbox.start{})
  end)

  teardown(function()
    if sb then sb:stop() end
  end)

  describe("card data hygiene", function()
    local logged, errors_seen

    before_each(function()
      logged, errors_seen = {}, {}
    end)

    local function logger(level, message, fields)
      logged[#logged + 1] = level .. " " .. message .. " " .. dump(fields)
    end

    it("lets the logger see bodies only redacted", function()
      local c = client{ logger = logger, transport = echo_gateway("S") }
      for _, card in ipairs(CARDS) do
        local res = assert(c:cache_card(cache_request(card)))
        assert.are.equal(card, res.echo.paymentMethodDetail.card.cardNo) -- the caller gets real data
      end
      local all = table.concat(logged, "\n")
      assert.truthy(all:find("411111******1111", 1, true)) -- bodies were logged, masked
      assert.truthy(all:find("378282*****0005", 1, true))
      assert.truthy(all:find('"securityCode":"****"', 1, true))
      assert.truthy(all:find('\\"securityCode\\":\\"****\\"', 1, true)) -- JSON inside a JSON string
      assert_clean(all)
    end)

    it("keeps card data out of every error and its tostring", function()
      local c = client{ logger = logger, transport = echo_gateway("F") }
      for _, card in ipairs(CARDS) do
        local _, err = c:cache_card(cache_request(card))
        assert.are.equal("RISK_REJECT", err.code)
        errors_seen[#errors_seen + 1] = tostring(err) .. " " .. err.message
        -- bad input carrying card data
        for _, bad in ipairs{ card .. string.rep("9", 40), card .. "\0", card .. "\255", { card } } do
          local _, e = c:cache_card(cache_request(bad))
          assert.are.equal("PARAM_ILLEGAL", e.code)
          errors_seen[#errors_seen + 1] = tostring(e) .. " " .. e.message
        end
        local req = cache_request(card)
        req.paymentMethodDetail.card.securityCode = CVC .. "\0"
        local _, e = c:cache_card(req)
        assert.are.equal("paymentMethodDetail.card.securityCode", e.field)
        errors_seen[#errors_seen + 1] = tostring(e)
      end
      assert_clean(table.concat(errors_seen, "\n"))
      assert_clean(table.concat(logged, "\n"))
      assert_clean(tostring(c) .. dump(c.options))
    end)
  end)

  describe("card data hygiene against the sandbox", function()
    it("logs and errors of a whole binding hold no card number or security code", function()
      local logged, seen = {}, {}
      local c = dws.client{ client_id = sb.merchant.client_id, private_key = sb.merchant.private_key,
        dws_public_key = sb.dws_public_key, gateway = sb.https_url, ca_file = sb.ca_file, retry_base_delay = 0.001,
        logger = function(level, message, fields) logged[#logged + 1] = level .. message .. dump(fields) end }
      -- 4000000000000101 is rejected (RISK_REJECT), 4000000000000119 answers U once: errors and retries logged
      for _, card in ipairs{ CARDS[1], CARDS[2], "4000000000000101", "4000000000000119" } do
        local cached, err = c:cache_card(cache_request(card))
        assert.is_nil(err)
        local _, aerr = c:add_payment_method{ customerId = "2162878776333", env = { terminalType = "WEB" },
          paymentMethodDetail = { paymentMethodDetailType = "CARD",
            card = { cardToken = cached.paymentMethodDetail.card.cardToken } } }
        if aerr then seen[#seen + 1] = tostring(aerr) .. dump(aerr) end
      end
      -- the gateway itself refusing card data
      local _, err = c:cache_card(cache_request(CARDS[1] .. "0"))
      if err then seen[#seen + 1] = tostring(err) .. dump(err) end
      assert.is_true(#seen >= 1)
      local all = table.concat(logged, "\n")
      assert.truthy(all:find("411111******1111", 1, true))
      assert.truthy(all:find("retry", 1, true))
      assert_clean(all)
      assert_clean(table.concat(seen, "\n"))
      for _, card in ipairs{ "4000000000000101", "4000000000000119" } do
        assert.is_nil(all:find(card, 1, true))
      end
    end)
  end)

  describe("TLS and plain http", function()
    local CONSULT = { customerId = "2162878776333", env = { terminalType = "WEB" } }

    local function sandbox_client(over)
      local opts = { client_id = sb.merchant.client_id, private_key = sb.merchant.private_key,
        dws_public_key = sb.dws_public_key, gateway = sb.https_url, retry_base_delay = 0.001 }
      for k, v in pairs(over or {}) do opts[k] = v end
      return dws.client(opts)
    end

    it("verifies certificates by default: unknown CA fails, the right ca_file passes", function()
      local _, err = sandbox_client():consult_addable_payment_method(CONSULT)
      assert.are.equal("TLS_ERROR", err.code)
      assert.are.equal(1, err.attempts) -- not retried
      assert.is_table(sandbox_client{ ca_file = sb.ca_file }:consult_addable_payment_method(CONSULT))
      -- the certificate names localhost too
      local by_name = sb.https_url:gsub("127%.0%.0%.1", "localhost")
      assert.is_table(sandbox_client{ ca_file = sb.ca_file, gateway = by_name }:consult_addable_payment_method(CONSULT))
    end)

    it("refuses plain http off loopback, allows it on loopback and by explicit opt-in", function()
      for _, g in ipairs{ "http://dws.example", "http://10.1.2.3", "http://[2001:db8::1]:80",
        "http://127.0.0.1.nip.io", "HTTP://open-sea-global.alipay.com", "http://0127.0.0.1", "http://127.0.0.01",
        "http://127.1", "http://2130706433", "http://0x7f.0.0.1", "http://127.0.0.256", "http://127.0.0.1.",
        "http://[::2]" } do
        local ok, err = pcall(client, { gateway = g })
        assert.is_false(ok)
        assert.truthy(tostring(err):find("refusing plain http", 1, true))
      end
      assert.is_table(client{ gateway = "http://dws.example", allow_insecure_http = true })
      for _, g in ipairs{ "http://127.0.0.1", "http://127.255.0.10:8080", "http://LOCALHOST:1", "http://[::1]" } do
        assert.is_table(client{ gateway = g })
      end
      assert.is_table(sandbox_client{ gateway = sb.http_url }:consult_addable_payment_method(CONSULT))
      local by_name = sb.http_url:gsub("127%.0%.0%.1", "localhost")
      assert.is_table(sandbox_client{ gateway = by_name }:consult_addable_payment_method(CONSULT))
    end)

    it("retries a refused connection, then reports CONNECTION_FAILED", function()
      local c = client{ gateway = "http://127.0.0.1:" .. httpd.closed_port(), max_retries = 1 }
      local _, err = c:consult_addable_payment_method(CONSULT)
      assert.are.equal("CONNECTION_FAILED", err.code)
      assert.are.equal(2, err.attempts)
    end)
  end)

  describe("bad input never crashes", function()
    local sent
    local transport = {
      request = function(_, req) sent[#sent + 1] = req; return nil, "connect", "not used" end,
      sleep = function() end,
    }

    before_each(function() sent = {} end)

    local deep = {}
    do
      local cur = deep
      for _ = 1, 100 do cur.x = {}; cur = cur.x end
    end
    local cyclic = { a = {} }
    cyclic.a.b = cyclic

    local good = {
      consult_addable_payment_method = function()
        return { customerId = "2162878776333", env = { terminalType = "WEB" }, scenes = { "TOPUP" } }
      end,
      cache_card = function() return cache_request(CARDS[1]) end,
      add_payment_method = function()
        return { requestId = "r1", paymentMethodDetail = { paymentMethodDetailType = "CARD",
          card = { cardToken = "PYMT1" } }, env = { terminalType = "WEB" } }
      end,
    }
    -- field path -> setter, per API
    local targets = {
      consult_addable_payment_method = { customerId = function(r, v) r.customerId = v end,
        ["env.language"] = function(r, v) r.env.language = v end },
      cache_card = { ["paymentMethodDetail.card.cardNo"] = function(r, v) r.paymentMethodDetail.card.cardNo = v end,
        ["paymentMethodDetail.card.billingAddress.city"] = function(r, v)
          r.paymentMethodDetail.card.billingAddress = { city = v }
        end },
      add_payment_method = { requestId = function(r, v) r.requestId = v end,
        ["paymentMethodDetail.card.cardToken"] = function(r, v) r.paymentMethodDetail.card.cardToken = v end },
    }
    local bad_values = { print, io.stdout, coroutine.create(print), deep, cyclic, string.rep("x", 5 * 1024 * 1024),
      "a\0b", "\192\128", "\237\160\128", 0 / 0, { "array" }, { key = "object" } }

    it("answers PARAM_ILLEGAL naming the field, for every API, sending nothing", function()
      local c = client{ transport = transport }
      local n = 0
      for method, fields in pairs(targets) do
        for field, set in pairs(fields) do
          for _, bad in ipairs(bad_values) do
            local req = good[method]()
            set(req, bad)
            local ok, res, err = pcall(c[method], c, req)
            assert.is_true(ok, "raised: " .. tostring(res))
            assert.is_nil(res)
            assert.are.equal("PARAM_ILLEGAL", err.code)
            assert.are.equal("F", err.status)
            assert.are.equal(0, err.attempts)
            -- deep and cyclic values fail below the field itself
            assert.are.equal(field, err.field:sub(1, #field))
            n = n + 1
          end
        end
      end
      assert.are.equal(0, #sent)
      assert.is_true(n >= 72)
    end)

    it("refuses booleans and functions where a table is needed", function()
      local c = client{ transport = transport }
      for _, bad in ipairs{ true, false, print, "env", 42 } do
        local _, err = c:consult_addable_payment_method{ customerId = "1", env = bad }
        assert.are.equal("env", err.field)
        _, err = c:cache_card{ paymentMethodDetail = bad }
        assert.are.equal("paymentMethodDetail", err.field)
      end
      for i = 1, 5 do
        local bad = ({ nil, "x", 1, true, print })[i]
        local ok, _, err = pcall(c.add_payment_method, c, bad)
        assert.is_true(ok)
        assert.are.equal("request", err.field)
      end
      assert.are.equal(0, #sent)
    end)
  end)
end)
