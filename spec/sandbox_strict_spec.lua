-- The sandbox is exactly as strict as SIGNING.md and the API pages (docs/sandbox.md "How strict it
-- is"): each request below differs from a correct one in one point, and is refused with the code
-- DWS gives (or, where the pages name none, the one the sandbox chose); a correct one gets S, so a
-- refusal is the point's and nothing else's. Requests are made by hand with dws.core (not through
-- the SDK, which would not send them); answers are read over dws.curl.
local core = require "dws.core"
local curl = require "dws.curl"
local nginx = require "dws_sandbox.nginx"
local testing = require "dws.testing"
local httpd = require "helpers.httpd"

local SANDBOX_ID, LIVE_ID = "SANDBOX_STRICT_SHOP", "LIVE_STRICT_SHOP"
local CONSULT = '{"customerId":"2162878776333","env":{"terminalType":"WEB"}}'
local ACK = '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}'

-- The merchant's notify URL answers as the notification's referenceCustomerId says.
local RECEIVER = [[
    location = /ack {
        content_by_lua_block {
            ngx.req.read_body()
            local mode = (require("dws.core").json_decode(ngx.req.get_body_data() or "") or {}).referenceCustomerId
            local ack = ']] .. ACK .. [['
            local answers = {
                exact = { "application/json", ack },
                charset = { "application/json; charset=UTF-8", ack },
                reordered = { "application/json",
                    '{ "result" : { "resultStatus":"S", "resultMessage":"success", "resultCode":"SUCCESS" } }' },
                text = { "text/plain", ack },
                resultmsg = { "application/json",
                    '{"result":{"resultStatus":"S","resultCode":"SUCCESS","resultMsg":"success"}}' },
                sonly = { "application/json", '{"result":{"resultStatus":"S"}}' },
                extra = { "application/json",
                    '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"},"x":"1"}' },
            }
            local a = answers[mode] or { "application/json", ack }
            if mode == "created" then ngx.status = 201 end
            ngx.header["Content-Type"] = a[1]
            ngx.print(a[2])
        }
    }
]]

local sb, receiver, key, handle, dir

local function path_of(api, prefix)
  return (prefix or "/ams/sandbox/api") .. "/v1/paymentMethods/" .. api
end

-- One request, correct unless opts says otherwise: opts.client_id, opts.prefix, opts.time, opts.body,
-- opts.api, opts.signature (the header value), opts.key_version, opts.headers (name -> value, or
-- false to leave the header out). -> the decoded answer's result, the decoded answer
local function send(opts)
  opts = opts or {}
  local api = opts.api or "consultAddablePaymentMethod"
  local client_id = opts.client_id or SANDBOX_ID
  local path = path_of(api, opts.prefix or (client_id:sub(1, 8) == "SANDBOX_" and "/ams/sandbox/api" or "/ams/api"))
  local time = opts.time or tostring(core.time_ms())
  local body = opts.body or CONSULT
  local b64 = core.sign(key, "POST", path, client_id, time, body)
  local h = {
    ["Content-Type"] = "application/json; charset=UTF-8", ["Client-Id"] = client_id, ["Request-Time"] = time,
    ["Signature"] = opts.signature and opts.signature(b64) or core.signature_header(b64, opts.key_version or "1"),
  }
  for k, v in pairs(opts.headers or {}) do h[k] = v or nil end
  local lines = {}
  for k, v in pairs(h) do lines[#lines + 1] = k .. ": " .. v end
  -- without this line, libcurl would send its own form Content-Type
  if not h["Content-Type"] then lines[#lines + 1] = "Content-Type:" end
  local status, headers, answer = handle:request(sb.https_url .. path, lines, body, 10, 5)
  assert(status, headers)
  local t = assert(core.json_decode(answer), answer)
  return t.result, t, headers
end

local function code(opts)
  local r = send(opts)
  return { r.resultStatus, r.resultCode }
end

describe("sandbox strictness #nginx", function()
  setup(function()
    dir = nginx.tmpdir("dws-strict")
    local priv, pub = nginx.make_keypair(dir, "merchant")
    key = assert(core.private_key(nginx.read_file(priv)))
    receiver = assert(httpd.start{ locations = RECEIVER })
    local public = nginx.read_file(pub)
    sb = assert(testing.start{
      clients = { [SANDBOX_ID] = { public_key = public, notify_url = receiver:url("/ack") },
                  [LIVE_ID] = { public_key = public } },
      -- Antom's 24-hour schedule in about 0.9 s: a refused acknowledgement is re-sent at once.
      notify_scale = 0.00001,
    })
    handle = curl.new{ max_response_bytes = 1024 * 1024, ca_file = sb.ca_file }
  end)

  teardown(function()
    if handle then handle:close() end
    if sb then sb:stop() end
    if receiver then receiver:stop() end
    nginx.rmdir(dir)
  end)

  it("answers S to a request made exactly as SIGNING.md says", function()
    assert.are.same({ "S", "SUCCESS" }, code())
  end)

  describe("the Signature header", function()
    it("refuses a signature that is not URL-encoded: INVALID_SIGNATURE", function()
      local result = send{ signature = function(b64)
        assert.truthy(b64:find("=", 1, true)) -- RSA-2048: always padded
        return "algorithm=RSA256,keyVersion=1,signature=" .. b64
      end }
      assert.are.same({ "F", "INVALID_SIGNATURE" }, { result.resultStatus, result.resultCode })
    end)

    it("refuses a signature URL-encoded twice: INVALID_SIGNATURE", function()
      local result = send{ signature = function(b64)
        return "algorithm=RSA256,keyVersion=1,signature=" .. core.url_encode(core.url_encode(b64))
      end }
      assert.are.same({ "F", "INVALID_SIGNATURE" }, { result.resultStatus, result.resultCode })
    end)

    it("accepts lower-case hex in the encoding (the .NET SDK's)", function()
      local result = send{ signature = function(b64)
        return "algorithm=RSA256,keyVersion=1,signature=" .. core.url_encode(b64):gsub("%%%x%x", string.lower)
      end }
      assert.are.same({ "S", "SUCCESS" }, { result.resultStatus, result.resultCode })
    end)

    it("refuses a header without keyVersion: INVALID_SIGNATURE", function()
      local result = send{ signature = function(b64)
        return "algorithm=RSA256,signature=" .. core.url_encode(b64)
      end }
      assert.are.same({ "F", "INVALID_SIGNATURE" }, { result.resultStatus, result.resultCode })
      assert.matches("keyVersion", result.resultMessage, 1, true)
    end)
  end)

  describe("Request-Time", function()
    it("refuses hello (signed as it is): PARAM_ILLEGAL", function()
      assert.are.same({ "F", "PARAM_ILLEGAL" }, code{ time = "hello" })
    end)

    it("refuses a time a day old: PARAM_ILLEGAL", function()
      assert.are.same({ "F", "PARAM_ILLEGAL" }, code{ time = tostring(core.time_ms() - 86400 * 1000) })
    end)

    it("refuses a time six minutes ahead: PARAM_ILLEGAL", function()
      assert.are.same({ "F", "PARAM_ILLEGAL" }, code{ time = tostring(core.time_ms() + 360 * 1000) })
    end)

    it("accepts the ISO 8601 forms SIGNING.md lists (Python, PHP, .NET)", function()
      local s = math.floor(core.time_ms() / 1000)
      local got = {}
      for _, t in ipairs{ os.date("!%Y-%m-%dT%H:%M:%S+00:00", s), os.date("!%Y-%m-%dT%H:%M:%S+0000", s),
                          os.date("!%Y-%m-%dT%H:%M:%S.1234567Z", s) } do
        got[#got + 1] = code{ time = t }[1]
      end
      assert.are.same({ "S", "S", "S" }, got)
    end)
  end)

  describe("the path and the Client-Id's environment", function()
    it("refuses a SANDBOX_ client on /ams/api: INVALID_CLIENT", function()
      assert.are.same({ "F", "INVALID_CLIENT" }, code{ prefix = "/ams/api" })
    end)

    it("refuses a live client on /ams/sandbox/api: INVALID_CLIENT", function()
      assert.are.same({ "F", "INVALID_CLIENT" }, code{ client_id = LIVE_ID, prefix = "/ams/sandbox/api" })
    end)

    it("serves a live client on /ams/api", function()
      assert.are.same({ "S", "SUCCESS" }, code{ client_id = LIVE_ID })
    end)
  end)

  describe("Content-Type", function()
    it("refuses text/plain: PARAM_ILLEGAL", function()
      assert.are.same({ "F", "PARAM_ILLEGAL" }, code{ headers = { ["Content-Type"] = "text/plain" } })
    end)

    it("refuses a request without one: PARAM_ILLEGAL", function()
      assert.are.same({ "F", "PARAM_ILLEGAL" }, code{ headers = { ["Content-Type"] = false } })
    end)

    it("refuses another charset: PARAM_ILLEGAL", function()
      assert.are.same({ "F", "PARAM_ILLEGAL" },
        code{ headers = { ["Content-Type"] = "application/json; charset=ISO-8859-1" } })
    end)

    it("accepts application/json without a charset (JSON is UTF-8)", function()
      assert.are.same({ "S", "SUCCESS" }, code{ headers = { ["Content-Type"] = "application/json" } })
    end)
  end)

  describe("notifications", function()
    -- Binds the test card with referenceCustomerId = mode; -> the first delivery attempt of it.
    local function first_delivery(mode)
      local _, cached = send{ api = "cacheCard", body = core.json_encode({ paymentMethodDetail = {
        paymentMethodDetailType = "card", card = { cardNo = "4111111111111111", expiryYear = "2099",
        expiryMonth = "07", securityCode = "123" } } }, true) }
      local id = "strict-" .. mode .. "-" .. core.uuid4()
      local r = send{ api = "addPaymentMethod", body = core.json_encode({ requestId = id,
        customerId = "2162878776333", referenceCustomerId = mode, env = { terminalType = "WEB" },
        paymentMethodDetail = { paymentMethodDetailType = "CARD",
          card = { cardToken = cached.paymentMethodDetail.card.cardToken } } }, true) }
      assert.are.equal("S", r.resultStatus)
      return sb:wait(function()
        for _, d in ipairs(sb:deliveries(SANDBOX_ID)) do
          if d.requestId == id and d.attempt == 1 then return d end
        end
      end)
    end

    it("carry operateSource MERCHANT (the notify page marks it required)", function()
      local d = first_delivery("exact")
      assert.are.equal("MERCHANT", core.json_decode(d.body).operateSource)
    end)

    it("take SIGNING.md's acknowledgement", function()
      local d = first_delivery("exact")
      assert.are.same({ true }, { d.acknowledged, d.refused })
    end)

    it("take it with a charset, other key order and whitespace (the same JSON)", function()
      local a, b = first_delivery("charset"), first_delivery("reordered")
      assert.are.same({ true, true }, { a.acknowledged, b.acknowledged })
    end)

    it("do not take it as text/plain", function()
      local d = first_delivery("text")
      assert.are.same({ false, "Content-Type is not application/json" }, { d.acknowledged, d.refused })
    end)

    it("do not take the notify page's sample answer (resultMsg)", function()
      local d = first_delivery("resultmsg")
      assert.are.same({ false, "result.resultMessage is not success" }, { d.acknowledged, d.refused })
    end)

    it("do not take a bare resultStatus S", function()
      local d = first_delivery("sonly")
      assert.is_false(d.acknowledged)
    end)

    it("do not take the body with a field added", function()
      local d = first_delivery("extra")
      assert.are.same({ false, 'the body is not {"result":{...}}' }, { d.acknowledged, d.refused })
    end)

    it("do not take HTTP 201", function()
      local d = first_delivery("created")
      assert.are.same({ false, 201 }, { d.acknowledged, d.status })
    end)
  end)
end)
