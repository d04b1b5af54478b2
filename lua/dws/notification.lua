-- Binding-result notifications (notifyAddPaymentMethod) as a merchant receives them:
-- verify the signature over the raw bytes, refuse replays, check the body, de-duplicate on
-- requestId, run the merchant's handler and say what to answer.
local core = require "dws.core"
local errors = require "dws.errors"
local signature = require "dws.signature"

local M = {}

-- The acknowledgement, byte for byte as SIGNING.md gives it (not built by the JSON encoder,
-- which would sort the keys).
M.ACK_BODY = '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}'
M.UNKNOWN_BODY = '{"result":{"resultCode":"UNKNOWN_EXCEPTION","resultStatus":"U",' ..
  '"resultMessage":"notification not processed, please re-send"}}'
-- Refusals: fixed bodies, one per result code. Nothing from the request (a header value, a body
-- field) is ever reflected into an answer, and a constant is valid JSON whatever the input was.
M.REFUSAL_BODIES = {
  INVALID_SIGNATURE = '{"result":{"resultCode":"INVALID_SIGNATURE","resultStatus":"F",' ..
    '"resultMessage":"notification refused: signature, client-id or request-time not accepted"}}',
  PARAM_ILLEGAL = '{"result":{"resultCode":"PARAM_ILLEGAL","resultStatus":"F",' ..
    '"resultMessage":"notification refused: body is not a valid notification"}}',
  METHOD_NOT_SUPPORTED = '{"result":{"resultCode":"METHOD_NOT_SUPPORTED","resultStatus":"F",' ..
    '"resultMessage":"notification refused: notifications are POSTed"}}',
}

local DEFAULT_TOLERANCE = 300
-- DWS re-sends for about 24 hours; remember a notification a while longer than that.
local DEFAULT_SEEN_TTL = 2 * 24 * 3600

local FIELDS = {
  { name = "referenceCustomerId", max = 64 },
  { name = "requestId", max = 64 },
  { name = "operateSource", max = 16, values = { MERCHANT = true } },
}

local function fail(code, message, http_status, field)
  return nil, errors.new{ api = "notifyAddPaymentMethod", status = "F", code = code, message = message,
                          http_status = http_status, field = field }
end

-- Through the client, which pcalls the logger: a failing logger must not cost an acknowledgement.
local function log(client, level, message, fields)
  if client and client.log then client:log(level, message, fields or {}) end
end

-- One value per header name, whatever letter case the caller's table uses. A name given twice
-- (two spellings, or an array of values) is refused: which copy was signed is unknowable.
local function header_values(headers)
  local out = {}
  for name, value in pairs(headers or {}) do
    if type(name) == "string" then
      local lname = name:lower()
      if type(value) == "table" then
        if #value ~= 1 then return nil, lname end
        value = value[1]
      end
      if out[lname] ~= nil then return nil, lname end
      out[lname] = tostring(value)
    end
  end
  return out
end

-- Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's days_from_civil), so no
-- local time zone or os.time() is involved.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- Request-Time as the SDKs send it: milliseconds since the epoch, or ISO 8601 with a zone
-- (Z, +hh:mm or +hhmm; optional fraction). Returns milliseconds, or nil.
function M.parse_time(s)
  if type(s) ~= "string" then return nil end
  if s:match("^%d+$") and #s <= 15 then return tonumber(s) end
  local y, mo, d, h, mi, sec, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[T ](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  y, mo, d, h, mi, sec = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(sec)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or sec > 60 then return nil end
  local frac = 0
  local digits, zone = rest:match("^%.(%d+)(.*)$")
  if digits then
    frac = tonumber("0." .. digits)
    rest = zone
  end
  local offset
  if rest == "Z" then
    offset = 0
  else
    local sign, oh, om = rest:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(oh) * 60 + tonumber(om)) * 60
    if sign == "-" then offset = -offset end
  end
  local seconds = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset
  return math.floor((seconds + frac) * 1000)
end

local function check_body(body)
  local n, why = core.json_decode(body)
  if n == nil then return fail("PARAM_ILLEGAL", "notification body is not JSON: " .. tostring(why), 400) end
  if type(n) ~= "table" or getmetatable(n) == core.array_mt then
    return fail("PARAM_ILLEGAL", "notification body is not a JSON object", 400)
  end
  for _, f in ipairs(FIELDS) do
    local v = n[f.name]
    if v == nil or v == core.null or v == "" then
      return fail("PARAM_ILLEGAL", f.name .. " is required", 400, f.name)
    end
    if type(v) ~= "string" then
      return fail("PARAM_ILLEGAL", f.name .. " must be a string", 400, f.name)
    end
    if #v > f.max then
      return fail("PARAM_ILLEGAL", string.format("%s is longer than %d characters", f.name, f.max), 400, f.name)
    end
    if f.values and not f.values[v] then
      return fail("PARAM_ILLEGAL", f.name .. " has an unknown value: " .. v, 400, f.name)
    end
  end
  if type(n.paymentMethodDetail) ~= "table" or getmetatable(n.paymentMethodDetail) == core.array_mt then
    return fail("PARAM_ILLEGAL", "paymentMethodDetail is required (an object)", 400, "paymentMethodDetail")
  end
  return n
end

-- verify(client, { method =, path =, headers =, body = }) -> notification | nil, err
-- opts.tolerance (seconds) and opts.now (milliseconds) override the client's option and clock.
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

  local h, dup = header_values(request.headers)
  if not h then return fail("SIGNATURE_INVALID", "header " .. dup .. " given more than once", 401) end
  for _, name in ipairs{ "signature", "client-id", "request-time" } do
    if not h[name] or h[name] == "" then return fail("SIGNATURE_MISSING", "header " .. name .. " is missing", 401) end
  end
  if client.client_id and h["client-id"] ~= client.client_id then
    -- not echoed: header bytes are the sender's, possibly not even UTF-8
    return fail("SIGNATURE_INVALID", "client-id is not this merchant's", 401)
  end

  local ok, why = signature.verify_message{ key = client.dws_key, method = "POST", path = path,
    client_id = h["client-id"], time = h["request-time"], body = body, signature = h["signature"] }
  if not ok then
    return fail("SIGNATURE_INVALID", "notification signature does not verify: " .. tostring(why), 401)
  end

  local sent = M.parse_time(h["request-time"])
  if not sent then return fail("SIGNATURE_INVALID", "request-time is neither milliseconds nor ISO 8601", 401) end
  local tolerance = opts.tolerance or (client.options and client.options.notification_tolerance)
    or DEFAULT_TOLERANCE
  local now = opts.now or core.time_ms()
  local skew = (now - sent) / 1000
  if skew > tolerance or -skew > tolerance then
    return fail("NOTIFICATION_EXPIRED", string.format("request-time is %d s from now, outside the %d s tolerance" ..
      " (replayed or clock skew)", math.floor(skew), tolerance), 401)
  end

  return check_body(body)
end

-- De-duplication stores: anything with get(self, key) -> value|nil and
-- set(self, key, value, ttl). A store that also has add(self, key, value, ttl) -> true | false
-- (false when the key exists) and delete(self, key) lets two deliveries of one notification
-- that arrive at the same time run the handler once, not twice.

-- Per-process memory, bounded: at max_entries the expired entries go first, then the oldest.
function M.memory_store(opts)
  opts = opts or {}
  local max = opts.max_entries or 10000
  local clock = opts.clock or core.monotonic
  local entries, queue, head, count = {}, {}, 1, 0
  local last_sweep = -math.huge
  local store = {}

  local function remove(key)
    if entries[key] then
      entries[key] = nil
      count = count - 1
    end
  end

  local function drop_oldest()
    while head <= #queue do
      local item = queue[head]
      queue[head] = false
      head = head + 1
      if entries[item.key] == item then
        remove(item.key)
        return
      end
    end
  end

  local function compact()
    local live = {}
    for i = head, #queue do
      local item = queue[i]
      if item and entries[item.key] == item then live[#live + 1] = item end
    end
    queue, head = live, 1
  end

  -- A full sweep for expired entries costs O(n): at most once a second, when over the bound.
  local function make_room()
    local now = clock()
    if now - last_sweep >= 1 then
      last_sweep = now
      for k, it in pairs(entries) do
        if it.expires <= now then remove(k) end
      end
    end
    while count > max do drop_oldest() end
  end

  function store.get(_, key)
    local item = entries[key]
    if not item then return nil end
    if item.expires <= clock() then
      remove(key)
      return nil
    end
    return item.value
  end

  function store.set(_, key, value, ttl)
    local item = { key = key, value = value, expires = clock() + (ttl or DEFAULT_SEEN_TTL) }
    remove(key)
    entries[key] = item
    count = count + 1
    queue[#queue + 1] = item
    if count > max then make_room() end
    if head > 64 and head > #queue / 2 then compact() end
    return true
  end

  function store.add(self, key, value, ttl)
    if self:get(key) ~= nil then return false, "exists" end
    return self:set(key, value, ttl)
  end

  function store.delete(_, key)
    remove(key)
    return true
  end

  function store.size() return count end
  return store
end

-- An ngx.shared dict (lua_shared_dict), shared by all workers of one nginx.
function M.shared_dict_store(dict)
  assert(dict and dict.get and dict.set, "dws.notification.shared_dict_store: need an ngx.shared dict")
  return {
    get = function(_, key) return (dict:get(key)) end,
    set = function(_, key, value, ttl)
      local ok, err = dict:set(key, value, ttl or DEFAULT_SEEN_TTL)
      return ok, err
    end,
    add = function(_, key, value, ttl)
      local ok, err = dict:add(key, value, ttl or DEFAULT_SEEN_TTL)
      return ok, err
    end,
    delete = function(_, key)
      dict:delete(key)
      return true
    end,
  }
end

local default_stores = setmetatable({}, { __mode = "k" })

local function store_for(client, opts)
  if opts.store then return opts.store end
  if client.options and client.options.notification_store then return client.options.notification_store end
  local s = default_stores[client]
  if not s then
    s = M.memory_store()
    default_stores[client] = s
  end
  return s
end

local function refusal(err)
  local body = M.REFUSAL_BODIES[err.code] or M.REFUSAL_BODIES.INVALID_SIGNATURE
  return err.http_status or 400, { ["Content-Type"] = "application/json" }, body
end

local function answer(status, body)
  return status, { ["Content-Type"] = "application/json" }, body
end

local PROCESSING = "processing"

local function busy(client, n)
  log(client, "info", "notification is being processed by another delivery; asked to re-send",
    { requestId = n.requestId })
  return answer(500, M.UNKNOWN_BODY)
end

-- handle(client, request, handler[, opts]) -> http status, headers, body
-- handler(notification) returns true (or nothing) when recorded, false, reason for a business
-- failure (acknowledged all the same, as the API page asks), nil, err when it could not record
-- it (not acknowledged, so DWS re-sends). opts: store, ttl, tolerance, now.
function M.handle(client, request, handler, opts)
  opts = opts or {}
  if type(handler) ~= "function" then error("dws.notification.handle: handler must be a function", 2) end
  local n, err = M.verify(client, request, opts)
  if not n then
    log(client, "warn", "notification refused: " .. err.message, { code = err.code })
    return refusal(err)
  end

  local store = store_for(client, opts)
  local key = "dws:notify:" .. n.requestId
  local seen = store:get(key)
  if seen == PROCESSING then return busy(client, n) end
  if seen then
    log(client, "info", "notification already processed, acknowledged again", { requestId = n.requestId })
    return answer(200, M.ACK_BODY)
  end
  -- Claim it, where the store can: a second delivery arriving meanwhile (another worker, or this
  -- one while the handler yields) is asked to come again rather than run the handler twice.
  -- A claim refused for another reason (a full shared dict) runs the handler unclaimed.
  if type(store.add) == "function" then
    local claimed, why = store:add(key, PROCESSING, opts.processing_ttl or 60)
    if not claimed and why == "exists" then
      local now_seen = store:get(key)
      if now_seen == nil or now_seen == PROCESSING then return busy(client, n) end
      return answer(200, M.ACK_BODY)
    end
  end
  local function release()
    if type(store.delete) == "function" then store:delete(key) end
  end

  local ran, result, reason = pcall(handler, n)
  if not ran then
    release()
    log(client, "error", "notification handler raised: " .. tostring(result), { requestId = n.requestId })
    return answer(500, M.UNKNOWN_BODY)
  end
  if result == nil and reason ~= nil then
    release()
    log(client, "error", "notification handler failed: " .. tostring(reason), { requestId = n.requestId })
    return answer(500, M.UNKNOWN_BODY)
  end
  if result == false then
    log(client, "warn", "notification handler reported a business failure (acknowledged): " .. tostring(reason),
      { requestId = n.requestId })
  end

  local stored, why = store:set(key, result == false and "business_failure" or "processed", opts.ttl)
  if not stored then
    log(client, "warn", "could not remember notification: " .. tostring(why), { requestId = n.requestId })
  end
  return answer(200, M.ACK_BODY)
end

return M
