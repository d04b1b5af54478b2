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
-- ngx.shared has no compare-and-set. cas takes a short per-key lock: a lock key added with
-- safe_add (atomic across workers: the dict has one mutex) and an expiry, so a worker killed
-- while holding it blocks that one key for LOCK_TTL seconds at most. The other writers (add, set,
-- delete) take the same lock, so a cas can never overwrite a value written between its read and
-- its write. A lock is held across two dict calls that never yield, i.e. microseconds; a version
-- number beside each value would need the same lock to update both, so the lock alone is simpler.
-- Waiting for a lock sleeps 1 ms at a time where ngx.sleep may yield, else spins.
-- @module dws.store.shared_dict
local type, error, setmetatable, tostring, pcall = type, error, setmetatable, tostring, pcall

local M = {}

-- A lock's expiry: long enough that no live holder (two dict calls) can outlast it, even
-- descheduled by the OS; short enough that a worker killed mid-write blocks a key only briefly.
M.LOCK_TTL = 5
-- How long a writer waits for another worker's lock before answering nil, err.
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
  return setmetatable({ dict = dict }, Shared)
end

local function check_key(key, who)
  if type(key) ~= "string" or key == "" or key:sub(1, #LOCK) == LOCK then
    error("dws.store.shared_dict: " .. who .. ": key must be a non-empty string", 3)
  end
end

local function check_value(value, who)
  if type(value) ~= "string" then error("dws.store.shared_dict: " .. who .. ": value must be a string", 3) end
end

-- ttl in seconds (ngx.shared keeps milliseconds) or nil = 0, which ngx.shared reads as "never".
local function exptime(ttl, who)
  if ttl == nil then return 0 end
  if type(ttl) ~= "number" or ttl ~= ttl or ttl <= 0 or ttl == math.huge then
    error("dws.store.shared_dict: " .. who .. ": ttl must be a positive number of seconds, or nil", 3)
  end
  return ttl < 0.001 and 0.001 or ttl
end

local function full(err)
  if err == "no memory" then
    return nil, "ngx.shared dict full: no room without evicting live entries (size it up: see the README)"
  end
  return nil, "ngx.shared: " .. tostring(err)
end

-- Run fn(dict) holding the key's lock; fn's results, or nil, err when the lock cannot be had.
local function locked(self, key, fn, ...)
  local dict, lock = self.dict, LOCK .. key
  local deadline, can_sleep = ngx.now() + M.LOCK_WAIT, true
  while true do
    local ok, err = dict:safe_add(lock, true, M.LOCK_TTL)
    if ok then break end
    if err ~= "exists" then return full(err) end
    if can_sleep then can_sleep = pcall(ngx.sleep, 0.001) end
    if not can_sleep then ngx.update_time() end
    if ngx.now() > deadline then return nil, "ngx.shared: key busy (locked by another worker)" end
  end
  local a, b = fn(dict, key, ...)
  dict:delete(lock)
  return a, b
end

function Shared:get(key)
  check_key(key, "get")
  local v = self.dict:get(key)
  return v
end

local function do_add(dict, key, value, ttl)
  local ok, err = dict:safe_add(key, value, ttl)
  if ok then return true end
  if err == "exists" then return false end
  return full(err)
end

function Shared:add(key, value, ttl)
  check_key(key, "add"); check_value(value, "add")
  return locked(self, key, do_add, value, exptime(ttl, "add"))
end

local function do_set(dict, key, value, ttl)
  local ok, err = dict:safe_set(key, value, ttl)
  if ok then return true end
  return full(err)
end

function Shared:set(key, value, ttl)
  check_key(key, "set"); check_value(value, "set")
  return locked(self, key, do_set, value, exptime(ttl, "set"))
end

local function do_cas(dict, key, old, new, ttl)
  if dict:get(key) ~= old then return false end
  return do_set(dict, key, new, ttl)
end

function Shared:cas(key, old, new, ttl)
  check_key(key, "cas"); check_value(old, "cas"); check_value(new, "cas")
  return locked(self, key, do_cas, old, new, exptime(ttl, "cas"))
end

local function do_delete(dict, key)
  dict:delete(key)
  return true
end

function Shared:delete(key)
  check_key(key, "delete")
  return locked(self, key, do_delete)
end

--- Live entries under prefix. get_keys(0) holds the dict's mutex while it lists every key:
-- meant for the journal's occasional recovery scan, not for a request path.
function Shared:scan(prefix)
  if type(prefix) ~= "string" then error("dws.store.shared_dict: scan: prefix must be a string", 2) end
  local out, n = {}, #prefix
  for _, k in ipairs(self.dict:get_keys(0)) do
    if k:sub(1, n) == prefix and k:sub(1, #LOCK) ~= LOCK then
      local v = self.dict:get(k)
      if v ~= nil then out[#out + 1] = { k, v } end
    end
  end
  return out
end

function Shared.close() end

function Shared.__tostring()
  return "dws.store.shared_dict"
end

return M
