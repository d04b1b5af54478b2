--- Binding-result notifications (notifyAddPaymentMethod) as a merchant receives them. Usually
-- reached through `client:verify_notification` and `client:handle_notification`; this module holds
-- the bodies answered and what a notification says.
-- @module dws.notification

-- Binding-result notifications (notifyAddPaymentMethod) as a merchant receives them:
-- verify the signature over the raw bytes, refuse replays, check the body, de-duplicate on
-- requestId, run the merchant's handler and say what to answer.
local core = require "dws.core"
local errors = require "dws.errors"
local signature = require "dws.signature"
local dstore = require "dws.store"
local defaults = require "dws.defaults"
local dtime = require "dws.time"
local journal = require "dws.journal"
local validate = require "dws.validate"
local is_object = validate.is_object
local runtime = require "dws.runtime"

local M = {}

--- The acknowledgement, byte for byte as SIGNING.md gives it (not built by the JSON encoder,
-- which would sort the keys). Answered with HTTP 200 and `Content-Type: application/json`.
M.ACK_BODY = '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}'
--- The answer (HTTP 500) when a notification could not be processed (store or journal down, the
-- handler failed): result status U, so DWS re-sends.
M.UNKNOWN_BODY = '{"result":{"resultCode":"UNKNOWN_EXCEPTION","resultStatus":"U",' ..
  '"resultMessage":"notification not processed, please re-send"}}'
--- Refusals: fixed bodies, one per result code. Nothing from the request (a header value, a body
-- field) is ever reflected into an answer, and a constant is valid JSON whatever the input was.
-- `INVALID_SIGNATURE` (401: signature, client-id or request-time not accepted, a replay),
-- `PARAM_ILLEGAL` (400: not a valid notification body), `METHOD_NOT_SUPPORTED` (405: not a POST).
-- @table REFUSAL_BODIES
M.REFUSAL_BODIES = {
  INVALID_SIGNATURE = '{"result":{"resultCode":"INVALID_SIGNATURE","resultStatus":"F",' ..
    '"resultMessage":"notification refused: signature, client-id or request-time not accepted"}}',
  PARAM_ILLEGAL = '{"result":{"resultCode":"PARAM_ILLEGAL","resultStatus":"F",' ..
    '"resultMessage":"notification refused: body is not a valid notification"}}',
  METHOD_NOT_SUPPORTED = '{"result":{"resultCode":"METHOD_NOT_SUPPORTED","resultStatus":"F",' ..
    '"resultMessage":"notification refused: notifications are POSTed"}}',
}

-- The tolerance and the de-dup TTLs: dws.defaults says why each is what it is.
local DEFAULT_TOLERANCE = defaults.options.notification_tolerance
local DEFAULT_SEEN_TTL = defaults.notification_seen_ttl
local DEFAULT_CLAIM_TTL = defaults.notification_claim_ttl
-- The page's limit, counted as every limit is (validate.length: characters).
local REQUEST_ID_MAX = require("dws.api").addPaymentMethod.request.fields.requestId.max

local function fail(code, message, http_status, field)
  return nil, errors.new{ api = "notifyAddPaymentMethod", status = "F", code = code, message = message,
                          http_status = http_status, field = field }
end

-- The headers a notification's signature covers (signature.pick_headers is the one rule).
local SIGNED_LIST = { "signature", "client-id", "request-time" }
local SIGNED_HEADERS = {}
for i = 1, #SIGNED_LIST do SIGNED_HEADERS[SIGNED_LIST[i]] = true end

--- Request-Time as the SDKs send it (`dws.time.parse`, kept here under its old name).
-- syntax: `ms = dws.notification.parse_time(s)`
-- @tparam string s a Request-Time or response-time header value
-- @treturn int milliseconds since the epoch, or nil when `s` is neither form
M.parse_time = dtime.parse


-- After the signature and the replay window: only what is needed to act is required
-- (requestId, paymentMethodDetail). Everything else DWS may or may not send (the page's own
-- sample has no operateSource; the table allows referenceUserId instead of
-- referenceCustomerId) is looked at, logged when odd, never a reason to refuse a signed body.
local function check_body(client, body)
  local n, why = core.json_decode(body)
  if n == nil then return fail("PARAM_ILLEGAL", "notification body is not JSON: " .. tostring(why), 400) end
  if not is_object(n) then return fail("PARAM_ILLEGAL", "notification body is not a JSON object", 400) end
  local id = n.requestId
  if type(id) ~= "string" or id == "" then
    return fail("PARAM_ILLEGAL", "requestId is required (a string)", 400, "requestId")
  end
  if validate.length(id) > REQUEST_ID_MAX then
    return fail("PARAM_ILLEGAL", string.format("requestId is longer than %d characters", REQUEST_ID_MAX), 400,
      "requestId")
  end
  if not is_object(n.paymentMethodDetail) then
    return fail("PARAM_ILLEGAL", "paymentMethodDetail is required (an object)", 400, "paymentMethodDetail")
  end
  local refs = (n.referenceCustomerId ~= nil and 1 or 0) + (n.referenceUserId ~= nil and 1 or 0)
  if n.operateSource == "MERCHANT" and refs == 1 then return n end -- the usual body: nothing to note
  local notes = {}
  if n.operateSource == nil then
    notes[#notes + 1] = "no operateSource"
  elseif n.operateSource ~= "MERCHANT" then
    notes[#notes + 1] = "operateSource " .. tostring(n.operateSource)
  end
  if refs == 0 then notes[#notes + 1] = "neither referenceCustomerId nor referenceUserId" end
  if refs == 2 then notes[#notes + 1] = "both referenceCustomerId and referenceUserId" end
  if #notes > 0 then
    client:log("info", "notification accepted with " .. table.concat(notes, ", "), { requestId = id })
  end
  return n
end

--- What a notification says about its binding. The notify page defines only the success form
-- (a card with its final `cardToken`, no `result`); it gives no failure form. Our reading (README
-- "Notifications"):
--
-- - `"BOUND", token`: a non-empty `paymentMethodDetail.card.cardToken`, and no `result` or one
--   with resultStatus `S`;
-- - `"FAILED", resultCode`: a `result` with resultStatus `F` (the form the sandbox sends; the
--   pages have none);
-- - `"UNCONFIRMED", why`: anything else: a `result` with another status (`U`, ...), or no card
--   token at all (the likeliest failure form the pages could use). Never BOUND without a token.
-- syntax: `state, detail = dws.notification.outcome(notification)`
-- @tparam table n a verified notification
-- @treturn string `"BOUND"`, `"FAILED"` or `"UNCONFIRMED"`
-- @treturn string the final `cardToken` (BOUND), the `resultCode` (FAILED), or a code saying what
-- was missing (UNCONFIRMED: the `resultCode` given, or `NO_CARD_TOKEN`)
function M.outcome(n)
  local result = is_object(n.result) and n.result or nil
  local status = result and result.resultStatus
  local code = result and type(result.resultCode) == "string" and result.resultCode or nil
  if result and status == "F" then return "FAILED", code or "UNKNOWN" end
  if result and status ~= "S" then return "UNCONFIRMED", code or "UNKNOWN_RESULT_STATUS" end
  local detail = is_object(n.paymentMethodDetail) and n.paymentMethodDetail or {}
  local card = is_object(detail.card) and detail.card or {}
  local token = card.cardToken
  if type(token) ~= "string" or token == "" then return "UNCONFIRMED", "NO_CARD_TOKEN" end
  return "BOUND", token
end

-- The tolerance for this call: the caller's, else the client's option. A per-call value is held
-- to the same rule as the option (a NaN would switch the window off).
local function tolerance_of(client, opts)
  local t = opts.tolerance
  if t ~= nil then
    if not dtime.valid_tolerance(t) then
      error("dws.notification: opts.tolerance must be a number of seconds from 0 to " .. dtime.MAX_TOLERANCE, 3)
    end
    return t
  end
  return client.options and client.options.notification_tolerance or DEFAULT_TOLERANCE
end

-- A signed notification outside the replay window: DWS may re-send the bytes it first signed (its
-- schedule runs 15 hours and more), so the window alone would refuse the very re-sends that
-- deliver a result. The signature proves DWS said it; what the window guards against is a replay
-- changing something. So, for a requestId the journal holds:
-- - not final: accepted whatever the age (the statement is DWS's own, about that binding, and
--   final states never change);
-- - final: accepted while the de-dup memory (seen_ttl) can still tell a repeat, and handled as any
--   delivery is (acknowledged when its handler has run, run when it has not: a handler that failed
--   before must get its retry); older, refused, since nothing would stop a second run.
-- One the journal does not know is refused as a replay. -> record (the journal's) | nil, err
local function late(client, n, skew, tolerance, seen_ttl)
  local j = client.journal
  local rec, jerr = nil, nil
  if j then rec, jerr = j:get(n.requestId) end
  if jerr then
    return nil, errors.new{ api = "notifyAddPaymentMethod", code = errors.JOURNAL_UNAVAILABLE, status = "U",
      http_status = 500, message = "request-time is " .. dtime.describe(skew, tolerance)
        .. ", and the binding journal cannot say whether it is a re-send: " .. tostring(jerr) }
  end
  if not rec then
    return fail("NOTIFICATION_EXPIRED", "request-time is " .. dtime.describe(skew, tolerance)
      .. " (replayed or clock skew), for a requestId the binding journal does not hold", 401)
  end
  if journal.FINAL[rec.state] and math.abs(skew) > seen_ttl then
    return fail("NOTIFICATION_EXPIRED", "request-time is " .. dtime.describe(skew, tolerance)
      .. ", older than the de-dup memory, for a binding already " .. rec.state, 401)
  end
  client:log("info", "late notification accepted: the binding journal holds the binding as " .. rec.state,
    { requestId = n.requestId, skew = math.floor(skew) })
  return rec
end

--- verify(client, { method =, path =, headers =, body = }) -> notification | nil, err
-- The signature over the raw bytes, then the body, then the time: within the tolerance, or
-- outside it for a requestId the binding journal holds (a late re-send; see `late` above).
-- opts.tolerance (seconds) and opts.now (milliseconds) override the client's option and clock.
-- syntax: `n, err = dws.notification.verify(client, request, opts?)` (`client:verify_notification`)
-- @tparam dws.client.Client client
-- @tparam table request `{ method = "POST", path =, headers =, body = }`
-- @tparam[opt] table opts `tolerance`, `now`
-- @treturn table the notification
-- @treturn table the journal's record when the notification was accepted late (outside the
-- tolerance), else nil
-- @treturn[2] nil
-- @treturn[2] dws.errors.Error err (`err.http_status`: 400, 401 or 405; 500 when the journal
-- could not be asked about a late one)
-- @raise when `request` is not a table, its path is not a path, or `opts.tolerance` is not a
-- number of seconds from 0 to 86400
function M.verify(client, request, opts)
  opts = opts or {}
  if type(request) ~= "table" then error("dws.notification.verify: request must be a table", 2) end
  local method = request.method or "POST"
  if method ~= "POST" then return fail("METHOD_NOT_SUPPORTED", "notifications are POSTed", 405) end
  local body, path = request.body, request.path
  if type(body) ~= "string" then return fail("PARAM_ILLEGAL", "notification body is missing", 400) end
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
    error("dws.notification.verify: request.path must be the notify URL's path", 2)
  end
  path = path:match("^[^?#]*")

  local h, bad = signature.pick_headers(request.headers, SIGNED_HEADERS)
  if not h then return fail("SIGNATURE_INVALID", bad, 401) end
  for i = 1, #SIGNED_LIST do
    local name = SIGNED_LIST[i]
    if not h[name] or h[name] == "" then return fail("SIGNATURE_MISSING", "header " .. name .. " is missing", 401) end
  end
  if client.client_id and h["client-id"] ~= client.client_id then
    -- not echoed: header bytes are the sender's, possibly not even UTF-8
    return fail("SIGNATURE_INVALID", "client-id is not this merchant's", 401)
  end

  local ok, why, code = signature.verify_message{ key = client.dws_key, method = "POST", path = path,
    client_id = h["client-id"], time = h["request-time"], body = body, signature = h["signature"] }
  if not ok then
    return fail(code or "SIGNATURE_INVALID", "notification signature does not verify: " .. tostring(why), 401)
  end

  local sent = dtime.parse(h["request-time"])
  if not sent then return fail("SIGNATURE_INVALID", "request-time is neither milliseconds nor ISO 8601", 401) end
  local tolerance = tolerance_of(client, opts)
  local n, berr = check_body(client, body)
  if not n then return nil, berr end
  local skew = dtime.outside(sent, opts.now or core.time_ms(), tolerance)
  if not skew then return n end
  local rec, lerr = late(client, n, skew, tolerance, opts.seen_ttl or opts.ttl or DEFAULT_SEEN_TTL)
  if not rec then return nil, lerr end
  return n, rec
end

-- The de-dup stores of earlier versions, kept as thin aliases of dws.store.

--- Deprecated: use `dws.store.memory(opts)` (or leave notification_store unset).
-- syntax: `store = dws.notification.memory_store(opts?)`
-- @tparam[opt] table opts as `dws.store.memory`
-- @treturn table a memory store
function M.memory_store(opts)
  return dstore.memory(opts)
end

--- Deprecated: use `dws.store.shared_dict` (lua_shared_dict), which this hands over to when it
-- is installed. The fallback adapter has no atomic cas (ngx.shared has none), which
-- de-duplication does not need; do not use it as a journal.
-- syntax: `store = dws.notification.shared_dict_store(ngx.shared.<dict>)`
-- @param dict an `ngx.shared` dict
-- @treturn table a store
-- @raise when `dict` is not a shared dict
function M.shared_dict_store(dict)
  assert(dict and dict.get and dict.set, "dws.notification.shared_dict_store: need an ngx.shared dict")
  if package.searchpath("dws.store.shared_dict", package.path) then
    local sd = require "dws.store.shared_dict"
    return (sd.new or sd.open)(dict)
  end
  local function ok_or_err(ok, err)
    if ok then return true end
    return nil, err
  end
  return {
    get = function(_, key) return (dict:get(key)) end,
    add = function(_, key, value, ttl)
      local ok, err = dict:safe_add(key, value, ttl or 0)
      if not ok and err == "exists" then return false end
      return ok_or_err(ok, err)
    end,
    set = function(_, key, value, ttl) return ok_or_err(dict:safe_set(key, value, ttl or 0)) end,
    cas = function() error("dws.notification.shared_dict_store: no cas; use dws.store.shared_dict", 2) end,
    delete = function(_, key)
      dict:delete(key)
      return true
    end,
    scan = function() error("dws.notification.shared_dict_store: no scan; use dws.store.shared_dict", 2) end,
    close = function() end,
  }
end

local default_stores = setmetatable({}, { __mode = "k" })

-- The client's de-dup store: opts.store, else the notification_store option (a dws.store spec
-- or object), else a per-client memory store; opened once per client.
local function store_for(client, opts)
  if opts.store then return dstore.check(opts.store, "dws.notification: opts.store") end
  local s = default_stores[client]
  if not s then
    local err
    s, err = dstore.open(client.options and client.options.notification_store, "dws.client: option notification_store")
    if not s then return nil, err end
    default_stores[client] = s
  end
  return s
end

local function refusal(err)
  if err.http_status == 500 then return 500, { ["Content-Type"] = "application/json" }, M.UNKNOWN_BODY end
  local body = M.REFUSAL_BODIES[err.code] or M.REFUSAL_BODIES.INVALID_SIGNATURE
  return err.http_status or 400, { ["Content-Type"] = "application/json" }, body
end

local function answer(status, body)
  return status, { ["Content-Type"] = "application/json" }, body
end

local PROCESSING = "processing"
local DONE = "done"

-- Not acknowledged: DWS re-sends later.
local function unknown(client, n, level, message)
  client:log(level, message, { requestId = n.requestId })
  return answer(500, M.UNKNOWN_BODY)
end

local function string_or_nil(v)
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

-- The notification's effect on the binding journal. -> binding view | nil (unknown to the
-- journal, or its record is damaged) | nil, err (the journal could not answer)
local function record(client, n)
  local j = client.journal
  if not j then return nil end
  local state, detail = M.outcome(n)
  local result = is_object(n.result) and n.result or nil
  local card = is_object(n.paymentMethodDetail) and is_object(n.paymentMethodDetail.card)
    and n.paymentMethodDetail.card or {}
  local rec, err, kind = j:transition(n.requestId, "notification", state, function(r)
    if state == "BOUND" then
      r.cardToken = detail
      r.resultStatus, r.resultCode, r.resultMessage = "S", "SUCCESS", nil
      -- DWS's word on which card was bound (after a CONFLICT it is the earlier request's card).
      r.mask = string_or_nil(card.mask) or r.mask
      r.brand = string_or_nil(card.brand) or r.brand
    else
      r.resultStatus = result and string_or_nil(result.resultStatus) or nil
      r.resultCode = detail
      r.resultMessage = result and string_or_nil(result.resultMessage)
        or (detail == "NO_CARD_TOKEN" and "the notification carries no card token" or nil)
    end
  end)
  if not rec then
    if err and kind ~= journal.DAMAGED then return nil, err end
    if err then
      client:log("error", "notification for a binding whose journal record is damaged; handed to the handler "
        .. "without it: " .. tostring(err), { requestId = n.requestId })
    else
      client:log("info", "notification for a requestId the binding journal does not know; handed to the handler",
        { requestId = n.requestId })
    end
    return nil
  end
  if state ~= "BOUND" then
    client:log("error", "notification is not a success with a card token: binding recorded as " .. state
      .. " (" .. tostring(detail) .. ")", { requestId = n.requestId, state = rec.state })
  end
  if rec.state ~= state then
    -- Final already (a repeat from another node's memory, or FAILED then BOUND): the first word stays.
    client:log("warn", "notification says " .. state .. " for a binding already " .. rec.state .. "; kept "
      .. rec.state, { requestId = n.requestId })
  end
  return journal.view(rec)
end

-- How long a done mark is retried synchronously where no background is available (seconds): a
-- plain Lua server answering DWS cannot block much longer than this.
local SYNC_REMEMBER_BUDGET = 1
local REMEMBER_FIRST_DELAY, REMEMBER_MAX_DELAY = 0.05, 1

-- Write the done mark; when the store cannot take it, keep trying until the claim runs out
-- (`deadline`, monotonic seconds): while the claim holds, re-deliveries are asked to come again,
-- and once the mark is written they are acknowledged without a run. Inside nginx the retries run
-- in a timer (the answer to DWS does not wait); elsewhere for at most SYNC_REMEMBER_BUDGET.
local function remember(client, store, key, value, ttl, deadline, id)
  local ok, err = store:set(key, value, ttl)
  if ok then return end
  client:log("error", "could not remember notification, retrying until its claim expires: " .. tostring(err),
    { requestId = id })
  local function retry(premature, budget_end)
    local delay, tries = REMEMBER_FIRST_DELAY, 1
    while true do
      local now = core.monotonic()
      if premature or now + delay > budget_end then
        client:log("error", "could not remember notification: gave up after " .. tries .. " tries; a delivery "
          .. "after its claim expires runs the handler again: " .. tostring(err), { requestId = id })
        return
      end
      runtime.sleep(delay)
      tries = tries + 1
      ok, err = store:set(key, value, ttl)
      if ok then
        client:log("warn", "notification remembered after " .. tries .. " tries", { requestId = id })
        return
      end
      delay = math.min(delay * 2, REMEMBER_MAX_DELAY)
    end
  end
  local started = runtime.background(function(premature) retry(premature, deadline) end)
  if not started then retry(false, math.min(deadline, core.monotonic() + SYNC_REMEMBER_BUDGET)) end
end

--- handle(client, request, handler[, opts]) -> http status, headers, body
-- handler(notification, binding) returns true (or nothing) when recorded, false, reason for a
-- business failure (acknowledged all the same, as the API page asks), nil, err when it could
-- not record it (not acknowledged, so DWS re-sends). `binding` is the journal's record after
-- the notification (client:binding's shape), or nil when the journal does not know the
-- requestId. opts: store, seen_ttl (ttl is the old name), claim_ttl, tolerance, now.
-- syntax: `status, headers, body = dws.notification.handle(client, request, handler, opts?)`
-- (`client:handle_notification`)
-- @tparam dws.client.Client client
-- @tparam table request as `verify` takes it
-- @tparam function handler `handler(notification, binding)`
-- @tparam[opt] table opts
-- @treturn int HTTP status
-- @treturn table headers
-- @treturn string body
-- @raise when `handler` is not a function
function M.handle(client, request, handler, opts)
  opts = opts or {}
  if type(handler) ~= "function" then error("dws.notification.handle: handler must be a function", 2) end
  local n, err = M.verify(client, request, opts)
  if not n then
    client:log(err.http_status == 500 and "error" or "warn", "notification refused: " .. err.message,
      { code = err.code })
    return refusal(err)
  end
  -- Claim the requestId first: a second delivery arriving meanwhile (another worker or node, or
  -- this one while the handler yields) is asked to come again rather than run the handler twice.
  -- A store that cannot answer means we cannot know: not acknowledged, never run unclaimed.
  local store, serr = store_for(client, opts)
  if not store then
    return unknown(client, n, "error", "notification not processed: de-dup store cannot be opened: " .. tostring(serr))
  end
  local key = "dws:notify:" .. n.requestId
  local claim_ttl = opts.claim_ttl or opts.processing_ttl or DEFAULT_CLAIM_TTL
  local claimed_at = core.monotonic()
  local claimed, why = store:add(key, PROCESSING, claim_ttl)
  if claimed == nil then
    return unknown(client, n, "error", "notification not processed: de-dup store error: " .. tostring(why))
  end
  if claimed == false then
    local seen, gerr = store:get(key)
    if seen == nil and gerr ~= nil then
      return unknown(client, n, "error", "notification not processed: de-dup store error: " .. tostring(gerr))
    end
    if seen == nil or seen == PROCESSING then
      return unknown(client, n, "info", "notification is being processed by another delivery; asked to re-send")
    end
    client:log("info", "notification already processed, acknowledged again", { requestId = n.requestId })
    return answer(200, M.ACK_BODY)
  end
  local function release()
    store:delete(key)
  end

  local binding, jerr = record(client, n)
  if binding == nil and jerr ~= nil then
    release()
    return unknown(client, n, "error", "notification not processed: binding journal error: " .. tostring(jerr))
  end

  local ran, result, reason = pcall(handler, n, binding)
  if not ran then
    release()
    return unknown(client, n, "error", "notification handler raised: " .. tostring(result))
  end
  if result == nil and reason ~= nil then
    release()
    return unknown(client, n, "error", "notification handler failed: " .. tostring(reason))
  end
  if result == false then
    client:log("warn", "notification handler reported a business failure (acknowledged): " .. tostring(reason),
      { requestId = n.requestId })
  end

  -- The handler has run: acknowledging is right whether or not the mark can be written now.
  remember(client, store, key, result == false and "business_failure" or DONE,
    opts.seen_ttl or opts.ttl or DEFAULT_SEEN_TTL, claimed_at + claim_ttl, n.requestId)
  return answer(200, M.ACK_BODY)
end

return M
