-- README.md's promises that no other spec holds, grouped by README section, and the README's Lua
-- blocks run as written: each is read from README.md when the spec runs (so the two cannot drift)
-- and run against the real sandbox. Where a block must differ to run here (a real gateway's URL, a
-- placeholder key), the spec substitutes that exact text and fails if it is no longer there.
local dws = require "dws"

describe("README Stores", function()
  -- A store of one's own, checking its arguments with dws.store's checks as the README says.
  local Mine = {}
  Mine.__index = Mine
  function Mine.get(_, key) dws.store.check_key(key, "mystore", "get", "lock:") end
  function Mine.set(_, key, value, ttl)
    dws.store.check_key(key, "mystore", "set")
    dws.store.check_value(value, "mystore", "set")
    dws.store.check_ttl(ttl, "mystore", "set")
  end
  function Mine.scan(_, prefix) dws.store.check_prefix(prefix, "mystore") end
  local mine = setmetatable({}, Mine)

  -- The error a call raises (not in tail position, so the caller's line is there to name).
  local function raised(fn)
    local ok, err = pcall(function() local r = fn() return r end)
    assert(not ok, "did not raise")
    return err
  end

  it("require('dws').store is dws.store", function()
    assert.are.equal(require("dws.store"), dws.store)
  end)

  it("a store's bad key raises at the caller's line", function()
    local store = dws.store.memory()
    assert.matches("readme_claims_spec%.lua:%d+: dws%.store: get: key must be a non%-empty string$",
      raised(function() return store:get("") end))
  end)

  it("check_key raises at the line that called the store", function()
    assert.matches("readme_claims_spec%.lua:%d+: mystore: get: key must be a non%-empty string$",
      raised(function() return mine:get(7) end))
  end)

  it("check_key refuses a key in the reserved prefix", function()
    assert.matches("mystore: get: key must not start with \"lock:\"$", raised(function() return mine:get("lock:a") end))
  end)

  it("check_value refuses a value that is not a string", function()
    assert.matches("readme_claims_spec%.lua:%d+: mystore: set: value must be a string$",
      raised(function() return mine:set("k", 1) end))
  end)

  it("check_ttl refuses a ttl that is not a positive finite number", function()
    local msgs = {}
    for i, ttl in ipairs{ 0, -1, 0 / 0, math.huge, "5" } do
      msgs[i] = raised(function() return mine:set("k", "v", ttl) end):match("mystore: set: .*$")
    end
    local expected = "mystore: set: ttl must be a positive number of seconds, or nil"
    assert.are.same({ expected, expected, expected, expected, expected }, msgs)
  end)

  it("check_prefix refuses a prefix that is not a string", function()
    assert.matches("readme_claims_spec%.lua:%d+: mystore: scan: prefix must be a string$",
      raised(function() return mine:scan(nil) end))
  end)

  it("register adds a kind that open finds by its scheme", function()
    dws.store.register("readmekind", function(rest) return dws.store.memory{ max_entries = tonumber(rest) } end)
    assert.are.equal("dws.store.memory(0/7)", tostring(dws.store.open("readmekind:7")))
  end)

  it("register's opener may answer nil, err, which open passes on", function()
    dws.store.register("readmedown", function() return nil, "down for the spec" end)
    assert.are.same({ nil, "down for the spec" }, { dws.store.open("readmedown:x") })
  end)

  it("open raises on a spec no kind is registered for", function()
    assert.matches("unknown store", raised(function() return dws.store.open("no-such-kind:x") end))
  end)
end)

