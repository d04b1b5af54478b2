-- The DWS sandbox from the outside: the curl command line for HTTP, dws.core (and the openssl command
-- line as an independent verifier) for signatures, a second nginx as the merchant's notify receiver.
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local sandbox = require "helpers.sandbox"
local timeouts = require "helpers.timeouts"
local control = require "dws_sandbox.control"

local ROOT = os.getenv("DWS_ROOT") or "."
local CARDS = { "4111111111111111", "5555555555554444", "4000056655665556", "4000000000000077",
                "4000000000000101", "4000000000000119", "378282246310005", "4242424242424242" }

local tmp -- scratch directory for curl's header and body files

-- -> output, exit status (from the shell itself: LuaJIT's popen close does not report it)
local function sh(cmd)
  local p = assert(io.popen("{ " .. cmd .. "\n}; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)__rc=(%d+)%s*$")
  return body or out, tonumber(rc)
end

-- One HTTP request with the curl CLI. -> { status, headers (lower-case name -> value | {values}), body,
-- exit (curl's exit code) }
local function http(method, url, headers, body, extra)
  local args = { "curl -s -o", nginx.sh_quote(tmp .. "/body"), "-D", nginx.sh_quote(tmp .. "/head"),
                 "-X", method, extra or "" }
  for _, h in ipairs(headers or {}) do args[#args + 1] = "-H " .. nginx.sh_quote(h) end
  if body then
    nginx.write_file(tmp .. "/req", body)
    args[#args + 1] = "--data-binary @" .. nginx.sh_quote(tmp .. "/req")
  end
  os.remove(tmp .. "/body")
  os.remove(tmp .. "/head")
  local _, code = sh(table.concat(args, " ") .. " " .. nginx.sh_quote(url))
  local r = { exit = code, headers = {}, body = nginx.read_file(tmp .. "/body") or "" }
  local head = nginx.read_file(tmp .. "/head") or ""
  r.status = tonumber(head:match("^HTTP/%S+ (%d+)"))
  for name, value in head:gmatch("\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
    name = name:lower()
    local prev = r.headers[name]
    if prev == nil then
      r.headers[name] = value
    elseif type(prev) == "table" then
      prev[#prev + 1] = value
    else
      r.headers[name] = { prev, value }
    end
  end
  return r
end

local function api_path(api, prefix)
  return (prefix or "/ams/sandbox/api") .. "/v1/paymentMethods/" .. api
end

-- A signed API call. opts: key, client_id, path, time, headers (replace the signed ones), base, tamper
local function call(sb, api, body, opts)
  opts = opts or {}
  local path = opts.path or api_path(api)
  local client_id = opts.client_id or sb.merchant.client_id
  local key = opts.key or sb.merchant_key
  local time = opts.time or tostring(core.time_ms())
  local sig = core.signature_header(core.sign(key, "POST", path, client_id, time, body), "1")
  local headers = opts.headers or { "Content-Type: application/json; charset=UTF-8", "Client-Id: " .. client_id,
                                    "Request-Time: " .. time, "Signature: " .. sig }
  local sent = opts.tamper and opts.tamper(body) or body
  local r = http(opts.method or "POST", (opts.base or sb.http_url) .. path, headers, sent, opts.curl)
  r.path, r.client_id, r.method = path, client_id, opts.method or "POST"
  r.json = core.json_decode(r.body)
  return r
end

local function json(t)
  return assert(core.json_encode(t, true))
end

local function verify_response(sb, r, key)
  local sig = r.headers["signature"]
  if type(sig) ~= "string" or not r.headers["response-time"] then return false, "no signature" end
  local parsed = assert(core.parse_signature_header(sig))
  return core.verify(key or sb.dws_key, r.method or "POST", r.path, r.headers["client-id"], r.headers["response-time"],
    r.body, parsed.signature)
end

local function result_of(r)
  local t = type(r.json) == "table" and r.json.result or {}
  return t.resultStatus, t.resultCode, t.resultMessage
end

local function sc(r)
  local status, code = result_of(r)
  return status, code
end

local CONSULT = json{ customerId = "2162878776333", env = { terminalType = "WEB" }, scenes = { "TOPUP" } }

local function consult_body(customer, env)
  return json{ customerId = customer, env = env or { terminalType = "WEB" } }
end

local function card_body(no, extra)
  local card = { cardNo = no, expiryYear = "2099", expiryMonth = "07", securityCode = "123" }
  for k, v in pairs(extra or {}) do card[k] = v end
  return json{ paymentMethodDetail = { paymentMethodDetailType = "card", card = card } }
end

local function add_body(request_id, token, extra)
  local t = { requestId = request_id, customerId = "2162878776333",
              paymentMethodDetail = { paymentMethodDetailType = "CARD", card = { cardToken = token } },
              env = { terminalType = "WEB" } }
  for k, v in pairs(extra or {}) do t[k] = v end
  return json(t)
end

local function cache(sb, no, extra)
  local r = call(sb, "cacheCard", card_body(no, extra))
  assert.are.equal("S", (result_of(r)))
  return r.json.paymentMethodDetail.card.cardToken, r
end

-- The merchant's notify endpoint: records every POST and answers by referenceCustomerId:
-- "ack" S at once; "ack-third" HTTP 500, then F, then S; "never" always F.
local function start_receiver(dir, port)
  local conf = nginx.preamble(dir) .. [[
events { worker_connections 64; }
http {
]] .. nginx.lua_paths() .. [[
  access_log off;
  lua_shared_dict recv 4m;
  server {
    listen 127.0.0.1:]] .. port .. [[;
    location = /notify/dws {
      content_by_lua_block {
        local core = require "dws.core"
        ngx.req.read_body()
        local body = ngx.req.get_body_data() or ""
        local h = ngx.req.get_headers()
        local d = ngx.shared.recv
        local n = d:incr("n", 1, 0)
        d:set("r" .. n, core.json_encode({ client_id = h["client-id"], time = h["request-time"],
          signature = h["signature"], content_type = h["content-type"], body = body,
          uri = ngx.var.request_uri }, false))
        local t = core.json_decode(body) or {}
        local seen = d:incr("c:" .. tostring(t.requestId), 1, 0)
        local mode = t.referenceCustomerId
        if mode == "ack-third" and seen == 1 then
          ngx.status = 500
          return ngx.say("<html>oops</html>")
        end
        local ok = mode == "ack" or (mode == "ack-third" and seen >= 3)
        ngx.header["Content-Type"] = "application/json"
        ngx.print(ok and '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}'
          or '{"result":{"resultCode":"PROCESS_FAIL","resultStatus":"F","resultMessage":"not now"}}')
      }
    }
    location = /log {
      content_by_lua_block {
        local d = ngx.shared.recv
        local out = {}
        for i = 1, d:get("n") or 0 do out[#out + 1] = d:get("r" .. i) end
        ngx.print("[" .. table.concat(out, ",") .. "]")
      }
    }
  }
}
]]
  return nginx.start(dir, conf, { port }, 10)
end

describe("dws sandbox #nginx", function()
  local sb, receiver_dir, receiver_port

  local function received()
    local r = http("GET", "http://127.0.0.1:" .. receiver_port .. "/log")
    return core.json_decode(r.body) or {}
  end

  local function deliveries_for(request_id)
    local out = {}
    for _, d in ipairs(sb:deliveries()) do
      if d.requestId == request_id then out[#out + 1] = d end
    end
    return out
  end

  setup(function()
    tmp = nginx.tmpdir("dws-sbspec")
    receiver_dir = tmp .. "/receiver"
    receiver_port = nginx.free_ports(1)[1]
    assert(start_receiver(receiver_dir, receiver_port))
    -- 0.00001: Antom's 24-hour schedule in about 0.9 s.
    sb = assert(sandbox.start{ notify_scale = 0.00001, notify_delay = 0.3,
                               notify_url = "http://127.0.0.1:" .. receiver_port .. "/notify/dws?from=dws" })
    sb.merchant_key = assert(core.private_key(sb.merchant.private_key))
    sb.dws_key = assert(core.public_key(sb.dws_public_key))
  end)

  teardown(function()
    if sb then sb:stop() end
    if receiver_dir then control.stop(receiver_dir) end
    nginx.rmdir(tmp)
  end)

  before_each(function()
    sb:reset()
  end)

  describe("admin", function()
    it("answers health and starts with empty logs", function()
      assert.are.same({ status = "ok", config = sb.dir .. "/spec_config.lua" }, sb:health())
      assert.are.equal(0, #sb:requests())
      assert.are.equal(0, #sb:deliveries())
    end)

    it("refuses unknown faults and is not served on the HTTPS port", function()
      assert.has_error(function() sb:fault("no_such_fault", 1) end)
      local r = http("GET", sb.https_url .. "/__sandbox/requests", nil, nil, "--cacert " .. nginx.sh_quote(sb.ca_file))
      assert.are.equal(200, r.status)
      assert.are.same({ "F", "INVALID_API" }, { sc{ json = core.json_decode(r.body) } })
    end)
  end)

  describe("signatures", function()
    it("answers a signed consult with a response the openssl command line verifies", function()
      local r = call(sb, "consultAddablePaymentMethod", CONSULT)
      assert.are.equal(200, r.status)
      assert.are.equal("S", (result_of(r)))
      assert.matches("^application/json", r.headers["content-type"])
      assert.are.equal(sb.merchant.client_id, r.headers["client-id"])
      local sig = r.headers["signature"]:match("signature=([^,]+)")
      assert.matches("^algorithm=RSA256,keyVersion=1,", r.headers["signature"])
      -- Independent of dws.core: percent-decode in Lua, base64 and RSA in the openssl CLI.
      local b64 = sig:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
      nginx.write_file(tmp .. "/sig.b64", b64)
      nginx.write_file(tmp .. "/content", "POST " .. r.path .. "\n" .. r.headers["client-id"] .. "." ..
        r.headers["response-time"] .. "." .. r.body)
      local q = nginx.sh_quote
      local out = sh("openssl base64 -d -A -in " .. q(tmp .. "/sig.b64") .. " -out " .. q(tmp .. "/sig.bin") ..
        " && openssl dgst -sha256 -verify " .. q(sb.dws_public_key_file) .. " -signature " ..
        q(tmp .. "/sig.bin") .. " " .. q(tmp .. "/content") .. " 2>&1")
      assert.matches("Verified OK", out)
      -- and the same bytes with one changed do not verify
      nginx.write_file(tmp .. "/content", "POST " .. r.path .. "\n" .. r.headers["client-id"] .. "." ..
        r.headers["response-time"] .. "." .. r.body .. " ")
      out = sh("openssl dgst -sha256 -verify " .. q(sb.dws_public_key_file) .. " -signature " ..
        q(tmp .. "/sig.bin") .. " " .. q(tmp .. "/content") .. " 2>&1")
      assert.does_not.match("Verified OK", out)
    end)

    -- (a live Client-Id on /ams/api: spec/sandbox_strict_spec.lua)
    it("serves /ams/sandbox/api to a SANDBOX_ client, over HTTP and HTTPS", function()
      for _, base in ipairs{ sb.http_url, sb.https_url } do
        for _, prefix in ipairs{ "/ams/sandbox/api" } do
          local r = call(sb, "consultAddablePaymentMethod", CONSULT, {
            base = base, path = api_path("consultAddablePaymentMethod", prefix),
            curl = "--cacert " .. nginx.sh_quote(sb.ca_file) })
          assert.are.equal("S", (result_of(r)), base .. prefix)
          assert.is_true(verify_response(sb, r))
        end
      end
    end)

    it("answers INVALID_SIGNATURE to unsigned, wrongly signed and altered requests, signed", function()
      local other = assert(core.private_key(nginx.read_file(nginx.make_keypair(tmp, "other"))))
      local time = tostring(core.time_ms())
      local cases = {
        { headers = { "Content-Type: application/json", "Client-Id: " .. sb.merchant.client_id,
                      "Request-Time: " .. time } },
        { key = other },
        { tamper = function(b) return b:gsub("TOPUP", "TOPUQ") end },
        { path = api_path("consultAddablePaymentMethod"),
          -- signed for another API's path
          headers = { "Client-Id: " .. sb.merchant.client_id, "Request-Time: " .. time, "Signature: " ..
            core.signature_header(core.sign(sb.merchant_key, "POST", api_path("cacheCard"),
              sb.merchant.client_id, time, CONSULT), "1") } },
        { headers = { "Client-Id: " .. sb.merchant.client_id, "Request-Time: " .. time,
                      "Signature: algorithm=RSA256,keyVersion=1,signature=bm90IGJhc2U2NA%3D%3D" } },
      }
      for i, opts in ipairs(cases) do
        local r = call(sb, "consultAddablePaymentMethod", CONSULT, opts)
        assert.are.same({ "F", "INVALID_SIGNATURE" }, { sc(r) }, "case " .. i)
        assert.is_true(verify_response(sb, r), "case " .. i)
      end
      for _, rec in ipairs(sb:requests()) do assert.is_false(rec.verified) end
    end)

    it("answers INVALID_CLIENT to an unknown Client-Id", function()
      local r = call(sb, "consultAddablePaymentMethod", CONSULT, { client_id = "SANDBOX_NOBODY" })
      assert.are.same({ "F", "INVALID_CLIENT" }, { sc(r) })
    end)

    it("answers METHOD_NOT_SUPPORTED, INVALID_API and PARAM_ILLEGAL for a non-JSON body", function()
      local r = call(sb, "consultAddablePaymentMethod", CONSULT, { method = "PUT" })
      assert.are.same({ "F", "METHOD_NOT_SUPPORTED" }, { sc(r) })
      r = call(sb, "consultNothing", CONSULT)
      assert.are.same({ "F", "INVALID_API" }, { sc(r) })
      r = call(sb, "consultAddablePaymentMethod", "customerId=2162878776333")
      assert.are.same({ "F", "PARAM_ILLEGAL" }, { sc(r) })
      assert.is_true(verify_response(sb, r))
    end)
  end)

  describe("consultAddablePaymentMethod", function()
    it("lists the test customer's options as on the API page, detail as well-formed JSON in a string", function()
      local r = call(sb, "consultAddablePaymentMethod", CONSULT)
      local opts = r.json.paymentOptions
      assert.are.equal(2, #opts)
      assert.are.equal("MIXEDCARD", opts[1].paymentMethodType)
      assert.are.equal(true, opts[1].enabled)
      assert.are.equal(5000, opts[1].rank)
      assert.are.equal("string", type(opts[1].paymentOptionDetail))
      local detail = assert(core.json_decode(opts[1].paymentOptionDetail))
      local brands = {}
      for _, b in ipairs(detail.card.supportCardBrands) do brands[#brands + 1] = b.cardBrand end
      assert.are.same({ "MASTERCARD", "VISA" }, brands)
      assert.are.equal("GCASH_EBANK", opts[2].paymentMethodType)
      assert.is_table(core.json_decode(core.json_decode(opts[2].paymentOptionDetail).card.paymentOptionMetadata))
    end)

    it("follows the customer test data", function()
      local function code(customer)
        return select(2, result_of(call(sb, "consultAddablePaymentMethod", consult_body(customer))))
      end
      assert.are.equal("USER_STATUS_ABNORMAL", code("2188000000000001"))
      assert.are.equal("NO_PAY_OPTIONS", code("2188000000000004"))
      assert.are.equal("USER_NOT_EXIST", code("2100000000000999"))
      local r = call(sb, "consultAddablePaymentMethod", consult_body("2188000000000002"))
      assert.are.equal(false, r.json.paymentOptions[1].enabled)
      r = call(sb, "consultAddablePaymentMethod", consult_body("2188000000000003"))
      assert.are.same({ "U", "UNKNOWN_EXCEPTION" }, { sc(r) })
      assert.is_true(verify_response(sb, r))
      assert.are.equal("SUCCESS", code("2188000000000003"))
    end)

    it("validates fields and names the one at fault", function()
      local cases = {
        { json{ env = { terminalType = "WEB" } }, "customerId" },
        { json{ customerId = "21x8", env = { terminalType = "WEB" } }, "customerId" },
        { json{ customerId = ("2"):rep(33), env = { terminalType = "WEB" } }, "customerId" },
        { json{ customerId = "2162878776333" }, "env" },
        { json{ customerId = "2162878776333", env = { osType = "IOS" } }, "env.terminalType" },
        { json{ customerId = "2162878776333", env = { terminalType = "TV" } }, "env.terminalType" },
        { json{ customerId = "2162878776333", env = { terminalType = "APP" } }, "env.osType" },
        { '{"customerId":2162878776333,"env":{"terminalType":"WEB"}}', "customerId" },
      }
      for i, c in ipairs(cases) do
        local r = call(sb, "consultAddablePaymentMethod", c[1])
        local status, code, message = result_of(r)
        assert.are.same({ "F", "PARAM_ILLEGAL" }, { status, code }, "case " .. i)
        assert.matches(c[2] .. " ", message, 1, true)
      end
      local r = call(sb, "consultAddablePaymentMethod",
        json{ customerId = "2162878776333", env = { terminalType = "APP", osType = "Android" } })
      assert.are.equal("S", (result_of(r)))
    end)
  end)

  describe("cacheCard", function()
    it("issues a PYMT token with mask, last4, brand from the BIN and an ISO 8601 expiry", function()
      local token, r = cache(sb, "5555555555554444")
      assert.matches("^PYMT%x+$", token)
      assert.are.equal(36, #token)
      local card = r.json.paymentMethodDetail.card
      assert.are.same({ "555555******4444", "4444", "MASTERCARD" }, { card.mask, card.last4, card.brand })
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d", r.json.expiryTime)
      assert.is_nil(card.cardNo)
      assert.is_nil(card.securityCode)
      local _, amex = cache(sb, "378282246310005")
      assert.are.same({ "378282*****0005", "AMEX" },
        { amex.json.paymentMethodDetail.card.mask, amex.json.paymentMethodDetail.card.brand })
      assert.are_not.equal(token, (cache(sb, "5555555555554444")))
    end)

    it("refuses a bad card naming the field, never echoing the number", function()
      local cases = {
        { card_body("4111111111111112"), "cardNo" },
        { card_body("41111111"), "cardNo" },
        { card_body("4111111111111111", { expiryYear = "2001" }), "expiryYear" },
        { card_body("4111111111111111", { expiryMonth = "13" }), "expiryMonth" },
        { card_body("4111111111111111", { securityCode = "12a" }), "securityCode" },
        { json{ paymentMethodDetail = { paymentMethodDetailType = "card" } }, "paymentMethodDetail.card" },
      }
      for i, c in ipairs(cases) do
        local r = call(sb, "cacheCard", c[1])
        local status, code, message = result_of(r)
        assert.are.same({ "F", "PARAM_ILLEGAL" }, { status, code }, "case " .. i)
        assert.matches(c[2], message, 1, true)
        assert.is_nil(r.body:find("41111111", 1, true), "case " .. i)
      end
    end)
  end)

  describe("addPaymentMethod", function()
    it("binds, echoes the requestId, and answers a repeat with the same bytes", function()
      local token = cache(sb, "4111111111111111")
      local body = add_body("bind-1", token, { referenceCustomerId = "ack" })
      local r1 = call(sb, "addPaymentMethod", body)
      assert.are.equal("S", (result_of(r1)))
      assert.are.equal("bind-1", r1.json.requestId)
      -- as the page's own sample answer: no token, the final one comes by notification
      assert.are.same({}, r1.json.paymentMethodDetail.card)
      local r2 = call(sb, "addPaymentMethod", body)
      assert.are.equal(r1.body, r2.body)
      assert.is_true(verify_response(sb, r2))
      local r3 = call(sb, "addPaymentMethod", add_body("bind-1", token, { referenceCustomerId = "other" }))
      assert.are.same({ "F", "REPEAT_REQ_INCONSISTENT" }, { sc(r3) })
      assert.are.equal("bind-1", r3.json.requestId)
      local log = sb:requests()
      assert.are.equal(log[2].body_sha256, log[3].body_sha256)
      assert.are_not.equal(log[2].body_sha256, log[4].body_sha256)
      assert.are.equal("replay", log[3].idempotent)
    end)

    it("follows the card test data", function()
      local function add(no, id)
        local r = call(sb, "addPaymentMethod", add_body(id, (cache(sb, no))))
        assert.is_true(verify_response(sb, r))
        return r
      end
      local r = add("4000056655665556", "c-1")
      local form = r.json.actionForm
      assert.are.same({ "sms", "+6222***508" }, { form.challengeType, form.challengeRenderValue })
      assert.matches("^" .. sb.http_url:gsub("%p", "%%%0") .. "/challenge/[%w_%-]+$", r.json.actionForm.redirectUrl)
      assert.is_nil(r.json.paymentMethodDetail.card.cardToken)
      r = add("4000000000000077", "p-1")
      assert.are.equal("S", (result_of(r)))
      assert.are.same({}, r.json.paymentMethodDetail.card)
      r = add("4000000000000101", "r-1")
      assert.are.same({ "F", "RISK_REJECT" }, { sc(r) })
      assert.are.equal("r-1", r.json.requestId)
      local token = cache(sb, "4000000000000119")
      local body = add_body("u-1", token)
      r = call(sb, "addPaymentMethod", body)
      assert.are.same({ "U", "UNKNOWN_EXCEPTION" }, { sc(r) })
      r = call(sb, "addPaymentMethod", body)
      assert.are.equal("S", (result_of(r)))
      assert.are.same({ "F", "USER_STATUS_ABNORMAL" }, { sc(call(sb, "addPaymentMethod",
        add_body("a-1", (cache(sb, "4111111111111111")), { customerId = "2188000000000001" }))) })
    end)

    it("requires a token this client was issued", function()
      local r = call(sb, "addPaymentMethod", add_body("t-1", "PYMT00000000000000000000000000000000"))
      assert.are.same({ "F", "INVALID_PAYMENTMETHOD_TOKEN" }, { sc(r) })
      local token = cache(sb, "4111111111111111")
      sb:reset()
      r = call(sb, "addPaymentMethod", add_body("t-2", token))
      assert.are.same({ "F", "INVALID_PAYMENTMETHOD_TOKEN" }, { sc(r) })
    end)

    it("validates the one-of rule, lengths and env", function()
      local token = cache(sb, "4111111111111111")
      local cases = {
        { add_body("v-1", token, { referenceCustomerId = "a", referenceUserId = "b" }), "referenceUserId" },
        { add_body(("x"):rep(65), token), "requestId" },
        { add_body("v-3", token, { env = { terminalType = "WAP" } }), "env.osType" },
        { json{ requestId = "v-4", customerId = "2162878776333",
                paymentMethodDetail = { paymentMethodDetailType = "CARD", card = {} } },
          "paymentMethodDetail.card.cardToken" },
        { json{ requestId = "v-6", customerId = "2162878776333",
                paymentMethodDetail = { paymentMethodDetailType = "CARD" } }, "paymentMethodDetail.card" },
        { add_body("v-8", token, { referenceUserId = "u", isTemporary = "true" }), "isTemporary" },
        { add_body("v-5", token, { isTemporary = "maybe" }), "isTemporary" },
      }
      for i, c in ipairs(cases) do
        local status, code, message = result_of(call(sb, "addPaymentMethod", c[1]))
        assert.are.same({ "F", "PARAM_ILLEGAL" }, { status, code }, "case " .. i)
        assert.matches(c[2], message, 1, true)
      end
    end)
  end)

  describe("notifications", function()
    local function bind(no, request_id, reference)
      local token = cache(sb, no, { instUserName = { firstName = "Ada", lastName = "Lovelace" } })
      local r = call(sb, "addPaymentMethod", add_body(request_id, token, { referenceCustomerId = reference }))
      assert.are.equal("S", (result_of(r)))
      r.token = token
      return r
    end

    it("posts a signed notification to the notify URL once it is acknowledged", function()
      local r = bind("4111111111111111", "n-ack", "ack")
      local d = sb:wait(function()
        local list = deliveries_for("n-ack")
        return #list > 0 and list
      end)
      assert.are.equal(1, #d)
      assert.are.same({ 1, 200, true }, { d[1].attempt, d[1].status, d[1].acknowledged })
      local got
      for _, rec in ipairs(received()) do
        if rec.body:find('"n-ack"', 1, true) then got = rec end
      end
      assert.is_table(got)
      assert.are.equal("/notify/dws?from=dws", got.uri)
      assert.are.equal(sb.merchant.client_id, got.client_id)
      assert.matches("^application/json", got.content_type)
      assert.matches("^%d+$", got.time)
      local parsed = assert(core.parse_signature_header(got.signature))
      -- signed over the path without the query
      assert.is_true(core.verify(sb.dws_key, "POST", "/notify/dws", got.client_id, got.time, got.body,
        parsed.signature))
      local n = core.json_decode(got.body)
      assert.are.equal("ack", n.referenceCustomerId)
      assert.are.equal("n-ack", n.requestId)
      assert.are.equal("MERCHANT", n.operateSource) -- the page's table marks it required
      assert.is_nil(n.result)
      local c = n.paymentMethodDetail.card
      assert.are.equal("CARD", n.paymentMethodDetail.paymentMethodDetailType)
      assert.are.same({ "VISA", "411111******1111", "**", "**" }, { c.brand, c.mask, c.expiryMonth, c.expiryYear })
      assert.are.same({ firstName = "****", lastName = "Lovelace" }, c.instUserName)
      assert.matches("^%x+$", c.hashCode)
      assert.are.equal(64, #c.hashCode)
      assert.are.same({ isFirstBoundAssetForPayOrTopUp = "true", isBoundByOthers = "false" },
        core.json_decode(c.paymentMethodDetailMetadata))
      -- the final token, never the temporary one
      assert.matches("^ALIPAY[%w+/]+=*$", c.cardToken)
      assert.are_not.equal(r.token, c.cardToken)
      -- a repeated addPaymentMethod does not notify again
      call(sb, "addPaymentMethod", add_body("n-ack", r.token, { referenceCustomerId = "ack" }))
      nginx.sleep(0.3)
      assert.are.equal(1, #deliveries_for("n-ack"))
    end)

    it("re-sends until acknowledged with S", function()
      bind("5555555555554444", "n-third", "ack-third")
      local d = sb:wait(function()
        local list = deliveries_for("n-third")
        return #list >= 3 and list
      end)
      assert.are.same({ 1, 500, false }, { d[1].attempt, d[1].status, d[1].acknowledged })
      assert.are.same({ 2, 200, false }, { d[2].attempt, d[2].status, d[2].acknowledged })
      assert.are.same({ 3, 200, true }, { d[3].attempt, d[3].status, d[3].acknowledged })
      nginx.sleep(0.3)
      assert.are.equal(3, #deliveries_for("n-third"))
      -- each attempt re-signed with its own Request-Time, the body unchanged
      assert.are.equal(d[1].body, d[3].body)
    end)

    it("gives up after 8 attempts, and notifies the pending card but not the challenged one", function()
      bind("4111111111111111", "n-never", "never")
      bind("4000000000000077", "n-pending", "ack")
      bind("4000056655665556", "n-challenge", "ack")
      local d = sb:wait(function()
        local list = deliveries_for("n-never")
        return #list >= 8 and list
      end, 20)
      assert.are.equal(8, #d)
      for i = 1, 8 do assert.are.same({ i, false }, { d[i].attempt, d[i].acknowledged }) end
      nginx.sleep(0.3)
      assert.are.equal(8, #deliveries_for("n-never"))
      local p = deliveries_for("n-pending")
      assert.are.equal(1, #p)
      assert.matches("^ALIPAY", core.json_decode(p[1].body).paymentMethodDetail.card.cardToken)
      assert.are.equal(0, #deliveries_for("n-challenge"))
    end)

    it("holds the pending card's notification back by notify_delay, the bound one not", function()
      bind("4000000000000077", "d-pending", "ack")
      bind("4111111111111111", "d-bound", "ack")
      local sent = sb:wait(function()
        local t = {}
        for _, d in ipairs(sb:deliveries()) do t[d.requestId] = d.time end
        return t["d-pending"] and t["d-bound"] and t
      end)
      local asked = {}
      for _, q in ipairs(sb:requests()) do
        if q.requestId then asked[q.requestId] = q.time end
      end
      -- A lower bound only (never an upper one): the pending card waited at least notify_delay.
      assert.is_true(sent["d-pending"] - asked["d-pending"] >= 300)
    end)
  end)

  describe("result codes: every code each page lists, reached through documented test data", function()
    local V2 = "/ams/sandbox/api/v2/paymentMethods/"
    local function cust(id) return consult_body(id) end
    local function addc(customer)
      return function()
        return call(sb, "addPaymentMethod", add_body("rc-" .. customer, (cache(sb, "4111111111111111")),
          { customerId = customer }))
      end
    end
    local function addcard(no)
      return function() return call(sb, "addPaymentMethod", add_body("rc-" .. no, (cache(sb, no)))) end
    end
    local function as(client_id) return { client_id = client_id } end
    local TABLE = {
      consultAddablePaymentMethod = {
        { "S", "SUCCESS", CONSULT },
        { "F", "PROCESS_FAIL", cust("2188000000000005") },
        { "F", "PARAM_ILLEGAL", json{ customerId = "2162878776333" } },
        { "U", "UNKNOWN_EXCEPTION", cust("2188000000000003") },
        { "F", "NO_PAY_OPTIONS", cust("2188000000000004") },
        { "F", "USER_STATUS_ABNORMAL", cust("2188000000000001") },
        { "F", "USER_NOT_EXIST", cust("2100000000000999") },
        { "F", "KEY_NOT_FOUND", CONSULT, as("SANDBOX_KEY_NOT_FOUND") },
        { "F", "INVALID_API", CONSULT, { path = V2 .. "consultAddablePaymentMethod" } },
        { "F", "INVALID_CLIENT", CONSULT, as("SANDBOX_NOBODY") },
        { "F", "INVALID_SIGNATURE", CONSULT, { tamper = function(b) return b .. " " end } },
        { "U", "REQUEST_TRAFFIC_EXCEED_LIMIT", cust("2188000000000007") },
        { "F", "ACCESS_DENIED", CONSULT, as("SANDBOX_ACCESS_DENIED") },
        { "F", "SEND_TIMES_EXCEED_LIMIT", cust("2188000000000006") },
        { "F", "METHOD_NOT_SUPPORTED", CONSULT, { method = "PUT" } },
      },
      cacheCard = {
        { "S", "SUCCESS", card_body("4111111111111111") },
        { "F", "PROCESS_FAIL", card_body("4000000000000226") },
        { "F", "PARAM_ILLEGAL", card_body("4111111111111112") },
        { "U", "UNKNOWN_EXCEPTION", card_body("4000000000000259") },
        { "F", "REPEAT_REQ_INCONSISTENT", card_body("4000000000000242") },
        { "F", "USER_NOT_EXIST", card_body("4000000000000200") },
        { "F", "USER_STATUS_ABNORMAL", card_body("4000000000000218") },
        { "F", "INVALID_API", card_body("4111111111111111"), { path = V2 .. "cacheCard" } },
        { "F", "INVALID_CLIENT", card_body("4111111111111111"), as("SANDBOX_NOBODY") },
        { "F", "INVALID_SIGNATURE", card_body("4111111111111111"), { tamper = function(b) return b .. " " end } },
        { "F", "INVALID_PAYMENTMETHOD_TOKEN", card_body("4000000000000234") },
        { "F", "METHOD_NOT_SUPPORTED", card_body("4111111111111111"), { method = "GET" } },
        { "F", "KEY_NOT_FOUND", card_body("4111111111111111"), as("SANDBOX_KEY_NOT_FOUND") },
        { "F", "ACCESS_DENIED", card_body("4111111111111111"), as("SANDBOX_ACCESS_DENIED") },
        { "U", "REQUEST_TRAFFIC_EXCEED_LIMIT", card_body("4000000000000267") },
      },
      addPaymentMethod = {
        { "S", "SUCCESS", addcard("4111111111111111") },
        { "F", "PROCESS_FAIL", addc("2188000000000005") },
        { "F", "PARAM_ILLEGAL", add_body(("x"):rep(65), "PYMTx") },
        { "U", "UNKNOWN_EXCEPTION", addcard("4000000000000119") },
        { "F", "REPEAT_REQ_INCONSISTENT", function()
          call(sb, "addPaymentMethod", add_body("rc-repeat", (cache(sb, "4111111111111111"))))
          return call(sb, "addPaymentMethod", add_body("rc-repeat", (cache(sb, "4111111111111111"))))
        end },
        { "F", "USER_NOT_EXIST", addc("2100000000000999") },
        { "F", "USER_STATUS_ABNORMAL", addc("2188000000000001") },
        { "F", "RISK_REJECT", addcard("4000000000000101") },
        { "F", "KEY_NOT_FOUND", add_body("rc-k", "PYMTx"), as("SANDBOX_KEY_NOT_FOUND") },
        { "F", "INVALID_API", add_body("rc-a", "PYMTx"), { path = V2 .. "addPaymentMethod" } },
        { "F", "INVALID_CLIENT", add_body("rc-c", "PYMTx"), as("SANDBOX_NOBODY") },
        { "F", "INVALID_SIGNATURE", add_body("rc-s", "PYMTx"), { tamper = function(b) return b .. " " end } },
        { "U", "REQUEST_TRAFFIC_EXCEED_LIMIT", addc("2188000000000007") },
        { "F", "ACCESS_DENIED", add_body("rc-d", "PYMTx"), as("SANDBOX_ACCESS_DENIED") },
        { "F", "SEND_TIMES_EXCEED_LIMIT", addc("2188000000000006") },
        { "F", "METHOD_NOT_SUPPORTED", add_body("rc-m", "PYMTx"), { method = "GET" } },
        -- not on this page's list: the sandbox's choice for an unknown or expired temporary token
        { "F", "INVALID_PAYMENTMETHOD_TOKEN", add_body("rc-t", "PYMT00000000000000000000000000000000") },
      },
    }
    for _, api in ipairs{ "consultAddablePaymentMethod", "cacheCard", "addPaymentMethod" } do
      for _, row in ipairs(TABLE[api]) do
        it(api .. " " .. row[2] .. " (" .. row[1] .. "), signed", function()
          local r
          if type(row[3]) == "function" then
            r = row[3]()
          else
            r = call(sb, api, row[3], row[4])
          end
          assert.are.same({ row[1], row[2] }, { sc(r) })
          assert.is_true(verify_response(sb, r))
        end)
      end
    end
  end)

  describe("U answers are recorded", function()
    it("a re-send with other bytes after a U is REPEAT_REQ_INCONSISTENT", function()
      local r = call(sb, "addPaymentMethod", add_body("u-rec", (cache(sb, "4000000000000119"))))
      assert.are.same({ "U", "UNKNOWN_EXCEPTION" }, { sc(r) })
      -- what a rerun of the whole binding sends: a new temporary token under the same requestId
      r = call(sb, "addPaymentMethod", add_body("u-rec", (cache(sb, "4000000000000119"))))
      assert.are.same({ "F", "REPEAT_REQ_INCONSISTENT" }, { sc(r) })
    end)

    it("an identical re-send after a U gets the final answer, and later ones the same bytes", function()
      local body = add_body("u-same", (cache(sb, "4000000000000119")))
      call(sb, "addPaymentMethod", body)
      local r2 = call(sb, "addPaymentMethod", body)
      local r3 = call(sb, "addPaymentMethod", body)
      assert.are.same({ "S", r2.body }, { (sc(r2)), r3.body })
    end)
  end)

  describe("consult brandName", function()
    it("names each payment option's brand", function()
      local r = call(sb, "consultAddablePaymentMethod", CONSULT)
      assert.are.same({ "Credit/Debit Card", "GCash" },
        { r.json.paymentOptions[1].brandName, r.json.paymentOptions[2].brandName })
    end)
  end)

  describe("challenge page", function()
    local RETURN = "http://merchant.example/return?order=1"

    local function challenge(request_id, reference)
      local token = cache(sb, "4000056655665556", { instUserName = { firstName = "Ada", lastName = "Lovelace" } })
      local r = call(sb, "addPaymentMethod", add_body(request_id, token,
        { referenceCustomerId = reference, redirectUrl = RETURN }))
      assert.are.equal("S", (result_of(r)))
      return r.json.actionForm.redirectUrl, token
    end

    local function notified(request_id)
      local d = sb:wait(function()
        local list = deliveries_for(request_id)
        return #list > 0 and list
      end)
      return core.json_decode(d[1].body), d
    end

    it("serves an OTP form", function()
      local url = challenge("ch-form", "ack")
      local r = http("GET", url)
      assert.are.equal(200, r.status)
      assert.matches('<input id="otp" name="otp"', r.body, 1, true)
    end)

    it("the right OTP sends a BOUND notification with a final token and returns to redirectUrl", function()
      local url, token = challenge("ch-ok", "ack")
      assert.are.equal(0, #deliveries_for("ch-ok"))
      local r = http("POST", url, nil, "otp=123456")
      assert.are.same({ 303, RETURN }, { r.status, r.headers["location"] })
      local n = notified("ch-ok")
      assert.is_nil(n.result)
      assert.matches("^ALIPAY", n.paymentMethodDetail.card.cardToken)
      assert.are_not.equal(token, n.paymentMethodDetail.card.cardToken)
      assert.are.equal("ack", n.referenceCustomerId)
    end)

    it("a wrong OTP sends a FAILED notification without a token and returns to redirectUrl", function()
      local url = challenge("ch-bad", "ack")
      local r = http("POST", url, nil, "otp=000000")
      assert.are.same({ 303, RETURN }, { r.status, r.headers["location"] })
      local n = notified("ch-bad")
      assert.are.same({ "F", "PROCESS_FAIL" }, { n.result.resultStatus, n.result.resultCode })
      assert.is_nil(n.paymentMethodDetail.card.cardToken)
      assert.are.equal("400005******5556", n.paymentMethodDetail.card.mask)
    end)

    it("is used once", function()
      local url = challenge("ch-once", "ack")
      http("POST", url, nil, "otp=123456")
      assert.are.equal(410, http("POST", url, nil, "otp=123456").status)
    end)

    it("is forgotten by reset", function()
      local url = challenge("ch-reset", "ack")
      sb:reset()
      assert.are.equal(404, http("GET", url).status)
    end)
  end)

  describe("GCASH_EBANK by redirect", function()
    local function add(request_id)
      local r = call(sb, "addPaymentMethod", json{ requestId = request_id, customerId = "2162878776333",
        referenceCustomerId = "ack", paymentMethodDetail = { paymentMethodDetailType = "GCASH_EBANK" },
        redirectUrl = "http://merchant.example/back" })
      return r
    end

    it("answers S with a redirect and no card", function()
      local r = add("g-1")
      assert.are.same({ "S", "SUCCESS" }, { sc(r) })
      assert.matches("/challenge/", r.json.actionForm.redirectUrl, 1, true)
    end)

    it("notifies BOUND with a final token once the user confirms", function()
      local r = add("g-2")
      local page = http("POST", r.json.actionForm.redirectUrl, nil, "decision=confirm")
      assert.are.equal("http://merchant.example/back", page.headers["location"])
      local d = sb:wait(function() return deliveries_for("g-2")[1] end)
      local n = core.json_decode(d.body)
      assert.are.same({ "GCASH_EBANK", true },
        { n.paymentMethodDetail.paymentMethodDetailType, n.paymentMethodDetail.card.cardToken:find("^ALIPAY") == 1 })
    end)
  end)

  describe("reference ids in notifications", function()
    local function notification(extra)
      local token = cache(sb, "4111111111111111")
      local id = "ref-" .. core.uuid4()
      local t = { requestId = id, paymentMethodDetail = { paymentMethodDetailType = "CARD",
                  card = { cardToken = token } } }
      for k, v in pairs(extra) do t[k] = v end
      assert.are.equal("S", (result_of(call(sb, "addPaymentMethod", json(t)))))
      local d = sb:wait(function() return deliveries_for(id)[1] end)
      return core.json_decode(d.body)
    end

    it("carries referenceUserId when the request used it", function()
      local n = notification{ referenceUserId = "user-7", customerId = "2162878776333" }
      assert.are.same({ "user-7", nil }, { n.referenceUserId, n.referenceCustomerId })
    end)

    it("carries the customerId as referenceCustomerId when the request had neither", function()
      local n = notification{ customerId = "2162878776333" }
      assert.are.equal("2162878776333", n.referenceCustomerId)
    end)
  end)

  describe("admin notification re-send", function()
    it("sends the last notification of a requestId again, signed afresh", function()
      local token = cache(sb, "4111111111111111")
      call(sb, "addPaymentMethod", add_body("rs-1", token, { referenceCustomerId = "ack" }))
      sb:wait(function() return deliveries_for("rs-1")[1] end)
      assert.are.same({ requestId = "rs-1", queued = true },
        sb:admin("POST", "notifications/resend", { requestId = "rs-1" }))
      local d = sb:wait(function()
        local list = deliveries_for("rs-1")
        return #list >= 2 and list
      end)
      assert.are.same({ d[1].body, true }, { d[2].body, d[2].acknowledged })
    end)

    it("answers 404 for a requestId that was never notified", function()
      assert.has_error(function() sb:admin("POST", "notifications/resend", { requestId = "nobody" }) end)
    end)
  end)

  describe("field limits: the SDK's validation and the sandbox agree at max and max + 1", function()
    local api = require "dws.api"
    local validate = require "dws.validate"
    local testdata = require "dws_sandbox.testdata"
    local seq = 0

    local function luhn_number(n)
      local head = ("4"):rep(n - 1)
      for d = 0, 9 do
        if testdata.luhn(head .. d) then return head .. d end
      end
    end
    -- A value of n characters the field's own format allows, so only the length is judged.
    local VALUES = {
      customerId = function(n) return ("2"):rep(n) end,
      cardNo = luhn_number,
      securityCode = function(n) return ("1"):rep(n) end,
      expiryYear = function(n) return "2099" .. ("9"):rep(n - 4) end,
      expiryMonth = function(n) return ("0"):rep(n - 1) .. "7" end,
      requestId = function(n)
        seq = seq + 1
        local id = "lim" .. seq
        return id .. ("x"):rep(n - #id)
      end,
    }
    local function value(name, n) return (VALUES[name] or function(k) return ("a"):rep(k) end)(n) end

    local BASE = {
      consultAddablePaymentMethod = function()
        return { customerId = "2162878776333", env = { terminalType = "APP", osType = "Android" },
                 scenes = { "TOPUP" } }
      end,
      cacheCard = function()
        return { paymentMethodDetail = { paymentMethodDetailType = "card",
          card = { cardNo = "4111111111111111", expiryYear = "2099", expiryMonth = "07", securityCode = "123",
                   instUserName = {}, billingAddress = {} } } }
      end,
      addPaymentMethod = function()
        return { requestId = value("requestId", 20), customerId = "2162878776333",
                 env = { terminalType = "APP", osType = "Android" },
                 paymentMethodDetail = { paymentMethodDetailType = "CARD", card = { cardToken = "PYMTx" } } }
      end,
    }
    -- Value rules rather than lengths: cacheCard takes only the type "card"; terminalType is an enum.
    local SKIP = { ["cacheCard paymentMethodDetail.paymentMethodDetailType"] = true }

    -- Every string field with a maximum in the SDK's definitions.
    local function walk(spec, path, out)
      for name, field in pairs(spec.fields) do
        local p = path == "" and name or path .. "." .. name
        if field.kind == "object" then
          walk(field, p, out)
        elseif field.kind == "array" and field.items.kind == "string" then
          out[#out + 1] = { path = p, array = true, name = name, max = field.items.max }
        elseif field.kind == "string" and field.max and not field.enum then
          out[#out + 1] = { path = p, name = name, max = field.max }
        end
      end
      return out
    end

    local function set(req, f, v)
      local t = req
      local keys = {}
      for k in f.path:gmatch("[^.]+") do keys[#keys + 1] = k end
      for i = 1, #keys - 1 do
        t[keys[i]] = t[keys[i]] or {}
        t = t[keys[i]]
      end
      t[keys[#keys]] = f.array and { v } or v
    end

    for _, def in ipairs(api.ALL) do
      local fields = walk(def.request, "", {})
      table.sort(fields, function(a, b) return a.path < b.path end)
      for _, f in ipairs(fields) do
        if not SKIP[def.name .. " " .. f.path] then
          it(def.name .. " " .. f.path .. " (" .. f.max .. ")", function()
            local got = {}
            for _, n in ipairs{ f.max, f.max + 1 } do
              local req = BASE[def.name]()
              set(req, f, value(f.name, n))
              local sdk_ok = validate.request(def, req) ~= nil
              local _, code = result_of(call(sb, def.name, json(req)))
              got[#got + 1] = { n = n, sdk = sdk_ok, sandbox = code ~= "PARAM_ILLEGAL" }
            end
            assert.are.same({ { n = f.max, sdk = true, sandbox = true },
                              { n = f.max + 1, sdk = false, sandbox = false } }, got)
          end)
        end
      end
    end

    it("both count characters, not bytes", function()
      local req = BASE.cacheCard()
      req.paymentMethodDetail.card.instUserName.lastName = ("é"):rep(64)
      local _, code = result_of(call(sb, "cacheCard", json(req)))
      assert.are.same({ true, "SUCCESS" }, { validate.request(api.cacheCard, req) ~= nil, code })
    end)

    it("both require expiryYear and expiryMonth in cacheCard", function()
      local req = BASE.cacheCard()
      req.paymentMethodDetail.card.expiryMonth = nil
      local _, code = result_of(call(sb, "cacheCard", json(req)))
      assert.are.same({ false, "PARAM_ILLEGAL" }, { validate.request(api.cacheCard, req) ~= nil, code })
    end)

    it("both take a non-card method without a card, and refuse CARD without one", function()
      local gcash = BASE.addPaymentMethod()
      gcash.paymentMethodDetail = { paymentMethodDetailType = "GCASH_EBANK" }
      local card = BASE.addPaymentMethod()
      card.paymentMethodDetail.card = nil
      local _, c1 = result_of(call(sb, "addPaymentMethod", json(gcash)))
      local _, c2 = result_of(call(sb, "addPaymentMethod", json(card)))
      assert.are.same({ true, "SUCCESS", false, "PARAM_ILLEGAL" },
        { validate.request(api.addPaymentMethod, gcash) ~= nil, c1,
          validate.request(api.addPaymentMethod, card) ~= nil, c2 })
    end)

    it("both refuse card data in addPaymentMethod", function()
      local req = BASE.addPaymentMethod()
      req.paymentMethodDetail.card.cardNo = "4111111111111111"
      local _, code = result_of(call(sb, "addPaymentMethod", json(req)))
      assert.are.same({ false, "PARAM_ILLEGAL" }, { validate.request(api.addPaymentMethod, req) ~= nil, code })
    end)

    it("both accept a request with no customerId and no reference id, as the page allows", function()
      local req = BASE.addPaymentMethod()
      req.customerId = nil
      local _, code = result_of(call(sb, "addPaymentMethod", json(req)))
      assert.are.same({ true, false }, { validate.request(api.addPaymentMethod, req) ~= nil, code == "PARAM_ILLEGAL" })
    end)
  end)

  describe("faults", function()
    it("spoils the next N answers, logs each request with its fault, then answers normally", function()
      sb:fault("tamper", 2)
      local a = call(sb, "consultAddablePaymentMethod", CONSULT)
      local b = call(sb, "consultAddablePaymentMethod", CONSULT)
      local c = call(sb, "consultAddablePaymentMethod", CONSULT)
      assert.are.equal("S", (result_of(a)))
      assert.is_false(verify_response(sb, a))
      assert.is_false(verify_response(sb, b))
      assert.is_true(verify_response(sb, c))
      local log = sb:requests()
      assert.are.same({ "tamper", "tamper" }, { log[1].fault, log[2].fault })
      assert.is_nil(log[3].fault)
      assert.are.equal(log[1].body_sha256, log[3].body_sha256)
    end)

    it("drops or mangles signature headers", function()
      sb:fault("unsigned_s", 1)
      local r = call(sb, "consultAddablePaymentMethod", CONSULT)
      assert.are.equal("S", (result_of(r)))
      assert.is_nil(r.headers["signature"])
      sb:fault("unsigned_f", 1)
      r = call(sb, "consultAddablePaymentMethod", CONSULT)
      assert.are.equal("F", (result_of(r)))
      assert.is_nil(r.headers["signature"])
      assert.is_nil(r.headers["response-time"])
      sb:fault("no_response_time", 1)
      r = call(sb, "consultAddablePaymentMethod", CONSULT)
      assert.is_string(r.headers["signature"])
      assert.is_nil(r.headers["response-time"])
      sb:fault("dup_headers", 1)
      r = call(sb, "consultAddablePaymentMethod", CONSULT)
      assert.is_table(r.headers["signature"])
      assert.are.equal(2, #r.headers["signature"])
      assert.are_not.equal(r.headers["signature"][1], r.headers["signature"][2])
      sb:fault("foreign_key", 1)
      r = call(sb, "consultAddablePaymentMethod", CONSULT)
      assert.is_false(verify_response(sb, r))
      local foreign = assert(core.public_key(nginx.read_file(sb.dir .. "/keys/foreign_public.pem")))
      assert.is_true(verify_response(sb, r, foreign))
    end)

    it("answers as a failing gateway would", function()
      sb:fault("http_503", 1)
      local r = call(sb, "consultAddablePaymentMethod", CONSULT)
      assert.are.equal(503, r.status)
      assert.matches("^text/html", r.headers["content-type"])
      sb:fault("http_429", 1)
      assert.are.equal(429, call(sb, "consultAddablePaymentMethod", CONSULT).status)
      sb:fault("traffic_limit", 1)
      r = call(sb, "addPaymentMethod", add_body("f-1", "PYMTx"))
      assert.are.same({ "U", "REQUEST_TRAFFIC_EXCEED_LIMIT" }, { sc(r) })
      assert.are.equal("f-1", r.json.requestId)
      assert.is_true(verify_response(sb, r))
      sb:fault("non_json", 1)
      r = call(sb, "consultAddablePaymentMethod", CONSULT)
      assert.are.equal(200, r.status)
      assert.is_nil(r.json)
      sb:fault("no_result", 1)
      r = call(sb, "consultAddablePaymentMethod", CONSULT)
      assert.is_nil(r.json.result)
      assert.is_true(verify_response(sb, r))
      sb:fault("huge_body", 1)
      r = call(sb, "consultAddablePaymentMethod", CONSULT)
      assert.is_true(#r.body > 2 * 1024 * 1024)
      assert.is_true(verify_response(sb, r))
    end)

    it("breaks the connection: reset, short body, never answering", function()
      sb:fault("reset", 1)
      local r = call(sb, "consultAddablePaymentMethod", CONSULT)
      assert.are.equal(18, r.exit) -- CURLE_PARTIAL_FILE
      sb:fault("short_body", 1)
      r = call(sb, "consultAddablePaymentMethod", CONSULT, { base = sb.https_url,
        curl = "--cacert " .. nginx.sh_quote(sb.ca_file) })
      assert.are.equal(18, r.exit)
      sb:fault("never_answer", 1, { delay = timeouts.HOLD })
      r = call(sb, "consultAddablePaymentMethod", CONSULT, { curl = "--max-time " .. timeouts.FIRE })
      assert.are.equal(28, r.exit) -- CURLE_OPERATION_TIMEDOUT
      assert.are.equal("", r.body)
      local log = sb:requests()
      assert.are.same({ "reset", "short_body", "never_answer" }, { log[1].fault, log[2].fault, log[3].fault })
    end)

    it("answers slowly or byte by byte, still signed", function()
      sb:fault("slow", 1, { delay = 0.2 })
      local r = call(sb, "consultAddablePaymentMethod", CONSULT)
      assert.is_true(verify_response(sb, r))
      sb:fault("drip", 1, { delay = 0.001 })
      r = call(sb, "consultAddablePaymentMethod", CONSULT, { client_id = "SANDBOX_NOBODY" })
      assert.are.same({ "F", "INVALID_CLIENT" }, { sc(r) })
      assert.is_true(verify_response(sb, r))
    end)
  end)

  describe("card data", function()
    it("never reaches the request log or nginx's logs", function()
      for i, no in ipairs(CARDS) do
        local token = cache(sb, no)
        call(sb, "addPaymentMethod", add_body("cd-" .. i, token))
      end
      call(sb, "cacheCard", card_body("4111111111111112"))
      nginx.sleep(0.2)
      local everything = assert(core.json_encode(sb:requests(), false)) ..
        assert(core.json_encode(sb:deliveries(), false)) .. sb:error_log()
      for _, no in ipairs(CARDS) do
        assert.is_nil(everything:find(no, 1, true), no)
      end
      assert.is_nil(everything:find("4111111111111112", 1, true))
      assert.are.equal(0, #(sh("ls " .. nginx.sh_quote(sb.dir .. "/tmp/body") .. " 2>/dev/null")))
    end)
  end)
end)

describe("dws sandbox with a 0.3-second token_ttl #nginx", function()
  local sb

  setup(function()
    tmp = nginx.tmpdir("dws-sbspec")
    sb = assert(sandbox.start{ token_ttl = 0.3 })
    sb.merchant_key = assert(core.private_key(sb.merchant.private_key))
  end)

  teardown(function()
    if sb then sb:stop() end
    nginx.rmdir(tmp)
  end)

  it("refuses a token past its expiry", function()
    local token = cache(sb, "4111111111111111")
    nginx.sleep(0.6) -- twice the token's lifetime
    local r = call(sb, "addPaymentMethod", add_body("e-1", token))
    assert.are.same({ "F", "INVALID_PAYMENTMETHOD_TOKEN" }, { sc(r) })
  end)
end)

describe("dws sandbox config #nginx", function()
  it("refuses to start with a client key it cannot parse, saying which client", function()
    local sb, err = sandbox.start{ clients = { SANDBOX_BROKEN = { public_key = "not a key" } } }
    if sb then sb:stop() end
    assert.is_nil(sb)
    assert.matches("SANDBOX_BROKEN: public key", err, 1, true)
  end)
end)

describe("sandbox/bin/dws-sandbox #nginx", function()
  it("starts with generated keys and a demo client, from anywhere, without DWS_ROOT or JIT cpath, stops", function()
    local dir = nginx.tmpdir("dws-sbcli")
    tmp = nginx.tmpdir("dws-sbspec")
    local bin = nginx.sh_quote(ROOT .. "/sandbox/bin/dws-sandbox")
    local ok, err = pcall(function()
      local out, code = sh("cd / && env -u DWS_ROOT -u DWS_SANDBOX_JIT_CPATH " .. bin .. " start --dir " ..
        nginx.sh_quote(dir) .. " --free-ports 2>&1")
      assert.are.equal(0, code, out)
      local qdir = dir:gsub("%p", "%%%0")
      local http_port, https = out:match("^http=(%d+) https=(%d+) dir=" .. qdir .. " ca_file=" .. qdir ..
        "/certs/ca%.pem client_id=SANDBOX_DEMO_MERCHANT\n$")
      assert.is_string(http_port, out)
      assert.is_true(nginx.port_listening(tonumber(https)))
      local conf = dofile(dir .. "/sandbox_config.lua")
      assert.is_string(conf.clients.SANDBOX_DEMO_MERCHANT.public_key)
      for _, f in ipairs{ "keys/dws_private.pem", "keys/merchant_private.pem", "certs/server.key" } do
        assert.are.equal("600", (sh("stat -c %a " .. nginx.sh_quote(dir .. "/" .. f)):gsub("%s", "")), f)
      end
      local key = assert(core.private_key(nginx.read_file(dir .. "/keys/merchant_private.pem")))
      local fake = { merchant = { client_id = "SANDBOX_DEMO_MERCHANT" }, merchant_key = key,
                     http_url = "http://127.0.0.1:" .. http_port }
      local r = call(fake, "consultAddablePaymentMethod", CONSULT)
      assert.are.equal("S", (result_of(r)))
      local dws_pub = nginx.read_file(dir .. "/keys/dws_public.pem")
      assert.are.equal(0, select(2, sh(bin .. " stop --dir " .. nginx.sh_quote(dir))))
      assert.is_false(nginx.port_listening(tonumber(http_port)))
      -- a second start, on a port given, reuses what the first generated
      local port = nginx.free_ports(1)[1]
      out, code = sh(bin .. " start --dir " .. nginx.sh_quote(dir) .. " --http-port " .. port .. " 2>&1")
      assert.are.equal(0, code, out)
      assert.matches("^http=" .. port .. " ", out)
      assert.are.equal(dws_pub, nginx.read_file(dir .. "/keys/dws_public.pem"))
      local _, bad = sh(bin .. " start --dir " .. nginx.sh_quote(dir) .. " --free-ports 2>&1")
      assert.are_not.equal(0, bad) -- already running
    end)
    sh(bin .. " stop --dir " .. nginx.sh_quote(dir))
    nginx.rmdir(dir)
    nginx.rmdir(tmp)
    assert(ok, err)
  end)
end)
