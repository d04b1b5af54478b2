-- The gateway while the backend is down, then while it accepts connections and never answers: DWS
-- is acknowledged all the same (the events are in the outbox), the outbox keeps them; once the
-- backend is up it drains, every event delivered once.
local nginx = require "dws_sandbox.nginx"
local gw = require "helpers.gateway"
local timeouts = require "helpers.timeouts"

describe("the gateway with its backend down for a while #nginx", function()
  local g, ids

  setup(function()
    -- the forward timeout fires while the backend accepts and never answers
    g = assert(gw.start{ backend = false, config = { forward_timeout = timeouts.FIRE } })
  end)

  local hang_pid

  teardown(function()
    if hang_pid then nginx.run("kill " .. hang_pid .. " 2>/dev/null") end
    if g then g:stop() end
  end)

  it("acknowledges DWS's notifications while the backend is down", function()
    ids = g:bind_cards(3)
    local acked = gw.eventually(function()
      return (g:metrics()['dws_gateway_notifications_total{outcome="acknowledged"}'] or 0) >= 3
    end)
    assert.is_true(acked)
  end)

  it("keeps the events in the outbox, counting the failed attempts", function()
    local m = gw.eventually(function()
      local m = g:metrics()
      return m['dws_gateway_forward_failures_total{reason="connect"}'] and m
    end)
    assert.are.equal(3, m.dws_gateway_outbox_depth)
  end)

  it("keeps them while the backend accepts connections and never answers", function()
    -- A listening socket nobody accepts on: connections are made, requests go unanswered.
    local p = io.popen("python3 -c 'import socket, time\ns = socket.socket()\n" ..
      "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind((\"127.0.0.1\", " .. g.backend_port ..
      "))\ns.listen(64)\ntime.sleep(600)' >/dev/null 2>&1 & echo $!")
    hang_pid = tonumber(p:read("*l"))
    p:close()
    local m = gw.eventually(function()
      local m = g:metrics()
      return m['dws_gateway_forward_failures_total{reason="timeout"}'] and m
    end)
    assert.are.equal(3, m.dws_gateway_outbox_depth)
  end)

  it("drains the outbox once the backend is up", function()
    nginx.run("kill " .. hang_pid)
    assert(gw.eventually(function() return not nginx.port_listening(g.backend_port) end), "still listening")
    hang_pid = nil
    g:start_backend()
    assert.is_true(gw.eventually(function() return g:metrics().dws_gateway_outbox_depth == 0 end))
  end)

  it("delivered every event", function()
    local got = {}
    for _, e in ipairs(g:events()) do got[#got + 1] = e.event.data.requestId end
    table.sort(got)
    table.sort(ids)
    assert.are.same(ids, got)
  end)

  it("delivered none twice", function()
    assert.are.same({}, g:repeats())
  end)
end)
