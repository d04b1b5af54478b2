-- dws.store.redis over hiredis (dws.redis) against a real redis-server: the store contract,
-- then what only Redis has (URL, AUTH, db, prefix, reconnecting, a server that is down).
-- Inside nginx (nginx.redis) the same contract runs in spec/store_nginx_spec.lua.
local store = require "dws.store"
local redis_store = require "dws.store.redis"
local contract = require "helpers.store_contract"
local redis_server = require "helpers.redis"
local nginx = require "dws_sandbox.nginx"

local server, locked

setup(function()
  server = assert(redis_server.start())
  locked = assert(redis_server.start{ password = "pa:ss@word" })
end)

teardown(function()
  if server then server:stop() end
  if locked then locked:stop() end
end)

describe("dws.store.redis over hiredis (store contract)", function()
  local cases = contract.bind(function()
    return redis_store.new{ port = server.port, backend = "hiredis", prefix = "c:" }
  end)
  for _, c in ipairs(cases) do it(c[1], c[2]) end
end)

describe("dws.store.redis over hiredis", function()
  it("opens from a redis:// URL with db and prefix", function()
    local s = assert(store.open("redis://127.0.0.1:" .. server.port .. "/3?prefix=shop1:&timeout=2"))
    assert(s:set("dws:notify:url", "done"))
    s:close()
    assert.are.equal("done", server:cli("-n", "3", "GET", "shop1:dws:notify:url"))
  end)

  it("keeps two prefixes apart in one database", function()
    local a = redis_store.new{ port = server.port, prefix = "a:" }
    local b = redis_store.new{ port = server.port, prefix = "b:" }
    assert(a:set("k", "from a"))
    assert.is_nil(b:get("k"))
  end)

  it("authenticates with a password from the URL (percent-encoded)", function()
    local s = assert(store.open("redis://:pa%3Ass%40word@127.0.0.1:" .. locked.port .. "/0"))
    assert.is_true(s:set("authed", "yes"))
  end)

  it("authenticates with a user name and password (ACL user)", function()
    assert.are.equal("OK", locked:cli("ACL", "SETUSER", "shop", "on", ">shop-pass", "~*", "+@all"))
    local s = redis_store.new{ port = locked.port, username = "shop", password = "shop-pass" }
    assert.is_true(s:set("acl", "yes"))
  end)

  it("answers nil, err without the password when AUTH fails", function()
    local s = redis_store.new{ port = locked.port, password = "wrong-password" }
    local v, err = s:get("x")
    assert.is_nil(v)
    assert.matches("WRONGPASS", err)
    assert.is_nil(err:find("wrong-password", 1, true))
  end)

  it("answers nil, err when no server listens (fail closed)", function()
    local s = redis_store.new{ port = nginx.free_ports(1)[1], timeout = 0.5 }
    local v, err = s:add("dws:notify:x", "processing", 60)
    assert.is_nil(v)
    assert.matches("connect", err)
  end)

  it("re-sends an idempotent command once on a new connection after the server dropped it", function()
    local s = redis_store.new{ port = server.port, prefix = "re:" }
    assert(s:set("k", "v"))
    server:cli("CLIENT", "KILL", "TYPE", "normal")
    assert.are.equal("v", s:get("k"))
  end)

  it("does not re-send a claim (SET NX) on a dropped connection: nil, err, then works again", function()
    local s = redis_store.new{ port = server.port, prefix = "re2:" }
    assert(s:set("k", "v"))
    server:cli("CLIENT", "KILL", "TYPE", "normal")
    local v, err = s:add("claim", "processing", 60)
    assert.is_nil(v)
    assert.is_string(err)
    assert.is_true(s:add("claim", "processing", 60))
  end)

  it("cas still works after the server forgot its scripts (NOSCRIPT -> EVAL)", function()
    local s = redis_store.new{ port = server.port, prefix = "ns:" }
    assert(s:set("k", "a"))
    assert.is_true(s:cas("k", "a", "b"))
    assert.are.equal("OK", server:cli("SCRIPT", "FLUSH"))
    assert.is_true(s:cas("k", "b", "c"))
  end)

  it("gives an entry the expiry in whole milliseconds (PX)", function()
    local s = redis_store.new{ port = server.port, prefix = "px:" }
    assert(s:add("k", "v", 90))
    local pttl = tonumber(server:cli("PTTL", "px:k"))
    assert.is_true(pttl > 85000 and pttl <= 90000)
  end)

  it("scans a prefix with glob characters literally", function()
    local s = redis_store.new{ port = server.port, prefix = "g:" }
    assert(s:set("a*[1]:x", "1")); assert(s:set("ab[1]:y", "2"))
    local rows = assert(s:scan("a*[1]:"))
    assert.are.equal(1, #rows)
    assert.are.same({ "a*[1]:x", "1" }, rows[1])
  end)

  it("scans more keys than one MGET batch", function()
    local s = redis_store.new{ port = server.port, prefix = "many:" }
    for i = 1, 1200 do assert(s:set("k:" .. i, tostring(i))) end
    assert.are.equal(1200, #assert(s:scan("k:")))
  end)

  it("refuses tls and unknown options by raising (configuration errors)", function()
    assert.has_error(function() redis_store.new{ tls = true } end)
    assert.has_error(function() redis_store.new{ hots = "x" } end)
    assert.has_error(function() store.open("redis://127.0.0.1:1/0?prefx=a") end)
  end)
end)
