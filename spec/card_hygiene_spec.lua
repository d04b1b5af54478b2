-- Card data hygiene (issue "Hardening" §4): a realistic session against the sandbox (all three APIs,
-- cacheCard with the test cards, F and U answers, retries, faults, local and remote validation
-- errors, bind_card), then everything that could end up in a log file or on a screen is collected and
-- searched for the card numbers and security codes used: what the logger received (levels, messages,
-- fields serialised deeply), every tostring(err), err.message and error table, every result, the
-- client object itself, the sandbox's files (nginx logs, spooled bodies) and its admin output.
-- The spec also checks that the logger did see the redacted bodies, so it cannot pass by seeing
-- nothing; and that tostring of the client and of keys shows no key material.
local dws = require "dws"
local core = require "dws.core"
local curl = require "dws.curl"
local nginx = require "dws_sandbox.nginx"
local sandbox = require "helpers.sandbox"
local timeouts = require "helpers.timeouts"

local CLIENT_ID = "SANDBOX_HYGIENE000000001"
local CUSTOMER = "2162878776333"
local ENV = { terminalType = "WEB", clientIp = "127.0.0.1" }

-- The secrets the session uses. Security codes are distinctive and appear nowhere else in the
-- session; they are searched as whole tokens (a run of digits inside a timestamp is not a leak).
local CARDS = {
  "4111111111111111", "5555555555554444", "4000056655665556", "4000000000000077", "4000000000000101",
  "4000000000000119", "378282246310005",
  "4111111111111112", -- a mistyped number (Luhn fails): still the customer's card data
  "4111 1111 1111 1111", "5555-5555-5555-4444", -- as customers type them
}
local CVV = { visa = "737", mc = "839", amex = "6284", bad = "73x9" }
local LONG_CVV = "737737737" -- over securityCode's 8 characters: refused locally
local SECRET_TOKENS = { CVV.visa, CVV.mc, CVV.amex }
local SECRET_STRINGS = { CVV.bad, LONG_CVV }

local dir, sb, client
local logged = {}       -- one serialised line per logger call
local produced = {}     -- { what =, text = } for everything the session handed back
local levels = {}

-- Deep serialisation: keys and values, nested tables (cycles cut), numbers both as Lua prints them
-- and as digits (LuaJIT prints 4111111111111111 as 4.1111111111111e+15), other values by tostring.
local function dump(v, out, seen, depth)
  out, seen, depth = out or {}, seen or {}, depth or 0
  local t = type(v)
  if t == "table" then
    if seen[v] or depth > 80 then
      out[#out + 1] = "<seen>"
      return out
    end
    seen[v] = true
    local mt = getmetatable(v)
    if mt and mt.__tostring then out[#out + 1] = tostring(v) end
    out[#out + 1] = "{"
    for k, x in pairs(v) do
      dump(k, out, seen, depth + 1)
      out[#out + 1] = "="
      dump(x, out, seen, depth + 1)
      out[#out + 1] = ","
    end
    out[#out + 1] = "}"
  elseif t == "number" then
    out[#out + 1] = tostring(v)
    if v == math.floor(v) and v > -2 ^ 63 and v < 2 ^ 63 then out[#out + 1] = " " .. string.format("%.0f", v) end
  else
    out[#out + 1] = tostring(v)
  end
  return out
end

local function serialise(v)
  return table.concat(dump(v), " ")
end

local function keep(what, v)
  produced[#produced + 1] = { what = what, text = type(v) == "string" and v or serialise(v) }
end

-- Everything a call handed back: the result, or the error's string, message and whole table.
local function record(what, res, err)
  if res ~= nil then keep(what .. " result", res) end
  if err ~= nil then
    keep(what .. " tostring(err)", tostring(err))
    keep(what .. " err.message", tostring(err.message))
    keep(what .. " err table", err)
  end
  return res, err
end

local function year(d)
  return tostring(tonumber(os.date("!%Y")) + d)
end

local function card(number, cvv, over)
  local c = { cardNo = number, securityCode = cvv, expiryYear = year(2), expiryMonth = "06",
              instUserName = { firstName = "Ann", lastName = "Lee" },
              billingAddress = { region = "SG", city = "Singapore", zipCode = "018956" } }
  for k, v in pairs(over or {}) do c[k] = v end
  return c
end

local function cache(number, cvv, over)
  return record("cacheCard " .. number, client:cache_card{
    paymentMethodDetail = { paymentMethodDetailType = "card", card = card(number, cvv, over) } })
end

local function add(token, request_id)
  return record("addPaymentMethod", client:add_payment_method{
    requestId = request_id, customerId = CUSTOMER, env = ENV, referenceCustomerId = "merchant-cust-9",
    paymentMethodDetail = { paymentMethodDetailType = "card", card = { cardToken = token } } })
end

-- A merchant that tucks card data into paymentMethodDetailMetadata (JSON inside a JSON string): the
-- sandbox echoes the metadata in its answer, so only the error side is recorded here; the logger
-- must still see it redacted.
local function add_with_metadata(token)
  local meta = '{"cardNo":"4000056655665556","securityCode":"' .. CVV.visa .. '","note":"x"}'
  local _, err = client:add_payment_method{
    customerId = CUSTOMER, env = ENV, referenceCustomerId = "merchant-cust-9",
    paymentMethodDetail = { paymentMethodDetailType = "card",
                            card = { cardToken = token, paymentMethodDetailMetadata = meta } } }
  return record("addPaymentMethod with metadata", nil, err)
end

local function consult(customer)
  return record("consult " .. customer, client:consult_addable_payment_method{
    customerId = customer, env = ENV, scenes = { "TOPUP" } })
end

local function bind(number, cvv, over)
  return record("bind_card " .. number, client:bind_card{
    customerId = CUSTOMER, env = ENV, referenceCustomerId = "merchant-cust-9", card = card(number, cvv, over) })
end

local function admin_raw(name)
  local h = curl.new{ max_response_bytes = require("dws.defaults").options.max_response_bytes }
  local headers = {}
  if name == "deliveries" then
    -- per client, with its admin token
    name = name .. "?client_id=" .. CLIENT_ID
    headers[1] = "X-Sandbox-Admin-Token: " .. sb.admin_tokens[CLIENT_ID]
  end
  local status, _, body = h:request(sb.http_url .. "/__sandbox/" .. name, headers, nil, 10, 5)
  h:close()
  assert.are.equal(200, status, "admin " .. name)
  return body
end

-- Every regular file under the sandbox's directory, by path.
local function sandbox_files()
  local files = {}
  local p = assert(io.popen("find " .. nginx.sh_quote(sb.dir) .. " -type f"))
  for path in p:lines() do files[#files + 1] = path end
  p:close()
  return files
end

-- Where `secret` occurs in `text`: plain for card numbers, as a whole token for security codes. A
-- token is not part of a longer run of base64 characters (letters, digits, +, /): a signature or a
-- token in the request log may hold "73x9" or "+737/" by chance, never as a value of its own
-- ("cvv=737" still counts: = only ends base64).
local function find_token(text, token)
  local from = 1
  while true do
    local i, j = text:find(token, from, true)
    if not i then return nil end
    local before, after = text:sub(i - 1, i - 1), text:sub(j + 1, j + 1)
    if not before:find("^[%w+/]$") and not after:find("^[%w+/]$") then return i end
    from = i + 1
  end
end

local function leaks_in(text)
  local found = {}
  for _, n in ipairs(CARDS) do
    if text:find(n, 1, true) then found[#found + 1] = n end
    local digits = tonumber(n)
    if digits then -- the form a number-typed card takes in LuaJIT
      local g = string.format("%.14g", digits)
      if text:find(g, 1, true) then found[#found + 1] = g end
    end
  end
  for _, s in ipairs(SECRET_STRINGS) do
    if find_token(text, s) then found[#found + 1] = s end
  end
  for _, c in ipairs(SECRET_TOKENS) do
    if find_token(text, c) then found[#found + 1] = c end
  end
  return found
end

local function assert_clean(what, text)
  local found = leaks_in(text)
  assert.are.same({}, found, what .. " holds card data")
end

setup(function()
  dir = nginx.tmpdir("dws-hygiene")
  local priv = nginx.make_keypair(dir, "merchant")
  sb = assert(sandbox.start{
    clients = { [CLIENT_ID] = { public_key = nginx.read_file(dir .. "/merchant_public.pem"),
                                notify_url = "http://127.0.0.1:9/notify" } },
    notify_scale = 0.001,
  })
  -- The session's client, logging to the lines checked below; `timeout` 1, or timeouts.FIRE for
  -- the call whose fault is a timeout firing.
  local merchant_key = assert(core.private_key(nginx.read_file(priv)))
  local function session_client(timeout)
    return dws.client{
      client_id = CLIENT_ID,
      private_key = merchant_key,
      dws_public_key = sb.dws_public_key,
      gateway = sb.https_url,
      ca_file = sb.ca_file,
      timeout = timeout,
      connect_timeout = 1,
      max_retries = 2,
      retry_base_delay = 0.01,
      logger = function(level, message, fields)
        levels[level] = (levels[level] or 0) + 1
        logged[#logged + 1] = serialise{ level = level, message = message, fields = fields }
      end,
    }
  end
  client = session_client(1)

  -- The session ---------------------------------------------------------------------------------
  -- consult: S, F, U once then S (retried), F
  consult(CUSTOMER)
  consult("2188000000000001")
  consult("2188000000000003")
  consult("2188000000000004")

  -- cacheCard with every test card
  local tokens = {}
  for _, n in ipairs{ "4111111111111111", "5555555555554444", "4000056655665556", "4000000000000077",
                      "4000000000000101", "4000000000000119" } do
    local res = cache(n, n:sub(1, 1) == "5" and CVV.mc or CVV.visa)
    tokens[n] = res and res.paymentMethodDetail.card.cardToken
  end
  cache("378282246310005", CVV.amex)

  -- cacheCard through faults: retried, rejected, unsigned, malformed, too large
  sb:fault("http_503", 1); cache("4111111111111111", CVV.visa)
  sb:fault("reset", 1); cache("5555555555554444", CVV.mc)
  sb:fault("tamper", 1); cache("4000056655665556", CVV.visa)
  sb:fault("unsigned_s", 1); cache("4111111111111111", CVV.visa)
  sb:fault("foreign_key", 1); cache("5555555555554444", CVV.mc)
  sb:fault("non_json", 1); cache("4111111111111111", CVV.visa)
  sb:fault("huge_body", 1); cache("4111111111111111", CVV.visa)
  client = session_client(timeouts.FIRE)
  sb:fault("never_answer", 3, { delay = timeouts.HOLD }); cache("4000056655665556", CVV.visa)
  client = session_client(1)

  -- validation errors with card data in the offending value: locally and at the sandbox
  cache("4111111111111111" .. string.rep("0", 20), CVV.visa)             -- cardNo over 32: local
  cache("4111111111111111", LONG_CVV)                                    -- securityCode over 8: local
  cache("4111111111111111", CVV.visa, { expiryMonth = "123" })           -- expiryMonth over 2: local
  cache(tonumber("4111111111111111"), CVV.visa)                          -- a number, not a string
  cache("4111111111111111", CVV.bad)                                     -- sandbox: 3 or 4 digits
  cache("4111111111111111 ", CVV.visa)                                   -- sandbox: digits only
  cache("4111111111111112", CVV.visa)                                    -- sandbox: Luhn
  cache("5555555555554444", CVV.mc, { expiryYear = "2001" })             -- sandbox: expired
  cache("5555555555554444", CVV.mc, { expiryMonth = "13" })              -- sandbox: month
  cache("4111 1111 1111 1111", CVV.visa)                                 -- sandbox: digits only
  cache("5555-5555-5555-4444", CVV.mc)                                   -- sandbox: digits only

  -- addPaymentMethod: bound, challenge, pending, RISK_REJECT, U once then S, traffic limit, faults
  add(tokens["4111111111111111"])
  add(tokens["4000056655665556"])
  add(tokens["4000000000000077"])
  add(tokens["4000000000000101"])
  add(tokens["4000000000000119"])
  sb:fault("traffic_limit", 3); add(tokens["5555555555554444"])
  sb:fault("tamper", 1); add(tokens["5555555555554444"])
  add("PYMT-no-such-token")
  add_with_metadata(tokens["5555555555554444"])
  sb:fault("tamper", 1); add_with_metadata(tokens["4111111111111111"])

  -- bind_card: bound, pending, challenge, refused locally (Luhn, expiry), not addable, risk reject
  bind("4111111111111111", CVV.visa)
  bind("5555555555554444", CVV.mc)
  bind("4000000000000077", CVV.visa)
  bind("4000056655665556", CVV.visa)
  bind("4111111111111112", CVV.visa)
  bind("4111111111111111", CVV.visa, { expiryYear = "2001" })
  bind("378282246310005", CVV.amex)
  bind("4000000000000101", CVV.visa)
  sb:fault("unsigned_s", 1); bind("5555555555554444", CVV.mc)

  -- the notifications the sandbox tries to deliver (to a closed port) are in its log by now
  sb:wait(function() return #sb:deliveries() > 0 end, 5)
end)

teardown(function()
  if client then client:close() end
  if sb then sb:stop() end
  nginx.rmdir(dir)
end)

describe("card data hygiene", function()
  it("the session really ran: S, F and U answers, retries, local and remote refusals", function()
    local codes = {}
    for _, p in ipairs(produced) do
      local code = p.what:match("tostring%(err%)$") and p.text:match("^dws: %S+ (%S+) %(")
      if code then codes[code] = (codes[code] or 0) + 1 end
    end
    for _, code in ipairs{ "USER_STATUS_ABNORMAL", "NO_PAY_OPTIONS", "SIGNATURE_INVALID", "SIGNATURE_MISSING",
                           "RESPONSE_MALFORMED", "RESPONSE_TOO_LARGE", "TIMEOUT", "PARAM_ILLEGAL", "RISK_REJECT",
                           "REQUEST_TRAFFIC_EXCEED_LIMIT", "INVALID_PAYMENTMETHOD_TOKEN", "CARD_INVALID",
                           "PAYMENT_METHOD_NOT_ADDABLE" } do
      assert.is_truthy(codes[code], "the session produced no " .. code)
    end
    local apis = {}
    for _, r in ipairs(sb:requests()) do apis[r.api] = (apis[r.api] or 0) + 1 end
    assert.is_true((apis.cacheCard or 0) >= 20, "cacheCard requests at the sandbox")
    assert.is_true((apis.addPaymentMethod or 0) >= 10, "addPaymentMethod requests at the sandbox")
    assert.is_true((apis.consultAddablePaymentMethod or 0) >= 10, "consult requests at the sandbox")
    for _, level in ipairs{ "debug", "info", "warn", "error" } do
      assert.is_truthy(levels[level], "the logger received no " .. level .. " line")
    end
  end)

  it("the logger saw the bodies, redacted (so this spec would see a leak)", function()
    local all = table.concat(logged, "\n")
    for _, masked in ipairs{ "411111******1111", "555555******4444", "400005******5556", "378282*****0005" } do
      assert.is_truthy(all:find(masked, 1, true), "logger never saw " .. masked)
    end
    assert.is_truthy(all:find('"securityCode":"***"', 1, true), "logger never saw a redacted 3-digit code")
    assert.is_truthy(all:find('"securityCode":"****"', 1, true), "logger never saw a redacted 4-digit code")
    assert.is_truthy(all:find('"cardToken":"PYMT', 1, true), "logger never saw a response body")
    for _, event in ipairs{ "request", "response", "retry", "error", "result" } do
      assert.is_truthy(all:find("event = " .. event, 1, true), "logger never saw a " .. event .. " event")
    end
  end)

  it("nothing the logger received holds a card number or security code", function()
    for i, line in ipairs(logged) do assert_clean("log line " .. i, line) end
  end)

  it("no error string, message, error table or result holds one", function()
    assert.is_true(#produced > 60)
    for _, p in ipairs(produced) do assert_clean(p.what, p.text) end
  end)

  it("the client object keeps none after the session", function()
    assert_clean("the client, deeply", serialise(client))
    assert_clean("tostring(client)", tostring(client))
  end)

  it("the sandbox's admin output holds none: /__sandbox/requests and /__sandbox/deliveries", function()
    local requests = admin_raw("requests")
    assert.is_true(#requests > 1000, "requests log is there")
    assert_clean("/__sandbox/requests", requests)
    local deliveries = admin_raw("deliveries")
    assert.is_truthy(deliveries:find("cardToken", 1, true), "deliveries log is there")
    assert_clean("/__sandbox/deliveries", deliveries)
  end)

  it("no file of the sandbox holds one: nginx logs, spooled bodies, config", function()
    local files = sandbox_files()
    local saw_error_log = false
    for _, path in ipairs(files) do
      if path:match("/logs/error%.log$") then saw_error_log = true end
      local text = nginx.read_file(path) or ""
      assert_clean(path, text)
    end
    assert.is_true(saw_error_log, "the sandbox's error.log was among the files searched")
    assert.is_true(#sb:error_log() > 0, "the error log is not empty")
  end)
end)

describe("a logger that fails", function()
  -- The logger is the merchant's code: when it raises, the payment call must still complete and
  -- report its outcome (HACKING.md/README: "A failing logger must never break a payment call").
  local function failing_client(when)
    return dws.client{
      client_id = CLIENT_ID, private_key = nginx.read_file(dir .. "/merchant_private.pem"),
      dws_public_key = sb.dws_public_key, gateway = sb.http_url, timeout = 1, connect_timeout = 1,
      retry_base_delay = 0.01,
      logger = function(level, message)
        if when(level, message) then error("logger is down", 0) end
      end,
    }
  end

  it("never breaks an API call", function()
    local c = failing_client(function() return true end)
    local ok, res, err = pcall(c.consult_addable_payment_method, c,
                               { customerId = CUSTOMER, env = ENV, scenes = { "TOPUP" } })
    assert.is_true(ok, tostring(res))
    assert.is_nil(err)
    assert.are.equal("S", res.result.resultStatus)
  end)

  local function bind_with(when)
    local c = failing_client(when)
    local m = #sb:requests()
    local ok, outcome, err = pcall(c.bind_card, c, { customerId = CUSTOMER, env = ENV,
                                                      card = card("4111111111111111", CVV.visa) })
    return ok, outcome, err, #sb:requests() - m
  end

  it("never breaks bind_card (a logger failing on every line)", function()
    local ok, outcome, err = bind_with(function() return true end)
    assert.is_true(ok, "bind_card raised the logger's error: " .. tostring(outcome))
    assert.is_nil(err)
    assert.are.equal("ACCEPTED", outcome.status)
  end)

  it("never loses a binding that DWS made (a logger failing only on the last line)", function()
    local ok, outcome, err, calls = bind_with(function(_, message)
      return tostring(message):find("^bind_card: ACCEPTED") ~= nil
    end)
    assert.are.equal(3, calls, "consult, cacheCard and addPaymentMethod reached the sandbox")
    assert.is_true(ok, "the card is bound at DWS, but bind_card raised the logger's error instead of " ..
      "returning the outcome: " .. tostring(outcome))
    assert.is_nil(err)
    assert.are.equal("ACCEPTED", outcome.status)
  end)
end)

describe("key material", function()
  local pem

  -- Every 16-character piece of the key's base64: none may show anywhere.
  local function key_pieces(text)
    local b64 = text:gsub("%-%-%-%-%-[^\n]*%-%-%-%-%-", ""):gsub("%s", "")
    local pieces = {}
    for i = 1, #b64 - 15, 16 do pieces[#pieces + 1] = b64:sub(i, i + 15) end
    return pieces
  end

  local function assert_no_key(what, text, pieces)
    for _, piece in ipairs(pieces) do
      assert.is_nil(text:find(piece, 1, true), what .. " shows key material")
    end
  end

  setup(function()
    pem = nginx.read_file(dir .. "/merchant_private.pem")
  end)

  it("tostring of the client and of its keys names kind and size only", function()
    local pieces = key_pieces(pem)
    assert.is_true(#pieces > 50)
    assert.are.equal("dws.client(" .. CLIENT_ID .. ")", tostring(client))
    assert.are.equal("dws.key(private, 2048 bits)", tostring(client.private_key))
    assert.are.equal("dws.key(public, 2048 bits)", tostring(client.dws_key))
    local key = assert(core.private_key(pem))
    assert.are.equal("dws.key(private, 2048 bits)", tostring(key))
    assert_no_key("the client, deeply", serialise(client), pieces)
    local pub_pieces = key_pieces(sb.dws_public_key)
    assert_no_key("tostring(dws key)", tostring(client.dws_key), pub_pieces)
  end)

  it("an unreadable key raises without quoting it", function()
    local broken = pem:sub(1, 900) .. "\n-----END PRIVATE KEY-----\n"
    local ok, err = pcall(dws.client, { client_id = CLIENT_ID, private_key = broken,
      dws_public_key = sb.dws_public_key, gateway = sb.https_url })
    assert.is_false(ok)
    assert.matches("private_key", tostring(err), 1, true)
    assert_no_key("the error for a broken key", tostring(err), key_pieces(pem:sub(1, 900)))
  end)
end)
