-- The sandbox's latency setting: the config file's default and the admin endpoint.
local sandbox = require "helpers.sandbox"

describe("sandbox latency", function()
  local sb

  setup(function() sb = assert(sandbox.start{ latency = { min = 0.01, max = 0.02 } }) end)
  teardown(function() if sb then sb:stop() end end)

  it("is set from the admin endpoint", function()
    assert.same({ min = 0.05, max = 0.05 }, sb:latency(0.05))
  end)

  it("refuses a latency over the cap", function()
    assert.has_error(function() sb:latency(31) end)
  end)

  it("refuses a range whose max is under its min", function()
    assert.has_error(function() sb:latency(0.2, 0.1) end)
  end)

  it("logs when each API request arrived, before its latency, and when the wait ended", function()
    sb:reset()
    local client = require("dws").client(sb:client_options())
    client:call("consultAddablePaymentMethod", { customerId = "2162878776333", env = { terminalType = "WEB" } })
    client:close()
    local r = sb:requests()[1]
    assert.is_true(type(r.received) == "number" and r.received <= r.time,
      tostring(r.received) .. " " .. tostring(r.time))
  end)
end)
