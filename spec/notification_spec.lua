-- dws.notification against real keys and real signatures (no server needed: the request table
-- is what an HTTP server hands over). Delivery by the sandbox is in spec/openresty_spec.lua.
local dws = require "dws"
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local notification = require "dws.notification"
local dstore = require "dws.store"
local files = require "helpers.files"
local keys = require "helpers.keys"

local CLIENT_ID = "SANDBOX_5Y0000000000001"

local dir, dws_private, merchant_private, client

local function body_of(over)
  local n = {
    referenceCustomerId = "demo-customer-0001",
    requestId = "9c0b6c8e-4c7e-4d8f-9a57-6a1d2f3b4c5d",
    operateSource = "MERCHANT",
    paymentMethodDetail = { paymentMethodDetailType = "CARD",
      card = { cardToken = "ALIPAYtoken", brand = "VISA", mask = "411111******1111" } },
  }
  for k, v in pairs(over or {}) do
    if v == false then n[k] = nil else n[k] = v end
  end
  return assert(core.json_encode(n))
end

-- A notification as DWS sends it: signed over POST <path>\n<client-id>.<request-time>.<body>.
local function signed(body, opts)
  opts = opts or {}
  local time = opts.time or tostring(core.time_ms())
  local header = assert(dws.signature.sign{ private_key = opts.key or dws_private, method = "POST",
    path = opts.sign_path or "/notify", client_id = opts.client_id or CLIENT_ID, time = time, body = body })
  return {
    method = "POST",
    path = "/notify",
    headers = { ["Content-Type"] = "application/json", ["Client-Id"] = opts.client_id or CLIENT_ID,
                ["Request-Time"] = time, ["Signature"] = header },
    body = body,
  }
end

local function refused(req, code, pattern, field)
  local n, err = client:verify_notification(req)
  assert.is_nil(n)
  assert.are.equal(code, err.code)
  if pattern then assert.matches(pattern, err.message) end
  if field then assert.are.equal(field, err.field) end
  return err
end

setup(function()
  dir = nginx.tmpdir("dws-notify")
  local dws_priv_file = nginx.make_keypair(dir, "dws")
  local merchant_priv_file = nginx.make_keypair(dir, "merchant")
  -- Parsed once: the file signs a notification per spec, and loading a private key from text
  -- (OpenSSL's pair-wise check) costs ~30 ms each time.
  dws_private = assert(dws.signature.load_key(nginx.read_file(dws_priv_file), "private"))
  merchant_private = assert(core.private_key(nginx.read_file(merchant_priv_file)))
  client = dws.client{
    client_id = CLIENT_ID,
    private_key = nginx.read_file(merchant_priv_file),
    dws_public_key = nginx.read_file(dir .. "/dws_public.pem"),
    gateway = "http://127.0.0.1:9",
  }
end)

teardown(function()
  nginx.rmdir(dir)
end)

describe("verify_notification", function()
  -- README (Errors): a refused notification is F whatever its code; err.http_status is the answer.
  local refusals = {
    { "a GET", function(r) r.method = "GET" end, "METHOD_NOT_SUPPORTED", 405 },
    { "a forged signature", function(r) r.body = r.body:gsub("ALIPAYtoken", "ALIPAYforged") end,
      "SIGNATURE_INVALID", 401 },
    { "no Signature header", function(r) r.headers.Signature = nil end, "SIGNATURE_MISSING", 401 },
    { "a stale Request-Time", nil, "NOTIFICATION_EXPIRED", 401 },
    { "no requestId", false, "PARAM_ILLEGAL", 400 },
  }
  for _, case in ipairs(refusals) do
    it("refuses " .. case[1] .. " as " .. case[3] .. " with status F and HTTP " .. case[4], function()
      local req
      if case[2] == nil then
        req = signed(body_of(), { time = tostring(core.time_ms() - 3600 * 1000) })
      elseif case[2] == false then
        req = signed(body_of{ requestId = false })
      else
        req = signed(body_of())
        case[2](req)
      end
      local err = refused(req, case[3])
      assert.are.same({ "F", case[4] }, { err.status, err.http_status })
    end)
  end

  it("returns the notification when signature, time and body are good", function()
    local n = assert(client:verify_notification(signed(body_of())))
    assert.are.equal("9c0b6c8e-4c7e-4d8f-9a57-6a1d2f3b4c5d", n.requestId)
    assert.are.equal("ALIPAYtoken", n.paymentMethodDetail.card.cardToken)
  end)

  it("matches header names in any letter case and ignores the query string", function()
    local req = signed(body_of())
    local h = {}
    for k, v in pairs(req.headers) do h[k:upper()] = v end
    req.headers, req.path = h, "/notify?x=1"
    assert(client:verify_notification(req))
  end)

  it("accepts ISO 8601 request times as the other SDKs send them", function()
    local now = core.time_ms()
    local iso = os.date("!%Y-%m-%dT%H:%M:%S", math.floor(now / 1000))
    for _, t in ipairs{ iso .. "+00:00", iso .. "+0000", iso .. ".1234567Z", iso .. "Z" } do
      assert(client:verify_notification(signed(body_of(), { time = t })), t)
    end
  end)

  it("parses time strings exactly", function()
    assert.are.equal(1700000000000, notification.parse_time("1700000000000"))
    assert.are.equal(1755765000000, notification.parse_time("2025-08-21T08:30:00+00:00"))
    assert.are.equal(1755765000000, notification.parse_time("2025-08-21T16:30:00+0800"))
    assert.are.equal(1755765000123, notification.parse_time("2025-08-21T08:30:00.1234567Z"))
    assert.are.equal(951782400000, notification.parse_time("2000-02-29T00:00:00Z"))
    assert.is_nil(notification.parse_time("2025-08-21T08:30:00"))   -- no zone: ambiguous
    assert.is_nil(notification.parse_time("2025-13-01T00:00:00Z"))
    assert.is_nil(notification.parse_time("yesterday"))
  end)

  it("refuses a tampered body", function()
    local req = signed(body_of())
    req.body = req.body:gsub("demo%-customer%-0001", "demo-customer-0002")
    refused(req, "SIGNATURE_INVALID", "does not verify")
  end)

  it("refuses a signature made for another path, by another key, or for another merchant", function()
    refused(signed(body_of(), { sign_path = "/other" }), "SIGNATURE_INVALID")
    local other = nginx.read_file((nginx.make_keypair(dir, "other")))
    refused(signed(body_of(), { key = other }), "SIGNATURE_INVALID")
    refused(signed(body_of(), { client_id = "SANDBOX_OTHER" }), "SIGNATURE_INVALID", "not this merchant")
  end)

  it("refuses missing and duplicated headers", function()
    for _, name in ipairs{ "Signature", "Client-Id", "Request-Time" } do
      local req = signed(body_of())
      req.headers[name] = nil
      refused(req, "SIGNATURE_MISSING", (name:lower():gsub("%-", "%%-")))
    end
    local req = signed(body_of())
    req.headers["signature"] = req.headers["Signature"]
    refused(req, "SIGNATURE_INVALID", "more than once")
    req = signed(body_of())
    req.headers["Request-Time"] = { req.headers["Request-Time"], req.headers["Request-Time"] }
    refused(req, "SIGNATURE_INVALID", "more than once")
  end)

  it("refuses a signed header given as a number (signature.pick_headers: no conversion)", function()
    local req = signed(body_of())
    req.headers["Request-Time"] = tonumber(req.headers["Request-Time"])
    refused(req, "SIGNATURE_INVALID", "not text")
  end)

  it("accepts a notification whatever shape headers it does not verify have", function()
    local req = signed(body_of())
    req.headers["X-Forwarded-For"] = { "10.0.0.1", "10.0.0.2" }
    assert.is_table((client:verify_notification(req)))
  end)

  it("refuses a replay older than the tolerance, and one from too far ahead", function()
    local now = core.time_ms()
    assert(client:verify_notification(signed(body_of(), { time = tostring(now - 200 * 1000) })))
    local err = refused(signed(body_of(), { time = tostring(now - 301 * 1000) }), "NOTIFICATION_EXPIRED",
      "tolerance")
    assert.are.equal(401, err.http_status)
    refused(signed(body_of(), { time = tostring(now + 400 * 1000) }), "NOTIFICATION_EXPIRED")
    -- the tolerance is the caller's to set: per call, or as the client's option
    local n = notification.verify(client, signed(body_of(), { time = tostring(now - 200 * 1000) }),
      { tolerance = 60 })
    assert.is_nil(n)
    local strict = dws.client{ client_id = CLIENT_ID, private_key = (keys.pair("merchant")),
      dws_public_key = nginx.read_file(dir .. "/dws_public.pem"), gateway = "http://127.0.0.1:9",
      notification_tolerance = 60 }
    local req = signed(body_of(), { time = tostring(now - 90 * 1000) })
    assert(client:verify_notification(req))
    assert.are.equal("NOTIFICATION_EXPIRED", select(2, strict:verify_notification(req)).code)
  end)

  it("refuses a signed body it cannot act on: not JSON, no requestId, no paymentMethodDetail object", function()
    refused(signed("{not json"), "PARAM_ILLEGAL", "not JSON")
    refused(signed("[1,2]"), "PARAM_ILLEGAL", "object")
    refused(signed(body_of{ requestId = false }), "PARAM_ILLEGAL", "required", "requestId")
    refused(signed(body_of{ requestId = 42 }), "PARAM_ILLEGAL", "string", "requestId")
    refused(signed(body_of{ paymentMethodDetail = false }), "PARAM_ILLEGAL", nil, "paymentMethodDetail")
    refused(signed(body_of{ paymentMethodDetail = "x" }), "PARAM_ILLEGAL", nil, "paymentMethodDetail")
    refused(signed(body_of{ requestId = ("r"):rep(65) }), "PARAM_ILLEGAL", "64", "requestId")
    assert(client:verify_notification(signed(body_of{ requestId = ("r"):rep(64) })))
  end)

  it("accepts a signed body without operateSource, or with another value (logged, not refused)", function()
    assert(client:verify_notification(signed(body_of{ operateSource = false })))
    assert(client:verify_notification(signed(body_of{ operateSource = "USER" })))
  end)

  it("accepts referenceUserId instead of referenceCustomerId, and neither", function()
    assert(client:verify_notification(signed(body_of{ referenceCustomerId = false, referenceUserId = "u-1" })))
    assert(client:verify_notification(signed(body_of{ referenceCustomerId = false })))
  end)

  it("reads the outcome: BOUND with the card token, FAILED with an F result's code, else UNCONFIRMED", function()
    assert.are.same({ "BOUND", "ALIPAYtoken" }, { notification.outcome(dws.decode_json(body_of())) })
    assert.are.same({ "FAILED", "RISK_REJECT" }, { notification.outcome(dws.decode_json(body_of{
      result = { resultStatus = "F", resultCode = "RISK_REJECT" } })) })
    assert.are.same({ "UNCONFIRMED", "NO_CARD_TOKEN" }, { notification.outcome{ paymentMethodDetail = {} } })
  end)
end)

describe("handle_notification", function()
  local ACK = '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}'

  local function fresh_id()
    return core.uuid4()
  end

  it("acknowledges exactly as SIGNING.md says, once per requestId", function()
    local runs = 0
    local req = signed(body_of{ requestId = fresh_id() })
    local store = notification.memory_store()
    for _ = 1, 3 do
      local status, headers, body = client:handle_notification(req, function(n)
        runs = runs + 1
        assert.are.equal("MERCHANT", n.operateSource)
        return true
      end, { store = store })
      assert.are.equal(200, status)
      assert.are.equal("application/json", headers["Content-Type"])
      assert.are.equal(ACK, body)
    end
    assert.are.equal(1, runs)
  end)

  it("de-duplicates with the client's default store when none is given", function()
    local runs = 0
    local req = signed(body_of{ requestId = fresh_id() })
    local function handler() runs = runs + 1 end
    assert.are.equal(200, (client:handle_notification(req, handler)))
    assert.are.equal(200, (client:handle_notification(signed(req.body), handler)))
    assert.are.equal(1, runs)
  end)

  it("acknowledges a business failure and does not run the handler again", function()
    local runs = 0
    local req = signed(body_of{ requestId = fresh_id() })
    local function handler()
      runs = runs + 1
      return false, "customer closed the account"
    end
    local status, _, body = client:handle_notification(req, handler)
    assert.are.equal(200, status)
    assert.are.equal(ACK, body)
    client:handle_notification(req, handler)
    assert.are.equal(1, runs)
  end)

  it("answers a system failure with a non-S so DWS re-sends, and runs the handler on the re-send", function()
    local runs = 0
    local req = signed(body_of{ requestId = fresh_id() })
    local plan = { "raise", "nil_err", "ok" }
    local function handler()
      runs = runs + 1
      local what = plan[runs]
      if what == "raise" then error("database unavailable") end
      if what == "nil_err" then return nil, "could not store" end
      return true
    end
    for attempt = 1, 2 do
      local status, headers, body = client:handle_notification(req, handler)
      assert.are.equal(500, status, "attempt " .. attempt)
      assert.are.equal("application/json", headers["Content-Type"])
      local answer = assert(dws.decode_json(body))
      assert.are.equal("U", answer.result.resultStatus)
      assert.are.equal("UNKNOWN_EXCEPTION", answer.result.resultCode)
    end
    local status, _, body = client:handle_notification(req, handler)
    assert.are.equal(200, status)
    assert.are.equal(ACK, body)
    client:handle_notification(req, handler)
    assert.are.equal(3, runs)
  end)

  it("asks a delivery that arrives while the same notification is being handled to come again", function()
    local runs, inner = 0, nil
    local req = signed(body_of{ requestId = fresh_id() })
    local store = notification.memory_store()
    local function handler()
      runs = runs + 1
      if runs == 1 then
        -- a second delivery of the same notification, while this one is still in the handler
        inner = { notification.handle(client, req, handler, { store = store }) }
      end
      return true
    end
    local status = notification.handle(client, req, handler, { store = store })
    assert.are.equal(200, status)
    assert.are.equal(500, inner[1])
    assert.are.equal("U", dws.decode_json(inner[3]).result.resultStatus)
    assert.are.equal(1, runs)
    -- once handled, a re-send is acknowledged without running the handler again
    assert.are.equal(200, (notification.handle(client, req, handler, { store = store })))
    assert.are.equal(1, runs)
  end)

  it("answers U (500) without running the handler when the de-dup store cannot answer", function()
    local broken = dstore.memory()
    function broken.add() return nil, "store down" end
    local runs = 0
    local status, _, body = notification.handle(client, signed(body_of{ requestId = fresh_id() }),
      function() runs = runs + 1 end, { store = broken })
    assert.are.same({ 500, "U", 0 }, { status, dws.decode_json(body).result.resultStatus, runs })
  end)

  it("answers U rather than run the handler again when a full store cannot record the claim", function()
    local store = dstore.memory{ max_entries = 1 }
    local runs = 0
    local function handler() runs = runs + 1 end
    assert.are.equal(200, (notification.handle(client, signed(body_of{ requestId = fresh_id() }), handler,
      { store = store })))
    assert.are.equal(500, (notification.handle(client, signed(body_of{ requestId = fresh_id() }), handler,
      { store = store })))
    assert.are.equal(1, runs)
  end)

  it("takes a store spec string as notification_store", function()
    local path = os.tmpname()
    local c = dws.client{ client_id = CLIENT_ID, private_key = merchant_private, gateway = "http://127.0.0.1:9",
      dws_public_key = nginx.read_file(dir .. "/dws_public.pem"), notification_store = "sqlite:" .. path }
    local runs = 0
    local req = signed(body_of{ requestId = fresh_id() })
    c:handle_notification(req, function() runs = runs + 1 end)
    local again = dws.client{ client_id = CLIENT_ID, private_key = merchant_private, gateway = "http://127.0.0.1:9",
      dws_public_key = nginx.read_file(dir .. "/dws_public.pem"), notification_store = "sqlite:" .. path }
    assert.are.equal(200, (again:handle_notification(req, function() runs = runs + 1 end)))
    assert.are.equal(1, runs)
    for _, suffix in ipairs{ "", "-wal", "-shm" } do os.remove(path .. suffix) end
  end)

  it("refuses what does not verify with an F answer, without running the handler", function()
    local ran = false
    local function handler() ran = true end
    local req = signed(body_of{ requestId = fresh_id() })
    req.body = req.body:gsub("MERCHANT", "MERCHANX")
    local status, headers, body = client:handle_notification(req, handler)
    assert.are.equal(401, status)
    assert.are.equal("application/json", headers["Content-Type"])
    local answer = assert(dws.decode_json(body))
    assert.are.equal("F", answer.result.resultStatus)
    assert.are.equal("INVALID_SIGNATURE", answer.result.resultCode)

    status, headers, body = client:handle_notification(signed(body_of{ requestId = false }), handler)
    assert.are.equal(400, status)
    assert.are.equal("application/json", headers["Content-Type"])
    assert.are.equal("PARAM_ILLEGAL", dws.decode_json(body).result.resultCode)

    status = client:handle_notification(signed(body_of(), { time = tostring(core.time_ms() - 3600 * 1000) }),
      handler)
    assert.are.equal(401, status)
    assert.is_false(ran)
  end)
end)

describe("the notify page's own sample", function()
  -- The sample body of notifyAddPaymentMethod, byte for byte (spec/fixtures), signed with a DWS
  -- key: no operateSource, a final token unlike cacheCard's temporary one.
  for _, case in ipairs{ { "referenceCustomerId", "notify_sample.json" },
                         { "referenceUserId", "notify_sample_reference_user_id.json" } } do
    it("is acknowledged with " .. case[1] .. ", the handler run once", function()
      local body = files.read(os.getenv("DWS_ROOT") .. "/spec/fixtures/" .. case[2])
      local runs, seen = 0, nil
      local function handler(n, binding)
        runs = runs + 1
        seen = { n.requestId, n.paymentMethodDetail.card.cardToken:sub(1, 6), binding == nil }
      end
      local fresh = dws.client{ client_id = CLIENT_ID, private_key = merchant_private, gateway = "http://127.0.0.1:9",
        dws_public_key = nginx.read_file(dir .. "/dws_public.pem") }
      for _ = 1, 2 do
        local status, _, answer = fresh:handle_notification(signed(body), handler)
        assert.are.same({ 200, '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}' },
          { status, answer })
      end
      assert.are.equal(1, runs)
      assert.are.same({ "20990501203220303032821078591", "ALIPAY", true }, seen)
    end)
  end
end)

describe("notifications and the binding journal", function()
  local journal = require "dws.journal"
  local bind_card = require "dws.bind_card"

  local function new_client()
    return dws.client{ client_id = CLIENT_ID, private_key = merchant_private, gateway = "http://127.0.0.1:9",
      dws_public_key = nginx.read_file(dir .. "/dws_public.pem") }
  end

  local function journaled(c, state)
    local id = core.uuid4()
    assert(c.journal:create{ requestId = id, body = assert(core.json_encode{ requestId = id }),
                             mask = "411111******1111" })
    if state ~= "NEW" then assert(c.journal:transition(id, "send", "SENT")) end
    if state ~= "NEW" and state ~= "SENT" then assert(c.journal:transition(id, "answer", state)) end
    return id
  end

  it("makes an ACCEPTED record BOUND with the notification's token and hands it to the handler", function()
    local c = new_client()
    local id = journaled(c, "ACCEPTED")
    local got
    c:handle_notification(signed(body_of{ requestId = id }), function(_, binding) got = binding end)
    assert.are.same({ "BOUND", "ALIPAYtoken" }, { got.status, got.cardToken })
    assert.are.equal("BOUND", c:binding(id).state)
  end)

  it("makes a record FAILED for a notification with an F result", function()
    local c = new_client()
    local id = journaled(c, "ACTION_REQUIRED")
    c:handle_notification(signed(body_of{ requestId = id, result = { resultStatus = "F", resultCode = "OTP_WRONG" } }),
      function() end)
    assert.are.same({ "FAILED", "OTP_WRONG" }, { c:binding(id).state, c:binding(id).resultCode })
  end)

  it("race: a notification before the answer wins, and the answer arriving later changes nothing", function()
    local c = new_client()
    local id = journaled(c, "SENT")
    c:handle_notification(signed(body_of{ requestId = id }), function() end)
    local rec, changed = c.journal:transition(id, "answer", "ACCEPTED")
    assert.are.same({ "BOUND", false }, { rec.state, changed })
    assert.are.equal("BOUND", bind_card.outcome_of(rec).status)
  end)

  it("race: a late U after BOUND never overwrites it", function()
    local c = new_client()
    local id = journaled(c, "ACCEPTED")
    c:handle_notification(signed(body_of{ requestId = id }), function() end)
    local _, changed = c.journal:transition(id, "answer", "UNKNOWN")
    assert.is_false(changed)
    assert.are.equal("BOUND", c:binding(id).state)
  end)

  it("race: a FAILED then BOUND notification keeps the first word", function()
    local c = new_client()
    local id = journaled(c, "ACCEPTED")
    c:handle_notification(signed(body_of{ requestId = id, result = { resultStatus = "F", resultCode = "X" } }),
      function() end)
    -- the second through another de-dup store (another node's), so it reaches the journal
    local status = c:handle_notification(signed(body_of{ requestId = id }), function() end,
      { store = dstore.memory() })
    assert.are.equal(200, status)
    assert.are.equal("FAILED", c:binding(id).state)
  end)

  it("race: two writers on one record, the compare-and-set loser re-reads and keeps the rules", function()
    local c = new_client()
    local id = journaled(c, "SENT")
    local raw = c.journal.store:get(journal.PREFIX .. id)
    -- The notification lands between this writer's read and its write.
    local real_get = c.journal.store.get
    local once = true
    c.journal.store.get = function(self, k)
      local v = real_get(self, k)
      if once and k == journal.PREFIX .. id then
        once = false
        assert(c.journal:transition(id, "notification", "BOUND"))
        return raw
      end
      return v
    end
    local rec, changed = c.journal:transition(id, "answer", "UNKNOWN")
    c.journal.store.get = nil
    assert.are.same({ "BOUND", false }, { rec.state, changed })
  end)

  it("answers U and runs no handler when the journal cannot record the notification", function()
    local c = new_client()
    local id = journaled(c, "ACCEPTED")
    c.journal.store.cas = function() return nil, "disk full" end
    local runs = 0
    local status = c:handle_notification(signed(body_of{ requestId = id }), function() runs = runs + 1 end)
    assert.are.same({ 500, 0 }, { status, runs })
  end)

  it("answers U (500) to a late notification when the journal cannot say whether it holds it", function()
    local c = new_client()
    local id = journaled(c, "ACCEPTED")
    c.journal.store.get = function() return nil, "connection refused" end
    local runs = 0
    local status = c:handle_notification(signed(body_of{ requestId = id },
      { time = tostring(core.time_ms() - 3600 * 1000) }), function() runs = runs + 1 end)
    assert.are.same({ 500, 0 }, { status, runs })
  end)

  it("lists records that are not final with pending_bindings", function()
    local c = new_client()
    local a = journaled(c, "SENT")
    local b = journaled(c, "ACCEPTED")
    local done = journaled(c, "ACCEPTED")
    c:handle_notification(signed(body_of{ requestId = done }), function() end)
    local ids = {}
    for _, p in ipairs(assert(c:pending_bindings{ older_than = 0 })) do ids[p.requestId] = p.status end
    assert.are.same({ [a] = "UNKNOWN", [b] = "ACCEPTED" }, ids)
    assert.are.same({}, assert(c:pending_bindings{ older_than = 3600 }))
  end)

  it("refuses to resume a final record, and an unknown one, with distinct errors", function()
    local c = new_client()
    local id = journaled(c, "ACCEPTED")
    c:handle_notification(signed(body_of{ requestId = id }), function() end)
    local _, err = c:resume_binding(id)
    assert.are.equal("BINDING_FINAL", err.code)
    _, err = c:resume_binding("no-such-request")
    assert.are.equal("BINDING_NOT_FOUND", err.code)
  end)

  it("keeps final records for the retention period only; pending ones have no expiry", function()
    local j = journal.open(nil, { retention = 60 })
    assert.are.same({ 60, 60 }, { j:ttl("BOUND"), j:ttl("FAILED") })
    for _, state in ipairs{ "NEW", "SENT", "UNKNOWN", "ACCEPTED", "ACTION_REQUIRED" } do
      assert.is_nil(j:ttl(state))
    end
  end)

  it("refuses a retention that is not a positive finite number of seconds, NaN included", function()
    for _, v in ipairs{ 0, -1, 0 / 0, math.huge, "60", true } do
      assert.has_error(function() journal.open(nil, { retention = v }) end,
        "dws.journal: retention must be a positive number of seconds or false")
    end
  end)
end)

describe("the done mark when the de-dup store fails after the handler ran", function()
  -- A store that refuses `set` a given number of times (a Redis coming back), memory otherwise.
  local function flaky(failures)
    local s = dstore.memory()
    local real_set = s.set
    s.set = function(self, k, v, ttl)
      if failures > 0 then
        failures = failures - 1
        return nil, "connection refused"
      end
      return real_set(self, k, v, ttl)
    end
    return s
  end

  it("keeps trying in a plain Lua process: the mark is written and a re-delivery runs nothing", function()
    local s, runs = flaky(2), 0
    local req = signed(body_of{ requestId = core.uuid4() })
    local function handler() runs = runs + 1 return true end
    local first = client:handle_notification(req, handler, { store = s })
    local again = client:handle_notification(req, handler, { store = s })
    assert.are.same({ 200, 200, 1 }, { first, again, runs })
  end)

  it("acknowledges the delivery when the mark cannot be written at all (the handler has run)", function()
    local s = flaky(math.huge)
    local status = client:handle_notification(signed(body_of{ requestId = core.uuid4() }), function() return true end,
      { store = s, claim_ttl = 0.2 })
    assert.are.equal(200, status)
  end)
end)
