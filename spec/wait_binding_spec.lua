-- client:wait_binding: the final binding from the journal, WAIT_TIMEOUT with the record as it was,
-- BINDING_NOT_FOUND; inside nginx the wait yields (ngx.sleep), so the worker finishes the binding
-- meanwhile. The cross-process case (a script waiting while `dws listen` journals the
-- notification) is spec/cli_listen_spec.lua.
local dws = require "dws"
local nginx = require "dws_sandbox.nginx"
local sandbox = require "helpers.sandbox"
local httpd = require "helpers.httpd"
local timeouts = require "helpers.timeouts"

local CARD = { cardNo = "4111111111111111", securityCode = "123", expiryMonth = "12",
               expiryYear = tostring(tonumber(os.date("!%Y")) + 1),
               instUserName = { firstName = "Ada", lastName = "Lovelace" } }

describe("client:wait_binding", function()
  local sb, client
  setup(function()
    sb = assert(sandbox.start{ notify_scale = 0.0001,
      notify_url = "http://127.0.0.1:" .. nginx.free_ports(1)[1] .. "/notify" })
  end)
  before_each(function() client = dws.client(sb:client_options()) end)
  after_each(function() client:close() end)
  teardown(function() if sb then sb:stop() end end)

  local function bind()
    return assert(client:bind_card{ customerId = "2162878776333", env = { terminalType = "WEB" }, card = CARD })
  end

  it("returns the binding once the notification made it BOUND, with the final token", function()
    local outcome = bind()
    local d = assert(sb:delivery(outcome.requestId))
    sb:handle_delivery(client, d)
    local b = assert(client:wait_binding(outcome.requestId, { timeout = 1 }))
    assert.are.same({ "BOUND", dws.decode_json(d.body).paymentMethodDetail.card.cardToken },
      { b.status, b.cardToken })
  end)

  it("times out with WAIT_TIMEOUT and the binding as it was", function()
    local outcome = bind()
    local b, err = client:wait_binding(outcome.requestId, { timeout = timeouts.FIRE, interval = 0.05 })
    assert.are.same({ nil, "WAIT_TIMEOUT", "ACCEPTED" }, { b, err.code, err.binding.state })
  end)

  it("answers BINDING_NOT_FOUND at once for a requestId the journal does not know", function()
    local _, err = client:wait_binding("no-such-binding", { timeout = 5 })
    assert.are.equal("BINDING_NOT_FOUND", err.code)
  end)

  it("raises on a timeout that is not a number of seconds", function()
    assert.has_error(function() client:wait_binding("x", { timeout = "soon" }) end)
  end)
end)

describe("client:wait_binding inside nginx #nginx", function()
  local srv
  setup(function()
    local keys = require "helpers.keys"
    local priv = keys.pair("merchant")
    local _, dws_pub = keys.pair("dws")
    srv = assert(httpd.start{ http = "    lua_shared_dict journal 1m;", locations = [[
    location = /wait {
        content_by_lua_block {
            local client = require("dws").client{ client_id = "SANDBOX_WAIT", gateway = "https://127.0.0.1",
              private_key = [=[]] .. priv .. [[]=], dws_public_key = "]] .. dws_pub .. [[",
              journal = require("dws.store.shared_dict").new(ngx.shared.journal) }
            local store = client.journal.store
            local function record(state)
              store:set("dws:binding:w-1", string.format('{"requestId":"w-1","state":"%s"}', state))
            end
            record("ACCEPTED")
            -- The binding finishes in this worker while the request waits: only a yielding wait lets it.
            ngx.timer.at(0.2, function() record("BOUND") end)
            local b, err = client:wait_binding("w-1", { timeout = 3, interval = 0.05 })
            ngx.print(b and b.state or tostring(err))
        }
    }
]] })
  end)
  teardown(function() if srv then srv:stop() end end)

  it("yields to the worker while it waits, and sees the binding become BOUND", function()
    local status, _, body = require("dws.curl").new{ max_response_bytes = 4096 }:request(srv:url("/wait"), {},
      nil, 10, 5, "GET")
    assert.are.same({ 200, "BOUND" }, { status, body })
  end)
end)
