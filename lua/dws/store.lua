--- The one store interface behind the binding journal and notification de-duplication.
--
-- A store keeps string values under string keys, each with an optional expiry. Every store
-- (memory here; SQLite, `ngx.shared` and Redis in `dws.store.*`) answers the same seven calls and
-- passes the same contract (`spec/helpers/store_contract.lua`):
--
--     store:get(key)                 -> value | nil (absent or expired) | nil, err
--     store:add(key, value, ttl)     -> true | false (a live value is there) | nil, err
--     store:set(key, value, ttl)     -> true | nil, err
--     store:cas(key, old, new, ttl)  -> true | false (absent, or the value is not `old`) | nil, err
--     store:delete(key)              -> true (also when absent) | nil, err
--     store:scan(prefix)             -> { { key, value }, ... } live entries, any order | nil, err
--     store:close()                  releases connections; idempotent
--
-- `ttl` is in seconds (fractions allowed) or nil for "never expires". `cas` and `set` give the
-- new value the new ttl. `nil, err` means the store could not answer (down, timed out, full):
-- callers fail closed on it. A store never evicts a live entry to make room: when full, it
-- refuses with `nil, err` (a forgotten notification would run its handler twice; a forgotten
-- binding would lose a customer's card).
--
-- Values are text (the journal writes JSON); keys are chosen by the callers ("dws:binding:<id>",
-- "dws:notify:<id>"), and a store may add its own prefix in front.
-- @module dws.store
local core = require "dws.core"

local type, pairs, error, tostring, setmetatable = type, pairs, error, tostring, setmetatable

local M = {}

--- The calls every store has (checked by `dws.store.open` on a store object).
M.METHODS = { "get", "add", "set", "cas", "delete", "scan", "close" }

--- Default capacity of the memory store, in entries.
M.DEFAULT_MAX_ENTRIES = 100000

local Memory = {}
Memory.__index = Memory

--- A bounded per-process store: the default for scripts and tests. Not shared between processes
-- or nginx workers.
-- @tparam[opt] table opts `max_entries` (default `DEFAULT_MAX_ENTRIES`), `clock` (seconds,
-- monotonic; for tests)
-- @treturn table the store
function M.memory(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("dws.store.memory: opts must be a table", 2) end
  local max = opts.max_entries or M.DEFAULT_MAX_ENTRIES
  if type(max) ~= "number" or max < 1 or max ~= max or max == math.huge then
    error("dws.store.memory: max_entries must be a positive number", 2)
  end
  return setmetatable({
    entries = {},       -- key -> { value =, expires = monotonic seconds | false }
    count = 0,
    max = max,
    clock = opts.clock or core.monotonic,
    swept_at = -math.huge,
  }, Memory)
end

--- Argument checks, shared by every store.
-- Each is called by a store method as its first statement and raises (a programming error) in the
-- method's caller, as `"<store>: <method>: <what> must be ..."`; the message is built only then.
-- @section checks

--- `key` is a non-empty string (and, where the store keeps a prefix for itself, does not start
-- with it).
-- syntax: `store.check_key(key, store_name, method, reserved?)`
function M.check_key(key, store_name, method, reserved)
  if type(key) ~= "string" or key == "" then
    error(store_name .. ": " .. method .. ": key must be a non-empty string", 3)
  end
  if reserved and key:sub(1, #reserved) == reserved then
    -- said as such: "must be a non-empty string" would send the caller looking for the wrong mistake
    error(store_name .. ": " .. method .. ": key must not start with " .. string.format("%q", reserved), 3)
  end
end

--- `value` is a string.
-- syntax: `store.check_value(value, store_name, method)`
function M.check_value(value, store_name, method)
  if type(value) ~= "string" then error(store_name .. ": " .. method .. ": value must be a string", 3) end
end

--- `ttl` is nil (never expires) or a positive, finite number of seconds.
-- syntax: `store.check_ttl(ttl, store_name, method)`
function M.check_ttl(ttl, store_name, method)
  if ttl ~= nil and (type(ttl) ~= "number" or ttl ~= ttl or ttl <= 0 or ttl == math.huge) then
    error(store_name .. ": " .. method .. ": ttl must be a positive number of seconds, or nil", 3)
  end
end

--- `prefix` (of `scan`) is a string.
-- syntax: `store.check_prefix(prefix, store_name)`
function M.check_prefix(prefix, store_name)
  if type(prefix) ~= "string" then error(store_name .. ": scan: prefix must be a string", 3) end
end

local check_key, check_value, check_ttl = M.check_key, M.check_value, M.check_ttl
local NAME = "dws.store"

-- The live entry for key, dropping it when it has expired.
local function live(self, key)
  local e = self.entries[key]
  if not e then return nil end
  if e.expires and e.expires <= self.clock() then
    self.entries[key] = nil
    self.count = self.count - 1
    return nil
  end
  return e
end

-- Room for one more key: expired entries are swept (a full walk, so at most once a second);
-- live ones are never evicted.
local function room(self)
  if self.count < self.max then return true end
  local now = self.clock()
  if now - self.swept_at >= 1 then
    self.swept_at = now
    for k, e in pairs(self.entries) do
      if e.expires and e.expires <= now then
        self.entries[k] = nil
        self.count = self.count - 1
      end
    end
  end
  return self.count < self.max
end

local function put(self, key, value, ttl, existing)
  if not existing then
    if not room(self) then return nil, "memory store full (" .. tostring(self.max) .. " live entries)" end
    self.count = self.count + 1
  end
  self.entries[key] = { value = value, expires = ttl and self.clock() + ttl or false }
  return true
end

--- A memory store, as `dws.store.memory` makes it: this process only, at most `max_entries` live
-- entries (full: `nil, err`, never an eviction).
-- @type Memory

--- The value under `key`; nil when absent or expired.
-- syntax: `value, err = store:get(key)` (see `dws.store`)
-- @tparam string key
-- @treturn string the value, or nil
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Memory:get(key)
  check_key(key, NAME, "get")
  local e = live(self, key)
  return e and e.value or nil
end

--- Store `value` under `key` only when no live value is there (the notification claim).
-- syntax: `ok, err = store:add(key, value, ttl?)` (see `dws.store`)
-- @tparam string key
-- @tparam string value
-- @tparam[opt] number ttl seconds; nil: never expires
-- @treturn bool true, or false when a live value is there
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Memory:add(key, value, ttl)
  check_key(key, NAME, "add"); check_value(value, NAME, "add"); check_ttl(ttl, NAME, "add")
  if live(self, key) then return false end
  return put(self, key, value, ttl, false)
end

--- Store `value` under `key`, replacing any, with the new ttl.
-- syntax: `ok, err = store:set(key, value, ttl?)` (see `dws.store`)
-- @tparam string key
-- @tparam string value
-- @tparam[opt] number ttl seconds; nil: never expires
-- @treturn bool true
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Memory:set(key, value, ttl)
  check_key(key, NAME, "set"); check_value(value, NAME, "set"); check_ttl(ttl, NAME, "set")
  return put(self, key, value, ttl, live(self, key) ~= nil)
end

--- Replace the value under `key` by `new` only when it is `old`, atomically (the journal's
-- transitions).
-- syntax: `ok, err = store:cas(key, old, new, ttl?)` (see `dws.store`)
-- @tparam string key
-- @tparam string old the value read
-- @tparam string new
-- @tparam[opt] number ttl seconds; nil: never expires
-- @treturn bool true, or false (absent, or not `old`)
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Memory:cas(key, old, new, ttl)
  check_key(key, NAME, "cas"); check_value(old, NAME, "cas"); check_value(new, NAME, "cas"); check_ttl(ttl, NAME, "cas")
  local e = live(self, key)
  if not e or e.value ~= old then return false end
  return put(self, key, new, ttl, true)
end

--- Remove `key` (true also when absent).
-- syntax: `ok, err = store:delete(key)` (see `dws.store`)
-- @tparam string key
-- @treturn bool true
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Memory:delete(key)
  check_key(key, NAME, "delete")
  if live(self, key) then
    self.entries[key] = nil
    self.count = self.count - 1
  end
  return true
end

--- The live entries whose key starts with `prefix`, in any order.
-- syntax: `entries, err = store:scan(prefix)` (see `dws.store`)
-- @tparam string prefix
-- @treturn {{string,string},...} `{ {key, value}, ... }`
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Memory:scan(prefix)
  M.check_prefix(prefix, NAME)
  local out, n = {}, #prefix
  for k in pairs(self.entries) do
    if k:sub(1, n) == prefix then
      local e = live(self, k)
      if e then out[#out + 1] = { k, e.value } end
    end
  end
  return out
end

--- Release the store's connections; idempotent.
-- syntax: `store:close()` (see `dws.store`)
function Memory.close() end

function Memory.__tostring(self)
  return "dws.store.memory(" .. self.count .. "/" .. self.max .. ")"
end

--- Opening stores.
-- @section module

--- Check that `store` has every call of the interface; raises (a programming error) if not.
-- @treturn table the store
function M.check(store, who)
  who = who or "dws.store"
  if type(store) ~= "table" and type(store) ~= "userdata" then error(who .. ": a store must be a table", 3) end
  for _, name in pairs(M.METHODS) do
    if type(store[name]) ~= "function" then
      error(who .. ": the store has no " .. name .. " method (see dws.store)", 3)
    end
  end
  return store
end

-- Store kinds that `open` knows by URL scheme, loaded on first use.
local SCHEMES = {
  memory = function() return M.memory() end,
}

--- Register a store kind for `open` ("sqlite", "redis"): `opener(rest_of_spec)` returns a store or
-- nil, err.
function M.register(scheme, opener)
  -- the scheme as open reads one from a spec, so that a registered kind can be opened at all
  if type(scheme) ~= "string" or not scheme:find("^%a[%w+.-]*$") then
    error("dws.store.register: scheme must be a URL scheme (a letter, then letters, digits, +.-)", 2)
  end
  if type(opener) ~= "function" then error("dws.store.register: opener must be a function", 2) end
  SCHEMES[scheme] = opener
end

--- A store from a spec: nil or "memory" (a new memory store), "<scheme>:<rest>" for a registered
-- kind (`sqlite:/var/lib/shop/dws.db`, `redis://127.0.0.1:6379/0`), or a store object (checked).
-- Returns the store, or nil, err when it cannot be opened; raises on a malformed spec.
function M.open(spec, who)
  who = who or "dws.store.open"
  if spec == nil then return M.memory() end
  if type(spec) ~= "string" then return M.check(spec, who) end
  local scheme, rest = spec:match("^(%a[%w+.-]*):?(.*)$")
  local opener = scheme and SCHEMES[scheme]
  if not opener and scheme and package.searchpath("dws.store." .. scheme, package.path) then
    -- dws.store.<scheme> registers itself when loaded.
    require("dws.store." .. scheme)
    opener = SCHEMES[scheme]
  end
  if not opener then error(who .. ": unknown store " .. string.format("%q", spec), 3) end
  local st, err = opener(rest)
  if not st then return nil, tostring(err or "the store could not be opened") end
  return M.check(st, who)
end

return M
