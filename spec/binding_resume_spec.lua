-- resume_binding through the sandbox: an addPaymentMethod whose answer was U (the sandbox's
-- "unknown once" card, with no retry left) is UNKNOWN and resumable; resumed after its temporary
-- card token expired, DWS refuses the token and the binding ends FAILED with the card to be
-- entered again. Resumed in time, the same bytes are accepted.
local dws = require "dws"
local sandbox = require "helpers.sandbox"

local TOKEN_TTL = 2 -- seconds: the sandbox's lifetime for cacheCard tokens here
local UNKNOWN_ONCE = "4000000000000119"

local sb, client

local function card()
  return { cardNo = UNKNOWN_ONCE, securityCode = "123", expiryMonth = "06",
           expiryYear = tostring(tonumber(os.date("!%Y")) + 2),
           instUserName = { firstName = "Ann", lastName = "Lee" } }
end

local function bind_unknown(request_id)
  local outcome, err = client:bind_card{ requestId = request_id, customerId = "2162878776333",
    referenceCustomerId = "shop-7", env = { terminalType = "WEB" }, card = card() }
  assert(outcome, tostring(err))
  return outcome
end

setup(function()
  sb = assert(sandbox.start{ token_ttl = TOKEN_TTL, notify_url = "http://127.0.0.1:9/notify" })
  -- max_retries = 0: the sandbox's first U for this card is the last answer bind_card sees.
  client = dws.client{ client_id = sb.merchant.client_id, private_key = sb.merchant.private_key,
                       dws_public_key = sb.dws_public_key, gateway = sb.http_url, max_retries = 0 }
end)

teardown(function()
  if sb then sb:stop() end
end)

describe("resume_binding against the sandbox", function()
  it("an unknown answer is an UNKNOWN outcome, not an error", function()
    assert.are.equal("UNKNOWN", bind_unknown("resume-in-time").status)
  end)

  it("resumed in time, the recorded bytes are accepted", function()
    local outcome = assert(client:resume_binding("resume-in-time"))
    assert.are.equal("ACCEPTED", outcome.status)
  end)

  describe("after the temporary token expired", function()
    local outcome, err

    setup(function()
      bind_unknown("resume-late")
      -- The token's lifetime is the sandbox's clock: wait it out (nothing to poll for).
      require("dws.core").sleep(TOKEN_TTL + 0.25) -- past the lifetime, counted from after cacheCard
      outcome, err = client:resume_binding("resume-late")
    end)

    it("returns nil, err with DWS's code", function()
      assert.are.same({ nil, "INVALID_PAYMENTMETHOD_TOKEN" }, { outcome, err and err.code })
    end)

    it("says the card must be entered again", function()
      assert.is_true(err.reenter_card)
    end)

    it("leaves the journal record FAILED (final)", function()
      assert.are.equal("FAILED", client:binding("resume-late").state)
    end)

    it("refuses a further resume of the final record", function()
      local again, e2 = client:resume_binding("resume-late")
      assert.are.same({ nil, "BINDING_FINAL" }, { again, e2 and e2.code })
    end)
  end)
end)
