-- The gateway while the backend is down: DWS is acknowledged all the same (the events are in the
-- outbox), the outbox grows; once the backend is up it drains, every event delivered once.
local gw = require "helpers.gateway"

describe("the gateway with its backend down for a while #nginx", function()
  local g, ids

  setup(function()
    g = assert(gw.start{ backend = false, store = nil })
  end)

  teardown(function()
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

  it("drains the outbox once the backend is up", function()
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
