-- Answers bound to their request (requestId) and to now
-- (response-time), option checks, transports that raise, card data in keys and gateway text, control
-- characters in printed errors and log lines, fixed notification refusals, per-client deliveries.
-- The gateway attacks come from a hostile gateway in a real nginx that signs whatever it is told to
-- with the DWS key the client trusts.
local core = require "dws.core"
local dws = require "dws"
local redact = require "dws.redact"
local notification = require "dws.notification"
local nginx = require "dws_sandbox.nginx"
local httpd = require "helpers.httpd"
local sandbox = require "helpers.sandbox"
local files = require "helpers.files"
local curl = require "dws.curl"
local MAX_RESPONSE = require("dws.defaults").options.max_response_bytes

local MERCHANT_PRIVATE = files.read(files.EXAMPLE .. "/merchant_private.pem")
-- Parsed once for client() (key loading from text has specs of its own): a private key's
-- pair-wise check costs ~30 ms each time.
local MERCHANT_KEY = assert(require("dws.core").private_key(MERCHANT_PRIVATE))
-- A DWS public key for clients that never verify an answer (the merchant's own would be refused).
local _, OTHER_PUBLIC = require("helpers.keys").pair("dws")
local CARD = "4242424242424242"

-- The hostile gateway: answers every API path with a signed answer built from the mode last POSTed
-- to /__mode: { status, code, message, rid = "same" | "none" | <string>, time = "now" | "now_iso" |
-- <string> | <seconds offset> }.
local HOSTILE = [[
local core = require "dws.core"
local M = {}
local key = assert(core.private_key(assert(io.open(%q, "rb")):read("*a")))

function M.set_mode()
  ngx.req.read_body()
  ngx.shared.hostile:set("mode", ngx.req.get_body_data())
  ngx.print("ok")
end

function M.answer()
  ngx.req.read_body()
  local req = core.json_decode(ngx.req.get_body_data() or "") or {}
  local mode = core.json_decode(ngx.shared.hostile:get("mode") or "{}")
  local answer = { result = { resultStatus = mode.status or "S", resultCode = mode.code or "SUCCESS",
                              resultMessage = mode.message or "success" } }
  if mode.rid == nil or mode.rid == "same" then answer.requestId = req.requestId
  elseif mode.rid ~= "none" then answer.requestId = mode.rid end
  answer.paymentMethodDetail = { card = { cardToken = "PYMT_OTHER_CUSTOMER", mask = "424242******4242" } }
  local body = core.json_encode(answer)
  local ms = core.time_ms()
  local time
  if mode.time == nil or mode.time == "now" then time = string.format("%%d", ms)
  elseif mode.time == "now_iso" then time = os.date("!%%Y-%%m-%%dT%%H:%%M:%%SZ", math.floor(ms / 1000))
  elseif type(mode.time) == "number" then time = string.format("%%d", ms + mode.time * 1000)
  else time = mode.time end
  local client_id = ngx.var.http_client_id
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Client-Id"] = client_id
  ngx.header["Response-Time"] = time
  ngx.header["Signature"] = core.signature_header(core.sign(key, "POST", ngx.var.uri, client_id, time, body), "1")
  ngx.print(body)
end
return M
]]

local ADD = { customerId = "2162878776333", env = { terminalType = "WEB" },
  paymentMethodDetail = { paymentMethodDetailType = "CARD", card = { cardToken = "PYMT_MINE" } } }
local CONSULT = { customerId = "2162878776333", env = { terminalType = "WEB" }, scenes = { "TOPUP" } }

describe("answers bound to their request and to now", function()
  local dir, srv, dws_public, admin

  setup(function()
    dir = nginx.tmpdir("dws-harden2")
    local priv, pub = nginx.make_keypair(dir, "dws")
    dws_public = files.read(pub)
    srv = assert(httpd.start{
      http = "    lua_shared_dict hostile 1m;",
      lua_files = { hostile = string.format(HOSTILE, priv) },
      locations = [[
    location = /__mode { content_by_lua_block { require("hostile").set_mode() } }
    location /ams/ { content_by_lua_block { require("hostile").answer() } }
]] })
    admin = curl.new{ max_response_bytes = MAX_RESPONSE }
  end)

  teardown(function()
    if admin then admin:close() end
    if srv then srv:stop() end
    if dir then nginx.rmdir(dir) end
  end)

  local function mode(m)
    local status = admin:request(srv:url("/__mode"), {}, assert(core.json_encode(m)), 5, 5, "POST")
    assert.are.equal(200, status)
  end

  local function client(over)
    local opts = { client_id = "HARDEN2", private_key = MERCHANT_KEY, dws_public_key = dws_public,
      gateway = srv:url(""):gsub("/$", ""), retry_base_delay = 0.001 }
    for k, v in pairs(over or {}) do opts[k] = v end
    return dws.client(opts)
  end

  describe("an answer to addPaymentMethod must carry the request's requestId", function()
    it("accepts a signed S that names this request (the control case)", function()
      mode{ rid = "same" }
      local res = assert(client():add_payment_method(ADD))
      assert.is_string(res.requestId)
    end)

    it("refuses a genuinely signed S carrying another requestId: U, no data, not retried", function()
      mode{ rid = "3b33b0b9-efaf-42cd-a38a-9853bc071bfd" }
      local res, err = client():add_payment_method(ADD)
      assert.is_nil(res)
      assert.are.same({ "RESPONSE_MISMATCH", "U", false, 1, nil },
        { err.code, err.status, err.retryable, err.attempts, err.response })
    end)

    it("refuses a signed S without requestId (a required response field)", function()
      mode{ rid = "none" }
      local _, err = client():add_payment_method(ADD)
      assert.are.equal("RESPONSE_MISMATCH", err.code)
    end)

    it("refuses a signed F carrying another requestId, with no data", function()
      mode{ rid = "someone-else", status = "F", code = "RISK_REJECT" }
      local _, err = client():add_payment_method(ADD)
      assert.are.same({ "RESPONSE_MISMATCH", nil }, { err.code, err.response })
    end)

    it("leaves APIs without an idempotency field alone", function()
      mode{ rid = "anything" }
      assert.is_table(client():consult_addable_payment_method(CONSULT))
    end)
  end)

  describe("a signed response-time must be near the local clock", function()
    for _, case in ipairs{ { "from 2001", "2001-09-09T01:46:40Z" }, { "from 2099", "2099-01-01T00:00:00+00:00" },
                           { "as millis from 1970", "1" }, { "10 minutes old", -600 }, { "10 minutes ahead", 600 },
                           { "not a time at all", "yesterday" } } do
      it("refuses one " .. case[1] .. ": RESPONSE_TIME_INVALID, no data, not retried", function()
        mode{ time = case[2] }
        local res, err = client():consult_addable_payment_method(CONSULT)
        assert.is_nil(res)
        assert.are.same({ "RESPONSE_TIME_INVALID", "U", false, 1, nil },
          { err.code, err.status, err.retryable, err.attempts, err.response })
      end)
    end

    it("accepts ordinary skew, in milliseconds or ISO 8601", function()
      for _, t in ipairs{ "now", "now_iso", -120, 120 } do
        mode{ time = t }
        assert.is_table(client():consult_addable_payment_method(CONSULT), tostring(t))
      end
    end)

    it("uses response_time_tolerance when given", function()
      mode{ time = -120 }
      local _, err = client{ response_time_tolerance = 60 }:consult_addable_payment_method(CONSULT)
      assert.are.equal("RESPONSE_TIME_INVALID", err.code)
    end)
  end)

  describe("gateway text reaching an error or a log", function()
    it("is masked in code and message: separated digits, card in resultCode, security codes", function()
      mode{ status = "F", code = "CARD_" .. CARD .. "_DECLINED",
            message = "card 4242.4242.4242.4242 cvv=739, CVV2: 739, security code 739, securityCode=739" }
      local logged = {}
      local c = client{ logger = function(_, message, fields)
        logged[#logged + 1] = message .. " " .. core.json_encode(fields)
      end }
      local _, err = c:add_payment_method(ADD)
      local all = table.concat(logged, "\n") .. err.code .. err.message .. tostring(err)
      assert.is_nil(all:find("4242", 5, true) and all:find("4242.4242.4242.4242", 1, true))
      assert.is_nil(all:find(CARD, 1, true))
      -- the code as the gateway wrote it (after =, : or a space); a bare "739" can occur by chance in
      -- an elapsed time or a UUID in the log fields
      assert.is_nil(all:find("[=:%s]739%f[%D]"))
      assert.are.equal("CARD_424242******4242_DECLINED", err.code)
    end)
  end)

  describe("control characters", function()
    local function refused_transport()
      return { request = function() return nil, "connect", "refused" end, sleep = function() end }
    end

    it("are escaped in tostring(err): a requestId with a newline cannot forge a line", function()
      local req = {}
      for k, v in pairs(ADD) do req[k] = v end
      req.requestId = "abc\nERROR forged line\r\27[31m"
      local _, err = client{ transport = refused_transport(), max_retries = 0 }:add_payment_method(req)
      local s = tostring(err)
      assert.is_nil(s:find("%c"))
      assert.truthy(s:find("requestId=abc\\nERROR forged line\\r\\x1B[31m", 1, true))
    end)

    it("are escaped in the logger's message and fields", function()
      local req = {}
      for k, v in pairs(ADD) do req[k] = v end
      req.requestId = "abc\nforged\226\128\168"
      local seen = {}
      local c = client{ transport = refused_transport(), max_retries = 0, logger = function(_, message, fields)
        seen[#seen + 1] = message
        for _, v in pairs(fields) do seen[#seen + 1] = tostring(v) end
      end }
      c:add_payment_method(req)
      local all = table.concat(seen, " ")
      assert.is_nil(all:find("[%c]") or all:find("\226\128\168", 1, true))
      assert.truthy(all:find("abc\\nforged\\u2028", 1, true))
    end)
  end)

  describe("a card number used as a table key", function()
    for _, key in ipairs{ CARD, "card" .. CARD, "4242-4242-4242-4242", "x4242_4242_4242_4242" } do
      it("is not echoed in err.field or tostring(err): " .. key:sub(1, 5), function()
        local _, err = client():consult_addable_payment_method{ customerId = "2162878776333",
          env = { terminalType = "WEB" }, scenes = { "TOPUP" }, extra = { [key] = function() end } }
        assert.are.equal("PARAM_ILLEGAL", err.code)
        assert.are.equal("extra.?", err.field)
        assert.is_nil(tostring(err):find("4242", 1, true))
      end)
    end
  end)

  describe("a transport that raises", function()
    it("surfaces the raised error as itself, once, never as a retried CONNECTION_FAILED", function()
      local calls = 0
      local bug = { "a transport bug" }
      local c = client{ transport = { request = function() calls = calls + 1; error(bug) end, sleep = function() end } }
      local ok, raised = pcall(c.consult_addable_payment_method, c, CONSULT)
      assert.are.same({ false, true, 1 }, { ok, raised == bug, calls })
    end)
  end)

  describe("options", function()
    local base = { client_id = "OPT", private_key = MERCHANT_PRIVATE, dws_public_key = OTHER_PUBLIC,
      gateway = "https://dws.example" }
    local function with(over)
      local o = {}
      for k, v in pairs(base) do o[k] = v end
      for k, v in pairs(over) do o[k] = v end
      return o
    end
    local nan, inf = 0 / 0, math.huge
    local bad = {
      { "notification_tolerance", { notification_tolerance = nan } },
      { "notification_tolerance", { notification_tolerance = inf } },
      { "timeout", { timeout = nan } }, { "timeout", { timeout = inf } }, { "timeout", { timeout = -inf } },
      { "connect_timeout", { connect_timeout = nan } }, { "connect_timeout", { connect_timeout = inf } },
      { "max_retries", { max_retries = inf } }, { "max_retries", { max_retries = nan } },
      { "max_retries", { max_retries = 1e9 } },
      { "max_response_bytes", { max_response_bytes = nan } }, { "max_response_bytes", { max_response_bytes = inf } },
      { "retry_base_delay", { retry_base_delay = nan } }, { "retry_base_delay", { retry_base_delay = inf } },
      { "response_time_tolerance", { response_time_tolerance = nan } },
      { "response_time_tolerance", { response_time_tolerance = 0 } },
      { "key_version", { key_version = nan } }, { "key_version", { key_version = 1.5 } },
      { "gateway", { gateway = "https://dws.example:99999" } }, { "gateway", { gateway = "https://dws.example:0" } },
      { "gateway", { gateway = "https://dws.example\r\nX-Injected" } },
      { "gateway", { gateway = "https://dws.exa mple" } }, { "gateway", { gateway = "https://user@dws.example" } },
      { "user_agent", { user_agent = "ua\r\nX-Injected: 1" } }, { "proxy", { proxy = "http://p\n" } },
      { "server_name", { server_name = "a\0b" } }, { "ca_file", { ca_file = "/etc/ssl\n" } },
      { "client_id", { client_id = "C\r\n" } },
    }
    for _, case in ipairs(bad) do
      local name, over = case[1], case[2]
      local _, value = next(over)
      it("raise at dws.client for " .. name .. " = " .. string.format("%q", tostring(value)):gsub("\\\n", "\\n"),
        function()
          local ok, err = pcall(dws.client, with(over))
          assert.is_false(ok)
          assert.truthy(tostring(err):find("option " .. name, 1, true), tostring(err))
        end)
    end

    it("accept the edges that make sense", function()
      assert.has_no_error(function()
        dws.client(with{ gateway = "https://dws.example:65535", max_retries = 10, key_version = 2,
          notification_tolerance = 0, retry_base_delay = 0, gateway_unused = nil })
      end)
      assert.has_no_error(function() dws.client(with{ gateway = "https://[::1]:8443" }) end)
    end)
  end)

  describe("notification refusals", function()
    local c = dws.client{ client_id = "SANDBOX_NOTIFY", private_key = MERCHANT_PRIVATE,
      dws_public_key = OTHER_PUBLIC, gateway = "https://dws.example" }
    local handler = function() return true end
    local function headers(over)
      local h = { ["Client-Id"] = "SANDBOX_NOTIFY", ["Request-Time"] = tostring(core.time_ms()),
                  Signature = "algorithm=RSA256,keyVersion=1,signature=AAAA" }
      for k, v in pairs(over) do h[k] = v end
      return h
    end
    local cases = {
      { "client-id with invalid UTF-8", { method = "POST", path = "/notify", body = "{}",
          headers = headers{ ["Client-Id"] = "\255\254" } } },
      { "client-id with markup and quotes", { method = "POST", path = "/notify", body = "{}",
          headers = headers{ ["Client-Id"] = '"><script>x</script>' } } },
      { "a GET with a hostile method name", { method = "G\"ET\255", path = "/notify", body = "{}",
          headers = headers{} } },
      { "no body", { method = "POST", path = "/notify", headers = headers{} } },
      { "a bad signature", { method = "POST", path = "/notify", body = "{}",
          headers = headers{ Signature = "\255\254signature" } } },
    }
    for _, case in ipairs(cases) do
      it("answer a fixed, valid JSON body for " .. case[1], function()
        local status, _, body = c:handle_notification(case[2], handler)
        assert.is_true(status >= 400)
        local fixed = false
        for _, b in pairs(notification.REFUSAL_BODIES) do fixed = fixed or b == body end
        assert.is_true(fixed, tostring(body))
        assert.is_table(core.json_decode(body))
      end)
    end
  end)

  describe("the sandbox's deliveries", function()
    local sb, priv_a, pub_b
    local A, B = "SANDBOX_DELIVER_A", "SANDBOX_DELIVER_B"

    setup(function()
      local pa
      priv_a, pa = nginx.make_keypair(dir, "merchant_a")
      local _, pb = nginx.make_keypair(dir, "merchant_b")
      pub_b = pb
      -- notify URLs where nothing listens: every attempt is recorded, with the card token in its body
      local nowhere = "http://127.0.0.1:" .. httpd.closed_port() .. "/notify"
      sb = assert(sandbox.start{ clients = {
        [A] = { public_key = files.read(pa), notify_url = nowhere },
        [B] = { public_key = files.read(pub_b), notify_url = nowhere },
      } })
      local a = dws.client{ client_id = A, private_key = files.read(priv_a), dws_public_key = sb.dws_public_key,
        gateway = sb.http_url }
      local outcome = assert(a:bind_card{ customerId = "2162878776333", env = { terminalType = "WEB" },
        card = { cardNo = "4111111111111111", securityCode = "123", expiryMonth = "12",
                 expiryYear = tostring(tonumber(os.date("!%Y")) + 2) } })
      assert.truthy(sb:wait(function() return #sb:deliveries(A) > 0 end, 10), "a delivery for A")
      assert.are.equal("ACCEPTED", outcome.status)
    end)

    teardown(function()
      if sb then sb:stop() end
    end)

    local function get(query, token)
      local h = curl.new{ max_response_bytes = MAX_RESPONSE }
      local status, _, body = h:request(sb.http_url .. "/__sandbox/deliveries" .. query,
        token and { "X-Sandbox-Admin-Token: " .. token } or {}, nil, 5, 5)
      h:close()
      return status, body
    end

    it("are not listed to anyone without a client and its token", function()
      local s1, b1 = get("", nil)
      local s2, b2 = get("?client_id=" .. A, nil)
      local s3, b3 = get("?client_id=" .. A, sb.admin_tokens[B])
      assert.are.same({ 400, 403, 403 }, { s1, s2, s3 })
      assert.is_nil((b1 .. b2 .. b3):find("PYMT", 1, true))
    end)

    it("show a client its own, and another client nothing of them", function()
      local sa, ba = get("?client_id=" .. A, sb.admin_tokens[A])
      local sb2, bb = get("?client_id=" .. B, sb.admin_tokens[B])
      assert.are.same({ 200, 200 }, { sa, sb2 })
      assert.truthy(ba:find("cardToken", 1, true))
      assert.are.same({}, core.json_decode(bb))
    end)
  end)
end)

describe("dws.redact on hostile text", function()
  it("keeps millisecond timestamps and UUID requestIds readable", function()
    -- 1000000000009 passes Luhn and is a millisecond time (2001): no card number is 13 digits from 1
    for _, keep in ipairs{ "t=1000000000009", "3b33b0b9-efaf-42cd-a38a-9853bc071bfd", "2026-11-30T09:34:57.123Z" } do
      assert.are.equal(keep, redact.text(keep))
    end
  end)
end)
