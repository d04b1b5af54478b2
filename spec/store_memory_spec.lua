-- The memory store against the shared store contract, plus what only it has (a capacity clock).
local store = require "dws.store"
local contract = require "helpers.store_contract"

describe("dws.store.memory (store contract)", function()
  local cases = contract.bind(function() return store.memory() end, {
    full_store = function() return store.memory{ max_entries = 50 } end,
  })
  for _, c in ipairs(cases) do it(c[1], c[2]) end
end)

describe("dws.store.memory", function()
  it("reclaims expired entries when full", function()
    local now = 0
    local s = store.memory{ max_entries = 2, clock = function() return now end }
    assert(s:add("a", "1", 5)); assert(s:add("b", "2", 5))
    now = 10
    assert.is_true(s:add("c", "3", 5))
  end)

  it("raises on a value that is not a string (a programming error)", function()
    assert.has_error(function() store.memory():set("k", 42) end)
  end)

  it("open() with no spec is a memory store", function()
    assert.equal(getmetatable(store.memory()), getmetatable(store.open(nil)))
  end)

  it("open() refuses an unknown scheme by raising", function()
    assert.has_error(function() store.open("nosuch:/x") end)
  end)

  it("open() refuses an object without the interface by raising", function()
    assert.has_error(function() store.open({ get = function() end }) end)
  end)
end)
