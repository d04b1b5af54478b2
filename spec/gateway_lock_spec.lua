-- The gateway's lease (dws.gateway.lock) over a memory store with a test clock: one holder at a
-- time, renewed by its holder, taken over once it expires.
local dstore = require "dws.store"
local lock = require "dws.gateway.lock"

describe("dws.gateway.lock", function()
  local store, t

  before_each(function()
    t = 100
    store = dstore.memory{ clock = function() return t end }
  end)

  it("is held by the first to ask", function()
    local a = lock.acquire(store, "forwarder", "a", 10)
    assert.are.same({ true, false }, { a, lock.acquire(store, "forwarder", "b", 10) })
  end)

  it("is renewed by its holder", function()
    lock.acquire(store, "forwarder", "a", 10)
    t = t + 9
    lock.acquire(store, "forwarder", "a", 10)
    t = t + 9
    assert.is_false(lock.acquire(store, "forwarder", "b", 10))
  end)

  it("passes to another once the holder stops renewing it", function()
    lock.acquire(store, "forwarder", "a", 10)
    t = t + 11
    assert.is_true(lock.acquire(store, "forwarder", "b", 10))
  end)

  it("passes at once when released", function()
    lock.acquire(store, "forwarder", "a", 10)
    lock.release(store, "forwarder", "a")
    t = t + 0.02
    assert.is_true(lock.acquire(store, "forwarder", "b", 10))
  end)

  it("is not released by another", function()
    lock.acquire(store, "forwarder", "a", 10)
    lock.release(store, "forwarder", "b")
    t = t + 0.02
    assert.is_false(lock.acquire(store, "forwarder", "b", 10))
  end)

  it("says when the store cannot answer", function()
    local down = setmetatable({ add = function() return nil, "connection refused" end }, { __index = store })
    assert.are.same({ nil, "connection refused" }, { lock.acquire(down, "sweeper", "a", 10) })
  end)
end)
