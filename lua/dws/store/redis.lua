--- A dws.store in Redis, shared by every merchant node: the binding journal and notification
-- de-duplication of several nginx (or scripts) behind one load balancer.
--
--     local store = require("dws.store.redis").new{ host = "10.0.0.5", port = 6379, db = 0,
--       password = "...", username = nil, prefix = "shop1:", timeout = 1, pool_size = 32 }
--     local store = require("dws.store").open("redis://user:pass@10.0.0.5:6379/0?prefix=shop1:&timeout=1")
--
-- Two backends, picked as dws.client picks its transport: inside nginx, cosockets through Debian's
-- lua-nginx-redis (module `nginx.redis`, the lua-resty-redis API) with a keep-alive pool per
-- worker; elsewhere, dws.redis (hiredis, one blocking connection per store). `backend = "ngx"` or
-- `"hiredis"` overrides the pick.
--
-- The operations are single atomic Redis commands, so any number of nodes may race:
-- add = SET NX PX, set = SET [PX] (a SET without PX also drops an old expiry, which is what
-- ttl = nil means), delete = DEL, get = GET, cas = a five-line script run by the server
-- (EVALSHA, EVAL when the server has lost it), scan = SCAN MATCH + MGET. Redis never evicts
-- our keys when `maxmemory-policy` is `noeviction` (its default): a full Redis refuses writes,
-- which reach the caller as nil, err. Anything that fails is nil, err (fail closed); only
-- commands that are safe to send twice (GET, SET, DEL, SCAN, MGET, SCRIPT LOAD) are re-sent,
-- once, on a new connection when the old one turns out broken.
-- @module dws.store.redis
local store = require "dws.store"

local type, tostring, tonumber, error, setmetatable = type, tostring, tonumber, error, setmetatable
local unpack = table.unpack or unpack -- luacheck: ignore 143
local floor, ceil = math.floor, math.ceil

local M = {}

--- The defaults of `new`, by option name (`DEFAULTS.port`, ...): read them here, not from a copy.
M.DEFAULTS = {
  host = "127.0.0.1", port = 6379, db = 0, prefix = "", timeout = 1,
  -- nginx only: idle connections kept per worker, and for how long (seconds).
  pool_size = 32, keepalive = 60,
}

local OPTIONS = { host = "string", port = "number", db = "number", prefix = "string", timeout = "number",
  pool_size = "number", keepalive = "number", password = "string", username = "string",
  backend = "string", tls = "boolean" }

-- compare-and-set on the server. KEYS[1] key; ARGV: old, new, ttl in ms ("" = none).
-- A plain SET replaces the value and clears any expiry (what ttl = nil means).
local CAS = [[
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1]]

local function inside_nginx()
  return require("dws.runtime").nginx_phase() ~= nil
end

-- ---- backends: call(idempotent, name, ...) -> value (false for a nil reply) | nil, err ----

local function hiredis_backend(o)
  local redis = require "dws.redis"
  local b = {}
  local function open()
    local c, err = redis.connect(o.host, o.port, o.timeout)
    if not c then return nil, err end
    local ok, why = true, nil
    if o.password then
      if o.username then ok, why = c:call("AUTH", o.username, o.password)
      else ok, why = c:call("AUTH", o.password) end
    end
    if ok and o.db ~= 0 then ok, why = c:call("SELECT", tostring(o.db)) end
    if not ok then
      c:close()
      return nil, "redis: " .. tostring(why)
    end
    b.conn = c
    return c
  end
  local function call(c, ...)
    local v, err, kind = c:call(...)
    if v == redis.null then return false end
    if v == nil and kind == "io" then b.conn = nil end
    return v, err, kind
  end
  function b.call(_, idempotent, ...)
    local c, fresh = b.conn, false
    if not c then
      local err
      c, err = open()
      if not c then return nil, err end
      fresh = true
    end
    local v, err, kind = call(c, ...)
    -- A kept connection may have been closed by the server meanwhile (restart, idle timeout):
    -- one more try on a new connection, for commands that do no harm when they arrive twice.
    if v == nil and kind == "io" and idempotent and not fresh then
      c, err = open()
      if not c then return nil, err end
      v, err = call(c, ...)
    end
    return v, err
  end
  function b.close()
    if b.conn then b.conn:close() end
    b.conn = nil
  end
  return b
end

local function ngx_backend(o)
  local redis = require "nginx.redis"
  local null = ngx.null
  -- Connections differ by server, database and credentials: one pool for each combination.
  local pool = string.format("dws.store.redis:%s:%d:%d:%s:%s", o.host, o.port, o.db, o.username or "",
    o.password and ngx.md5(o.password) or "")
  local b = {}
  local function open()
    local red, err = redis:new()
    if not red then return nil, "redis: " .. tostring(err) end
    red:set_timeout(floor(o.timeout * 1000))
    local ok
    ok, err = red:connect(o.host, o.port, { pool = pool, pool_size = o.pool_size })
    if not ok then return nil, string.format("redis: connect to %s:%d: %s", o.host, o.port, tostring(err)) end
    if red:get_reused_times() == 0 then
      if o.password then
        if o.username then ok, err = red:auth(o.username, o.password) else ok, err = red:auth(o.password) end
      end
      if ok and o.db ~= 0 then ok, err = red:select(o.db) end
      if not ok then
        red:close()
        return nil, "redis: " .. tostring(err)
      end
    end
    return red
  end
  local function once(name, ...)
    local red, err = open()
    if not red then return nil, err, "io" end
    local reused = red:get_reused_times() > 0
    local v
    v, err = red[name](red, ...)
    if v == nil then
      red:close() -- unread bytes may follow: this connection never goes back to the pool
      return nil, string.format("redis: %s:%d: %s", o.host, o.port, tostring(err)), "io", reused
    end
    red:set_keepalive(floor(o.keepalive * 1000), o.pool_size)
    if v == false then return nil, err, "reply" end -- Redis answered with an error
    if v == null then return false end
    return v
  end
  function b.call(_, idempotent, name, ...)
    local v, err, kind, reused = once(name, ...)
    if v == nil and kind == "io" and reused and idempotent then v, err = once(name, ...) end
    return v, err
  end
  function b.close() end -- connections belong to the worker's pool
  return b
end

-- ---- the store ----

local Redis = {}
Redis.__index = Redis

local NAME = "dws.store.redis"
local check_key, check_value, check_ttl = store.check_key, store.check_value, store.check_ttl

-- A checked ttl (seconds) as whole milliseconds for PX, or nil.
local function px(ttl)
  if ttl == nil then return nil end
  return string.format("%d", ceil(ttl * 1000))
end

--- A Redis store. Connects on first use; raises on a malformed option (a programming error).
-- @tparam table opts host, port, db, password, username, prefix, timeout (seconds), pool_size,
-- keepalive (seconds), backend ("ngx" | "hiredis"), tls (refused: see the README)
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("dws.store.redis: opts must be a table", 2) end
  local o = {}
  for k, v in pairs(opts) do
    if not OPTIONS[k] then error("dws.store.redis: unknown option " .. tostring(k), 2) end
    if type(v) ~= OPTIONS[k] then error("dws.store.redis: option " .. k .. " must be a " .. OPTIONS[k], 2) end
    o[k] = v
  end
  for k, v in pairs(M.DEFAULTS) do if o[k] == nil then o[k] = v end end
  if o.tls then
    -- Debian 12's libhiredis 0.14 has no TLS (hiredis_ssl came with 1.0), and lua-nginx-redis
    -- 0.27 has no ssl option: reach a TLS Redis through a local tunnel (stunnel, spiped).
    error("dws.store.redis: tls is not supported by the packaged clients; use a TLS tunnel on loopback", 2)
  end
  if o.port < 1 or o.port > 65535 or o.port ~= floor(o.port) then error("dws.store.redis: bad port", 2) end
  if o.db < 0 or o.db ~= floor(o.db) then error("dws.store.redis: bad db", 2) end
  if o.timeout <= 0 or o.timeout ~= o.timeout then error("dws.store.redis: timeout must be positive", 2) end
  local backend = o.backend or (inside_nginx() and "ngx" or "hiredis")
  if backend ~= "ngx" and backend ~= "hiredis" then error("dws.store.redis: backend must be ngx or hiredis", 2) end
  return setmetatable({
    b = backend == "ngx" and ngx_backend(o) or hiredis_backend(o),
    prefix = o.prefix, where = o.host .. ":" .. o.port .. "/" .. o.db, backend = backend,
  }, Redis)
end

--- A Redis store, as `dws.store.redis.new` makes it: single atomic commands, connecting on first
-- use; any failure is `nil, err`.
-- @type Redis

--- The value under `key`; nil when absent or expired.
-- syntax: `value, err = store:get(key)` (see `dws.store`)
-- @tparam string key
-- @treturn string the value, or nil
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Redis:get(key)
  check_key(key, NAME, "get")
  local v, err = self.b:call(true, "get", self.prefix .. key)
  if v == nil then return nil, err end
  return v or nil
end

--- Store `value` under `key` only when no live value is there (the notification claim). `SET NX
-- PX`.
-- syntax: `ok, err = store:add(key, value, ttl?)` (see `dws.store`)
-- @tparam string key
-- @tparam string value
-- @tparam[opt] number ttl seconds; nil: never expires
-- @treturn bool true, or false when a live value is there
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Redis:add(key, value, ttl)
  check_key(key, NAME, "add"); check_value(value, NAME, "add"); check_ttl(ttl, NAME, "add")
  local ms = px(ttl)
  local v, err
  if ms then v, err = self.b:call(false, "set", self.prefix .. key, value, "NX", "PX", ms)
  else v, err = self.b:call(false, "set", self.prefix .. key, value, "NX") end
  if v == nil then return nil, err end
  return v == "OK"
end

--- Store `value` under `key`, replacing any, with the new ttl.
-- syntax: `ok, err = store:set(key, value, ttl?)` (see `dws.store`)
-- @tparam string key
-- @tparam string value
-- @tparam[opt] number ttl seconds; nil: never expires
-- @treturn bool true
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Redis:set(key, value, ttl)
  check_key(key, NAME, "set"); check_value(value, NAME, "set"); check_ttl(ttl, NAME, "set")
  local ms = px(ttl)
  local v, err
  if ms then v, err = self.b:call(true, "set", self.prefix .. key, value, "PX", ms)
  else v, err = self.b:call(true, "set", self.prefix .. key, value) end
  if v == nil then return nil, err end
  return true
end

--- Replace the value under `key` by `new` only when it is `old`, atomically (the journal's
-- transitions). A server-side script (`EVALSHA`).
-- syntax: `ok, err = store:cas(key, old, new, ttl?)` (see `dws.store`)
-- @tparam string key
-- @tparam string old the value read
-- @tparam string new
-- @tparam[opt] number ttl seconds; nil: never expires
-- @treturn bool true, or false (absent, or not `old`)
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Redis:cas(key, old, new, ttl)
  check_key(key, NAME, "cas"); check_value(old, NAME, "cas"); check_value(new, NAME, "cas"); check_ttl(ttl, NAME, "cas")
  local ms = px(ttl) or ""
  local k = self.prefix .. key
  if not self.sha then
    local sha, err = self.b:call(true, "script", "LOAD", CAS)
    if not sha then return nil, err end
    self.sha = sha
  end
  local v, err = self.b:call(false, "evalsha", self.sha, "1", k, old, new, ms)
  if v == nil and tostring(err):find("NOSCRIPT", 1, true) then
    -- The server lost its script cache (restart, SCRIPT FLUSH): EVAL runs it and caches it again.
    v, err = self.b:call(false, "eval", CAS, "1", k, old, new, ms)
  end
  if v == nil then return nil, err end
  return tonumber(v) == 1
end

--- Remove `key` (true also when absent).
-- syntax: `ok, err = store:delete(key)` (see `dws.store`)
-- @tparam string key
-- @treturn bool true
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Redis:delete(key)
  check_key(key, NAME, "delete")
  local v, err = self.b:call(true, "del", self.prefix .. key)
  if v == nil then return nil, err end
  return true
end

-- SCAN's MATCH is a glob: the literal prefix with its glob characters escaped.
local function glob_escape(s)
  return (s:gsub("[%*%?%[%]\\]", "\\%0"))
end

local MGET_BATCH = 500

--- The live entries whose key starts with `prefix`, in any order. `SCAN MATCH` + `MGET`.
-- syntax: `entries, err = store:scan(prefix)` (see `dws.store`)
-- @tparam string prefix
-- @treturn {{string,string},...} `{ {key, value}, ... }`
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Redis:scan(prefix)
  store.check_prefix(prefix, NAME)
  local full = self.prefix .. prefix
  local pattern, cursor = glob_escape(full) .. "*", "0"
  local keys, seen = {}, {}
  repeat
    local r, err = self.b:call(true, "scan", cursor, "MATCH", pattern, "COUNT", "1000")
    if not r then return nil, err end
    if type(r) ~= "table" or type(r[2]) ~= "table" then return nil, "redis: unexpected SCAN reply" end
    cursor = r[1]
    for _, k in ipairs(r[2]) do
      if not seen[k] then -- SCAN may return a key more than once
        seen[k] = true
        keys[#keys + 1] = k
      end
    end
  until cursor == "0"
  local out, n = {}, #self.prefix
  for i = 1, #keys, MGET_BATCH do
    local batch = {}
    for j = i, math.min(i + MGET_BATCH - 1, #keys) do batch[#batch + 1] = keys[j] end
    local vals, err = self.b:call(true, "mget", unpack(batch))
    if not vals then return nil, err end
    for j, v in ipairs(vals) do
      if v then out[#out + 1] = { batch[j]:sub(n + 1), v } end -- false: expired since SCAN
    end
  end
  return out
end

--- Release the store's connections; idempotent.
-- syntax: `store:close()` (see `dws.store`)
function Redis:close()
  self.b:close()
end

function Redis.__tostring(self)
  return "dws.store.redis(" .. self.where .. ", " .. self.backend .. ")"
end

--- URL specs.
-- @section module

--- redis://[user:pass@]host[:port][/db][?prefix=..&timeout=..&pool_size=..&keepalive=..]
-- (user name and password percent-encoded). Raises on a malformed spec. `dws.store.open` calls it
-- for a `redis:` spec.
-- syntax: `opts = dws.store.redis.parse_url(rest)`
-- @tparam string rest the spec after `redis:` (`//host:port/db?...`)
-- @treturn table options for `new`
-- @raise on a malformed spec
function M.parse_url(rest)
  local core = require "dws.core"
  local u, why = require("dws.url").split("redis:" .. tostring(rest))
  if not u and why == "not scheme://host" then error("dws.store.redis: expected redis://host:port/db", 3) end
  if not u then error("dws.store.redis: " .. why .. " in redis URL", 3) end
  local o = {}
  if u.userinfo then
    local user, pass = u.userinfo:match("^([^:]*):(.*)$")
    if not user then user, pass = "", u.userinfo end
    if user ~= "" then o.username = assert(core.url_decode(user)) end
    o.password = assert(core.url_decode(pass))
  end
  local db = u.path:match("^/?(%d*)$")
  if u.ipv6 or not db then error("dws.store.redis: bad host or db in redis URL", 3) end
  o.host, o.port = u.host, u.port
  if db ~= "" then o.db = tonumber(db) end
  for k, v in (u.query or ""):gmatch("([^&=]+)=([^&]*)") do
    v = assert(core.url_decode(v))
    if k == "prefix" then o.prefix = v
    elseif k == "timeout" or k == "pool_size" or k == "keepalive" then o[k] = tonumber(v)
    else error("dws.store.redis: unknown URL parameter " .. k, 3) end
  end
  return o
end

store.register("redis", function(rest) return M.new(M.parse_url(rest)) end)

return M
