--- A dws.store in an SQLite file (Debian's lua-sql-sqlite3): durable, embedded, shared by the
-- processes of one machine (a merchant script and nginx's workers alike).
--
--     local s = require("dws.store.sqlite").open("/var/lib/shop/dws.db")
--     dws.client{ ..., journal = "sqlite:/var/lib/shop/dws.db" }   -- the same, by spec
--
-- Why these settings: WAL lets readers and one writer work at once across processes;
-- `synchronous = FULL` makes a write durable when the call returns (the binding journal is
-- written before addPaymentMethod is sent and must survive a SIGKILL or a power cut);
-- `busy_timeout` makes a second process wait for the lock rather than fail at once. Expiry is a
-- column (wall-clock seconds, so every process agrees) checked on read; expired rows are
-- removed when their key is written again and by an occasional sweep.
--
-- The connection is opened on first use, not by `open`: a client built in nginx's
-- init_by_lua (the master) must not share one SQLite connection across forked workers.
-- Every value reaches SQL through the driver's escape (luasql has no bound parameters).
-- Calls block for the duration of one small SQLite statement (also inside nginx).
-- @module dws.store.sqlite
local core = require "dws.core"
local store = require "dws.store"

local type, error, tostring, tonumber, setmetatable, pcall = type, error, tostring, tonumber, setmetatable, pcall
local format = string.format

local M = {}

--- How long a call waits for another process's lock before answering nil, err (milliseconds).
M.BUSY_TIMEOUT_MS = 5000
-- Expired rows are deleted at most this often (seconds) by a writer.
local SWEEP_EVERY = 60

local Sqlite = {}
Sqlite.__index = Sqlite

local function now()
  return core.time_ms() / 1000
end

local NAME = "dws.store.sqlite"
local check_key, check_value, check_ttl = store.check_key, store.check_value, store.check_ttl

--- A store on the file at `path` (created when absent). Raises on a malformed path (a
-- programming error); a file that cannot be opened shows as nil, err on the first call.
-- @tparam string path
-- @tparam[opt] table opts `busy_timeout` (ms, default `BUSY_TIMEOUT_MS`)
function M.open(path, opts)
  if type(path) ~= "string" or path == "" then error("dws.store.sqlite: a file path is required", 2) end
  opts = opts or {}
  local busy = opts.busy_timeout or M.BUSY_TIMEOUT_MS
  if type(busy) ~= "number" or busy < 0 then error("dws.store.sqlite: busy_timeout must be >= 0 ms", 2) end
  return setmetatable({ path = path, busy_timeout = math.floor(busy), swept_at = -math.huge }, Sqlite)
end

local function exec(conn, sql)
  local ok, res, err = pcall(conn.execute, conn, sql)
  if not ok then return nil, tostring(res) end
  if res == nil then return nil, tostring(err) end
  if type(res) ~= "number" and res.close then res:close() end
  return res
end

-- The connection, made (and the schema ensured) on first use.
local function conn_of(self)
  if self.conn then return self.conn end
  if self.closed then return nil, "store closed" end
  local luasql, lerr, wrong_abi = require("dws.abi").try("luasql.sqlite3")
  if not luasql then
    if wrong_abi then return nil, lerr end
    return nil, "lua-sql-sqlite3 is not installed (Debian: apt install lua-sql-sqlite3): " .. lerr
  end
  local env = self.env or luasql.sqlite3()
  self.env = env
  local conn, err = env:connect(self.path)
  if not conn then return nil, "cannot open " .. self.path .. ": " .. tostring(err) end
  -- busy_timeout first: the other pragmas may already need the lock.
  for _, sql in ipairs{
    "PRAGMA busy_timeout = " .. self.busy_timeout,
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "CREATE TABLE IF NOT EXISTS dws_store (k TEXT PRIMARY KEY, v TEXT NOT NULL, expires REAL)",
  } do
    local r, e = exec(conn, sql)
    if not r then
      conn:close()
      return nil, self.path .. ": " .. tostring(e)
    end
  end
  self.conn = conn
  return conn
end

local function q(conn, s)
  return "'" .. conn:escape(s) .. "'"
end

local function expiry(ttl)
  if ttl == nil then return "NULL" end
  return format("%.3f", now() + ttl)
end

-- Statement -> rows affected | nil, err.
local function run(self, sql)
  local conn, err = conn_of(self)
  if not conn then return nil, err end
  local n
  n, err = exec(conn, sql)
  if not n then return nil, "sqlite: " .. tostring(err) end
  return tonumber(n) or 0
end

-- Query -> { row, ... } (rows as arrays) | nil, err.
local function query(self, sql)
  local conn, err = conn_of(self)
  if not conn then return nil, err end
  local ok, cur, qerr = pcall(conn.execute, conn, sql)
  if not ok or not cur then return nil, "sqlite: " .. tostring(ok and qerr or cur) end
  local rows = {}
  while true do
    local row = cur:fetch({}, "n")
    if not row then break end
    rows[#rows + 1] = row
  end
  cur:close()
  return rows
end

local function live_clause()
  return format("(expires IS NULL OR expires > %.3f)", now())
end

local function sweep(self)
  local t = now()
  if t - self.swept_at < SWEEP_EVERY then return end
  self.swept_at = t
  run(self, format("DELETE FROM dws_store WHERE expires IS NOT NULL AND expires <= %.3f", t))
end

--- An SQLite store, as `dws.store.sqlite.open` makes it: each call one short statement (WAL,
-- `synchronous=FULL`), connecting on first use.
-- @type Sqlite

--- The value under `key`; nil when absent or expired.
-- syntax: `value, err = store:get(key)` (see `dws.store`)
-- @tparam string key
-- @treturn string the value, or nil
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Sqlite:get(key)
  check_key(key, NAME, "get")
  local conn, err = conn_of(self)
  if not conn then return nil, err end
  local rows
  rows, err = query(self, "SELECT v FROM dws_store WHERE k = " .. q(conn, key) .. " AND " .. live_clause())
  if not rows then return nil, err end
  return rows[1] and rows[1][1] or nil
end

--- Store `value` under `key` only when no live value is there (the notification claim).
-- syntax: `ok, err = store:add(key, value, ttl?)` (see `dws.store`)
-- @tparam string key
-- @tparam string value
-- @tparam[opt] number ttl seconds; nil: never expires
-- @treturn bool true, or false when a live value is there
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Sqlite:add(key, value, ttl)
  check_key(key, NAME, "add"); check_value(value, NAME, "add"); check_ttl(ttl, NAME, "add")
  local conn, err = conn_of(self)
  if not conn then return nil, err end
  sweep(self)
  -- One statement: insert, or take over an expired row; a live row stays (0 rows changed).
  local n
  n, err = run(self, "INSERT INTO dws_store (k, v, expires) VALUES (" .. q(conn, key) .. ", " .. q(conn, value)
    .. ", " .. expiry(ttl) .. ") ON CONFLICT(k) DO UPDATE SET v = excluded.v, expires = excluded.expires"
    .. format(" WHERE dws_store.expires IS NOT NULL AND dws_store.expires <= %.3f", now()))
  if not n then return nil, err end
  return n > 0
end

--- Store `value` under `key`, replacing any, with the new ttl.
-- syntax: `ok, err = store:set(key, value, ttl?)` (see `dws.store`)
-- @tparam string key
-- @tparam string value
-- @tparam[opt] number ttl seconds; nil: never expires
-- @treturn bool true
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Sqlite:set(key, value, ttl)
  check_key(key, NAME, "set"); check_value(value, NAME, "set"); check_ttl(ttl, NAME, "set")
  local conn, err = conn_of(self)
  if not conn then return nil, err end
  local n
  n, err = run(self, "INSERT OR REPLACE INTO dws_store (k, v, expires) VALUES (" .. q(conn, key) .. ", "
    .. q(conn, value) .. ", " .. expiry(ttl) .. ")")
  if not n then return nil, err end
  return true
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
function Sqlite:cas(key, old, new, ttl)
  check_key(key, NAME, "cas"); check_value(old, NAME, "cas"); check_value(new, NAME, "cas"); check_ttl(ttl, NAME, "cas")
  local conn, err = conn_of(self)
  if not conn then return nil, err end
  local n
  n, err = run(self, "UPDATE dws_store SET v = " .. q(conn, new) .. ", expires = " .. expiry(ttl)
    .. " WHERE k = " .. q(conn, key) .. " AND v = " .. q(conn, old) .. " AND " .. live_clause())
  if not n then return nil, err end
  return n > 0
end

--- Remove `key` (true also when absent).
-- syntax: `ok, err = store:delete(key)` (see `dws.store`)
-- @tparam string key
-- @treturn bool true
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Sqlite:delete(key)
  check_key(key, NAME, "delete")
  local conn, err = conn_of(self)
  if not conn then return nil, err end
  local n
  n, err = run(self, "DELETE FROM dws_store WHERE k = " .. q(conn, key))
  if not n then return nil, err end
  return true
end

--- The live entries whose key starts with `prefix`, in any order.
-- syntax: `entries, err = store:scan(prefix)` (see `dws.store`)
-- @tparam string prefix
-- @treturn {{string,string},...} `{ {key, value}, ... }`
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Sqlite:scan(prefix)
  store.check_prefix(prefix, NAME)
  local conn, err = conn_of(self)
  if not conn then return nil, err end
  -- substr over bytes rather than LIKE: a prefix holding % or _ must match itself only.
  return query(self, "SELECT k, v FROM dws_store WHERE substr(CAST(k AS BLOB), 1, " .. #prefix .. ") = CAST("
    .. q(conn, prefix) .. " AS BLOB)"
    .. " AND " .. live_clause())
end

--- Release the store's connections; idempotent.
-- syntax: `store:close()` (see `dws.store`)
function Sqlite:close()
  if self.conn then self.conn:close() end
  if self.env then self.env:close() end
  self.conn, self.env, self.closed = nil, nil, true
end

function Sqlite.__tostring(self)
  return "dws.store.sqlite(" .. self.path .. ")"
end

store.register("sqlite", function(rest)
  -- "sqlite:/path/file.db" and "sqlite:///path/file.db" alike.
  local path = rest:gsub("^//", "")
  return M.open(path)
end)

return M
