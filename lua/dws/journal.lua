--- The binding journal: one record per addPaymentMethod requestId, written before the request
-- is sent and moved along by the answers and the notification. It is what lets a binding whose
-- answer was lost (U, timeout, crash) be finished with the very same bytes, and what lets the
-- notification, whenever it arrives, have the last word.
--
-- States (README "Binding a card" draws the machine):
--   NEW              written, not yet sent
--   SENT             being sent (or the process died while it was)
--   ACCEPTED         S answer: DWS has the request; the result comes by notification
--   ACTION_REQUIRED  S answer with an actionForm: the customer must act, then the notification
--   UNKNOWN          U or lost answer: resumable with the recorded bytes
--   BOUND, FAILED    final: from a verified notification (or FAILED from an F answer)
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
-- final token, BOUND only), redirectUrl.
-- @module dws.journal
local core = require "dws.core"
local store = require "dws.store"

local type, pairs, error, setmetatable, tostring = type, pairs, error, setmetatable, tostring

local M = {}

M.PREFIX = "dws:binding:"
--- How long records in a final state are kept (seconds) unless the client says otherwise.
M.DEFAULT_RETENTION = require("dws.defaults").journal_retention

M.FINAL = { BOUND = true, FAILED = true }
M.PENDING = { NEW = true, SENT = true, ACCEPTED = true, ACTION_REQUIRED = true, UNKNOWN = true }
-- States whose request may not have reached DWS, or whose answer was lost: resume re-sends.
M.RESUMABLE = { NEW = true, SENT = true, UNKNOWN = true }

-- Which event may move a record from which state to which. Anything else leaves the record as
-- it is (a late U after ACCEPTED or BOUND, an answer after the notification, a second notification).
local ALLOWED = {
  send = { from = M.RESUMABLE, to = { SENT = true } },
  answer = { from = M.RESUMABLE, to = { ACCEPTED = true, ACTION_REQUIRED = true, UNKNOWN = true, FAILED = true } },
  notification = { from = M.PENDING, to = { BOUND = true, FAILED = true } },
}

-- A compare-and-set that keeps losing means something rewrites the record in a loop.
local MAX_CAS_ROUNDS = 16

local Journal = {}
Journal.__index = Journal

--- A journal over a store. `spec` is what `dws.store.open` takes (nil: memory).
-- @tparam[opt] string|table spec
-- @tparam[opt] table opts `retention` (seconds for final records, or false: kept forever)
function M.open(spec, opts)
  opts = opts or {}
  local retention = opts.retention
  if retention == nil then retention = M.DEFAULT_RETENTION end
  -- dws.client checks the option's range (NUMERIC_OPTIONS); this guards internal callers, NaN and
  -- infinity included (written so that NaN fails).
  if retention ~= false and not (type(retention) == "number" and retention > 0 and retention < math.huge) then
    error("dws.journal: retention must be a positive number of seconds or false", 2)
  end
  return setmetatable({ store = store.open(spec, "dws.client: option journal"), retention = retention }, Journal)
end

local function key(id)
  return M.PREFIX .. id
end

local function decode(raw, id)
  local rec = core.json_decode(raw)
  if type(rec) ~= "table" or type(rec.state) ~= "string" then
    return nil, "journal record for " .. tostring(id) .. " is not readable"
  end
  return rec
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

--- The record for a requestId -> record | nil (unknown) | nil, err
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
    local rec
    rec, err = decode(raw, id)
    if not rec then return nil, err end
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
-- -> { record, ... } | nil, err
function Journal:pending(older_than)
  local rows, err = self.store:scan(M.PREFIX)
  if not rows then return nil, err end
  local cutoff = core.time_ms() - (older_than or 0) * 1000
  local out = {}
  for _, row in ipairs(rows) do
    local rec = decode(row[2], row[1])
    if rec and M.PENDING[rec.state] and (rec.updatedAt or 0) <= cutoff then out[#out + 1] = rec end
  end
  table.sort(out, function(a, b) return (a.updatedAt or 0) < (b.updatedAt or 0) end)
  return out
end

function Journal:close()
  self.store:close()
end

return M
