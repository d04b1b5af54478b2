-- The SQLite store against the shared store contract, plus what only it has: a file that two
-- processes share and that survives the process.
local store = require "dws.store"
local sqlite = require "dws.store.sqlite"
local contract = require "helpers.store_contract"

local function tmpfile()
  local p = os.tmpname()
  os.remove(p)
  return p .. ".db"
end

-- A lua5.4 child on this tree (the jit flavour's LUA_CPATH would not load in lua5.4).
local function lua54(code)
  local root = os.getenv("DWS_ROOT") or "."
  return string.format("LUA_PATH='%s/lua/?.lua;;' LUA_CPATH='%s/build/5.4/?.so;;' lua5.4 -e %q", root, root, code)
end

local function cleanup(path)
  for _, suffix in ipairs{ "", "-wal", "-shm" } do os.remove(path .. suffix) end
end

describe("dws.store.sqlite (store contract)", function()
  local path = tmpfile()
  local opened = {}
  teardown(function()
    for _, s in ipairs(opened) do s:close() end
    cleanup(path)
  end)
  local cases = contract.bind(function()
    local s = sqlite.open(path)
    opened[#opened + 1] = s
    return s
  end)
  for _, c in ipairs(cases) do it(c[1], c[2]) end
end)

describe("dws.store.sqlite", function()
  local path
  before_each(function() path = tmpfile() end)
  after_each(function() cleanup(path) end)

  it("is what store.open gives for a sqlite: spec", function()
    local s = store.open("sqlite:" .. path)
    assert(s:set("k", "v"))
    s:close()
    assert.equal("v", sqlite.open(path):get("k"))
  end)

  it("keeps what it wrote for another process (lua5.4 reads it back)", function()
    local s = sqlite.open(path)
    assert(s:set("dws:binding:x", '{"state":"NEW"}'))
    s:close()
    local cmd = lua54("local s = require('dws.store.sqlite').open(" .. string.format("%q", path)
      .. ") io.write(s:get('dws:binding:x'))")
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    p:close()
    assert.equal('{"state":"NEW"}', out)
  end)

  it("lets only one of two processes claim a key with add", function()
    local code = "local s = require('dws.store.sqlite').open(" .. string.format("%q", path) .. ") "
      .. "local r = {} for i = 1, 50 do r[#r + 1] = tostring(s:add('claim:' .. i, 'x', 60)) end "
      .. "io.write(table.concat(r, ','))"
    local p1 = assert(io.popen(lua54(code)))
    local p2 = assert(io.popen(lua54(code)))
    local a, b = p1:read("a"), p2:read("a")
    p1:close(); p2:close()
    local wins = 0
    local ra, rb = {}, {}
    for v in a:gmatch("[^,]+") do ra[#ra + 1] = v end
    for v in b:gmatch("[^,]+") do rb[#rb + 1] = v end
    for i = 1, 50 do
      if ra[i] == "true" then wins = wins + 1 end
      if rb[i] == "true" then wins = wins + 1 end
    end
    assert.equal(50, wins)
  end)

  it("treats a key with % and _ literally in scan", function()
    local s = sqlite.open(path)
    assert(s:set("a%_1", "x")); assert(s:set("abc1", "y"))
    local rows = assert(s:scan("a%_"))
    assert.equal(1, #rows)
  end)

  it("answers nil, err when the file cannot be opened (fail closed)", function()
    local s = sqlite.open("/nonexistent-dir/for/sure/x.db")
    local v, err = s:add("k", "v", 60)
    assert.is_nil(v)
    assert.is_string(err)
  end)

  it("writes in WAL mode with synchronous FULL", function()
    local s = sqlite.open(path)
    assert(s:set("k", "v"))
    local cur = s.conn:execute("PRAGMA journal_mode")
    local mode = cur:fetch(); cur:close()
    cur = s.conn:execute("PRAGMA synchronous")
    local sync = cur:fetch(); cur:close()
    assert.same({ "wal", 2 }, { mode, tonumber(sync) })
  end)
end)
