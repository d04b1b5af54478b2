-- dws.defaults is where every default lives: the client and the transports read it, not numbers
-- of their own.
local dws = require "dws"
local defaults = require "dws.defaults"
local keys = require "helpers.keys"

local function client(extra)
  local private = keys.pair("merchant")
  local _, dws_public = keys.pair("dws")
  local opts = { client_id = "C1", private_key = private, dws_public_key = dws_public,
    gateway = "https://dws.example", transport = { request = function() return nil, "connect", "refused" end } }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return dws.client(opts)
end

describe("dws.defaults", function()
  it("fills every client option the caller leaves out", function()
    local c = client()
    local used = {}
    for name in pairs(defaults.options) do used[name] = c.options[name] end
    assert.are.same(defaults.options, used)
  end)

  it("gives each attempt the default timeouts", function()
    local seen
    local c = client{ max_retries = 0, transport = { request = function(_, req)
      seen = { req.timeout, req.connect_timeout }
      return nil, "connect", "refused"
    end } }
    c:cache_card{ paymentMethodDetail = { paymentMethodDetailType = "card",
      card = { cardNo = "4111111111111111", expiryYear = "2099", expiryMonth = "12", securityCode = "123" } } }
    assert.are.same({ defaults.options.timeout, defaults.options.connect_timeout }, seen)
  end)

  it("is what dws.transport.curl uses when not told otherwise", function()
    local t = require("dws.transport.curl").new{}
    assert.are.same({ defaults.options.timeout, defaults.options.connect_timeout }, { t.timeout, t.connect_timeout })
    t:close()
  end)
end)
