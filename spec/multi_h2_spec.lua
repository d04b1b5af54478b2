-- client:run_all over HTTP/2 (multiplexing where the gateway offers it):
-- the sandbox offers h2 on its HTTPS port (http2 = true) and answers after 50 ms; its request log
-- gives, per request, nginx's connection serial and the protocol, so connections are counted and h2
-- is seen without timing anything. The same batch against a sandbox without h2 is the contrast.
local sandbox = require "helpers.sandbox"
local dws = require "dws"

local ENV = { terminalType = "WEB" }
local OK_CUSTOMER = "2162878776333"
-- consult answers F with these codes (docs/sandbox.md "Test data"): the order of the results is visible
local F_CUSTOMERS = { ["2188000000000001"] = "USER_STATUS_ABNORMAL", ["2188000000000004"] = "NO_PAY_OPTIONS",
  ["2188000000000005"] = "PROCESS_FAIL", ["2188000000000006"] = "SEND_TIMES_EXCEED_LIMIT" }
local F_LIST = { "2188000000000001", "2188000000000004", "2188000000000005", "2188000000000006" }
local N, CONCURRENCY, LATENCY = 40, 8, 0.05

local function consult(customer)
  return { "consultAddablePaymentMethod", { customerId = customer, env = ENV, scenes = { "TOPUP" } } }
end

-- The batch, and the code each result must carry ("S" for an S answer).
local function batch()
  local reqs, want = {}, {}
  for i = 1, N do
    local customer = i % 3 == 0 and F_LIST[i % 4 + 1] or OK_CUSTOMER
    reqs[i] = consult(customer)
    want[i] = F_CUSTOMERS[customer] or "S"
  end
  return reqs, want
end

local function codes_of(results)
  local got = {}
  for i = 1, #results do got[i] = results[i].res and "S" or results[i].err.code end
  return got
end

local function tally(results)
  local t = {}
  for _, r in ipairs(results) do
    local c = r.res and "S" or r.err.code
    t[c] = (t[c] or 0) + 1
  end
  return t
end

-- The distinct connection serials in a request log, as a sorted list.
local function connections(log)
  local seen, list = {}, {}
  for _, r in ipairs(log) do
    if not seen[r.connection] then
      seen[r.connection] = true
      list[#list + 1] = r.connection
    end
  end
  table.sort(list)
  return list
end

local function protocols(log)
  local t = {}
  for _, r in ipairs(log) do t[r.protocol] = (t[r.protocol] or 0) + 1 end
  return t
end

-- The most requests that were in the sandbox at one moment: each request's span runs from its arrival
-- (`received`) to the end of its latency wait (`time`); two spans overlap when each began before the
-- other ended.
local function peak_in_flight(log)
  local peak = 0
  for _, a in ipairs(log) do
    local n = 0
    for _, b in ipairs(log) do
      if b.received < a.time and a.received < b.time then n = n + 1 end
    end
    if n > peak then peak = n end
  end
  return peak
end

-- A sandbox started with opts, a client of it, and one run_all of batch() through it:
-- sandbox, client, results, the codes wanted, the sandbox's request log.
local function run_batch(opts)
  local sb = assert(sandbox.start(opts))
  local client = dws.client(sb:client_options())
  local reqs, want = batch()
  local results = client:run_all(reqs, { concurrency = CONCURRENCY })
  return sb, client, results, want, sb:requests()
end

local function stop(sb, client)
  if client then client:close() end
  if sb then sb:stop() end
end

describe("client:run_all against a gateway that offers HTTP/2", function()
  local sb, client, results, want, log

  setup(function()
    sb, client, results, want, log = run_batch{ http2 = true, latency = LATENCY }
  end)

  teardown(function() stop(sb, client) end)

  it("returns every result verified, in the order of the requests", function()
    -- F answers are signed too: a code other than SIGNATURE_INVALID is a verified answer
    assert.same(want, codes_of(results))
  end)

  it("sends every request over HTTP/2", function()
    assert.same({ ["HTTP/2.0"] = N }, protocols(log))
  end)

  it("multiplexes the batch on one connection", function()
    -- With CURLOPT_PIPEWAIT a transfer that finds a connection to the host still being set up waits
    -- for its ALPN answer instead of opening another, so the whole batch goes out as h2 streams on
    -- the first connection: expect one. A second is tolerated: libcurl decides per transfer when it
    -- is added, and one added after the first connection failed or was judged dead opens its own.
    -- Without multiplexing the 8 overlapping transfers would need 8.
    local conns = connections(log)
    assert.is_true(#conns <= 2, #conns .. " connections for " .. N .. " requests")
  end)

  it("had the requests in flight together at the sandbox", function()
    local peak = peak_in_flight(log)
    assert.is_true(peak > 1, "at most " .. peak .. " request in flight at once")
  end)

  it("reuses the connection for a second batch on the same client", function()
    local before = {}
    for _, c in ipairs(connections(log)) do before[c] = true end
    sb:reset()
    client:run_all((batch()), { concurrency = CONCURRENCY })
    local fresh = {}
    for _, c in ipairs(connections(sb:requests())) do
      if not before[c] then fresh[#fresh + 1] = c end
    end
    assert.same({}, fresh)
  end)

  it("keeps streams whose answers come later when others on the connection have ended", function()
    -- Staggered answers: streams end one by one while others still wait on the same connection.
    -- The pool's check for stray bytes on idle connections must not take a running stream's.
    sb:reset()
    sb:latency(0.005, 0.15)
    local reqs, expect = batch()
    local out = client:run_all(reqs, { concurrency = CONCURRENCY })
    sb:latency(LATENCY)
    local attempts = 0
    for _, r in ipairs(out) do attempts = attempts + (r.res and 1 or r.err.attempts) end
    assert.same({ codes = expect, attempts = N }, { codes = codes_of(out), attempts = attempts })
  end)

  it("verifies a single call's answer (h2 header names arrive lower-case)", function()
    sb:reset()
    local single = dws.client(sb:client_options())
    local res, err = single:call(consult(OK_CUSTOMER)[1], consult(OK_CUSTOMER)[2])
    single:close()
    local r = sb:requests()[1]
    assert.same({ "S", "HTTP/2.0" }, { res and res.result.resultStatus or tostring(err), r and r.protocol })
  end)

  it("refuses a tampered answer to a single call over HTTP/2, with no data", function()
    sb:reset()
    sb:fault("tamper", 1)
    local single = dws.client(sb:client_options())
    local res, err = single:call(consult(OK_CUSTOMER)[1], consult(OK_CUSTOMER)[2])
    single:close()
    assert.same({ false, "SIGNATURE_INVALID" }, { res ~= nil, err and err.code })
  end)

  it("refuses a tampered answer inside a multiplexed batch, and only that one", function()
    sb:reset()
    sb:fault("tamper", 1)
    local reqs = {}
    for i = 1, CONCURRENCY do reqs[i] = consult(OK_CUSTOMER) end
    assert.same({ S = CONCURRENCY - 1, SIGNATURE_INVALID = 1 },
      tally(client:run_all(reqs, { concurrency = CONCURRENCY })))
  end)

  it("fails only the request whose stream is reset mid-answer", function()
    -- Over h2 the sandbox's `reset` fault cuts one stream (RST_STREAM), not the connection.
    local o = sb:client_options()
    o.max_retries = 0
    local c = dws.client(o)
    sb:reset()
    sb:fault("reset", 1)
    local reqs = {}
    for i = 1, CONCURRENCY do reqs[i] = consult(OK_CUSTOMER) end
    local got = tally(c:run_all(reqs, { concurrency = CONCURRENCY }))
    c:close()
    assert.same({ S = CONCURRENCY - 1, CONNECTION_FAILED = 1 }, got)
  end)

  it("keeps the other streams on their connection when one is reset", function()
    local o = sb:client_options()
    o.max_retries = 0
    local c = dws.client(o)
    sb:reset()
    sb:fault("reset", 1)
    local reqs = {}
    for i = 1, CONCURRENCY do reqs[i] = consult(OK_CUSTOMER) end
    c:run_all(reqs, { concurrency = CONCURRENCY })
    local before = {}
    for _, conn in ipairs(connections(sb:requests())) do before[conn] = true end
    sb:reset()
    c:run_all(reqs, { concurrency = CONCURRENCY })
    c:close()
    -- had the reset taken the connection down, the next batch would need a new one
    local fresh = {}
    for _, conn in ipairs(connections(sb:requests())) do
      if not before[conn] then fresh[#fresh + 1] = conn end
    end
    assert.same({}, fresh)
  end)
end)

describe("client:run_all against a gateway that offers HTTP/1.1 only (the sandbox's default)", function()
  local sb, client, results, want, log

  setup(function()
    sb, client, results, want, log = run_batch{ latency = LATENCY }
  end)

  teardown(function() stop(sb, client) end)

  it("returns every result verified, in the order of the requests", function()
    assert.same(want, codes_of(results))
  end)

  it("sends every request over HTTP/1.1", function()
    assert.same({ ["HTTP/1.1"] = N }, protocols(log))
  end)

  it("opens more than one connection and at most `concurrency`", function()
    -- HTTP/1.1 carries one request at a time per connection: overlapping transfers need several.
    local n = #connections(log)
    assert.is_true(n > 1 and n <= CONCURRENCY, n .. " connections")
  end)
end)

describe("the sandbox's http2 setting", function()
  it("must be a boolean", function()
    local sb, err = sandbox.start{ http2 = "yes" }
    if sb then sb:stop() end
    assert.matches("http2 must be a boolean", tostring(err), 1, true)
  end)
end)
