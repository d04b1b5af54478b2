-- The fault matrix (issue "Hardening" §1): for every fault the sandbox can inject, and for a refused
-- connection, the client's exact answer: error code and status, whether it retried (err.attempts and
-- the requests the sandbox logged), the same requestId and body bytes on every attempt with a fresh
-- Request-Time, a total time bounded by the configured timeouts, and no data from anything unverified.
-- The same matrix is docs/fault-matrix.md.
local dws = require "dws"
local core = require "dws.core"
local curl = require "dws.curl"
local nginx = require "dws_sandbox.nginx"
local sandbox = require "helpers.sandbox"
local timeouts = require "helpers.timeouts"

local CLIENT_ID = "SANDBOX_FAULTS000000001"

-- A fresh requestId with no digits: a random UUID's digit groups can look like a card number
-- (Luhn-valid), and tostring(err) rightly masks those, which would fail the verbatim match below.
local function fresh_id(prefix)
  return prefix .. core.uuid4():gsub("%d", function(d) return string.char(103 + tonumber(d)) end)
end
local CUSTOMER = "2162878776333"
local ENV = { terminalType = "WEB", clientIp = "127.0.0.1" }

-- Small timeouts keep the file fast; the bounds below are derived from them.
local TIMEOUT, CONNECT_TIMEOUT, MAX_RETRIES, BASE_DELAY = 1, 1, 2, 0.01
-- Calls that wait out the timeout (TIMED rows, here and inside OpenResty) use timeouts.FIRE, and
-- the sandbox holds them timeouts.HOLD, so the file does not spend its time waiting; every other
-- call keeps TIMEOUT, far above a loopback answer's time.
local FAULT_TIMEOUT = timeouts.FIRE
local MAX_RETRY_DELAY = require("dws.defaults").max_retry_delay -- the client's backoff cap

-- What the client guarantees: each attempt ends within its timeout, each pause within the capped
-- backoff; 5 s of slack for signing, verification and a loaded machine.
local function time_bound(max_retries, timeout)
  local attempts = (max_retries or MAX_RETRIES) + 1
  local backoff = math.min(MAX_RETRY_DELAY, BASE_DELAY * 2 ^ (max_retries or MAX_RETRIES))
  return attempts * ((timeout or TIMEOUT) + CONNECT_TIMEOUT + backoff) + 5
end

-- The merchant key as text (for the client inside nginx) and parsed once for the clients here: the
-- file makes a client per spec, and loading a private key (OpenSSL's pair-wise check) costs ~30 ms.
local dir, sb, merchant_pem, merchant_key
local log_lines = {}

-- Request-Time source: real milliseconds, strictly increasing, so that two attempts made within
-- the same millisecond still get different times when the client asks for a new one per attempt
-- (a client that reused one time would show equal values at the sandbox).
local last_time = 0
local function fresh_millis()
  local now = core.time_ms()
  if now <= last_time then now = last_time + 1 end
  last_time = now
  return string.format("%d", now)
end

local function make_client(over)
  local opts = {
    client_id = CLIENT_ID,
    private_key = merchant_key,
    dws_public_key = sb.dws_public_key,
    gateway = sb.http_url,
    timeout = TIMEOUT,
    connect_timeout = CONNECT_TIMEOUT,
    max_retries = MAX_RETRIES,
    retry_base_delay = BASE_DELAY,
    request_time = fresh_millis,
    logger = function(level, message, fields)
      log_lines[#log_lines + 1] = { level = level, message = message, fields = fields }
    end,
  }
  for k, v in pairs(over or {}) do opts[k] = v end
  return dws.client(opts)
end

local function requests_since(mark)
  local all = sb:requests()
  local out = {}
  for i = mark + 1, #all do out[#out + 1] = all[i] end
  return out
end

local function mark()
  return #sb:requests()
end

local function card(number, cvv)
  return { cardNo = number, securityCode = cvv or "737", expiryMonth = "06",
           expiryYear = tostring(tonumber(os.date("!%Y")) + 2),
           instUserName = { firstName = "Ann", lastName = "Lee" } }
end

local function cache(client, number)
  local res, err = client:cache_card{ paymentMethodDetail = { paymentMethodDetailType = "card", card = card(number) } }
  assert(res, "cacheCard before the faulted call failed: " .. tostring(err))
  return res.paymentMethodDetail.card.cardToken
end

local function add_request(token, request_id)
  return { requestId = request_id, customerId = CUSTOMER, env = ENV, referenceCustomerId = "merchant-cust-1",
           paymentMethodDetail = { paymentMethodDetailType = "card", card = { cardToken = token } } }
end

-- The evidence the sandbox holds about the attempts of one call: `n` requests for `api`, one
-- requestId (when given), one body hash, `n` different Request-Time values, all signed correctly.
local function assert_attempts_at_sandbox(records, n, api, request_id)
  assert.are.equal(n, #records, "requests the sandbox logged")
  local times, hashes, sigs = {}, {}, {}
  for i, r in ipairs(records) do
    -- the sandbox's request-log fields (sandbox/lua/dws_sandbox/server.lua), by their one name
    assert.are.equal(api, r.api, "api of attempt " .. i)
    if request_id then assert.are.equal(request_id, r.requestId, "requestId of attempt " .. i) end
    assert.is_true(r.verified == true, "merchant signature verified at the sandbox, attempt " .. i)
    assert.is_string(r.body_sha256, "body_sha256 of attempt " .. i)
    hashes[r.body_sha256] = true
    assert.is_string(r.request_time, "request_time of attempt " .. i)
    assert.is_nil(times[r.request_time], "Request-Time reused on attempt " .. i)
    times[r.request_time] = true
    assert.is_string(r.signature, "signature of attempt " .. i)
    assert.is_nil(sigs[r.signature], "Signature reused on attempt " .. i)
    sigs[r.signature] = true
  end
  local distinct = 0
  for _ in pairs(hashes) do distinct = distinct + 1 end
  if n > 0 then assert.are.equal(1, distinct, "body sha256 differs between attempts") end
end

-- After any fault the same client goes on working (no poisoned connection or handle state).
local function assert_recovers(client)
  local res, err = client:consult_addable_payment_method{ customerId = CUSTOMER, env = ENV, scenes = { "TOPUP" } }
  assert.is_nil(err, "the next call after the fault: " .. tostring(err))
  assert.are.equal("S", res.result.resultStatus)
end

local function elapsed_of(fn)
  local t0 = core.monotonic()
  local a, b = fn()
  return a, b, core.monotonic() - t0
end

-- The rows: fault -> expected answer. `retried`: the client tries max_retries + 1 times while the
-- fault lasts; otherwise it stops after the first. `response`: err.response is the verified body.
local MATRIX = {
  { fault = "never_answer", code = "TIMEOUT", status = "U", retried = true, opts = { delay = timeouts.HOLD } },
  { fault = "drip", code = "TIMEOUT", status = "U", retried = true },
  { fault = "reset", code = "CONNECTION_FAILED", status = "U", retried = true },
  { fault = "short_body", code = "CONNECTION_FAILED", status = "U", retried = true },
  { fault = "http_500", code = "HTTP_ERROR", status = "U", retried = true, http = 500 },
  { fault = "http_502", code = "HTTP_ERROR", status = "U", retried = true, http = 502 },
  { fault = "http_503", code = "HTTP_ERROR", status = "U", retried = true, http = 503 },
  { fault = "http_429", code = "HTTP_ERROR", status = "U", retried = true, http = 429 },
  { fault = "non_json", code = "RESPONSE_MALFORMED", status = "U", retried = false },
  { fault = "no_result", code = "RESPONSE_MALFORMED", status = "U", retried = false },
  { fault = "huge_body", code = "RESPONSE_TOO_LARGE", status = "U", retried = false },
  { fault = "unsigned_s", code = "SIGNATURE_MISSING", status = "U", retried = false },
  { fault = "no_response_time", code = "SIGNATURE_MISSING", status = "U", retried = false },
  { fault = "foreign_key", code = "SIGNATURE_INVALID", status = "U", retried = false },
  { fault = "tamper", code = "SIGNATURE_INVALID", status = "U", retried = false },
  { fault = "dup_headers", code = "SIGNATURE_INVALID", status = "U", retried = false },
  { fault = "traffic_limit", code = "REQUEST_TRAFFIC_EXCEED_LIMIT", status = "U", retried = true,
    response = true },
  { fault = "unknown_exception", code = "UNKNOWN_EXCEPTION", status = "U", retried = true, response = true },
  { fault = "slow", code = "TIMEOUT", status = "U", retried = true, opts = { delay = timeouts.HOLD } },
}

local TIMED = { never_answer = true, drip = true, slow = true }

-- The client for a row, and the timeout its calls wait at most.
local function row_client(row)
  local timeout = TIMED[row.fault] and FAULT_TIMEOUT or TIMEOUT
  return make_client{ timeout = timeout }, timeout
end
-- Faults the sandbox applies after processing the request (sandbox/lua/dws_sandbox/faults.lua "post").
local POST_PROCESSING = { never_answer = true, drip = true, reset = true, short_body = true, slow = true,
                          unsigned_s = true, foreign_key = true, tamper = true, no_response_time = true,
                          dup_headers = true }

setup(function()
  dir = nginx.tmpdir("dws-faults")
  local priv = nginx.make_keypair(dir, "merchant")
  merchant_pem = nginx.read_file(priv)
  merchant_key = assert(core.private_key(merchant_pem))
  sb = assert(sandbox.start{
    clients = { [CLIENT_ID] = { public_key = nginx.read_file(dir .. "/merchant_public.pem") } },
  })
end)

teardown(function()
  if sb then sb:stop() end
  nginx.rmdir(dir)
end)

before_each(function()
  sb:reset()
  log_lines = {}
end)

describe("fault matrix, addPaymentMethod", function()
  for _, row in ipairs(MATRIX) do
    local attempts = row.retried and (MAX_RETRIES + 1) or 1
    it(string.format("%s: %s (%s), %s", row.fault, row.code, row.status,
                     row.retried and "retried to " .. attempts .. " attempts" or "not retried"), function()
      local client, timeout = row_client(row)
      local token = cache(client, "4111111111111111")
      local request_id = fresh_id("fm-" .. row.fault .. "-")
      local m = mark()
      sb:fault(row.fault, attempts, row.opts)
      local res, err, elapsed = elapsed_of(function()
        return client:add_payment_method(add_request(token, request_id))
      end)
      assert.is_nil(res, "no result from a faulted call")
      assert.is_table(err)
      assert.are.equal(row.code, err.code)
      assert.are.equal(row.status, err.status)
      assert.are.equal(row.retried, err.retryable)
      assert.are.equal(attempts, err.attempts)
      assert.are.equal(request_id, err.request_id)
      assert.are.equal("addPaymentMethod", err.api)
      if row.http then assert.are.equal(row.http, err.http_status) end
      if row.response then
        -- a verified U answer: the body is the gateway's own, signed
        assert.is_table(err.response)
        assert.are.equal(row.code, err.response.result.resultCode)
        assert.are.equal("U", err.response.result.resultStatus)
      else
        assert.is_nil(err.response, "no data from an unverified or failed answer")
      end
      assert.matches(row.code, tostring(err), 1, true)
      assert.matches("requestId=" .. request_id, tostring(err), 1, true)
      assert.is_true(elapsed < time_bound(nil, timeout), string.format("took %.2f s", elapsed))
      assert_attempts_at_sandbox(requests_since(m), attempts, "addPaymentMethod", request_id)
      -- the client said so in its log: one retry line per pause, one error line at the end
      local retries, errs = 0, 0
      for _, l in ipairs(log_lines) do
        if l.fields and l.fields.event == "retry" and l.fields.request_id == request_id then retries = retries + 1 end
        if l.fields and l.fields.event == "error" and l.fields.request_id == request_id then errs = errs + 1 end
      end
      assert.are.equal(attempts - 1, retries)
      assert.are.equal(1, errs)
      assert_recovers(client)
    end)
  end

  for _, row in ipairs(MATRIX) do
    if row.retried then
      it(row.fault .. " once, then S: the retry gets the bound card, attempts 2, same requestId and body", function()
        local client, timeout = row_client(row)
        local token = cache(client, "5555555555554444")
        local request_id = fresh_id("fm-once-" .. row.fault .. "-")
        local m = mark()
        sb:fault(row.fault, 1, row.opts)
        local res, err, elapsed = elapsed_of(function()
          return client:add_payment_method(add_request(token, request_id))
        end)
        assert.is_nil(err, tostring(err))
        assert.is_table(res)
        assert.are.equal("S", res.result.resultStatus)
        assert.are.equal(request_id, res.requestId)
        -- accepted (the page's sample answer); the final token comes by notification
        assert.are.same({}, res.paymentMethodDetail.card)
        assert.is_string(token)
        assert.is_true(elapsed < time_bound(1, timeout), string.format("took %.2f s", elapsed))
        local records = requests_since(m)
        assert_attempts_at_sandbox(records, 2, "addPaymentMethod", request_id)
        -- A fault after processing (the answer lost on the way) leaves the binding made: the retry,
        -- with the same requestId and the same bytes, gets the stored answer, not a second binding
        -- and not REPEAT_REQ_INCONSISTENT. A fault before processing leaves nothing to replay.
        assert.are.equal(row.fault, records[1].fault)
        if POST_PROCESSING[row.fault] then
          assert.are.equal("replay", records[2].idempotent)
        else
          assert.is_nil(records[2].idempotent)
        end
      end)
    end
  end

  it("slow within the timeout: S, one attempt", function()
    local client = make_client()
    local token = cache(client, "4111111111111111")
    local m = mark()
    sb:fault("slow", 1, { delay = 0.2 })
    local res, err = client:add_payment_method(add_request(token))
    assert.is_nil(err, tostring(err))
    assert.are.equal("S", res.result.resultStatus)
    assert.is_string(res.requestId) -- generated (UUID v4) and given back
    assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", res.requestId)
    assert_attempts_at_sandbox(requests_since(m), 1, "addPaymentMethod", res.requestId)
  end)

  it("unsigned_f: accepted as an F result (the code is the gateway's), not retried", function()
    local client = make_client()
    local token = cache(client, "4111111111111111")
    local request_id = fresh_id("fm-unsigned-f-")
    local m = mark()
    sb:fault("unsigned_f", 1)
    local res, err = client:add_payment_method(add_request(token, request_id))
    assert.is_nil(res)
    assert.are.equal("F", err.status)
    -- the gateway's own result code and message (the sandbox's unsigned F is ACCESS_DENIED)
    assert.are.equal("ACCESS_DENIED", err.code)
    assert.are.equal("Access denied.", err.message)
    assert.is_false(err.retryable)
    assert.are.equal(1, err.attempts)
    assert.are.equal(200, err.http_status)
    -- HACKING.md: err.response only when the answer verified; an unsigned F did not.
    assert.is_nil(err.response)
    assert_attempts_at_sandbox(requests_since(m), 1, "addPaymentMethod", request_id)
  end)

  it("max_response_bytes set below a normal answer: RESPONSE_TOO_LARGE, not retried, no data", function()
    local client = make_client{ max_response_bytes = 64 }
    local m = mark()
    local res, err = client:consult_addable_payment_method{ customerId = CUSTOMER, env = ENV, scenes = { "TOPUP" } }
    assert.is_nil(res)
    assert.are.equal("RESPONSE_TOO_LARGE", err.code)
    assert.are.equal("U", err.status)
    assert.are.equal(1, err.attempts)
    assert.is_nil(err.response)
    assert_attempts_at_sandbox(requests_since(m), 1, "consultAddablePaymentMethod")
  end)

  -- The signature faults on an F answer (card 4000000000000101: RISK_REJECT). Unsigned F is
  -- accepted (its code and message, not its body); a signature that does not verify is never believed,
  -- F or not.
  for _, case in ipairs{
    { fault = "unsigned_s", code = "RISK_REJECT", status = "F" },
    { fault = "no_response_time", code = "RISK_REJECT", status = "F" },
    { fault = "tamper", code = "SIGNATURE_INVALID", status = "U" },
    { fault = "foreign_key", code = "SIGNATURE_INVALID", status = "U" },
    { fault = "dup_headers", code = "SIGNATURE_INVALID", status = "U" },
  } do
    it(case.fault .. " on an F answer (RISK_REJECT): " .. case.code .. " (" .. case.status .. "), not retried",
       function()
      local client = make_client()
      local token = cache(client, "4000000000000101")
      local request_id = fresh_id("fm-f-" .. case.fault .. "-")
      local m = mark()
      sb:fault(case.fault, 1)
      local res, err = client:add_payment_method(add_request(token, request_id))
      assert.is_nil(res)
      assert.are.equal(case.code, err.code)
      assert.are.equal(case.status, err.status)
      assert.are.equal(1, err.attempts)
      assert.is_false(err.retryable)
      assert.is_nil(err.response, "an answer that did not verify hands out no body")
      local records = requests_since(m)
      assert_attempts_at_sandbox(records, 1, "addPaymentMethod", request_id)
      assert.are.equal("RISK_REJECT", records[1].resultCode) -- what the sandbox really answered
    end)
  end

  it("max_retries = 0: a retryable fault is tried once", function()
    local client = make_client{ max_retries = 0 }
    local token = cache(client, "4111111111111111")
    local m = mark()
    sb:fault("http_503", 1)
    local res, err = client:add_payment_method(add_request(token))
    assert.is_nil(res)
    assert.are.equal("HTTP_ERROR", err.code)
    assert.are.equal(503, err.http_status)
    assert.are.equal(1, err.attempts)
    assert.is_string(err.request_id)
    assert_attempts_at_sandbox(requests_since(m), 1, "addPaymentMethod", err.request_id)
  end)

  it("the default Request-Time source gives each attempt its own time too", function()
    local client = make_client{ request_time = "millis", timeout = FAULT_TIMEOUT }
    local token = cache(client, "4111111111111111")
    local m = mark()
    sb:fault("never_answer", 2, { delay = timeouts.HOLD })
    local res, err = client:add_payment_method(add_request(token))
    assert.is_nil(err, tostring(err))
    assert.are.equal("S", res.result.resultStatus)
    local records = requests_since(m)
    assert_attempts_at_sandbox(records, 3, "addPaymentMethod", res.requestId)
    for _, r in ipairs(records) do assert.matches("^%d+$", r.request_time) end
  end)

  it("connection refused: CONNECTION_FAILED (U), retried to " .. (MAX_RETRIES + 1) .. " attempts", function()
    local port = nginx.free_ports(1)[1]
    local client = make_client{ gateway = "http://127.0.0.1:" .. port }
    local request_id = fresh_id("fm-refused-")
    local res, err, elapsed = elapsed_of(function()
      return client:add_payment_method(add_request("PYMT-not-a-real-token", request_id))
    end)
    assert.is_nil(res)
    assert.are.equal("CONNECTION_FAILED", err.code)
    assert.are.equal("U", err.status)
    assert.is_true(err.retryable)
    assert.are.equal(MAX_RETRIES + 1, err.attempts)
    assert.are.equal(request_id, err.request_id)
    assert.is_nil(err.response)
    assert.is_nil(err.http_status)
    assert.is_true(elapsed < time_bound(), string.format("took %.2f s", elapsed))
  end)
end)

-- The same faults on the two other APIs, where the answer carries data worth protecting (consult's
-- options, cacheCard's token) or where the retry has no requestId to lean on.
describe("fault matrix, consultAddablePaymentMethod", function()
  local function consult(client)
    return client:consult_addable_payment_method{ customerId = CUSTOMER, env = ENV, scenes = { "TOPUP" } }
  end

  for _, row in ipairs(MATRIX) do
    if not TIMED[row.fault] then
      local attempts = row.retried and (MAX_RETRIES + 1) or 1
      it(row.fault .. ": " .. row.code, function()
        local client = make_client()
        local m = mark()
        sb:fault(row.fault, attempts, row.opts)
        local res, err, elapsed = elapsed_of(function() return consult(client) end)
        assert.is_nil(res)
        assert.are.equal(row.code, err.code)
        assert.are.equal(row.status, err.status)
        assert.are.equal(attempts, err.attempts)
        assert.is_nil(err.request_id) -- consult has no requestId
        if row.http then assert.are.equal(row.http, err.http_status) end
        if not row.response then assert.is_nil(err.response) end
        assert.is_true(elapsed < time_bound(), string.format("took %.2f s", elapsed))
        assert_attempts_at_sandbox(requests_since(m), attempts, "consultAddablePaymentMethod")
      end)
    end
  end

  it("unknown_exception once, then S: the options, after 2 attempts", function()
    local client = make_client()
    local m = mark()
    sb:fault("unknown_exception", 1)
    local res, err = consult(client)
    assert.is_nil(err, tostring(err))
    assert.are.equal("S", res.result.resultStatus)
    assert.is_table(res.paymentOptions)
    assert_attempts_at_sandbox(requests_since(m), 2, "consultAddablePaymentMethod")
  end)
end)

describe("fault matrix, cacheCard", function()
  local function cache_card(client, number)
    return client:cache_card{ paymentMethodDetail = { paymentMethodDetailType = "card", card = card(number) } }
  end

  for _, row in ipairs(MATRIX) do
    if not TIMED[row.fault] then
      local attempts = row.retried and (MAX_RETRIES + 1) or 1
      it(row.fault .. ": " .. row.code .. ", no token handed out", function()
        local client = make_client()
        local m = mark()
        sb:fault(row.fault, attempts, row.opts)
        local res, err, elapsed = elapsed_of(function() return cache_card(client, "4000056655665556") end)
        assert.is_nil(res)
        assert.are.equal(row.code, err.code)
        assert.are.equal(row.status, err.status)
        assert.are.equal(attempts, err.attempts)
        if row.http then assert.are.equal(row.http, err.http_status) end
        if not row.response then assert.is_nil(err.response) end
        assert.is_nil(tostring(err):find("4000056655665556", 1, true))
        assert.is_true(elapsed < time_bound(), string.format("took %.2f s", elapsed))
        assert_attempts_at_sandbox(requests_since(m), attempts, "cacheCard")
      end)
    end
  end

  it("reset once, then S: one token from the retry", function()
    local client = make_client()
    local m = mark()
    sb:fault("reset", 1)
    local res, err = cache_card(client, "4000056655665556")
    assert.is_nil(err, tostring(err))
    assert.is_string(res.paymentMethodDetail.card.cardToken)
    assert.are.equal("400005******5556", res.paymentMethodDetail.card.mask)
    assert_attempts_at_sandbox(requests_since(m), 2, "cacheCard")
  end)
end)

-- Over TLS the same faults look different on the wire (a reset or a short body without close_notify,
-- a stalled handshake partner): the answers must not change.
describe("fault matrix, addPaymentMethod over HTTPS", function()
  for _, row in ipairs(MATRIX) do
    if not TIMED[row.fault] then
      local attempts = row.retried and (MAX_RETRIES + 1) or 1
      it(row.fault .. ": " .. row.code, function()
        local client = make_client{ gateway = sb.https_url, ca_file = sb.ca_file }
        local token = cache(client, "4111111111111111")
        local request_id = fresh_id("fm-tls-" .. row.fault .. "-")
        local m = mark()
        sb:fault(row.fault, attempts, row.opts)
        local res, err, elapsed = elapsed_of(function()
          return client:add_payment_method(add_request(token, request_id))
        end)
        assert.is_nil(res)
        assert.are.equal(row.code, err.code)
        assert.are.equal(row.status, err.status)
        assert.are.equal(attempts, err.attempts)
        assert.are.equal(request_id, err.request_id)
        if row.http then assert.are.equal(row.http, err.http_status) end
        if not row.response then assert.is_nil(err.response) end
        assert.is_true(elapsed < time_bound(), string.format("took %.2f s", elapsed))
        assert_attempts_at_sandbox(requests_since(m), attempts, "addPaymentMethod", request_id)
        assert_recovers(client)
      end)
    end
  end
end)

-- The same matrix with the client inside OpenResty (cosocket transport, chosen automatically in the
-- content phase): a merchant nginx whose /call location makes one client call against the sandbox
-- and answers with what the call returned.
describe("fault matrix, addPaymentMethod inside OpenResty (cosocket transport) #nginx", function()
  local CALL_MODULE = [[
local dws = require "dws"
local core = require "dws.core"
local M = {}
local conf
function M.handle()
  if not conf then
    conf = dofile(%q)
    -- parsed once for the client each call makes (a private key's pair-wise check costs ~40 ms)
    conf.private_key = assert(core.private_key(conf.private_key))
  end
  ngx.req.read_body()
  local p = core.json_decode(ngx.req.get_body_data() or "")
  local events = {}
  local client = dws.client{ client_id = conf.client_id, private_key = conf.private_key,
    dws_public_key = conf.dws_public_key, gateway = p.gateway, timeout = p.timeout or %s, connect_timeout = %s,
    max_retries = p.max_retries or %s, retry_base_delay = %s,
    logger = function(_, _, f)
      if f and (f.event == "retry" or f.event == "error") then
        -- a retry event names the attempt that failed, the error event how many there were
        local n = f.event == "retry" and f.attempt or f.attempts
        events[#events + 1] = f.event .. " " .. tostring(f.code) .. " attempt " .. tostring(n)
      end
    end }
  local t0 = ngx.now()
  local ok, res, err = pcall(client[p.method], client, p.request)
  ngx.update_time()
  local out = { elapsed = ngx.now() - t0,
                cosockets = getmetatable(client.transport) == require("dws.transport.ngx").Transport }
  if not ok then
    out.raised = tostring(res)
  elseif res then
    out.res = res
  else
    out.err = { code = err.code, status = err.status, retryable = err.retryable, attempts = err.attempts,
                http_status = err.http_status, request_id = err.request_id, api = err.api,
                has_response = err.response ~= nil,
                response_code = err.response and err.response.result and err.response.result.resultCode,
                text = tostring(err), events = table.concat(events, "; ") }
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.print(assert(core.json_encode(out)))
end
return M
]]

  local prefix, port, http

  setup(function()
    prefix = nginx.tmpdir("dws-faults-ngx")
    nginx.mkdir(prefix .. "/lua")
    local conf_path = prefix .. "/client_conf.lua"
    nginx.write_file(conf_path, string.format("return { client_id = %q, private_key = %q, dws_public_key = %q }\n",
      CLIENT_ID, merchant_pem, sb.dws_public_key), "600")
    nginx.write_file(prefix .. "/lua/fm_call.lua", string.format(CALL_MODULE, conf_path, TIMEOUT, CONNECT_TIMEOUT,
      MAX_RETRIES, BASE_DELAY))
    local paths = nginx.lua_paths():gsub('lua_package_path "', 'lua_package_path "' .. prefix .. '/lua/?.lua;', 1)
    local tmp = prefix .. "/tmp"
    local ports, err = nginx.start_on_free_ports(prefix, 1, function(p)
      return nginx.preamble(prefix) .. table.concat({
        "events { worker_connections 256; }",
        "http {",
        paths,
        "    access_log off;",
        "    lua_socket_log_errors off;",
        "    client_body_temp_path " .. tmp .. "/body;",
        "    proxy_temp_path " .. tmp .. "/proxy;",
        "    fastcgi_temp_path " .. tmp .. "/fastcgi;",
        "    uwsgi_temp_path " .. tmp .. "/uwsgi;",
        "    scgi_temp_path " .. tmp .. "/scgi;",
        "    client_body_buffer_size 1m;",
        "    server {",
        "        listen 127.0.0.1:" .. p[1] .. ";",
        "        location = /call { content_by_lua_block { require(\"fm_call\").handle() } }",
        "    }",
        "}",
      }, "\n") .. "\n"
    end)
    port = assert(ports, err)[1]
    http = curl.new{ max_response_bytes = require("dws.defaults").options.max_response_bytes }
  end)

  teardown(function()
    if http then http:close() end
    if prefix then
      nginx.stop(prefix)
      nginx.rmdir(prefix)
    end
  end)

  local function call(method, request, over)
    local p = { method = method, request = request, gateway = sb.http_url }
    for k, v in pairs(over or {}) do p[k] = v end
    local status, _, body = http:request("http://127.0.0.1:" .. port .. "/call",
      { "Content-Type: application/json" }, assert(core.json_encode(p)), 60, 5)
    if status ~= 200 then
      local log = nginx.read_file(prefix .. "/logs/error.log") or ""
      error("merchant nginx /call: HTTP " .. tostring(status) .. "; error.log ends: " .. log:sub(-1500), 2)
    end
    local out = assert(core.json_decode(body))
    assert.is_nil(out.raised, "the call raised inside nginx: " .. tostring(out.raised))
    assert.is_true(out.cosockets, "the client inside nginx did not pick the cosocket transport")
    return out
  end

  local function cache_ngx()
    local out = call("cache_card", { paymentMethodDetail = { paymentMethodDetailType = "card",
                                                             card = card("4111111111111111") } })
    assert.is_nil(out.err, out.err and out.err.text)
    return out.res.paymentMethodDetail.card.cardToken
  end

  for _, row in ipairs(MATRIX) do
    local attempts = row.retried and (MAX_RETRIES + 1) or 1
    it(string.format("%s: %s (%s), %s", row.fault, row.code, row.status,
                     row.retried and "retried to " .. attempts .. " attempts" or "not retried"), function()
      local token = cache_ngx()
      local request_id = fresh_id("fm-ngx-" .. row.fault .. "-")
      local m = mark()
      sb:fault(row.fault, attempts, row.opts)
      local timeout = TIMED[row.fault] and FAULT_TIMEOUT or TIMEOUT
      local out = call("add_payment_method", add_request(token, request_id), { timeout = timeout })
      assert.is_nil(out.res, string.format("no result from a faulted call (got one after %.2f s, %d request(s) " ..
        "at the sandbox, configured timeout %s s)", out.elapsed, #requests_since(m), timeout))
      local err = assert(out.err, "no error from a faulted call")
      assert.are.equal(row.code, err.code, err.text)
      assert.are.equal(row.status, err.status)
      assert.are.equal(row.retried, err.retryable)
      assert.are.equal(attempts, err.attempts, err.text)
      assert.are.equal(request_id, err.request_id)
      if row.http then assert.are.equal(row.http, err.http_status) end
      if row.response then
        assert.is_true(err.has_response)
        assert.are.equal(row.code, err.response_code)
      else
        assert.is_false(err.has_response, "no data from an unverified or failed answer")
      end
      assert.is_true(out.elapsed < time_bound(nil, timeout), string.format("took %.2f s", out.elapsed))
      assert_attempts_at_sandbox(requests_since(m), attempts, "addPaymentMethod", request_id)
      -- the worker's connection pool is not poisoned: the next call works
      local after = call("consult_addable_payment_method", { customerId = CUSTOMER, env = ENV })
      assert.is_nil(after.err, after.err and after.err.text)
      assert.are.equal("S", after.res.result.resultStatus)
    end)
  end

  it("an unverifiable certificate (no trusted CA configured in nginx): TLS_ERROR, not retried, every time", function()
    -- Repeated: on loopback the handshake often completes at once, the case in which lua-nginx-module
    -- 0.10.23 loses the verify error (openresty/lua-nginx-module#2506: sslhandshake() -> true, then
    -- send() -> "closed"); the transport must still report TLS_ERROR, not a retryable connection failure.
    local m = mark()
    for i = 1, 8 do
      local out = call("consult_addable_payment_method", { customerId = CUSTOMER, env = ENV },
                       { gateway = sb.https_url })
      assert.is_nil(out.res)
      local where = "call " .. i .. ": " .. out.err.text .. "; log: " .. out.err.events
      assert.are.equal("TLS_ERROR", out.err.code, where)
      assert.are.equal(1, out.err.attempts, where)
      assert.is_false(out.err.retryable, where)
      assert.is_false(out.err.has_response)
    end
    assert.are.equal(0, #requests_since(m), "nothing reached the gateway")
  end)

  it("connection refused: CONNECTION_FAILED (U), retried", function()
    local out = call("add_payment_method", add_request("PYMT-not-a-real-token"),
                     { gateway = "http://127.0.0.1:" .. nginx.free_ports(1)[1] })
    assert.are.equal("CONNECTION_FAILED", out.err.code, out.err.text)
    assert.are.equal(MAX_RETRIES + 1, out.err.attempts)
    assert.is_false(out.err.has_response)
    assert.is_true(out.elapsed < time_bound(), string.format("took %.2f s", out.elapsed))
  end)
end)
