-- The DWS gateway (dws gateway start, nginx + lua-dws) with the sandbox behind it and the Python
-- example backend in front: the backend API, its refusals, notifications forwarded with Standard
-- Webhooks signatures, and the command line.
local core = require "dws.core"
local gw = require "helpers.gateway"

local root = os.getenv("DWS_ROOT") or "."
local CONSULT = '{"customerId":"2162878776333","env":{"terminalType":"WEB"}}'

local function header(h, name)
  local v = h[name]
  if type(v) == "table" then return v[1] end
  return v
end

local function python(...)
  local args = {}
  for i = 1, select("#", ...) do args[#args + 1] = "'" .. select(i, ...) .. "'" end
  local p = io.popen("python3 " .. root .. "/examples/gateway/backend.py " .. table.concat(args, " ") .. " 2>&1")
  local out = p:read("*a")
  p:close()
  return out
end

describe("the DWS gateway #nginx", function()
  local g

  setup(function()
    g = assert(gw.start{ backend = true, config = { max_retries = 1 } })
  end)

  teardown(function()
    if g then g:stop() end
  end)

  describe("the backend API", function()
    it("answers a call with the verified answer and S, the code and the attempts in headers", function()
      local status, h, body = g:request("POST", "/v1/consultAddablePaymentMethod", CONSULT)
      assert.are.same({ 200, "S", "SUCCESS", "1" }, { status, header(h, "dws-result-status"),
        header(h, "dws-result-code"), header(h, "dws-attempts") })
      assert.are.equal("SUCCESS", core.json_decode(body).result.resultCode)
    end)

    it("counts a retried attempt in DWS-Attempts", function()
      g.sb:fault("unknown_exception", 1)
      local status, h = g:request("POST", "/v1/consultAddablePaymentMethod", CONSULT)
      assert.are.same({ 200, "2" }, { status, header(h, "dws-attempts") })
    end)

    it("answers U with 503 and the error when DWS keeps failing", function()
      g.sb:fault("unknown_exception", 2)
      local status, h, body = g:request("POST", "/v1/consultAddablePaymentMethod", CONSULT)
      local e = core.json_decode(body).error
      assert.are.same({ 503, "U", "UNKNOWN_EXCEPTION", "2" },
        { status, header(h, "dws-result-status"), e.code, header(h, "dws-attempts") })
    end)

    it("answers F with 422 and the field at fault", function()
      local status, h, body = g:request("POST", "/v1/consultAddablePaymentMethod", '{"env":{"terminalType":"WEB"}}')
      local e = core.json_decode(body).error
      assert.are.same({ 422, "F", "PARAM_ILLEGAL", "customerId", "0" },
        { status, header(h, "dws-result-status"), e.code, e.field, header(h, "dws-attempts") })
    end)

    it("refuses a request without a token, saying how to send one", function()
      local status, h, body = g:request("POST", "/v1/cacheCard", "{}", {})
      assert.are.same({ 401, "TOKEN_MISSING", 'Bearer realm="dws-gateway"' },
        { status, core.json_decode(body).error.code, header(h, "www-authenticate") })
    end)

    it("refuses a wrong token", function()
      local status, _, body = g:request("POST", "/v1/cacheCard", "{}", { "Authorization: Bearer " .. gw.TOKEN .. "x" })
      assert.are.same({ 401, "TOKEN_INVALID" }, { status, core.json_decode(body).error.code })
    end)

    it("refuses an API the token is not allowed", function()
      local status, _, body = g:request("POST", "/v1/cacheCard", "{}", { "Authorization: Bearer " .. gw.LIMITED_TOKEN })
      assert.are.same({ 403, "API_NOT_ALLOWED" }, { status, core.json_decode(body).error.code })
    end)

    it("refuses an unknown API", function()
      local status, _, body = g:request("POST", "/v1/payNow", "{}")
      assert.are.same({ 404, "UNKNOWN_API" }, { status, core.json_decode(body).error.code })
    end)

    it("refuses a wrong method, naming the right one", function()
      local status, h, body = g:request("GET", "/v1/cacheCard")
      assert.are.same({ 405, "METHOD_NOT_ALLOWED", "POST" },
        { status, core.json_decode(body).error.code, header(h, "allow") })
    end)

    it("refuses malformed JSON", function()
      local status, _, body = g:request("POST", "/v1/cacheCard", '{"paymentMethodDetail":')
      assert.are.same({ 400, "MALFORMED_JSON" }, { status, core.json_decode(body).error.code })
    end)

    it("refuses an oversized body with a JSON error", function()
      local status, _, body = g:request("POST", "/v1/cacheCard", '{"x":"' .. string.rep("a", 70 * 1024) .. '"}')
      assert.are.same({ 413, "BODY_TOO_LARGE" }, { status, core.json_decode(body).error.code })
    end)

    it("refuses an oversized chunked body (no Content-Length) with a JSON error", function()
      local path = g.dir .. "/big.json"
      require("helpers.files").write(path, '{"x":"' .. string.rep("a", 70 * 1024) .. '"}')
      local p = io.popen("curl -s -H 'Transfer-Encoding: chunked' -H 'Authorization: Bearer " .. gw.TOKEN ..
        "' --data-binary @" .. path .. " -w '\n%{http_code}' " .. g.url .. "/v1/cacheCard")
      local out = p:read("*a")
      p:close()
      local body, code = out:match("^(.*)\n(%d+)$")
      local answer = core.json_decode(body or "") or { error = {} }
      assert.are.same({ "413", "BODY_TOO_LARGE" }, { code, answer.error.code })
    end)

    it("sends nothing to DWS for any refusal", function()
      local before = #g.sb:requests()
      g:request("POST", "/v1/cacheCard", "{}", {})
      g:request("POST", "/v1/cacheCard", "[1]")
      assert.are.equal(before, #g.sb:requests())
    end)
  end)

  describe("a Python backend (standard library only)", function()
    local request_id

    it("binds the sandbox's test card through the gateway", function()
      local out = python("bind", g.url, gw.TOKEN)
      local status, json = out:match("^(%d+) (.*)$")
      local b = core.json_decode(json).binding
      request_id = b.requestId
      -- ACCEPTED, or BOUND when the notification overtook the answer (the journal keeps the last word)
      local expected = { ["202"] = "ACCEPTED", ["200"] = "BOUND" }
      assert.are.equal(expected[status], b.status)
    end)

    it("receives the forwarded BOUND event, its signature verified", function()
      local events = gw.eventually(function()
        local list = g:events()
        return #list > 0 and list
      end)
      assert.are.same({ "binding.bound", request_id, "BOUND" },
        { events[1].event.type, events[1].event.data.requestId, events[1].event.data.binding.status })
    end)

    it("is the code docs/gateway.md shows", function()
      local files = require "helpers.files"
      local shown = files.read(root .. "/docs/gateway.md"):match("```python\n(.-)```")
      assert.truthy(shown and files.read(root .. "/examples/gateway/backend.py"):find(shown, 1, true))
    end)

    it("refuses an event whose signature does not verify", function()
      local status = g:request("POST", "/events", '{"type":"binding.bound"}', {
        "webhook-id: msg_forged", "webhook-timestamp: " .. os.time(),
        "webhook-signature: v1," .. core.base64_encode(string.rep("x", 32)) }, "http://127.0.0.1:" .. g.backend_port)
      assert.are.equal(401, status)
    end)

    it("reads the binding as BOUND from the gateway", function()
      local status, h, body = g:request("GET", "/v1/bindings/" .. request_id)
      assert.are.same({ 200, "BOUND", "BOUND" },
        { status, header(h, "dws-binding-status"), core.json_decode(body).binding.status })
    end)

    it("gets no second event when DWS re-sends the notification", function()
      g.sb:admin("POST", "notifications/resend", { requestId = request_id })
      local resent = gw.eventually(function()
        local n = 0
        for _, d in ipairs(g.sb:deliveries()) do
          if d.requestId == request_id then n = n + 1 end
        end
        return n >= 2
      end)
      assert.is_true(resent)
      assert.are.equal(1, #g:events())
    end)

    it("answers 404 for a requestId it does not know, percent-encoded as sent", function()
      local status, _, body = g:request("GET", "/v1/bindings/no%2Fsuch")
      assert.are.same({ 404, "BINDING_NOT_FOUND" }, { status, core.json_decode(body).error.code })
    end)

    it("lists no pending binding once it is BOUND", function()
      local status, _, body = g:request("GET", "/v1/bindings?state=pending&older_than=0", nil,
        { "Authorization: Bearer " .. gw.LIMITED_TOKEN })
      assert.are.same({ 200, 0 }, { status, #core.json_decode(body).bindings })
    end)
  end)

  describe("the DWS side", function()
    it("refuses a notification whose signature does not verify, forwarding nothing", function()
      local before = #g:events()
      local status, _, body = g:request("POST", "", '{"requestId":"forged","paymentMethodDetail":{}}', {
        "Client-Id: " .. g.sb.merchant.client_id, "Request-Time: " .. core.time_ms(),
        "Signature: algorithm=RSA256,keyVersion=1,signature=" .. core.base64_encode(string.rep("x", 256)) },
        g.notify_url)
      assert.are.same({ 401, "INVALID_SIGNATURE", before },
        { status, core.json_decode(body).result.resultCode, #g:events() })
    end)

    it("serves nothing but the notify path there", function()
      local status = g:request("POST", "/v1/cacheCard", "{}", nil, "http://127.0.0.1:" .. g.notify_port)
      assert.are.equal(404, status)
    end)
  end)

  describe("on other listen addresses", function()
    it("serves backends on a unix socket", function()
      local sock = g.dir .. "/gw.sock"
      local node = assert(gw.start{ first = g, config = { listen = "unix:" .. sock } })
      local p = io.popen("curl -s -o /dev/null -w '%{http_code}' --unix-socket '" .. sock .. "' -H 'Authorization: " ..
        "Bearer " .. gw.TOKEN .. "' -d '" .. CONSULT .. "' http://gateway/v1/consultAddablePaymentMethod")
      local code = p:read("*a")
      p:close()
      node:stop()
      assert.are.equal("200", code)
    end)

    it("serves backends over TLS when tls_cert and tls_key are set", function()
      local certs = require("dws_sandbox.nginx").make_certs(g.dir .. "/tls", "DNS:localhost,IP:127.0.0.1", "gateway")
      local node = assert(gw.start{ first = g, config = { tls_cert = certs.cert, tls_key = certs.key } })
      local h = require("dws.curl").new{ max_response_bytes = 1024 * 1024, ca_file = certs.ca }
      local status = h:request("https://127.0.0.1:" .. node.port .. "/v1/consultAddablePaymentMethod",
        { "Authorization: Bearer " .. gw.TOKEN, "Content-Type: application/json" }, CONSULT, 30, 5, "POST")
      h:close()
      node:stop()
      assert.are.equal(200, status)
    end)
  end)

  describe("dws gateway", function()
    it("config --print shows the nginx.conf, with our LuaJIT build on lua_package_cpath", function()
      local rc, out = g:dws("gateway", "config", "--print", "--config", g.config_file)
      assert.are.equal(0, rc)
      assert.truthy(out:find('lua_package_cpath "' .. root .. "/build/jit/?.so;", 1, true))
    end)

    it("status says running", function()
      local rc, out = g:dws("gateway", "status", "--config", g.config_file)
      assert.are.same({ 0, true }, { rc, out:find("running", 1, true) ~= nil })
    end)

    it("stop stops it", function()
      local rc = g:dws("gateway", "stop", "--config", g.config_file)
      local status_rc = g:dws("gateway", "status", "--config", g.config_file)
      assert.are.same({ 0, 3, false }, { rc, status_rc, require("dws_sandbox.nginx").port_listening(g.port) })
    end)

    it("config refuses a backend listen address off loopback without TLS", function()
      local c = {}
      for k, v in pairs(g.config) do c[k] = v end
      c.listen = "0.0.0.0:" .. g.port
      local path = g.dir .. "/open.json"
      require("helpers.files").write(path, assert(core.json_encode(c)))
      local rc, out = g:dws("gateway", "config", "--config", path)
      assert.are.same({ 1, true }, { rc, out:find("not loopback", 1, true) ~= nil })
    end)
  end)
end)
