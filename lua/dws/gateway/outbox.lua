--- The gateway's outbox: every verified notification becomes an entry in the journal's store
-- before DWS is acknowledged, and is forwarded to the backend until it answers 2xx, in order per
-- binding. Plain Lua over any dws.store (the forwarding itself is handed in), so it runs the same
-- under the specs' Lua 5.4 as inside nginx.
--
-- An entry is JSON under "dws:outbox:<id>": id (the webhook-id, the same on every attempt and for a
-- DWS re-send of the same result, so a backend de-duplicates on it), requestId, type, createdAt (ms),
-- attempts, nextAt (ms), lastError, payload (the exact bytes posted and signed).
-- @module dws.gateway.outbox
local core = require "dws.core"
local validate = require "dws.validate"
local notification = require "dws.notification"
local is_object = validate.is_object

local M = {}

M.PREFIX = "dws:outbox:"


local function iso8601(ms)
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(ms / 1000)) .. string.format(".%03dZ", math.floor(ms % 1000))
end

--- The webhook-id of a notification's result: derived from its requestId and outcome, so a re-sent
-- notification gets the id the backend has already seen (our choice).
-- syntax: `id = outbox.event_id(request_id, status)`
function M.event_id(request_id, status)
  local safe = request_id
  if not safe:match("^[%w_.-]+$") then
    safe = request_id:gsub(".", function(ch) return string.format("%02x", ch:byte()) end)
  end
  return "msg_" .. status:lower() .. "_" .. safe
end

-- The binding fields a backend may read (the journal's view; the resend body never leaves).
local BINDING_FIELDS = { "status", "state", "requestId", "mask", "last4", "brand", "paymentMethodType",
  "cardToken", "resultCode", "resultStatus", "resultMessage", "customerId", "referenceCustomerId",
  "referenceUserId", "createdAt", "updatedAt" }

--- The entry for a verified notification (not yet stored).
-- syntax: `entry = outbox.entry(n, binding, now_ms)`
-- @tparam table n the verified notification
-- @tparam[opt] table binding the journal's view after it (nil: unknown to the journal)
-- @tparam int now_ms
function M.entry(n, binding, now_ms)
  local status, detail = notification.outcome(n)
  local id = M.event_id(n.requestId, status)
  local data = { requestId = n.requestId, status = status, notification = n }
  if status == "BOUND" then data.cardToken = detail else data.resultCode = detail end
  if binding then
    local b = {}
    for _, k in ipairs(BINDING_FIELDS) do b[k] = binding[k] end
    data.binding = b
  end
  local payload = assert(core.json_encode{ type = "binding." .. status:lower(), timestamp = iso8601(now_ms),
                                           data = data })
  return { id = id, requestId = n.requestId, type = "binding." .. status:lower(), createdAt = now_ms,
           attempts = 0, nextAt = now_ms, payload = payload }
end

--- Store an entry: true once it is in the store (also when an equal one already was), nil, err when
-- the store could not take it (then DWS must not be acknowledged).
-- syntax: `ok, err = outbox.put(store, entry)`
function M.put(store, entry)
  local text = assert(core.json_encode(entry))
  local ok, err = store:add(M.PREFIX .. entry.id, text)
  if ok == nil then return nil, err end
  return true
end

--- The entries in forwarding order (oldest first; ties by id), each with its stored text in `_text`.
-- syntax: `list, err = outbox.list(store)`
function M.list(store)
  local rows, err = store:scan(M.PREFIX)
  if not rows then return nil, err end
  local out = {}
  for _, row in ipairs(rows) do
    local e = core.json_decode(row[2])
    if is_object(e) and type(e.id) == "string" and type(e.createdAt) == "number" then
      e._text, e._key = row[2], row[1]
      out[#out + 1] = e
    end
  end
  table.sort(out, function(a, b)
    if a.createdAt ~= b.createdAt then return a.createdAt < b.createdAt end
    return a.id < b.id
  end)
  return out
end

--- How many entries wait, and the oldest one's age in seconds (0 when none).
-- syntax: `depth, oldest_age, err = outbox.depth(store, now_ms)`
function M.depth(store, now_ms)
  local list, err = M.list(store)
  if not list then return nil, nil, err end
  local oldest = list[1] and (now_ms - list[1].createdAt) / 1000 or 0
  return #list, oldest
end

--- The wait before attempt n + 1 after n failures: base * 2^(n-1), at most max (seconds).
function M.backoff(n, base, max)
  return math.min(max, base * 2 ^ (n - 1))
end

--- One pass over the outbox: the oldest due entry of each binding is handed to `post(entry)`, oldest
-- first, up to `concurrency` at once through `parallel`; a binding's later entries wait for the
-- next pass (order per binding), as do the entries of a binding whose head is backed off.
-- post returns true (2xx: the entry is deleted), or false, why, down (down = the backend did not
-- answer at all: the pass ends, the rest would only wait for the same timeout).
-- syntax: `stats, err = outbox.run(store, opts)`
-- @tparam table opts `post`, `now` (ms), `retry_base`, `retry_max` (seconds), `keep_going()`
-- (false stops the pass: the forwarding lock was lost, or the worker is exiting), `concurrency`
-- (default 1), `parallel(fns, width)` (runs the functions in order, at most `width` at once, and
-- returns when all have; default one by one)
-- @treturn table `{ sent =, failed =, held =, store_errors =, next_at = }` (next_at: ms when an
-- entry left in the outbox is due, nil when none is left)
function M.run(store, opts)
  local list, err = M.list(store)
  if not list then return nil, err end
  local stats = { sent = 0, failed = 0, held = 0, store_errors = 0 }
  local first, second, heads = {}, {}, {}
  local now = opts.now()
  for _, e in ipairs(list) do
    local id = e.requestId
    if first[id] then
      second[id] = second[id] or e
      stats.held = stats.held + 1
    else
      first[id] = e
      if (e.nextAt or 0) > now then stats.held = stats.held + 1 else heads[#heads + 1] = e end
    end
  end
  local down = false
  local function forward(e)
    local ok, why, no_answer = opts.post(e)
    if ok then
      e.delivered = true
      if store:delete(e._key) then stats.sent = stats.sent + 1 else stats.store_errors = stats.store_errors + 1 end
      return
    end
    stats.failed = stats.failed + 1
    if no_answer then down = true end
    local text, key = e._text, e._key
    e._text, e._key = nil, nil
    e.attempts = (e.attempts or 0) + 1
    e.nextAt = opts.now() + math.floor(M.backoff(e.attempts, opts.retry_base, opts.retry_max) * 1000)
    e.lastError = tostring(why)
    -- A lost cas means another forwarder moved it: its word stands.
    if store:cas(key, text, assert(core.json_encode(e))) == nil then stats.store_errors = stats.store_errors + 1 end
  end
  local width = opts.concurrency or 1
  local parallel = opts.parallel or function(fns)
    for _, fn in ipairs(fns) do fn() end
  end
  local fns = {}
  for k, e in ipairs(heads) do
    fns[k] = function()
      if down or (opts.keep_going and not opts.keep_going()) then
        down = true
        return
      end
      forward(e)
    end
  end
  parallel(fns, width)
  -- When the next pass has work: each binding's head when it is due again (a failed one after its
  -- backoff, one not tried at once), or its next entry once the head was delivered.
  for id, h in pairs(first) do
    local at
    if not h.delivered then
      at = h.nextAt or now
    elseif second[id] then
      at = math.max(now, second[id].nextAt or now)
    end
    if at and (not stats.next_at or at < stats.next_at) then stats.next_at = at end
  end
  return stats
end

return M
