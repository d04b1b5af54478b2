-- Bindings end in the right state whatever DWS sends, re-sends or loses: the journal's state
-- machine against the sandbox (answers) and against notifications signed with the sandbox's own
-- DWS key (the forms the notify page allows, and forms it does not rule out).
local dws = require "dws"
local core = require "dws.core"
local sandbox = require "helpers.sandbox"

local UNKNOWN_ONCE = "4000000000000119"
local VISA = "4111111111111111"

local sb, client, dws_key, store, logged

local function card(number)
  return { cardNo = number or VISA, securityCode = "123", expiryMonth = "06",
           expiryYear = tostring(tonumber(os.date("!%Y")) + 2),
           instUserName = { firstName = "Ann", lastName = "Lee" } }
end

local function bind(request_id, number, over)
  local params = { requestId = request_id, customerId = "2162878776333", referenceCustomerId = "shop-7",
                   env = { terminalType = "WEB" }, card = card(number) }
  for k, v in pairs(over or {}) do params[k] = v end
  return client:bind_card(params)
end

local function notification_body(request_id, card_fields, extra)
  local n = { requestId = request_id, referenceCustomerId = "shop-7", operateSource = "MERCHANT",
              paymentMethodDetail = { paymentMethodDetailType = "CARD", card = card_fields } }
  for k, v in pairs(extra or {}) do n[k] = v end
  return assert(core.json_encode(n))
end

-- A notification as DWS sends it, signed with the sandbox's DWS key at `time` (ms).
local function delivery(body, time)
  time = tostring(time or core.time_ms())
  local header = assert(dws.signature.sign{ private_key = dws_key, method = "POST", path = "/notify",
    client_id = sb.merchant.client_id, time = time, body = body })
  return { method = "POST", path = "/notify", body = body,
           headers = { ["Content-Type"] = "application/json", ["Client-Id"] = sb.merchant.client_id,
                       ["Request-Time"] = time, ["Signature"] = header } }
end

local handled
local function handle(req)
  return client:handle_notification(req, function(n)
    handled[#handled + 1] = n.requestId
    return true
  end)
end

local function errors_logged(pattern, request_id)
  local n = 0
  for _, e in ipairs(logged) do
    if e.level == "error" and e.message:find(pattern, 1, true) and e.fields.requestId == request_id then n = n + 1 end
  end
  return n
end

setup(function()
  sb = assert(sandbox.start{ notify_url = "http://127.0.0.1:9/notify" })
  dws_key = assert(dws.signature.load_key(sb.dws_private_key_pem, "private"))
  store = dws.store.memory()
  logged = {}
  client = dws.client{ client_id = sb.merchant.client_id, private_key = sb.merchant.private_key,
    dws_public_key = sb.dws_public_key, gateway = sb.http_url, max_retries = 0, journal = store,
    logger = function(level, message, fields)
      logged[#logged + 1] = { level = level, message = message, fields = fields }
    end }
end)

teardown(function()
  if sb then sb:stop() end
end)

before_each(function()
  handled = {}
end)

describe("REPEAT_REQ_INCONSISTENT to a first send", function()
  local id = "conflict-" .. core.uuid4()
  local err

  setup(function()
    -- An earlier request owns the requestId at DWS (sent before this journal knew it).
    local cached = assert(client:cache_card{ paymentMethodDetail = { paymentMethodDetailType = "card",
      card = card() } })
    assert(client:add_payment_method{ requestId = id, customerId = "2162878776333",
      paymentMethodDetail = { paymentMethodDetailType = "CARD",
        card = { cardToken = cached.paymentMethodDetail.card.cardToken } } })
    local outcome
    outcome, err = bind(id)
    assert.is_nil(outcome)
  end)

  it("returns DWS's code", function()
    assert.are.equal("REPEAT_REQ_INCONSISTENT", err.code)
  end)

  it("leaves the binding CONFLICT, not FAILED", function()
    assert.are.equal("CONFLICT", client:binding(id).state)
  end)

  it("lets the earlier request's BOUND notification land with its token", function()
    local status = handle(delivery(notification_body(id, { cardToken = "ALIPAYfinal1",
                                                           mask = "411111******1111" })))
    local b = client:binding(id)
    assert.are.same({ 200, "BOUND", "ALIPAYfinal1" }, { status, b.state, b.cardToken })
  end)
end)

describe("a notification that is not an explicit success with a card token", function()
  local cases = {
    { "a result with status U", { cardToken = "ALIPAYx" }, { result = { resultStatus = "U",
      resultCode = "UNKNOWN_EXCEPTION" } }, "UNCONFIRMED" },
    { "no card token and no result", { mask = "411111******1111" }, nil, "UNCONFIRMED" },
    { "an empty card token", { cardToken = "" }, nil, "UNCONFIRMED" },
    { "a result with status F", {}, { result = { resultStatus = "F", resultCode = "RISK_REJECT" } }, "FAILED" },
  }
  for i, case in ipairs(cases) do
    describe(case[1], function()
      local id
      setup(function()
        id = "unclear-" .. i .. "-" .. core.uuid4()
        assert.are.equal("ACCEPTED", assert(bind(id)).status)
        handle(delivery(notification_body(id, case[2], case[3])))
      end)

      it("ends " .. case[4] .. ", never BOUND", function()
        assert.are.equal(case[4], client:binding(id).state)
      end)

      it("keeps no card token", function()
        assert.is_nil(client:binding(id).cardToken)
      end)

      it("is logged at error level", function()
        assert.are.equal(1, errors_logged("binding recorded as " .. case[4], id))
      end)
    end)
  end

  it("an UNCONFIRMED binding still takes a later BOUND notification", function()
    local id = "unclear-then-bound-" .. core.uuid4()
    assert(bind(id))
    handle(delivery(notification_body(id, {})))
    local later = delivery(notification_body(id, { cardToken = "ALIPAYlater" }))
    client:handle_notification(later, function() return true end, { store = dws.store.memory() })
    assert.are.same({ "BOUND", "ALIPAYlater" }, { client:binding(id).state, client:binding(id).cardToken })
  end)
end)

describe("a late re-send of the bytes DWS first signed", function()
  local FIFTEEN_HOURS = 15 * 3600 * 1000

  it("is recorded for a binding the journal holds as not final: BOUND", function()
    local id = "late-" .. core.uuid4()
    assert.are.equal("ACCEPTED", assert(bind(id)).status)
    local req = delivery(notification_body(id, { cardToken = "ALIPAYlate" }), core.time_ms() - FIFTEEN_HOURS)
    local status = handle(req)
    local b = client:binding(id)
    assert.are.same({ 200, "BOUND", "ALIPAYlate" }, { status, b.state, b.cardToken })
  end)

  it("is refused for a requestId the journal does not hold (a replay)", function()
    local req = delivery(notification_body("late-unknown-" .. core.uuid4(), { cardToken = "ALIPAYx" }),
      core.time_ms() - FIFTEEN_HOURS)
    assert.are.equal(401, (handle(req)))
  end)

  it("runs the handler once for a binding it makes final; the same bytes again are acknowledged", function()
    local id = "late-final-" .. core.uuid4()
    assert(bind(id))
    local req = delivery(notification_body(id, { cardToken = "ALIPAYonce" }), core.time_ms() - FIFTEEN_HOURS)
    local first, again = handle(req), handle(req)
    assert.are.same({ 200, 200, 1 }, { first, again, #handled })
  end)

  it("gives a handler that failed its retry, although the binding is already final", function()
    local id = "late-retry-" .. core.uuid4()
    assert(bind(id))
    local req = delivery(notification_body(id, { cardToken = "ALIPAYretry" }), core.time_ms() - FIFTEEN_HOURS)
    local failed = client:handle_notification(req, function() return nil, "database down" end)
    local state = client:binding(id).state
    local retried = handle(req)
    assert.are.same({ 500, "BOUND", 200, 1 }, { failed, state, retried, #handled })
  end)

  it("is refused for a binding already final when older than the de-dup memory", function()
    local id = "late-old-" .. core.uuid4()
    assert(bind(id))
    handle(delivery(notification_body(id, { cardToken = "ALIPAYold" })))
    local three_days = core.time_ms() - 3 * 86400 * 1000
    assert.are.equal(401, (handle(delivery(notification_body(id, { cardToken = "ALIPAYold" }), three_days))))
  end)

  it("is refused when the per-call tolerance is NaN (raised as a bad argument)", function()
    local req = delivery(notification_body("nan-" .. core.uuid4(), { cardToken = "ALIPAYx" }), 1000000000000)
    assert.has_error(function() client:verify_notification(req, { tolerance = 0 / 0 }) end)
  end)

  it("is refused by handle_notification when its per-call tolerance is NaN", function()
    local req = delivery(notification_body("nan-" .. core.uuid4(), { cardToken = "ALIPAYx" }), 1000000000000)
    assert.has_error(function() client:handle_notification(req, function() return true end, { tolerance = 0 / 0 }) end)
  end)
end)

describe("resume_binding on a damaged record", function()
  local x, y

  setup(function()
    x, y = "damaged-x-" .. core.uuid4(), "damaged-y-" .. core.uuid4()
    assert.are.equal("UNKNOWN", assert(bind(x, UNKNOWN_ONCE)).status)
    -- Y's key holds X's record (a restored backup, a bad migration, a hostile writer).
    assert(store:set("dws:binding:" .. y, assert(store:get("dws:binding:" .. x))))
  end)

  it("refuses a record that belongs to another requestId with BINDING_DAMAGED", function()
    local outcome, err = client:resume_binding(y)
    assert.are.same({ nil, "BINDING_DAMAGED" }, { outcome, err and err.code })
  end)

  it("leaves the other binding as it was", function()
    client:resume_binding(y)
    assert.are.same({ "UNKNOWN", 1 }, { client:binding(x).state, client:binding(x).sends })
  end)

  it("refuses a record whose body belongs to another request", function()
    local z = "damaged-z-" .. core.uuid4()
    local rec = dws.decode_json(assert(store:get("dws:binding:" .. x)))
    rec.requestId = z
    assert(store:set("dws:binding:" .. z, assert(core.json_encode(rec))))
    local outcome, err = client:resume_binding(z)
    assert.are.same({ nil, "BINDING_DAMAGED" }, { outcome, err and err.code })
  end)

  it("returns nil, err (never raises) for a body that is not text", function()
    local w = "damaged-w-" .. core.uuid4()
    assert(store:set("dws:binding:" .. w, assert(core.json_encode{ requestId = w, state = "UNKNOWN", body = { 1 } })))
    local ok, outcome, err = pcall(client.resume_binding, client, w)
    assert.are.same({ true, nil, "BINDING_DAMAGED" }, { ok, outcome, err and err.code })
  end)

  it("lets a sweeper over pending_bindings finish every other binding", function()
    local pending = assert(client:pending_bindings())
    local finished, damaged = 0, 0
    for _, b in ipairs(pending) do
      if b.status == "UNKNOWN" then
        local outcome = client:resume_binding(b.requestId)
        if outcome and outcome.status == "ACCEPTED" then finished = finished + 1 end
      elseif b.status == "DAMAGED" then
        damaged = damaged + 1
      end
    end
    assert.are.same({ 1, "ACCEPTED" }, { finished, client:binding(x).state })
    assert.are.equal(3, damaged)
  end)
end)

describe("local checks before the first byte", function()
  local function requests_now() return #sb:requests() end

  it("refuses a 65-character requestId without sending anything", function()
    local before = requests_now()
    local outcome, err = bind(("r"):rep(65))
    assert.are.same({ nil, "PARAM_ILLEGAL", "requestId", 0 }, { outcome, err.code, err.field, requests_now() - before })
  end)

  it("refuses an addPaymentMethod field over its limit without sending anything", function()
    local before = requests_now()
    local outcome, err = bind("long-ref-" .. core.uuid4(), nil, { referenceCustomerId = ("c"):rep(65) })
    assert.are.same({ nil, "referenceCustomerId", 0 }, { outcome, err.field, requests_now() - before })
  end)
end)

describe("a 64-character requestId of multi-byte characters", function()
  local id = ("é"):rep(64) -- 128 bytes

  it("is bound", function()
    assert.are.equal("ACCEPTED", assert(bind(id)).status)
  end)

  it("is accepted in its notification and ends BOUND", function()
    local status = handle(delivery(notification_body(id, { cardToken = "ALIPAYwide" })))
    assert.are.same({ 200, "BOUND" }, { status, client:binding(id).state })
  end)
end)

describe("store opening", function()
  it("raises at dws.client when the journal's store cannot be opened", function()
    dws.store.register("downstore", function() return nil, "connection refused" end)
    assert.has_error(function()
      dws.client{ client_id = sb.merchant.client_id, private_key = sb.merchant.private_key,
        dws_public_key = sb.dws_public_key, gateway = sb.http_url, journal = "downstore:x" }
    end, "dws.client: option journal: the store cannot be opened: connection refused")
  end)
end)

describe("require 'dws'", function()
  it("has dws.notification.outcome, as the README calls it", function()
    assert.are.equal("function", type(dws.notification.outcome))
  end)
end)
