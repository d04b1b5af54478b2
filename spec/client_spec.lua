-- The client pipeline, first against an in-process fake gateway (a transport object that checks
-- the request signature and signs its answers with a DWS key), then against the real sandbox.
local core = require "dws.core"
local dws = require "dws"
local files = require "helpers.files"
local keys = require "helpers.keys"

local EXAMPLE = files.EXAMPLE

local read = files.read

local function sh(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and c == 0
end

local MERCHANT_PRIVATE = read(EXAMPLE .. "/merchant_private.pem")
-- Parsed once for the fake-gateway clients (key loading from text has specs of its own below):
-- a private key's pair-wise check costs ~30 ms, and the file makes a client per spec.
local MERCHANT_KEY = assert(core.private_key(MERCHANT_PRIVATE))
local MERCHANT_PUBLIC = core.public_key(read(EXAMPLE .. "/merchant_public.pem"))

local CONSULT = { customerId = "2162878776333", env = { terminalType = "WEB" }, scenes = { "TOPUP" } }
local CARD = "4111111111111111"

-- A response-time the client accepts (the fake answers now, in ISO 8601 as the sandbox does).
local function iso_now()
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

local function millis_now()
  return string.format("%d", core.time_ms())
end

-- A fake DWS: `script` is a list of answers, one per request (the last one repeats). An answer
-- is a table { result = {...}, ... } to sign and send, or a function(req, fake) returning a raw
-- transport answer (or nil, kind, message).
local function fake_gateway(dws_private, script)
  local fake = { requests = {}, sleeps = {}, script = script }
  local function sign_response(path, body, time)
    return dws.signature.sign{ private_key = dws_private, method = "POST", path = path, client_id = fake.client_id,
      time = time, body = body }
  end
  fake.sign_response = sign_response
  function fake.request(_, req)
    local path = req.url:match("^https?://[^/]+(/.*)$")
    local h = req.headers
    local verified = dws.signature.verify{ public_key = MERCHANT_PUBLIC, method = req.method, path = path,
      client_id = h["Client-Id"], time = h["Request-Time"], body = req.body, signature = h["Signature"] }
    local entry = { req = req, path = path, verified = verified, body = req.body, time = h["Request-Time"] }
    fake.requests[#fake.requests + 1] = entry
    fake.client_id = h["Client-Id"]
    local answer = fake.script[math.min(#fake.requests, #fake.script)]
    if type(answer) == "function" then return answer(entry, fake) end
    if not verified then
      answer = { result = { resultStatus = "F", resultCode = "INVALID_SIGNATURE", resultMessage = "bad" } }
    end
    -- As DWS does, an answer to addPaymentMethod names the request it answers.
    local sent = core.json_decode(req.body)
    if type(sent) == "table" and sent.requestId and answer.requestId == nil then
      local copy = {}
      for k, v in pairs(answer) do copy[k] = v end
      copy.requestId = sent.requestId
      answer = copy
    end
    local body = core.json_encode(answer)
    local now = iso_now()
    return { status = 200, body = body, headers = { ["content-type"] = "application/json",
      ["client-id"] = fake.client_id, ["response-time"] = now, signature = sign_response(path, body, now) } }
  end
  function fake.sleep(_, s) fake.sleeps[#fake.sleeps + 1] = s end
  return fake
end

local S = { result = { resultStatus = "S", resultCode = "SUCCESS", resultMessage = "success" } }
local U = { result = { resultStatus = "U", resultCode = "UNKNOWN_EXCEPTION", resultMessage = "unknown" } }

describe("dws.client", function()
  local tmp, dws_private, dws_public

  setup(function()
    tmp = os.tmpname()
    os.remove(tmp)
    assert(sh("mkdir -p " .. tmp))
    -- the fake gateway's key pair, made once per run (spec/run's key cache)
    local priv, pub = require("dws_sandbox.nginx").make_keypair(tmp, "dws")
    dws_private = core.private_key(read(priv))
    dws_public = read(pub)
  end)

  teardown(function()
    if tmp then os.execute("rm -rf " .. tmp) end
  end)

  local function make(script, over)
    local fake = fake_gateway(dws_private, script)
    local opts = { client_id = "TEST_CLIENT", private_key = MERCHANT_KEY, dws_public_key = dws_public,
      gateway = "https://dws.example", transport = fake, retry_base_delay = 0.01 }
    for k, v in pairs(over or {}) do opts[k] = v end
    return dws.client(opts), fake
  end

  describe("options", function()
    it("raises on programming errors with a clear message", function()
      local base = { client_id = "C", private_key = MERCHANT_KEY, dws_public_key = dws_public,
        gateway = "https://dws.example" }
      local function with(over)
        local o = {}
        for k, v in pairs(base) do o[k] = v end
        for k, v in pairs(over) do o[k] = v end
        return function() dws.client(o) end
      end
      assert.has_error(function() dws.client() end)
      assert.has_error(with{ client_id = false }, "dws.client: option client_id has the wrong type (boolean)")
      assert.has_error(with{ timeout = "15" }, "dws.client: option timeout has the wrong type (string)")
      assert.has_error(with{ max_retries = -1 })
      assert.has_error(with{ colour = "blue" }, "dws.client: unknown option colour")
      assert.has_error(with{ request_time = "sundial" })
      assert.has_error(with{ gateway = "https://dws.example/ams/api" })
      assert.has_error(with{ gateway = "ftp://dws.example" })
      local ok, err = pcall(with{ private_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----" })
      assert.is_false(ok)
      assert.truthy(tostring(err):find("private_key is unreadable", 1, true))
      ok, err = pcall(with{ private_key = core.public_key(dws_public) })
      assert.is_false(ok)
      assert.truthy(tostring(err):find("private_key must be a private key", 1, true))
      ok, err = pcall(with{ dws_public_key = core.public_key(dws_public) })
      assert.is_true(ok, err) -- a parsed public key is fine
      ok, err = pcall(with{ client_id = "" })
      assert.is_false(ok)
      assert.truthy(tostring(err):find("client_id is required", 1, true))
    end)

    it("refuses plain http except on loopback or when allowed explicitly", function()
      local base = { client_id = "C", private_key = MERCHANT_KEY, dws_public_key = dws_public,
        transport = fake_gateway(dws_private, { S }) }
      local function client(gateway, allow)
        local o = { gateway = gateway, allow_insecure_http = allow }
        for k, v in pairs(base) do o[k] = v end
        return dws.client(o)
      end
      local ok, err = pcall(client, "http://dws.example")
      assert.is_false(ok)
      assert.truthy(tostring(err):find("refusing plain http", 1, true))
      assert.is_false(pcall(client, "http://10.0.0.1:8080"))
      assert.is_false(pcall(client, "http://127.example.com"))
      for _, g in ipairs{ "http://127.0.0.1:8080", "http://127.1.2.3", "http://localhost:9", "http://[::1]:80" } do
        assert.is_table(client(g))
      end
      assert.is_table(client("http://dws.example", true))
    end)

    it("keeps keys parsed and out of tostring", function()
      local c = make{ S }
      assert.are.equal("userdata", type(c.private_key))
      assert.are.equal("userdata", type(c.dws_key))
      assert.are.equal("dws.client(TEST_CLIENT)", tostring(c))
      assert.is_nil(c.options.private_key)
      assert.are.equal(15, c.options.timeout)
      assert.are.equal(2, c.options.max_retries)
    end)
  end)

  describe("a call", function()
    it("sends the exact signed bytes with the documented headers", function()
      local c, fake = make{ S }
      local res, err = c:consult_addable_payment_method(CONSULT)
      assert.is_nil(err)
      assert.are.equal("S", res.result.resultStatus)
      local r = fake.requests[1]
      assert.is_true(r.verified)
      assert.are.equal("https://dws.example/ams/api/v1/paymentMethods/consultAddablePaymentMethod", r.req.url)
      assert.are.equal("POST", r.req.method)
      assert.are.equal('{"customerId":"2162878776333","env":{"terminalType":"WEB"},"scenes":["TOPUP"]}', r.body)
      local h = r.req.headers
      assert.are.equal("application/json; charset=UTF-8", h["Content-Type"])
      assert.are.equal("TEST_CLIENT", h["Client-Id"])
      assert.truthy(h["Request-Time"]:find("^%d+$"))
      assert.truthy(h["Signature"]:find("^algorithm=RSA256,keyVersion=1,signature="))
      assert.truthy(h["User-Agent"]:find("^lua%-dws/0%.1%.0 %((.-); libcurl [%d.]+; OpenSSL [^)]+%)$"))
      assert.truthy(h["User-Agent"]:find(type(jit) == "table" and "LuaJIT" or "Lua 5.4", 1, true))
      assert.are.equal(15, r.req.timeout)
      assert.are.equal(5, r.req.connect_timeout)
    end)

    it("rewrites the path for SANDBOX_ client ids, sent and signed", function()
      local c, fake = make({ S }, { client_id = "SANDBOX_123" })
      assert.is_table(c:cache_card{ paymentMethodDetail = { paymentMethodDetailType = "card",
        card = { cardNo = CARD, expiryYear = "2030", expiryMonth = "12" } } })
      assert.are.equal("/ams/sandbox/api/v1/paymentMethods/cacheCard", fake.requests[1].path)
      assert.is_true(fake.requests[1].verified)
    end)

    it("uses the configured key version and request time", function()
      local c, fake = make({ S }, { key_version = 3, request_time = "iso8601" })
      assert.is_table(c:consult_addable_payment_method(CONSULT))
      assert.truthy(fake.requests[1].req.headers["Signature"]:find("keyVersion=3,", 1, true))
      assert.truthy(fake.requests[1].time:find("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%+00:00$"))
      c, fake = make({ S }, { request_time = function() return "T-1" end })
      assert.is_table(c:consult_addable_payment_method(CONSULT))
      assert.are.equal("T-1", fake.requests[1].time)
      assert.is_true(fake.requests[1].verified)
    end)

    it("generates a requestId for addPaymentMethod and reports it", function()
      local c, fake = make{ { result = S.result, paymentMethodDetail = { card = {} } } }
      local req = { customerId = "2162878776333", paymentMethodDetail = { paymentMethodDetailType = "CARD",
        card = { cardToken = "PYMT1" } }, env = { terminalType = "WEB" } }
      local res = assert(c:add_payment_method(req))
      assert.is_nil(req.requestId)
      local sent = core.json_decode(fake.requests[1].body)
      assert.truthy(sent.requestId:find("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$"))
      assert.are.equal(sent.requestId, res.requestId)
      local _, err = make{ { result = { resultStatus = "F", resultCode = "RISK_REJECT" } } }:add_payment_method(req)
      assert.truthy(err.request_id:find("^%x+%-%x+%-4%x+"))
    end)

    it("accepts resultMsg as resultMessage and leaves JSON strings as strings", function()
      local detail = '{"card":{"supportCardBrands":[{"cardBrand":"VISA"}]},"type":"card"}'
      local c = make{ { result = { resultStatus = "S", resultCode = "SUCCESS", resultMsg = "success" },
        paymentOptions = { { paymentMethodType = "MIXEDCARD", paymentOptionDetail = detail } } } }
      local res = assert(c:consult_addable_payment_method(CONSULT))
      assert.are.equal("success", res.result.resultMessage)
      assert.are.equal(detail, res.paymentOptions[1].paymentOptionDetail)
      assert.are.equal("VISA", dws.decode_json(detail).card.supportCardBrands[1].cardBrand)
      local bad, why = dws.decode_json('{"type":"card","businessScenes": "["BINDCARD"]"}')
      assert.is_nil(bad)
      assert.is_string(why)
      assert.is_nil((dws.decode_json(42)))
    end)

    it("validates before sending anything", function()
      local c, fake = make{ S }
      local res, err = c:consult_addable_payment_method{ customerId = "2162878776333", env = {} }
      assert.is_nil(res)
      assert.are.equal("PARAM_ILLEGAL", err.code)
      assert.are.equal("env.terminalType", err.field)
      assert.are.equal("consultAddablePaymentMethod", err.api)
      assert.are.equal(0, err.attempts)
      assert.are.equal(0, #fake.requests)
    end)

    it("encodes dws.array, dws.null and extra fields as the caller marked them", function()
      local c, fake = make{ S }
      assert.is_table(c:consult_addable_payment_method{ customerId = 2162878776333, env = { terminalType = "WEB" },
        scenes = dws.array(), extra = { list = dws.array{}, nothing = dws.null, n = 20, ok = true } })
      assert.are.equal('{"customerId":"2162878776333","env":{"terminalType":"WEB"},'
        .. '"extra":{"list":[],"n":"20","nothing":null,"ok":"true"},"scenes":[]}', fake.requests[1].body)
      assert.are.equal("0.1.0", dws.VERSION)
      assert.are.equal("PARAM_ILLEGAL", dws.errors.PARAM_ILLEGAL)
      assert.has_error(function() dws.array("x") end)
    end)

    it("exposes the generic call and refuses unknown APIs", function()
      local c = make{ S }
      assert.is_table(c:call("consultAddablePaymentMethod", CONSULT))
      assert.has_error(function() c:call("refund", {}) end)
    end)
  end)

  describe("results", function()
    it("returns F as an error with the verified response, never retried", function()
      local c, fake = make{ { result = { resultStatus = "F", resultCode = "USER_NOT_EXIST", resultMessage = "no" } } }
      local res, err = c:consult_addable_payment_method(CONSULT)
      assert.is_nil(res)
      assert.are.equal("F", err.status)
      assert.are.equal("USER_NOT_EXIST", err.code)
      assert.are.equal("no", err.message)
      assert.is_false(err.retryable)
      assert.are.equal(1, err.attempts)
      assert.are.equal(200, err.http_status)
      assert.are.equal("USER_NOT_EXIST", err.response.result.resultCode)
      assert.are.equal(1, #fake.requests)
      assert.are.equal("dws: consultAddablePaymentMethod USER_NOT_EXIST (F): no http=200", tostring(err))
    end)

    it("retries U/UNKNOWN_EXCEPTION with the same body, re-signed with a new Request-Time", function()
      local t = 0
      local c, fake = make({ U, U, S }, { request_time = function() t = t + 1; return tostring(1700000000000 + t) end })
      local res = assert(c:add_payment_method{ customerId = "2162878776333", paymentMethodDetail = {
        paymentMethodDetailType = "CARD", card = { cardToken = "PYMT1" } } })
      assert.are.equal(3, #fake.requests)
      for i = 2, 3 do
        assert.are.equal(fake.requests[1].body, fake.requests[i].body)
        assert.are_not.equal(fake.requests[i - 1].time, fake.requests[i].time)
        assert.are_not.equal(fake.requests[i - 1].req.headers["Signature"], fake.requests[i].req.headers["Signature"])
        assert.is_true(fake.requests[i].verified)
      end
      assert.are.equal(core.json_decode(fake.requests[1].body).requestId, res.requestId)
      -- backoff with full jitter, through transport:sleep
      assert.are.equal(2, #fake.sleeps)
      assert.is_true(fake.sleeps[1] >= 0 and fake.sleeps[1] <= 0.01)
      assert.is_true(fake.sleeps[2] >= 0 and fake.sleeps[2] <= 0.02)
    end)

    it("backs off exponentially with full jitter, capped at 5 s", function()
      local c, fake = make({ U }, { max_retries = 10, retry_base_delay = 0.5 })
      local _, err = c:consult_addable_payment_method(CONSULT)
      assert.are.equal(11, err.attempts)
      assert.are.equal(10, #fake.sleeps)
      local distinct, over_first = {}, 0
      for i, d in ipairs(fake.sleeps) do
        assert.is_true(d >= 0 and d <= math.min(5, 0.5 * 2 ^ (i - 1)), "delay " .. i)
        distinct[d] = true
        if d > 0.5 then over_first = over_first + 1 end
      end
      assert.is_true(next(distinct, next(distinct)) ~= nil) -- jittered, not one fixed value
      assert.is_true(over_first > 0) -- and it does grow past the base
    end)

    it("gives up after max_retries with the last error and the attempt count", function()
      local c, fake = make({ U }, { max_retries = 1 })
      local _, err = c:consult_addable_payment_method(CONSULT)
      assert.are.equal("UNKNOWN_EXCEPTION", err.code)
      assert.are.equal("U", err.status)
      assert.is_true(err.retryable)
      assert.are.equal(2, err.attempts)
      assert.are.equal(2, #fake.requests)
      c, fake = make({ { result = { resultStatus = "U", resultCode = "REQUEST_TRAFFIC_EXCEED_LIMIT" } } },
        { max_retries = 0 })
      _, err = c:consult_addable_payment_method(CONSULT)
      assert.are.equal("REQUEST_TRAFFIC_EXCEED_LIMIT", err.code)
      assert.are.equal(1, #fake.requests)
    end)

    it("does not retry other U codes", function()
      local c, fake = make{ { result = { resultStatus = "U", resultCode = "PROCESSING" } } }
      local _, err = c:consult_addable_payment_method(CONSULT)
      assert.are.equal("PROCESSING", err.code)
      assert.are.equal(1, #fake.requests)
    end)

    local function raw(status, body, headers)
      return function() return { status = status, body = body, headers = headers or {} } end
    end

    it("retries HTTP 5xx and 429 but not other statuses", function()
      local c, fake = make{ raw(502, "<html>bad gateway</html>"), raw(429, ""), S }
      assert.is_table(c:consult_addable_payment_method(CONSULT))
      assert.are.equal(3, #fake.requests)
      c, fake = make{ raw(503, "") }
      local _, err = c:consult_addable_payment_method(CONSULT)
      assert.are.equal("HTTP_ERROR", err.code)
      assert.are.equal(503, err.http_status)
      assert.are.equal(3, err.attempts)
      assert.are.equal(3, #fake.requests)
      assert.is_nil(err.response)
      c, fake = make{ raw(404, "not here"), S }
      _, err = c:consult_addable_payment_method(CONSULT)
      assert.are.equal("HTTP_ERROR", err.code)
      assert.are.equal(1, #fake.requests)
    end)

    it("maps transport failures, retrying timeouts and connection failures only", function()
      local function failing(kind) return function() return nil, kind, kind .. " happened" end end
      for kind, expect in pairs{ timeout = { "TIMEOUT", 3 }, connect = { "CONNECTION_FAILED", 3 },
        protocol = { "CONNECTION_FAILED", 3 }, tls = { "TLS_ERROR", 1 }, too_large = { "RESPONSE_TOO_LARGE", 1 } } do
        local c, fake = make{ failing(kind) }
        local _, err = c:consult_addable_payment_method(CONSULT)
        assert.are.equal(expect[1], err.code)
        assert.are.equal("U", err.status)
        assert.are.equal(expect[2], #fake.requests)
        assert.are.equal(expect[2], err.attempts)
      end
      -- a transport that raises has a bug: that surfaces as itself, once, never as a retried failure
      local c, fake = make{ function() error("transport bug", 0) end, S }
      assert.has_error(function() c:consult_addable_payment_method(CONSULT) end, "transport bug")
      assert.are.equal(1, #fake.requests)
    end)

    it("refuses a body over max_response_bytes from any transport", function()
      local c = make({ raw(200, string.rep(" ", 2000)) }, { max_response_bytes = 1000 })
      local _, err = c:consult_addable_payment_method(CONSULT)
      assert.are.equal("RESPONSE_TOO_LARGE", err.code)
      assert.are.equal(1, err.attempts)
    end)

    it("rejects tampered, foreign-key and unsigned S responses, returning no data", function()
      local function signed_by(key, tamper, extra)
        return function(entry, fake)
          local body = core.json_encode{ result = S.result, secret = "data" }
          local sig = dws.signature.sign{ private_key = key, method = "POST", path = entry.path,
            client_id = fake.client_id, time = millis_now(), body = body }
          local h = { ["response-time"] = millis_now(), signature = sig, ["client-id"] = fake.client_id }
          for k, v in pairs(extra or {}) do
            if v == false then h[k] = nil else h[k] = v end -- false drops a header
          end
          return { status = 200, body = tamper and body:gsub("data", "date") or body, headers = h }
        end
      end
      local cases = {
        { signed_by(dws_private, true), "SIGNATURE_INVALID" },
        { signed_by(MERCHANT_PRIVATE), "SIGNATURE_INVALID" },
        { signed_by(dws_private, false, { signature = false }), "SIGNATURE_MISSING" },
        { signed_by(dws_private, false, { ["response-time"] = false }), "SIGNATURE_MISSING" },
        { raw(200, core.json_encode(S)), "SIGNATURE_MISSING" },
      }
      for _, case in ipairs(cases) do
        local c, fake = make{ case[1] }
        local res, err = c:consult_addable_payment_method(CONSULT)
        assert.is_nil(res)
        assert.are.equal(case[2], err.code)
        assert.is_nil(err.response)
        assert.is_false(err.retryable)
        assert.are.equal(1, #fake.requests)
      end
    end)

    it("treats a header given twice as invalid", function()
      local c = make{ function(entry, fake)
        local body = core.json_encode(S)
        local now = millis_now()
        local sig = fake.sign_response(entry.path, body, now)
        return { status = 200, body = body, headers = { ["response-time"] = now, signature = { sig, sig } } }
      end }
      local res, err = c:consult_addable_payment_method(CONSULT)
      assert.is_nil(res)
      assert.are.equal("SIGNATURE_INVALID", err.code)
    end)

    it("accepts unsigned F and U as such, without the unverified body", function()
      local c = make{ raw(200, core.json_encode{ result = { resultStatus = "F", resultCode = "ACCESS_DENIED",
        resultMessage = "denied" } }) }
      local _, err = c:consult_addable_payment_method(CONSULT)
      assert.are.equal("ACCESS_DENIED", err.code)
      assert.are.equal("F", err.status)
      assert.is_nil(err.response)
      local fake
      c, fake = make{ raw(200, core.json_encode(U)), S }
      assert.is_table(c:consult_addable_payment_method(CONSULT))
      assert.are.equal(2, #fake.requests)
    end)

    it("calls non-JSON bodies and bodies without result malformed", function()
      for _, body in ipairs{ "<html>", "[]", '{"result":"S"}', '{"x":1}', "" } do
        local c = make{ function(entry, fake)
          local now = millis_now()
          return { status = 200, body = body, headers = { ["response-time"] = now,
            signature = fake.sign_response(entry.path, body, now) } }
        end }
        local _, err = c:consult_addable_payment_method(CONSULT)
        assert.are.equal("RESPONSE_MALFORMED", err.code)
        assert.are.equal(1, err.attempts)
      end
    end)
  end)

  describe("logger", function()
    it("sees request, response, retry and error events, and a raising logger breaks nothing", function()
      local events = {}
      local c = make({ U, S }, { logger = function(level, message, fields)
        events[#events + 1] = { level = level, message = message, fields = fields }
        error("logger bug")
      end })
      assert.is_table(c:consult_addable_payment_method(CONSULT))
      local kinds = {}
      for _, e in ipairs(events) do kinds[#kinds + 1] = e.fields.event end
      assert.are.same({ "request", "response", "result", "retry", "request", "response", "result" }, kinds)
      assert.are.equal("consultAddablePaymentMethod", events[1].fields.api)
      assert.are.equal(1, events[1].fields.attempt)
      assert.are.equal(200, events[2].fields.http_status)
      assert.is_number(events[2].fields.elapsed)
      assert.are.equal("UNKNOWN_EXCEPTION", events[3].fields.result_code)
      assert.are.equal("warn", events[4].level)
      assert.are.equal(2, events[5].fields.attempt)
      -- the shielded logger, for the notification and bind-card modules
      assert.has_no.errors(function() c:log("info", "x", {}) end)
      assert.are.equal("x", events[#events].message)
    end)

    it("log_level drops the events under it; client:log obeys it too", function()
      local events = {}
      local c = make({ U, S }, { log_level = "warn", logger = function(level, message)
        events[#events + 1] = level .. " " .. message
      end })
      assert.is_table(c:consult_addable_payment_method(CONSULT))
      c:log("info", "dropped")
      c:log("error", "kept")
      for _, e in ipairs(events) do assert.is_truthy(e:find("^warn ") or e:find("^error "), e) end
      assert.are.equal("error kept", events[#events])
      assert.is_true(#events >= 2) -- the retry's warn line and the error
    end)

    it("refuses a log_level that is not a level", function()
      local ok, err = pcall(make, { S }, { log_level = "verbose" })
      assert.is_false(ok)
      assert.matches('option log_level must be "debug", "info", "warn" or "error"', err, 1, true)
    end)

    local function events_of(script, over)
      local events = {}
      over = over or {}
      over.logger = function(_, _, fields) events[#events + 1] = fields end
      local c = make(script, over)
      c:consult_addable_payment_method(CONSULT)
      return events
    end

    it("the retry event carries dws.retry's reason", function()
      local events = events_of({ U, S })
      local _, reason = require("dws.retry").should_retry("result", "U", "UNKNOWN_EXCEPTION")
      assert.are.equal(reason, events[4].reason)
    end)

    it("the error event says why the last failure was not retried", function()
      local events = events_of({ U }, { max_retries = 0 })
      local _, reason = require("dws.retry").should_retry("result", "U", "UNKNOWN_EXCEPTION")
      assert.are.equal("no attempt left (max_retries = 0); " .. reason, events[#events].reason)
    end)
  end)

  describe("transport choice", function()
    local saved
    before_each(function() saved = rawget(_G, "ngx") end)
    after_each(function() rawset(_G, "ngx", saved) end)

    local function plain(over)
      local opts = { client_id = "C", private_key = MERCHANT_KEY, dws_public_key = dws_public,
        gateway = "https://dws.example" }
      for k, v in pairs(over or {}) do opts[k] = v end
      return dws.client(opts)
    end

    -- Just enough of OpenResty's ngx table for the choice; no request is made.
    local function fake_ngx(phase, with_sockets)
      return { get_phase = function() return phase end, config = { ngx_lua_version = 10025 },
        socket = with_sockets and { tcp = function() end } or nil }
    end

    it("uses libcurl outside nginx", function()
      local c = plain()
      assert.are.equal(require("dws.transport.curl").Transport, getmetatable(c.transport))
      assert.truthy(c.options.user_agent:find("libcurl", 1, true))
    end)

    it("uses cosockets inside nginx, also for a client made in init_by_lua", function()
      rawset(_G, "ngx", fake_ngx("init", true))
      local c = plain()
      assert.are.equal(require("dws.transport.ngx").Transport, getmetatable(c.transport))
      assert.is_nil(c.options.user_agent:find("libcurl", 1, true))
      assert.truthy(c.options.user_agent:find("ngx_lua 10025", 1, true))
      -- calls from a phase without cosockets are a programming error, said clearly
      local ok, err = pcall(c.consult_addable_payment_method, c, CONSULT)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("init phase", 1, true))
      rawget(_G, "ngx").get_phase = function() return "log" end
      ok, err = pcall(c.consult_addable_payment_method, c, CONSULT)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("log phase", 1, true))
    end)

    it("refuses to pick a transport inside nginx without cosockets, unless given one", function()
      rawset(_G, "ngx", fake_ngx("content", false))
      local ok, err = pcall(plain)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("without cosockets", 1, true))
      local t = fake_gateway(dws_private, { S })
      assert.are.equal(t, plain{ transport = t }.transport)
    end)

    it("takes opts.transport over either", function()
      local t = fake_gateway(dws_private, { S })
      assert.are.equal(t, plain{ transport = t }.transport)
      assert.has_error(function() plain{ transport = {} } end,
        "dws.client: option transport must have a request method")
    end)
  end)

  it("works as a transport-agnostic object for notifications and bind_card", function()
    local c = make{ S }
    assert.are.equal("TEST_CLIENT", c.client_id)
    assert.are.equal("function", type(c.verify_notification))
    assert.are.equal("function", type(c.handle_notification))
    assert.are.equal("function", type(c.bind_card))
    assert.are.equal(300, c.options.notification_tolerance)
  end)
end)

describe("dws.client against the sandbox", function()
  local sandbox = require "helpers.sandbox"
  local sb, merchant_key

  setup(function()
    -- A port lost to another process between probe and bind is retried where ports are chosen
    -- (dws_sandbox.control.start), not here: a start that fails is a failure.
    sb = assert(sandbox.start{})
    merchant_key = assert(core.private_key(sb.merchant.private_key)) -- once, as MERCHANT_KEY above
  end)

  teardown(function()
    if sb then sb:stop() end
  end)

  before_each(function()
    sb:reset()
  end)

  local function client(over)
    local opts = { client_id = sb.merchant.client_id, private_key = merchant_key,
      dws_public_key = sb.dws_public_key, gateway = sb.https_url, ca_file = sb.ca_file, retry_base_delay = 0.01 }
    for k, v in pairs(over or {}) do opts[k] = v end
    return dws.client(opts)
  end

  local function cache_request(card_no)
    return { paymentMethodDetail = { paymentMethodDetailType = "card", card = { cardNo = card_no or CARD,
      securityCode = "123", expiryYear = "2031", expiryMonth = "01", brand = "VISA" } } }
  end

  local function add_request(token, over)
    local r = { customerId = "2162878776333", env = { terminalType = "WEB" },
      paymentMethodDetail = { paymentMethodDetailType = "CARD", card = { cardToken = token } } }
    for k, v in pairs(over or {}) do r[k] = v end
    return r
  end

  -- The sandbox's request log entries for one API.
  local function logged(api)
    local out = {}
    for _, r in ipairs(sb:requests()) do
      if r.api == api then out[#out + 1] = r end
    end
    return out
  end

  for _, scheme in ipairs{ "http", "https" } do
    it("binds a card with the three APIs over " .. scheme, function()
      local c = client{ gateway = sb[scheme .. "_url"], ca_file = scheme == "https" and sb.ca_file or nil }
      local options = assert(c:consult_addable_payment_method(CONSULT))
      assert.are.equal("S", options.result.resultStatus)
      assert.are.equal("MIXEDCARD", options.paymentOptions[1].paymentMethodType)
      local detail = assert(dws.decode_json(options.paymentOptions[1].paymentOptionDetail))
      assert.are.equal("card", detail.type)

      local cached = assert(c:cache_card(cache_request()))
      local card = cached.paymentMethodDetail.card
      assert.are.equal("411111******1111", card.mask)
      assert.is_string(cached.expiryTime)

      local added = assert(c:add_payment_method(add_request(card.cardToken)))
      assert.are.equal("S", added.result.resultStatus)
      assert.is_string(added.requestId)
      -- accepted; the final token comes only by notification (the page's sample answer)
      assert.are.same({}, added.paymentMethodDetail.card)

      local log = sb:requests()
      assert.are.equal(3, #log)
      for _, r in ipairs(log) do
        assert.is_true(r.verified)
        assert.are.equal("/ams/sandbox/api/v1/paymentMethods/" .. r.api, r.path)
      end
      assert.are.equal(added.requestId, log[3].requestId)
    end)
  end

  it("returns F results as errors carrying the verified response", function()
    local c = client()
    local _, err = c:consult_addable_payment_method{ customerId = "2188000000000001", env = { terminalType = "WEB" } }
    assert.are.equal("F", err.status)
    assert.are.equal("USER_STATUS_ABNORMAL", err.code)
    assert.are.equal("USER_STATUS_ABNORMAL", err.response.result.resultCode)
    assert.are.equal(1, err.attempts)
    _, err = c:consult_addable_payment_method{ customerId = "2199999999999999", env = { terminalType = "WEB" } }
    assert.are.equal("USER_NOT_EXIST", err.code)
    local cached = assert(c:cache_card(cache_request("4000000000000101")))
    local _, aerr = c:add_payment_method(add_request(cached.paymentMethodDetail.card.cardToken))
    assert.are.equal("RISK_REJECT", aerr.code)
    assert.truthy(aerr.request_id:find("^%x+%-"))
    assert.are.equal(1, #logged("addPaymentMethod"))
  end)

  it("retries U/UNKNOWN_EXCEPTION with the same body, re-signed with a new Request-Time", function()
    local c = client()
    local res = assert(c:consult_addable_payment_method{ customerId = "2188000000000003",
      env = { terminalType = "WEB" } })
    assert.are.equal("S", res.result.resultStatus)
    local log = logged("consultAddablePaymentMethod")
    assert.are.equal(2, #log)
    assert.are.equal("U", log[1].resultStatus)
    assert.are.equal(log[1].body_sha256, log[2].body_sha256)
    assert.are_not.equal(log[1].request_time, log[2].request_time)
    assert.are_not.equal(log[1].signature, log[2].signature)
    assert.is_true(log[2].verified)
  end)

  it("keeps the generated requestId across retries of addPaymentMethod", function()
    local c = client()
    local cached = assert(c:cache_card(cache_request("4000000000000119")))
    local added = assert(c:add_payment_method(add_request(cached.paymentMethodDetail.card.cardToken)))
    local log = logged("addPaymentMethod")
    assert.are.equal(2, #log)
    assert.are.equal("U", log[1].resultStatus)
    assert.are.equal("S", log[2].resultStatus)
    assert.are.equal(added.requestId, log[1].requestId)
    assert.are.equal(added.requestId, log[2].requestId)
    assert.are.equal(log[1].body_sha256, log[2].body_sha256)
    assert.are_not.equal(log[1].request_time, log[2].request_time)
  end)

  it("retries HTTP 500 and gives up after max_retries with the last error", function()
    local c = client()
    sb:fault("http_500", 1)
    assert.is_table(c:consult_addable_payment_method(CONSULT))
    local log = logged("consultAddablePaymentMethod")
    assert.are.equal(2, #log)
    assert.are.equal(log[1].body_sha256, log[2].body_sha256)
    sb:reset()
    sb:fault("http_503", 5)
    local _, err = c:consult_addable_payment_method(CONSULT)
    assert.are.equal("HTTP_ERROR", err.code)
    assert.are.equal(503, err.http_status)
    assert.are.equal(3, err.attempts)
    assert.are.equal(3, #logged("consultAddablePaymentMethod"))
  end)

  it("returns no data from tampered, unsigned S or foreign-key responses, and never retries them", function()
    local c = client()
    for fault, code in pairs{ tamper = "SIGNATURE_INVALID", unsigned_s = "SIGNATURE_MISSING",
      foreign_key = "SIGNATURE_INVALID", dup_headers = "SIGNATURE_INVALID", no_response_time = "SIGNATURE_MISSING" } do
      sb:reset()
      sb:fault(fault, 1)
      local res, err = c:cache_card(cache_request())
      assert.is_nil(res)
      assert.are.equal(code, err.code, fault)
      assert.is_nil(err.response)
      assert.are.equal(1, err.attempts)
      assert.are.equal(1, #logged("cacheCard"))
    end
  end)

  it("accepts an unsigned F as F, without its body", function()
    local c = client()
    sb:fault("unsigned_f", 1)
    local _, err = c:consult_addable_payment_method(CONSULT)
    assert.are.equal("F", err.status)
    assert.are.equal("ACCESS_DENIED", err.code)
    assert.is_nil(err.response)
    assert.are.equal(1, err.attempts)
  end)

  it("is idempotent on requestId: same body same answer, other body refused", function()
    local c = client()
    local token = assert(c:cache_card(cache_request())).paymentMethodDetail.card.cardToken
    local first = assert(c:add_payment_method(add_request(token, { requestId = "idem-1" })))
    local again = assert(c:add_payment_method(add_request(token, { requestId = "idem-1" })))
    assert.are.equal("idem-1", first.requestId)
    assert.are.same(first.paymentMethodDetail, again.paymentMethodDetail)
    local _, err = c:add_payment_method(add_request(token, { requestId = "idem-1", customerId = "2188000000000002" }))
    assert.are.equal("REPEAT_REQ_INCONSISTENT", err.code)
    assert.are.equal("idem-1", err.request_id)
  end)

  it("makes 100 sequential calls over one TCP connection", function()
    for _, scheme in ipairs{ "http", "https" } do
      local c = client{ gateway = sb[scheme .. "_url"] }
      for _ = 1, 100 do assert(c:consult_addable_payment_method(CONSULT)) end
      local stats = c.transport:stats()
      assert.are.equal(1, stats.connects, scheme)
      assert.are.equal(100, stats.requests)
      c:close()
    end
  end)

  it("fails TLS without the sandbox CA, not retried", function()
    local c = dws.client{ client_id = sb.merchant.client_id, private_key = sb.merchant.private_key,
      dws_public_key = sb.dws_public_key, gateway = sb.https_url, retry_base_delay = 0.01 }
    local _, err = c:consult_addable_payment_method(CONSULT)
    assert.are.equal("TLS_ERROR", err.code)
    assert.are.equal(1, err.attempts)
    assert.are.equal(0, #sb:requests())
  end)

  it("signs ISO 8601 request times the gateway accepts", function()
    local c = client{ request_time = "iso8601" }
    assert.is_table(c:consult_addable_payment_method(CONSULT))
    local log = sb:requests()
    assert.is_true(log[1].verified)
    assert.truthy(log[1].request_time:find("^%d%d%d%d%-%d%d%-%d%dT"))
  end)

  -- #nginx (run under one busted flavour): the client under test is made and called inside nginx.
  it("picks cosockets by itself inside nginx: made in init_by_lua, called from content, refused in log #nginx",
    function()
    local httpd = require "helpers.httpd"
    local conf = string.format("return { client_id = %q, private_key = %q, dws_public_key = %q, gateway = %q }",
      sb.merchant.client_id, sb.merchant.private_key, sb.dws_public_key, sb.http_url)
    local probe = [==[
      local dws = require "dws"
      local core = require "dws.core"
      local M = {}
      local client
      function M.init()
        local opts = require "probe_conf"
        opts.retry_base_delay = 0.01
        client = dws.client(opts)
      end
      local CONSULT = { customerId = "2162878776333", env = { terminalType = "WEB" } }
      function M.call()
        local res, err = client:consult_addable_payment_method(CONSULT)
        ngx.say(core.json_encode{
          cosocket = getmetatable(client.transport) == require("dws.transport.ngx").Transport,
          curl_loaded = package.loaded["dws.curl"] ~= nil,
          status = res and res.result.resultStatus or tostring(err),
          ua = client.options.user_agent,
        })
      end
      function M.in_log()
        local ok, err = pcall(client.consult_addable_payment_method, client, CONSULT)
        ngx.shared.probe:set("log", ok and "no error" or tostring(err))
      end
      return M
    ]==]
    local srv = assert(httpd.start{
      lua_files = { probe = probe, probe_conf = conf },
      http = "    lua_shared_dict probe 64k;\n    init_by_lua_block { require('probe').init() }",
      locations = [[
    location = /probe { content_by_lua_block { require('probe').call() } }
    location = /log { content_by_lua_block { ngx.say('ok') } log_by_lua_block { require('probe').in_log() } }
    location = /log_result { content_by_lua_block { ngx.say(ngx.shared.probe:get('log') or '') } }
]],
    })
    local ok, err = pcall(function()
      local http = require("dws.transport.curl").new{}
      local function get(path)
        local res = assert(http:request{ method = "GET", url = srv:url(path), headers = {}, timeout = 10,
          connect_timeout = 2 })
        assert.are.equal(200, res.status)
        return res.body
      end
      local out = assert(dws.decode_json(get("/probe")))
      assert.are.equal("S", out.status)
      assert.is_true(out.cosocket)
      assert.is_false(out.curl_loaded) -- nginx never needs libcurl
      assert.truthy(out.ua:find("ngx_lua", 1, true))
      get("/log")
      local log_error = sb:wait(function()
        local s = get("/log_result"):gsub("%s+$", "")
        return s ~= "" and s
      end, 5)
      assert.truthy(log_error:find("log phase", 1, true))
      assert.are.equal(1, #sb:requests()) -- the log-phase call never went out
      http:close()
    end)
    srv:stop()
    assert(ok, err)
  end)

  it("is refused by the gateway with a key it does not know", function()
    local c = client{ private_key = (keys.pair("stranger")) } -- a key the sandbox has no client for
    local _, err = c:consult_addable_payment_method(CONSULT)
    assert.are.equal("INVALID_SIGNATURE", err.code)
    assert.are.equal("F", err.status)
  end)
end)
