-- The contract every dws.store passes (lua/dws/store.lua has the interface). The cases are plain
-- functions so that they run both under busted (contract.describe) and inside nginx for the
-- ngx.shared and lua-resty-redis stores (run each case in a handler and report its error).
--
-- A case is { name, fn(store, env) } and raises (assert/error) when the store breaks the contract.
-- env.sleep(seconds) waits for real (expiry is checked against the store's own clock);
-- env.fresh_key(tag) gives a key no other case or run uses; env.full_store() (optional) returns a
-- store of small capacity, for stores that have one.
local M = {}

-- Every store keeps expiry to the millisecond (ngx.shared, Redis PX, SQLite's stored times, the
-- memory store's clock), so a short ttl and a wait a little past it show expiry without waiting seconds.
local TTL, PAST_TTL = 0.2, 0.5

local function eq(a, b, what)
  if a ~= b then error(string.format("%s: expected %s, got %s", what, tostring(b), tostring(a)), 2) end
end

-- A call that must answer (not nil, err).
local function ok(v, err, what)
  if v == nil and err ~= nil then error(what .. ": store error: " .. tostring(err), 2) end
  return v
end

-- fn is a one-line closure that calls the store with a bad argument. The store must raise a
-- programming error at that line (the caller's, not its own) that reads "<store>: <rest>", the
-- store being dws.store or one of dws.store.*.
local function raises_at_caller(fn, rest)
  local info = debug.getinfo(fn, "S")
  local ran, err = pcall(fn)
  eq(ran, false, "raised")
  local at = info.short_src .. ":" .. info.linedefined .. ": "
  eq(type(err) == "string" and err:sub(1, #at), at, "where")
  eq((err:sub(#at + 1):gsub("^dws%.store[%w_.]*: ", "<store>: ")), "<store>: " .. rest, "message")
end

M.cases = {
  { "a bad key raises at the caller, naming the store and the method", function(s)
    raises_at_caller(function() s:get("") end, "get: key must be a non-empty string")
  end },
  { "a bad value raises at the caller, naming the store and the method", function(s, env)
    raises_at_caller(function() s:set(env.fresh_key("badvalue"), 42) end, "set: value must be a string")
  end },
  { "a bad ttl raises at the caller, naming the store and the method", function(s, env)
    raises_at_caller(function() s:add(env.fresh_key("badttl"), "v", -1) end,
      "add: ttl must be a positive number of seconds, or nil")
  end },
  { "a bad scan prefix raises at the caller, naming the store", function(s)
    raises_at_caller(function() s:scan(1) end, "scan: prefix must be a string")
  end },
  { "get of an absent key is nil without an error", function(s, env)
    local v, err = s:get(env.fresh_key("absent"))
    eq(v, nil, "value"); eq(err, nil, "err")
  end },
  { "add stores a value under an absent key", function(s, env)
    local k = env.fresh_key("add")
    eq(ok(s:add(k, "v1", 60)), true, "add")
    eq(ok(s:get(k)), "v1", "get")
  end },
  { "add of a present key answers false and keeps the value", function(s, env)
    local k = env.fresh_key("add2")
    ok(s:add(k, "first", 60))
    local r, err = s:add(k, "second", 60)
    eq(r, false, "add"); eq(err, nil, "err")
    eq(ok(s:get(k)), "first", "get")
  end },
  { "set overwrites", function(s, env)
    local k = env.fresh_key("set")
    ok(s:set(k, "a"))
    eq(ok(s:set(k, "b")), true, "set")
    eq(ok(s:get(k)), "b", "get")
  end },
  { "cas with the current value replaces it", function(s, env)
    local k = env.fresh_key("cas")
    ok(s:set(k, "NEW"))
    eq(ok(s:cas(k, "NEW", "SENT")), true, "cas")
    eq(ok(s:get(k)), "SENT", "get")
  end },
  { "cas with another value answers false and changes nothing", function(s, env)
    local k = env.fresh_key("cas2")
    ok(s:set(k, "BOUND"))
    local r, err = s:cas(k, "SENT", "UNKNOWN")
    eq(r, false, "cas"); eq(err, nil, "err")
    eq(ok(s:get(k)), "BOUND", "get")
  end },
  { "cas on an absent key answers false and creates nothing", function(s, env)
    local k = env.fresh_key("cas3")
    eq(ok(s:cas(k, "x", "y")), false, "cas")
    eq(ok(s:get(k)), nil, "get")
  end },
  { "delete removes; deleting an absent key is fine", function(s, env)
    local k = env.fresh_key("del")
    ok(s:set(k, "v"))
    eq(ok(s:delete(k)), true, "delete")
    eq(ok(s:get(k)), nil, "get")
    eq(ok(s:delete(k)), true, "delete again")
  end },
  { "an entry with a ttl expires, and its key can be claimed again", function(s, env)
    local k = env.fresh_key("ttl")
    ok(s:add(k, "claim", TTL))
    env.sleep(PAST_TTL)
    eq(ok(s:get(k)), nil, "get after expiry")
    eq(ok(s:add(k, "again", 60)), true, "add after expiry")
  end },
  { "an entry without a ttl does not expire; cas without a ttl clears one", function(s, env)
    local a, b = env.fresh_key("nottl"), env.fresh_key("casttl")
    ok(s:set(a, "kept"))
    ok(s:set(b, "old", TTL))
    ok(s:cas(b, "old", "new"))
    env.sleep(PAST_TTL)
    eq(ok(s:get(a)), "kept", "no ttl")
    eq(ok(s:get(b)), "new", "cas cleared the ttl")
  end },
  { "scan returns the live entries under a prefix and nothing else", function(s, env)
    local p = env.fresh_key("scan") .. ":"
    ok(s:set(p .. "1", "one")); ok(s:set(p .. "2", "two")); ok(s:set(p .. "3", "gone", TTL))
    ok(s:set(env.fresh_key("other"), "x"))
    env.sleep(PAST_TTL)
    local rows = ok(s:scan(p))
    local got = {}
    for _, row in ipairs(rows) do got[row[1]] = row[2] end
    local n = 0
    for _ in pairs(got) do n = n + 1 end
    eq(n, 2, "entries"); eq(got[p .. "1"], "one", "first"); eq(got[p .. "2"], "two", "second")
  end },
  { "values round-trip byte for byte (JSON text, quotes, newlines, UTF-8, 64 KiB)", function(s, env)
    local v = '{"a":"q\\"uote","n":"line\nbreak","u":"\u{00e9}\u{4e2d}"}' .. string.rep("x", 65536)
    local k = env.fresh_key("bytes")
    ok(s:set(k, v))
    eq(ok(s:get(k)) == v, true, "same bytes")
  end },
  { "a full store refuses with nil, err and never evicts a live entry", function(_, env)
    if not env.full_store then return end -- a store without a capacity (SQLite, Redis)
    local s = env.full_store()
    local keys = {}
    for i = 1, 100000 do
      local k = env.fresh_key("full" .. i)
      local r, err = s:add(k, string.rep("v", 512), 3600)
      if r == nil then
        eq(type(err), "string", "err")
        break
      end
      eq(r, true, "add")
      keys[#keys + 1] = k
    end
    if #keys == 100000 then error("the store never filled up") end
    for _, k in ipairs(keys) do eq(ok(s:get(k)) ~= nil, true, "entry " .. k .. " kept") end
  end },
}

-- The cases bound to a store factory, as { name, fn() } pairs for a spec's `it`s (busted's
-- describe/it live in the spec file's environment, not here):
--   describe("x (store contract)", function()
--     for _, c in ipairs(contract.bind(factory, env)) do it(c[1], c[2]) end
--   end)
-- factory() -> store; env: sleep and full_store as above (fresh_key is provided).
function M.bind(factory, env)
  local run = tostring(os.time()) .. "-" .. tostring(math.random(1e9))
  local n = 0
  env = env or {}
  env.fresh_key = env.fresh_key or function(tag)
    n = n + 1
    return "contract:" .. run .. ":" .. tag .. ":" .. n
  end
  env.sleep = env.sleep or require("dws.core").sleep
  local bound = {}
  for _, case in ipairs(M.cases) do
    bound[#bound + 1] = { case[1], function() case[2](factory(), env) end }
  end
  return bound
end

return M
