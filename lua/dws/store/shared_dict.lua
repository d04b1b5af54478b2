--- A dws.store in an nginx `lua_shared_dict`: one node, all its workers.
--
--     lua_shared_dict dws_store 16m;     # nginx.conf, http block
--     local store = require("dws.store.shared_dict").new(ngx.shared.dws_store)
--
-- Never forgets silently: writes use safe_add / safe_set, which fail with "no memory" rather
-- than evict the least recently used live entry (plain set/add would, and a forgotten
-- notification runs its handler twice). A full dict answers nil, err, so the notification gets a
-- U answer and is re-sent later, when expired entries have made room.
--
-- ngx.shared has no compare-and-set. cas takes a short lock: one of SLOTS counters picked by the
-- key's hash, taken with incr (atomic across workers: the dict has one mutex), so a worker killed
-- while holding it blocks those keys for LOCK_TTL seconds at most. The other writers (add, set,
-- delete) take the same lock, so a cas can never overwrite a value written between its read and
-- its write. A lock is held across two dict calls that never yield, i.e. microseconds; a version
-- number beside each value would need the same lock to update both, so the lock alone is simpler.
-- Waiting for a lock sleeps 1 ms at a time where ngx.sleep may yield, else spins.
-- @module dws.store.shared_dict
local store = require "dws.store"

local type, error, setmetatable, tostring, pcall = type, error, setmetatable, tostring, pcall

local M = {}

--- How long a lock slot may stay taken before a waiting worker frees it: long enough that no live
-- holder (two dict calls) can outlast it, even descheduled by the OS; short enough that a worker
-- killed mid-write blocks its keys only briefly.
M.LOCK_TTL = 5
--- How long a writer waits for another worker's lock before answering nil, err (seconds).
M.LOCK_WAIT = 1

-- Lock keys live under a prefix no caller's key starts with (callers use "dws:...").
local LOCK = "\1lock\1"

local Shared = {}
Shared.__index = Shared

--- A store over an ngx.shared dict (the object, e.g. `ngx.shared.dws_store`).
function M.new(dict)
  if type(dict) ~= "table" and type(dict) ~= "userdata" or not dict.safe_add then
    error("dws.store.shared_dict: need an ngx.shared dict (lua_shared_dict)", 2)
  end
  return setmetatable({ dict = dict, busy_since = {} }, Shared)
end

local NAME = "dws.store.shared_dict"
local check_key, check_value, check_ttl = store.check_key, store.check_value, store.check_ttl

-- A checked ttl in seconds (ngx.shared keeps milliseconds) or nil = 0, which ngx.shared reads as "never".
local function exptime(ttl)
  if ttl == nil then return 0 end
  return ttl < 0.001 and 0.001 or ttl
end

local function full(err)
  if err == "no memory" then
    return nil, "ngx.shared dict full: no room without evicting live entries (size it up: see the README)"
  end
  return nil, "ngx.shared: " .. tostring(err)
end

-- Locks are SLOTS counters made when the store is made (in init_by_lua the dict is empty) and
-- never removed: taking one is an incr, which allocates nothing, so a full dict can still be
-- written where a write needs no new memory (replacing a claim by "done", below).
local SLOTS = 64

local function slot_of(key)
  return LOCK .. (ngx.crc32_short(key) % SLOTS)
end

local function make_slots(dict)
  for i = 0, SLOTS - 1 do
    local ok, err = dict:safe_add(LOCK .. i, 0)
    if not ok and err ~= "exists" then return full(err) end
  end
  return true
end

-- Run fn(dict) holding the key's lock; fn's results, or nil, err when the lock cannot be had.
-- A worker killed while holding a slot (between two dict calls) leaves it taken: once this
-- worker has seen that slot taken for LOCK_TTL seconds, across calls, it frees it.
local function locked(self, key, fn, ...)
  local dict, lock = self.dict, slot_of(key)
  if not self.ready then
    local ok, err = make_slots(dict)
    if not ok then return nil, err end
    self.ready = true
  end
  local start, can_sleep = ngx.now(), true
  while true do
    local n, err = dict:incr(lock, 1)
    if n == 1 then break end
    if n == nil then return full(err) end
    dict:incr(lock, -1)
    local since = self.busy_since[lock] or start
    self.busy_since[lock] = since
    if ngx.now() - since > M.LOCK_TTL then
      self.busy_since[lock] = nil
      dict:set(lock, 0)
    end
    if can_sleep then can_sleep = pcall(ngx.sleep, 0.001) end
    if not can_sleep then ngx.update_time() end
    if ngx.now() - start > M.LOCK_WAIT then return nil, "ngx.shared: key busy (locked by another worker)" end
  end
  self.busy_since[lock] = nil
  local a, b = fn(dict, key, ...)
  dict:incr(lock, -1)
  return a, b
end

-- Values shorter than PAD are stored padded to PAD bytes, so replacing one short value by
-- another ("processing" by "done") keeps the entry's size: ngx.shared then rewrites it in
-- place instead of freeing it and allocating anew, which can fail in a full dict and lose the
-- entry. Every stored value ends with a byte giving the padding length (that byte included).
local PAD = 17 -- "business_failure" (16) and a trailer byte

local function encode(v)
  local t = #v < PAD - 1 and PAD - #v or 1
  return v .. string.rep(" ", t - 1) .. string.char(t)
end

local function decode(s)
  if type(s) ~= "string" or s == "" then return nil end
  return s:sub(1, -s:byte(-1) - 1)
end

--- An `ngx.shared` store, as `dws.store.shared_dict.new` makes it: every worker of one nginx; a
-- full dict answers `nil, err`.
-- @type Shared

--- The value under `key`; nil when absent or expired.
-- syntax: `value, err = store:get(key)` (see `dws.store`)
-- @tparam string key
-- @treturn string the value, or nil
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Shared:get(key)
  check_key(key, NAME, "get", LOCK)
  return decode(self.dict:get(key))
end

local function do_add(dict, key, value, ttl)
  local ok, err = dict:safe_add(key, encode(value), ttl)
  if ok then return true end
  if err == "exists" then return false end
  return full(err)
end

--- Store `value` under `key` only when no live value is there (the notification claim).
-- syntax: `ok, err = store:add(key, value, ttl?)` (see `dws.store`)
-- @tparam string key
-- @tparam string value
-- @tparam[opt] number ttl seconds; nil: never expires
-- @treturn bool true, or false when a live value is there
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Shared:add(key, value, ttl)
  check_key(key, NAME, "add", LOCK); check_value(value, NAME, "add"); check_ttl(ttl, NAME, "add")
  return locked(self, key, do_add, value, exptime(ttl))
end

local function do_set(dict, key, value, ttl)
  local ok, err = dict:safe_set(key, encode(value), ttl)
  if ok then return true end
  return full(err)
end

--- Store `value` under `key`, replacing any, with the new ttl.
-- syntax: `ok, err = store:set(key, value, ttl?)` (see `dws.store`)
-- @tparam string key
-- @tparam string value
-- @tparam[opt] number ttl seconds; nil: never expires
-- @treturn bool true
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Shared:set(key, value, ttl)
  check_key(key, NAME, "set", LOCK); check_value(value, NAME, "set"); check_ttl(ttl, NAME, "set")
  return locked(self, key, do_set, value, exptime(ttl))
end

local function do_cas(dict, key, old, new, ttl)
  if decode(dict:get(key)) ~= old then return false end
  return do_set(dict, key, new, ttl)
end

--- Replace the value under `key` by `new` only when it is `old`, atomically (the journal's
-- transitions). Atomic across workers through a per-key lock.
-- syntax: `ok, err = store:cas(key, old, new, ttl?)` (see `dws.store`)
-- @tparam string key
-- @tparam string old the value read
-- @tparam string new
-- @tparam[opt] number ttl seconds; nil: never expires
-- @treturn bool true, or false (absent, or not `old`)
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Shared:cas(key, old, new, ttl)
  check_key(key, NAME, "cas", LOCK); check_value(old, NAME, "cas"); check_value(new, NAME, "cas")
  check_ttl(ttl, NAME, "cas")
  return locked(self, key, do_cas, old, new, exptime(ttl))
end

local function do_delete(dict, key)
  dict:delete(key)
  return true
end

--- Remove `key` (true also when absent).
-- syntax: `ok, err = store:delete(key)` (see `dws.store`)
-- @tparam string key
-- @treturn bool true
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Shared:delete(key)
  check_key(key, NAME, "delete", LOCK)
  return locked(self, key, do_delete)
end

--- Live entries under prefix. get_keys(0) holds the dict's mutex while it lists every key:
-- meant for the journal's occasional recovery scan, not for a request path.
-- syntax: `entries, err = store:scan(prefix)` (see `dws.store`)
-- @tparam string prefix
-- @treturn {{string,string},...} `{ {key, value}, ... }`
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Shared:scan(prefix)
  store.check_prefix(prefix, NAME)
  local out, n = {}, #prefix
  for _, k in ipairs(self.dict:get_keys(0)) do
    if k:sub(1, n) == prefix and k:sub(1, #LOCK) ~= LOCK then
      local v = decode(self.dict:get(k))
      if v ~= nil then out[#out + 1] = { k, v } end
    end
  end
  return out
end

--- Release the store's connections; idempotent.
-- syntax: `store:close()` (see `dws.store`)
function Shared.close() end

function Shared.__tostring()
  return "dws.store.shared_dict"
end

return M
