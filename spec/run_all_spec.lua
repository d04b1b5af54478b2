-- client:run_all: many calls in flight over libcurl's multi interface, each result
-- what client:call gives, against the sandbox over TLS; a hostile sandbox (faults) for the multi path.
local sandbox = require "helpers.sandbox"
local dws = require "dws"
local timeouts = require "helpers.timeouts"

local ENV = { terminalType = "WEB" }
local OK_CUSTOMER = "2162878776333"
-- consult answers F with these codes (docs/sandbox.md "Test data")
local F_CUSTOMERS = { ["2188000000000001"] = "USER_STATUS_ABNORMAL", ["2188000000000004"] = "NO_PAY_OPTIONS",
  ["2188000000000005"] = "PROCESS_FAIL", ["2188000000000006"] = "SEND_TIMES_EXCEED_LIMIT" }

local function consult(customer)
  return { "consultAddablePaymentMethod", { customerId = customer, env = ENV, scenes = { "TOPUP" } } }
end

local function add(id)
  return { api = "addPaymentMethod", request = { customerId = OK_CUSTOMER, requestId = id, env = ENV,
    paymentMethodDetail = { paymentMethodDetailType = "CARD", card = { cardToken = "PYMT-none" } } } }
end

describe("client:run_all", function()
  local sb, client, events

  setup(function()
    sb = assert(sandbox.start{})
  end)

  teardown(function()
    if client then client:close() end
    if sb then sb:stop() end
  end)

  before_each(function()
    sb:reset()
    events = {}
    if client then client:close() end
    local o = sb:client_options()
    o.retry_base_delay = 0.01
    o.logger = function(_, _, f) events[#events + 1] = f end
    client = dws.client(o)
  end)

  it("returns every result in the order of the requests", function()
    local reqs, want = {}, {}
    local fs = { "2188000000000001", "2188000000000004", "2188000000000005", "2188000000000006" }
    for i = 1, 40 do
      local customer = i % 3 == 0 and fs[i % 4 + 1] or OK_CUSTOMER
      reqs[i] = consult(customer)
      want[i] = F_CUSTOMERS[customer] or "S"
    end
    local out = client:run_all(reqs, { concurrency = 8 })
    local got = {}
    for i = 1, #out do got[i] = out[i].res and "S" or out[i].err.code end
    assert.same(want, got)
  end)

  it("gives a request that fails validation the error a single call gives", function()
    local bad = consult(OK_CUSTOMER)
    bad[2].env = { terminalType = "TOASTER" }
    local single = select(2, client:call(bad[1], bad[2]))
    local out = client:run_all({ consult(OK_CUSTOMER), bad, consult(OK_CUSTOMER) })
    assert.same({ tostring(single), 0, "env.terminalType" },
      { tostring(out[2].err), out[2].err.attempts, out[2].err.field })
  end)

  it("fails only the requests a fault hits", function()
    client:close()
    local o = sb:client_options()
    o.max_retries = 0
    client = dws.client(o)
    sb:fault("http_500", 3)
    local reqs = {}
    for i = 1, 12 do reqs[i] = consult(OK_CUSTOMER) end
    local codes = {}
    for _, r in ipairs(client:run_all(reqs, { concurrency = 12 })) do
      local c = r.res and "S" or r.err.code
      codes[c] = (codes[c] or 0) + 1
    end
    assert.same({ S = 9, HTTP_ERROR = 3 }, codes)
  end)

  it("counts retries per request", function()
    sb:fault("http_503", 2)
    local reqs = {}
    for i = 1, 6 do reqs[i] = add(string.format("run-all-retry-%d", i)) end
    local out = client:run_all(reqs, { concurrency = 6 })
    local attempts = 0
    for i = 1, #out do attempts = attempts + (out[i].err and out[i].err.attempts or 0) end
    -- every answer is an F (the token is unknown) carrying its attempts; 6 requests + 2 retries
    assert.equal(8, attempts)
  end)

  it("resends a retried request with the same requestId and the same bytes", function()
    sb:fault("http_503", 2)
    local reqs = {}
    for i = 1, 4 do reqs[i] = add(string.format("run-all-same-%d", i)) end
    client:run_all(reqs, { concurrency = 4 })
    local seen = {}
    for _, r in ipairs(sb:requests()) do
      local s = seen[r.requestId] or {}
      s[#s + 1] = r.body_sha256
      seen[r.requestId] = s
    end
    local twice = 0
    for _, hashes in pairs(seen) do
      if #hashes > 1 then
        twice = twice + #hashes - 1
        for k = 2, #hashes do assert.equal(hashes[1], hashes[k]) end
      end
    end
    assert.equal(2, twice)
  end)

  it("signs every attempt afresh", function()
    sb:fault("http_503", 1)
    client:run_all({ add("run-all-sign-1") }, { concurrency = 2 })
    local sigs = {}
    for _, r in ipairs(sb:requests()) do sigs[#sigs + 1] = r.signature end
    assert.is_true(#sigs == 2 and sigs[1] ~= sigs[2] and sb:requests()[2].verified)
  end)

  it("keeps its connections alive across batches, at most `concurrency` of them", function()
    local reqs = {}
    for i = 1, 16 do reqs[i] = consult(OK_CUSTOMER) end
    client:run_all(reqs, { concurrency = 4 })
    client:run_all(reqs, { concurrency = 4 })
    local st = client.runner:stats()
    assert.same({ requests = 32, at_most_4 = true }, { requests = st.requests, at_most_4 = st.connects <= 4 })
  end)

  it("reports a connection dropped mid-batch on that request only", function()
    client:close()
    local o = sb:client_options()
    o.max_retries = 0
    client = dws.client(o)
    sb:fault("reset", 1)
    local reqs = {}
    for i = 1, 8 do reqs[i] = consult(OK_CUSTOMER) end
    local codes = {}
    for _, r in ipairs(client:run_all(reqs, { concurrency = 8 })) do
      local c = r.res and "S" or r.err.code
      codes[c] = (codes[c] or 0) + 1
    end
    assert.same({ S = 7, CONNECTION_FAILED = 1 }, codes)
  end)

  it("retries a dropped connection on a fresh one and succeeds", function()
    sb:fault("reset", 1)
    local reqs = {}
    for i = 1, 8 do reqs[i] = consult(OK_CUSTOMER) end
    local ok = 0
    for _, r in ipairs(client:run_all(reqs, { concurrency = 8 })) do if r.res then ok = ok + 1 end end
    assert.equal(8, ok)
  end)

  it("does not hold the other requests behind a slow one", function()
    sb:fault("slow", 1, { delay = 0.8 }) -- the others answer in milliseconds
    local reqs = {}
    for i = 1, 6 do reqs[i] = add(string.format("run-all-slow-%d", i)) end
    client:run_all(reqs, { concurrency = 6 })
    -- the sandbox logs the faulted request; its result must be the last one the client logged
    local slow
    for _, r in ipairs(sb:requests()) do if r.fault == "slow" then slow = r.requestId end end
    local order = {}
    for _, f in ipairs(events) do
      if f.event == "result" then order[#order + 1] = f.request_id end
    end
    assert.same({ 6, slow }, { #order, order[#order] })
  end)

  it("times out one transfer without failing the others", function()
    client:close()
    local o = sb:client_options()
    o.max_retries, o.timeout = 0, timeouts.FIRE -- waited out once; the others answer in milliseconds
    client = dws.client(o)
    sb:fault("never_answer", 1, { delay = timeouts.HOLD })
    local reqs = {}
    for i = 1, 5 do reqs[i] = consult(OK_CUSTOMER) end
    local codes = {}
    for _, r in ipairs(client:run_all(reqs, { concurrency = 5 })) do
      local c = r.res and "S" or r.err.code
      codes[c] = (codes[c] or 0) + 1
    end
    assert.same({ S = 4, TIMEOUT = 1 }, codes)
  end)

  it("raises on a request that names no API", function()
    assert.has_error(function() client:run_all({ { "chargeCard", {} } }) end,
      "dws: run_all: requests[1]: unknown API chargeCard")
  end)

  it("raises on a concurrency out of range", function()
    assert.has_error(function() client:run_all({}, { concurrency = 0 }) end,
      "dws: run_all: concurrency must be a whole number 1 to 1024")
  end)

  it("answers an empty batch with no results", function()
    assert.same({}, client:run_all({}))
  end)
end)
