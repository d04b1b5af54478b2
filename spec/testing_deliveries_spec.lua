-- #nginx (the sandbox) dws.testing hands a spec each notification as the merchant's endpoint got it
-- (method, path, signed headers, body), feeds it to client:handle_notification in one call, and
-- points a client's notifications somewhere at run time; a re-send says why none was sent.
local dws = require "dws"
local nginx = require "dws_sandbox.nginx"
local sandbox = require "helpers.sandbox"

local CARD = { cardNo = "4111111111111111", securityCode = "123", expiryMonth = "12",
               expiryYear = tostring(tonumber(os.date("!%Y")) + 1),
               instUserName = { firstName = "Ada", lastName = "Lovelace" } }

local function bind(client)
  return assert(client:bind_card{ customerId = "2162878776333", env = { terminalType = "WEB" }, card = CARD })
end

describe("dws.testing deliveries #nginx", function()
  local sb, client, closed_url
  setup(function()
    -- A port nothing listens on: every attempt is made, signed and recorded, and refused.
    closed_url = "http://127.0.0.1:" .. nginx.free_ports(1)[1] .. "/shop/notify?src=dws"
    sb = assert(sandbox.start{ notify_scale = 0.0001, notify_url = closed_url })
  end)
  before_each(function() client = dws.client(sb:client_options()) end)
  after_each(function() client:close() end)
  teardown(function() if sb then sb:stop() end end)

  it("records each delivery with its method, path, signed headers and body", function()
    local outcome = bind(client)
    local d = assert(sb:delivery(outcome.requestId))
    assert.are.same({ "POST", "/shop/notify?src=dws", sb.merchant.client_id, true, true },
      { d.method, d.path, d.headers["Client-Id"], d.headers["Signature"]:find("^algorithm=RSA256,") ~= nil,
        d.headers["Request-Time"] == d.request_time })
  end)

  it("a delivery fed to handle_notification verifies and moves the journal to BOUND", function()
    local outcome = bind(client)
    local status, headers, body = sb:handle_delivery(client, assert(sb:delivery(outcome.requestId)))
    assert.are.same({ 200, "application/json", require("dws.notification").ACK_BODY, "BOUND" },
      { status, headers["Content-Type"], body, client:binding(outcome.requestId).state })
  end)

  it("a delivery with one byte of its body changed is refused (the body is the one signed)", function()
    local outcome = bind(client)
    local d = assert(sb:delivery(outcome.requestId))
    d.body = d.body:gsub("2162878776333", "2162878776334")
    assert.are.equal(401, (sb:handle_delivery(client, d)))
  end)

  it("notify_url points the client's notifications elsewhere at run time", function()
    local other = "http://127.0.0.1:" .. nginx.free_ports(1)[1] .. "/elsewhere"
    assert.are.equal(closed_url, sb:notify_url(other))
    local outcome = bind(client)
    local d = assert(sb:delivery(outcome.requestId))
    sb:notify_url(closed_url)
    assert.are.same({ other, "/elsewhere" }, { d.url, d.path })
  end)

  it("a re-send without a notify URL answers 404 naming the reason, and delivers once one is set", function()
    sb:notify_url(false)
    local outcome = bind(client)
    local status, _, answer = require("dws.curl").new{ max_response_bytes = 65536 }:request(
      sb.http_url .. "/__sandbox/notifications/resend", { "Content-Type: application/json" },
      '{"requestId":"' .. outcome.requestId .. '"}', 5, 5)
    sb:notify_url(closed_url)
    local resent = sb:admin("POST", "notifications/resend", { requestId = outcome.requestId })
    assert.are.same({ 404, "no_notify_url", true, true }, { status, dws.decode_json(answer).reason, resent.queued,
      sb:delivery(outcome.requestId) ~= nil })
  end)

  it("a re-send of a requestId the sandbox never answered gives the other reason", function()
    local status, _, answer = require("dws.curl").new{ max_response_bytes = 65536 }:request(
      sb.http_url .. "/__sandbox/notifications/resend", { "Content-Type: application/json" },
      '{"requestId":"never-sent"}', 5, 5)
    assert.are.same({ 404, "unknown_request_id" }, { status, dws.decode_json(answer).reason })
  end)
end)
