-- The example merchant server (examples/openresty/) in a real nginx, with the DWS sandbox in
-- another: cards bound through POST /bind (cosocket transport), binding notifications delivered
-- by the sandbox to POST /notify, re-sent when not acknowledged, de-duplicated, refused when
-- replayed or tampered with.
local dws = require "dws"
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local sandbox = require "helpers.sandbox"

local root = os.getenv("DWS_ROOT") or "."
package.path = root .. "/examples/?.lua;" .. package.path
local merchant_server = require "merchant_server"

local CLIENT_ID = "SANDBOX_MERCHANT000001"
local CUSTOMER = "2162878776333"
local ACK = '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}'
local CARDS = { "4111111111111111", "5555555555554444", "4000000000000077", "4000056655665556",
                "378282246310005", "4111111111111112" }

local dir, sb, server, http

local function request(method, path, body, headers)
  local res, kind, message = http:request{ method = method, url = server.url .. path,
    headers = headers or { ["Content-Type"] = "application/json" }, body = body, timeout = 20, connect_timeout = 5 }
  assert(res, "merchant server: " .. tostring(kind) .. " " .. tostring(message))
  return res
end

local function post_json(path, value)
  local res = request("POST", path, assert(core.json_encode(value)))
  return res.status, dws.decode_json(res.body), res
end

local function card(number)
  return { cardNo = number, securityCode = #number == 15 and "7319" or "731",
           expiryYear = tostring(tonumber(os.date("!%Y")) + 2), expiryMonth = "09",
           instUserName = { firstName = "Kim", lastName = "Park" } }
end

local function bind(number, extra)
  local params = { customerId = CUSTOMER, env = { terminalType = "WEB" }, card = card(number),
                   referenceCustomerId = "merchant-customer-42" }
  for k, v in pairs(extra or {}) do params[k] = v end
  return post_json("/bind", params)
end

local function notifications_for(request_id)
  local res = request("GET", "/notifications")
  assert.are.equal(200, res.status)
  local list = assert(dws.decode_json(res.body))
  local out = {}
  for _, n in ipairs(list.notifications) do
    if n.requestId == request_id then out[#out + 1] = n end
  end
  return out
end

-- Poll until check() returns a value or the deadline passes (no fixed sleeps).
local function eventually(check, what, seconds)
  local deadline = core.monotonic() + (seconds or 20)
  repeat
    local v = check()
    if v then return v end
    core.sleep(0.05)
  until core.monotonic() > deadline
  error("timed out waiting for " .. what, 2)
end

local function recorded(request_id)
  return eventually(function()
    for _, n in ipairs(notifications_for(request_id)) do
      if n.outcome == "recorded" or n.outcome == "business_failure" then return n end
    end
  end, "the notification for " .. request_id)
end

local function deliveries_for(request_id)
  local out = {}
  for _, d in ipairs(sb:deliveries()) do
    if d.requestId == request_id then out[#out + 1] = d end
  end
  return out
end

-- A notification signed with the sandbox's DWS key, as DWS would send it.
local function signed_notification(body, time)
  time = time or tostring(core.time_ms())
  return {
    ["Content-Type"] = "application/json",
    ["Client-Id"] = CLIENT_ID,
    ["Request-Time"] = time,
    ["Signature"] = assert(dws.signature.sign{ private_key = sb.dws_private_key_pem, method = "POST",
      path = "/notify", client_id = CLIENT_ID, time = time, body = body }),
  }
end

local function notification_body(request_id)
  return assert(core.json_encode{
    referenceCustomerId = "merchant-customer-42", requestId = request_id, operateSource = "MERCHANT",
    paymentMethodDetail = { paymentMethodDetailType = "CARD",
      card = { brand = "VISA", cardToken = "PYMTspec", mask = "411111******1111" } },
  })
end

lazy_setup(function()
  dir = nginx.tmpdir("dws-openresty")
  local priv = nginx.make_keypair(dir, "merchant")
  local port = nginx.free_ports(1)[1]
  sb = assert(sandbox.start{
    clients = { [CLIENT_ID] = { public_key = nginx.read_file(dir .. "/merchant_public.pem"),
                                notify_url = "http://127.0.0.1:" .. port .. "/notify" } },
    notify_scale = 0.001,
  })
  server = assert(merchant_server.start{
    dir = dir .. "/merchant", port = port, gateway = sb.https_url, ca_file = sb.ca_file, server_name = "localhost",
    client_id = CLIENT_ID,
    private_key_file = priv, dws_public_key_file = sb.dws_public_key_file, test_hooks = true,
  })
  http = require("dws.transport.curl").new{}
end)

lazy_teardown(function()
  if server then server:stop() end
  if sb then sb:stop() end
  nginx.rmdir(dir)
end)

describe("the example merchant server in nginx #nginx", function()
  it("binds a card through POST /bind and records the notification DWS sends", function()
    local status, answer = bind("4111111111111111")
    assert.are.equal(200, status)
    local outcome = answer.outcome
    assert.are.equal("ACCEPTED", outcome.status)
    assert.are.equal("411111******1111", outcome.mask)
    assert.is_nil(outcome.cardToken)

    local n = recorded(outcome.requestId)
    assert.are.equal("recorded", n.outcome)
    assert.is_string(n.cardToken)
    -- the server's own (memory) journal knew the binding: the notification made it BOUND
    assert.are.equal("BOUND", n.binding)
    assert.are.equal("merchant-customer-42", n.referenceCustomerId)
    local d = eventually(function()
      local list = deliveries_for(outcome.requestId)
      return #list > 0 and list
    end, "the sandbox's delivery record")
    assert.are.equal(200, d[#d].status)
  end)

  it("reports ACCEPTED, then gets the result by notification", function()
    local status, answer = bind("4000000000000077")
    assert.are.equal(200, status)
    assert.are.equal("ACCEPTED", answer.outcome.status)
    assert.are.equal("recorded", recorded(answer.outcome.requestId).outcome)
  end)

  it("answers /bind failures with the error, never the card", function()
    local status, answer, res = bind("4111111111111112")
    assert.are.equal(422, status)
    assert.are.equal("CARD_INVALID", answer.error.code)
    assert.is_nil(res.body:find("4111111111111112", 1, true))
    status, answer = bind("378282246310005")
    assert.are.equal(422, status)
    assert.are.equal("PAYMENT_METHOD_NOT_ADDABLE", answer.error.code)
    assert.matches("AMEX", answer.error.message)
    status, answer = bind("4000056655665556")
    assert.are.equal(200, status)
    assert.are.equal("ACTION_REQUIRED", answer.outcome.status)
    assert.are.equal("sms", answer.outcome.actionForm.challengeType)
  end)

  for _, mode in ipairs{ "system_failure", "raise" } do
    it("gets a notification re-sent after a " .. mode .. " in the handler, then acknowledges it", function()
      assert.are.equal(200, (post_json("/__merchant/handler", { mode = mode, count = 1 })))
      local _, answer = bind("5555555555554444")
      local id = answer.outcome.requestId
      assert.are.equal("recorded", recorded(id).outcome)
      local runs = notifications_for(id)
      assert.are.equal(2, #runs)
      assert.are.equal("system_failure", runs[1].outcome)
      local d = eventually(function()
        local list = deliveries_for(id)
        return #list >= 2 and list[#list].status == 200 and list
      end, "the acknowledged re-delivery")
      assert.are.equal(500, d[1].status)
      assert.are.equal(2, #d)
    end)
  end

  it("acknowledges a business failure in the handler, so DWS does not re-send", function()
    assert.are.equal(200, (post_json("/__merchant/handler", { mode = "business_failure", count = 1 })))
    local _, answer = bind("4111111111111111")
    local id = answer.outcome.requestId
    assert.are.equal("business_failure", recorded(id).outcome)
    eventually(function() return #deliveries_for(id) >= 1 and deliveries_for(id)[1].status end, "delivery")
    assert.are.equal(200, deliveries_for(id)[1].status)
    -- A re-send would come 0.12 s later (2 min at notify_scale 0.001); allow many times that.
    local quiet_until = core.monotonic() + 1.5
    while core.monotonic() < quiet_until do core.sleep(0.1) end
    assert.are.equal(1, #deliveries_for(id))
    assert.are.equal(1, #notifications_for(id))
  end)

  it("runs the handler once for a notification delivered twice", function()
    local id = core.uuid4()
    local body = notification_body(id)
    for _ = 1, 2 do
      local res = request("POST", "/notify", body, signed_notification(body))
      assert.are.equal(200, res.status)
      assert.are.equal(ACK, res.body)
      assert.matches("^application/json", res.headers["content-type"])
    end
    assert.are.equal(1, #notifications_for(id))
  end)

  it("refuses a replayed notification and a tampered one, without running the handler", function()
    local id = core.uuid4()
    local body = notification_body(id)
    local res = request("POST", "/notify", body, signed_notification(body, tostring(core.time_ms() - 600000)))
    assert.are.equal(401, res.status)
    assert.are.equal("F", dws.decode_json(res.body).result.resultStatus)

    local headers = signed_notification(body)
    res = request("POST", "/notify", (body:gsub("PYMTspec", "PYMTevil")), headers)
    assert.are.equal(401, res.status)
    assert.are.equal("INVALID_SIGNATURE", dws.decode_json(res.body).result.resultCode)

    -- the same header twice (two spellings reach nginx as two header lines)
    headers = signed_notification(body)
    headers["signature"] = headers["Signature"]
    res = request("POST", "/notify", body, headers)
    assert.are.equal(401, res.status)
    assert.are.equal("INVALID_SIGNATURE", dws.decode_json(res.body).result.resultCode)
    assert.are.equal(0, #notifications_for(id))
  end)

  it("answers a client-id of invalid UTF-8 with the fixed refusal, echoing nothing", function()
    local body = notification_body(core.uuid4())
    local headers = signed_notification(body)
    headers["Client-Id"] = "\255\254<b>"
    local res = request("POST", "/notify", body, headers)
    assert.are.same({ 401, require("dws.notification").REFUSAL_BODIES.INVALID_SIGNATURE },
      { res.status, res.body })
  end)

  it("accepts a real delivery with more than 100 headers before the signature headers", function()
    local id = core.uuid4()
    local body = notification_body(id)
    local lines = {}
    for i = 1, 150 do lines[#lines + 1] = "X-Proxy-Hop-" .. i .. ": " .. i end
    for name, value in pairs(signed_notification(body)) do lines[#lines + 1] = name .. ": " .. value end
    local h = require("dws.curl").new{ max_response_bytes = 65536 }
    local status, _, answer = h:request(server.url .. "/notify", lines, body, 20, 5, "POST")
    h:close()
    assert.are.same({ 200, ACK }, { status, answer })
    assert.are.equal("recorded", recorded(id).outcome)
  end)

  it("keeps card numbers out of the merchant server's logs", function()
    local log = assert(nginx.read_file(server.error_log))
    assert.is_true(#log > 0)
    for _, number in ipairs(CARDS) do
      assert.is_nil(log:find(number, 1, true), "card number in the error log")
    end
  end)
end)

describe("make demo (examples/demo.sh) #nginx", function()
  it("binds the demo card, shows the acknowledged notification, and stops both servers", function()
    local demo_dir = nginx.tmpdir("dws-demo")
    local ok, out = pcall(function()
      local p = assert(io.popen("DWS_DEMO_DIR=" .. nginx.sh_quote(demo_dir) .. " sh " ..
        nginx.sh_quote(root .. "/examples/demo.sh") .. " 2>&1; echo \"exit=$?\""))
      local text = p:read("*a")
      p:close()
      return text
    end)
    local sandbox_pid = nginx.pid_of(demo_dir .. "/sandbox")
    local merchant_pid = nginx.pid_of(demo_dir .. "/merchant")
    -- the sandbox config holds the admin token: private
    local mode_pipe = io.popen("stat -c %a " .. nginx.sh_quote(demo_dir .. "/sandbox_config.lua"))
    local config_mode = mode_pipe:read("*l")
    mode_pipe:close()
    nginx.stop(demo_dir .. "/sandbox")
    nginx.stop(demo_dir .. "/merchant")
    nginx.rmdir(demo_dir)
    assert(ok, out)
    assert.matches("exit=0", out)
    assert.matches("MIXEDCARD%s+enabled=true%s+brands=MASTERCARD,VISA", out)
    assert.matches("cached card: 411111%*%*%*%*%*%*1111 %(VISA%), card token expires %d%d%d%d%-", out)
    -- The demo's sandbox holds the notification a second (bound_notify_delay), so the answer comes
    -- first: ACCEPTED, then BOUND read back from the journal the merchant server updated.
    assert.matches("binding:%s+ACCEPTED", out)
    assert.matches("state:%s+BOUND %(was ACCEPTED%), final card token %S+", out)
    assert.matches("answered:%s+HTTP 200, resultStatus S", out)
    assert.is_nil(out:find("4111111111111111", 1, true))
    assert.is_nil(sandbox_pid)
    assert.is_nil(merchant_pid)
    assert.are.equal("600", config_mode)
  end)
end)
