-- #nginx (child processes: lua5.4 bin/dws, the sandbox, an endpoint) dws notify: send --sandbox DIR
-- signs as the sandbox for its client's notify URL; a 401 names the likely causes; resend's 404
-- says why no notification was sent and how to receive one.
local sandbox = require "helpers.sandbox"
local httpd = require "helpers.httpd"
local cli = require "helpers.cli"

local q = cli.q

describe("dws notify #nginx", function()
  local sb, srv
  setup(function()
    sb = assert(sandbox.start{ notify_scale = 0.001 })
    local _, other_pub = require("helpers.keys").pair("other")
    srv = assert(httpd.start{ locations =
      cli.endpoint_location("/shop/notify", sb.merchant.client_id, sb.merchant.private_key, sb.dws_public_key)
      .. cli.endpoint_location("/wrong-key", sb.merchant.client_id, sb.merchant.private_key, other_pub) })
  end)
  teardown(function()
    if srv then srv:stop() end
    if sb then sb:stop() end
  end)

  it("send --sandbox signs with the sandbox's DWS key as its client, to the client's notify URL", function()
    sb:notify_url(srv:url("/shop/notify"))
    local status, out, err = cli.run("notify send --sandbox " .. q(sb.dir))
    sb:notify_url(false)
    assert.are.same({ 0, true }, { status, out:find("acknowledged: yes, exactly", 1, true) ~= nil }, err)
  end)

  it("send --sandbox without a URL, when the client has none, says how to get one (exit 1)", function()
    local status, _, err = cli.run("notify send --sandbox " .. q(sb.dir))
    assert.are.same({ 1, true }, { status, err:find("dws listen", 1, true) ~= nil })
  end)

  it("send without --sandbox, URL or key is a usage error (exit 64)", function()
    local status, _, err = cli.run("notify send " .. q(srv:url("/shop/notify")))
    assert.are.same({ 64, true }, { status, err:find("--dws-private-key is required", 1, true) ~= nil })
  end)

  it("a 401 answer names the likely causes: key, URL path, client id", function()
    local status, _, err = cli.run("notify send --sandbox " .. q(sb.dir) .. " " .. q(srv:url("/wrong-key")))
    assert.are.same({ 1, true, true, true }, { status, err:find("dws_public_key", 1, true) ~= nil,
      err:find("the signature covers the path", 1, true) ~= nil, err:find("client_id differs", 1, true) ~= nil })
  end)

  it("resend's 404 says the client has no notify URL and how to receive it (exit 1)", function()
    local client = require("dws").client(sb:client_options())
    local outcome = assert(client:bind_card{ customerId = "2162878776333", env = { terminalType = "WEB" },
      card = { cardNo = "4111111111111111", securityCode = "123", expiryMonth = "12",
               expiryYear = tostring(tonumber(os.date("!%Y")) + 1),
               instUserName = { firstName = "A", lastName = "B" } } })
    client:close()
    local status, _, err = cli.run("notify resend " .. q(outcome.requestId) .. " --sandbox " .. q(sb.dir))
    assert.are.same({ 1, true, true }, { status, err:find("has no notify_url", 1, true) ~= nil,
      err:find("dws listen --sandbox", 1, true) ~= nil })
  end)

  it("resend of a requestId the sandbox has no result for says so (exit 1)", function()
    local status, _, err = cli.run("notify resend never-bound --sandbox " .. q(sb.dir))
    assert.are.same({ 1, true }, { status, err:find("no binding with this requestId", 1, true) ~= nil })
  end)
end)
