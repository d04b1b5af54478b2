-- The sandbox's bound_notify_delay: the notification of a card that binds at once waits that long
-- after the answer (the demo uses it so that ACCEPTED is seen before BOUND). Lower bounds only.
local dws = require "dws"
local sandbox = require "helpers.sandbox"

local DELAY = 0.5

describe("the sandbox's bound_notify_delay #nginx", function()
  local sb, client

  setup(function()
    sb = assert(sandbox.start{ bound_notify_delay = DELAY, notify_scale = 0.00001,
                               notify_url = "http://127.0.0.1:9/notify" })
    client = dws.client{ client_id = sb.merchant.client_id, private_key = sb.merchant.private_key,
                         dws_public_key = sb.dws_public_key, gateway = sb.http_url }
  end)

  teardown(function()
    if sb then sb:stop() end
  end)

  it("holds the bound card's notification back by at least bound_notify_delay", function()
    local outcome = assert(client:bind_card{ requestId = "delayed-bound", customerId = "2162878776333",
      referenceCustomerId = "shop-1", env = { terminalType = "WEB" },
      card = { cardNo = "4111111111111111", securityCode = "123", expiryMonth = "06",
               expiryYear = tostring(tonumber(os.date("!%Y")) + 2) } })
    local first = sb:wait(function()
      for _, d in ipairs(sb:deliveries()) do
        if d.requestId == outcome.requestId then return d end
      end
    end)
    local asked
    for _, q in ipairs(sb:requests()) do
      if q.requestId == outcome.requestId then asked = q.time end
    end
    assert.is_true(first.time - asked >= DELAY * 1000)
  end)
end)
