-- The gateway's sweeper: a binding left UNKNOWN (DWS answered U and no retry was left) is resumed
-- with its journaled bytes without any backend asking, and pending bindings past the threshold are
-- reported. The store here is SQLite (journal, de-dup marks, outbox and leases in one file).
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local gw = require "helpers.gateway"

local UNKNOWN_ONCE = "4000000000000119" -- the sandbox answers addPaymentMethod U once for it

describe("the gateway's sweeper #nginx", function()
  local g, request_id, db_dir

  setup(function()
    db_dir = nginx.tmpdir("dws-gateway-db")
    g = assert(gw.start{ backend = true, store = "sqlite:" .. db_dir .. "/gateway.db",
      config = { max_retries = 0, sweep_interval = 0.3, resume_after = 0.2, report_pending_after = 0.1 } })
  end)

  teardown(function()
    if g then g:stop() end
    nginx.rmdir(db_dir)
  end)

  it("leaves a binding UNKNOWN when DWS answers U with no retry left", function()
    local body = core.json_encode{ customerId = "2162878776333", env = { terminalType = "WEB" },
      card = { cardNo = UNKNOWN_ONCE, securityCode = "123", expiryMonth = "06",
               expiryYear = tostring(tonumber(os.date("!%Y")) + 1),
               instUserName = { firstName = "Ada", lastName = "Lovelace" } } }
    local status, _, answer = g:request("POST", "/v1/bindings", body)
    local b = core.json_decode(answer).binding
    request_id = b.requestId
    assert.are.same({ 503, "UNKNOWN" }, { status, b.status })
  end)

  it("resumes it, and the backend receives the BOUND event", function()
    local event = gw.eventually(function()
      for _, e in ipairs(g:events()) do
        if e.event.data.requestId == request_id then return e.event end
      end
    end)
    assert.are.equal("BOUND", event and event.data.status)
  end)

  it("logs that it resumed it", function()
    assert.truthy(g:error_log():find("sweeper resumed binding " .. request_id, 1, true))
  end)

  it("reported it as pending while it was", function()
    assert.truthy(g:error_log():find("binding " .. request_id .. " pending", 1, true))
  end)

  it("kept the journal in the SQLite file", function()
    local store = assert(require("dws.store").open("sqlite:" .. db_dir .. "/gateway.db"))
    local rec = store:get("dws:binding:" .. request_id)
    store:close()
    assert.are.equal("BOUND", core.json_decode(rec or "{}").state)
  end)
end)
