--- The binding journal: one record per addPaymentMethod requestId, written before the request
-- is sent and moved along by the answers and the notification. It is what lets a binding whose
-- answer was lost (U, timeout, crash) be finished with the very same bytes, and what lets the
-- notification, whenever it arrives, have the last word.
--
-- States (docs/binding.md "Binding a card" draws the machine):
--   NEW              written, not yet sent
--   SENT             being sent (or the process died while it was)
--   ACCEPTED         S answer: DWS has the request; the result comes by notification
--   ACTION_REQUIRED  S answer with an actionForm: the customer must act, then the notification
--   UNKNOWN          U or lost answer: resumable with the recorded bytes
--   CONFLICT         REPEAT_REQ_INCONSISTENT to a first send: an earlier request owns the requestId
--                    at DWS, so DWS may still notify its result; only that notification decides
--   UNCONFIRMED      a verified notification that is neither an explicit success with a card token
--                    nor an explicit failure: someone must look; a later notification may decide
--   BOUND            final: a verified notification with a card token (the final one)
--   FAILED           final: a verified failure notification, or an F answer that rejects this
--                    very request (PARAM_ILLEGAL, INVALID_PAYMENTMETHOD_TOKEN, ...)
--
-- Every change is a compare-and-set on the record's exact text as read, so two writers (the
-- answer and the notification, two processes, two nginx workers) cannot undo each other: the
-- loser re-reads and re-decides, and a final record never changes again.
--
-- A record (JSON in the store, under "dws:binding:<requestId>"): requestId, state, customerId,
-- referenceCustomerId / referenceUserId, body (the exact addPaymentMethod bytes: they carry the
-- temporary token, never a card number or security code), mask, last4, brand, paymentMethodType,
-- expiryTime (the temporary token's), sends, attempts, createdAt / updatedAt (ms since the epoch),
-- resultStatus / resultCode / resultMessage (the last answer or notification), cardToken (the
-- final token, BOUND only), redirectUrl, actionForm. This module is the only one that knows the
-- record's shape: it writes the fields, and `view`/`outcome` are what callers see of them.
-- @module dws.journal
local core = require "dws.core"
local store = require "dws.store"

local type, pairs, error, setmetatable, tostring = type, pairs, error, setmetatable, tostring

local M = {}

M.PREFIX = "dws:binding:"
--- How long records in a final state are kept (seconds) unless the client says otherwise.
M.DEFAULT_RETENTION = require("dws.defaults").journal_retention

M.FINAL = { BOUND = true, FAILED = true }
M.PENDING = { NEW = true, SENT = true, ACCEPTED = true, ACTION_REQUIRED = true, UNKNOWN = true, CONFLICT = true,
              UNCONFIRMED = true }
-- States whose request may not have reached DWS, or whose answer was lost: resume re-sends.
M.RESUMABLE = { NEW = true, SENT = true, UNKNOWN = true }
-- States a verified notification has set: DWS has spoken about the binding (wait_binding stops here).
M.NOTIFIED = { BOUND = true, FAILED = true, UNCONFIRMED = true }

-- Which event may move a record from which state to which. Anything else leaves the record as
-- it is (a late U after ACCEPTED or BOUND, an answer after the notification, a second notification
-- after a final one).
local ALLOWED = {
  send = { from = M.RESUMABLE, to = { SENT = true } },
  answer = { from = M.RESUMABLE,
             to = { ACCEPTED = true, ACTION_REQUIRED = true, UNKNOWN = true, CONFLICT = true, FAILED = true } },
  notification = { from = M.PENDING, to = { BOUND = true, FAILED = true, UNCONFIRMED = true } },
}

-- A compare-and-set that keeps losing means something rewrites the record in a loop.
local MAX_CAS_ROUNDS = 16

local Journal = {}
Journal.__index = Journal

--- A journal over a store. `spec` is what `dws.store.open` takes (nil: memory).
-- @tparam[opt] string|table spec
-- @tparam[opt] table opts `retention` (seconds for final records, or false: kept forever)
-- @return the journal, or nil, err when the store cannot be opened
function M.open(spec, opts)
  opts = opts or {}
  local retention = opts.retention
  if retention == nil then retention = M.DEFAULT_RETENTION end
  -- dws.client checks the option's range (NUMERIC_OPTIONS); this guards internal callers, NaN and
  -- infinity included (written so that NaN fails).
  if retention ~= false and not (type(retention) == "number" and retention > 0 and retention < math.huge) then
    error("dws.journal: retention must be a positive number of seconds or false", 2)
  end
  local st, err = store.open(spec, "dws.client: option journal")
  if not st then return nil, err end
  return setmetatable({ store = st, retention = retention }, Journal)
end

local function key(id)
  return M.PREFIX .. id
end

-- A record is only trusted for the id it is stored under: a restored backup, a bad migration or
-- a hostile writer can leave another binding's record (or half of one) under a key, and acting on
-- it would re-send someone else's request. -> record | nil, why
local function check(rec, id)
  if type(rec) ~= "table" then return nil, "is not a JSON object" end
  if type(rec.state) ~= "string" or not (M.PENDING[rec.state] or M.FINAL[rec.state]) then
    return nil, "has no known state"
  end
  if rec.requestId ~= id then return nil, "belongs to another requestId" end
  if rec.body ~= nil and type(rec.body) ~= "string" then return nil, "has a body that is not text" end
  if M.RESUMABLE[rec.state] and type(rec.body) ~= "string" then return nil, "has no request body to send" end
  return rec
end

--- The kind of error a journal call returns for a record that fails its checks (the third
-- return value; store failures have none).
M.DAMAGED = "damaged"

local function decode(raw, id)
  local rec, why = check(core.json_decode(raw), id)
  if not rec then
    return nil, "journal record for " .. tostring(id) .. " is damaged: it " .. why, M.DAMAGED
  end
  return rec
end

--- Whether a record's request body is the request of `id` (a resend must carry its own
-- requestId, whatever the record says). -> true | nil, why
function M.body_matches(rec, id)
  local body = core.json_decode(rec.body)
  if type(body) ~= "table" or body.requestId ~= id then
    return nil, "journal record for " .. tostring(id) .. " is damaged: its request body is another request's"
  end
  return true
end

local function encode(rec)
  local s, err = core.json_encode(rec)
  if not s then error("dws.journal: record cannot be encoded: " .. tostring(err), 0) end
  return s
end

-- Final records may go after the retention period; the others never expire on their own.
function Journal:ttl(state)
  if M.FINAL[state] and self.retention then return self.retention end
  return nil
end

--- Write a new record (state NEW). -> true | false (the requestId is already journaled) | nil, err
function Journal:create(rec)
  local now = core.time_ms()
  rec.state = "NEW"
  rec.sends, rec.attempts = 0, 0
  rec.createdAt, rec.updatedAt = now, now
  return self.store:add(key(rec.requestId), encode(rec), nil)
end

--- The record for a requestId -> record | nil (unknown) | nil, err[, M.DAMAGED]
function Journal:get(id)
  local raw, err = self.store:get(key(id))
  if raw == nil then return nil, err end
  return decode(raw, id)
end

--- Move a record on `event` ("send", "answer", "notification") to state `to`, applying
-- `edit(copy)` to the new record first (may be nil). -> record, changed | nil (unknown) | nil, err.
-- When the rules refuse the move, the record comes back as it is, with changed = false.
function Journal:transition(id, event, to, edit)
  local rule = ALLOWED[event]
  if not rule or not rule.to[to] then
    error("dws.journal: no " .. tostring(event) .. " transition to " .. tostring(to), 2)
  end
  local k = key(id)
  for _ = 1, MAX_CAS_ROUNDS do
    local raw, err = self.store:get(k)
    if raw == nil then return nil, err end
    local rec, kind
    rec, err, kind = decode(raw, id)
    if not rec then return nil, err, kind end
    if not rule.from[rec.state] then return rec, false end
    local new = {}
    for f, v in pairs(rec) do new[f] = v end
    if edit then edit(new) end
    new.state, new.updatedAt = to, core.time_ms()
    local ok
    ok, err = self.store:cas(k, raw, encode(new), self:ttl(to))
    if ok then return new, true end
    if ok == nil then return nil, err end
    -- Someone else wrote in between: read again and decide again.
  end
  return nil, "journal record for " .. id .. " keeps changing under us"
end

--- Records not in a final state, last changed at least `older_than` seconds ago, oldest first.
-- A record that fails its checks is listed too, as `{ requestId = <its key's id>, state = "DAMAGED",
-- damage = why }` (first): an operator must see it, and resuming it is refused.
-- -> { record, ... } | nil, err
function Journal:pending(older_than)
  local rows, err = self.store:scan(M.PREFIX)
  if not rows then return nil, err end
  local cutoff = core.time_ms() - (older_than or 0) * 1000
  local out, damaged = {}, {}
  for _, row in ipairs(rows) do
    local id = row[1]:sub(#M.PREFIX + 1)
    local rec, why = decode(row[2], id)
    -- A record a sweeper would resume must carry its own request (resume checks it again).
    if rec and M.RESUMABLE[rec.state] then
      local mine, mwhy = M.body_matches(rec, id)
      if not mine then rec, why = nil, mwhy end
    end
    if not rec then
      damaged[#damaged + 1] = { requestId = id, state = "DAMAGED", damage = why }
    elseif M.PENDING[rec.state] and (rec.updatedAt or 0) <= cutoff then
      out[#out + 1] = rec
    end
  end
  table.sort(out, function(a, b) return (a.updatedAt or 0) < (b.updatedAt or 0) end)
  table.sort(damaged, function(a, b) return a.requestId < b.requestId end)
  for i = 1, #out do damaged[#damaged + 1] = out[i] end
  return damaged
end

--- The outcome a caller sees for a record (bind_card, resume_binding). NEW and SENT are
-- reported as UNKNOWN: the request may or may not have reached DWS.
-- syntax: `outcome = dws.journal.outcome(record)`
function M.outcome(rec)
  local status = rec.state
  if status == "NEW" or status == "SENT" then status = "UNKNOWN" end
  return {
    status = status,
    requestId = rec.requestId,
    mask = rec.mask,
    last4 = rec.last4,
    brand = rec.brand,
    expiryTime = rec.expiryTime,
    paymentMethodType = rec.paymentMethodType,
    actionForm = rec.actionForm,
    redirectUrl = rec.redirectUrl,
    resultCode = rec.resultCode,
    -- The final token, only ever from a verified notification.
    cardToken = rec.state == "BOUND" and rec.cardToken or nil,
  }
end

--- What client:binding and pending_bindings show of a record: the outcome's fields plus the
-- journal's own (the body stays inside: it holds the temporary token and is for resending).
-- syntax: `binding = dws.journal.view(record)`
function M.view(rec)
  if rec.state == "DAMAGED" then
    return { status = "DAMAGED", state = "DAMAGED", requestId = rec.requestId, damage = rec.damage }
  end
  local b = M.outcome(rec)
  b.state = rec.state -- NEW / SENT as they are, for a sweeper
  b.customerId, b.referenceCustomerId, b.referenceUserId = rec.customerId, rec.referenceCustomerId, rec.referenceUserId
  b.sends, b.attempts, b.createdAt, b.updatedAt = rec.sends, rec.attempts, rec.createdAt, rec.updatedAt
  b.resultStatus, b.resultMessage = rec.resultStatus, rec.resultMessage
  return b
end

function Journal:close()
  self.store:close()
end

return M
