-- The gateway's outbox over a memory store (the same code runs over SQLite and Redis inside nginx):
-- entries are kept until the backend takes them, forwarded oldest first, in order per binding, with
-- backoff after a refusal.
local core = require "dws.core"
local dstore = require "dws.store"
local outbox = require "dws.gateway.outbox"

local function notification(id, failed)
  local n = { requestId = id, paymentMethodDetail = { card = { cardToken = "tok-" .. id } } }
  if failed then n.result = { resultStatus = "F", resultCode = "CARD_EXPIRED" } end
  return n
end

describe("dws.gateway.outbox", function()
  local store, now, posted, answers

  local function run(extra)
    local opts = { now = function() return now end, retry_base = 1, retry_max = 8,
      post = function(e)
        posted[#posted + 1] = e.id
        local a = answers[e.id] or { true }
        return a[1], a[2], a[3]
      end }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return assert(outbox.run(store, opts))
  end

  before_each(function()
    store, now, posted, answers = dstore.memory(), 1000000, {}, {}
  end)

  it("names an event by its binding and outcome, so a re-sent notification keeps its id", function()
    local a = outbox.entry(notification("r1"), nil, now)
    local b = outbox.entry(notification("r1"), nil, now + 5000)
    assert.are.same({ "msg_bound_r1", "msg_bound_r1" }, { a.id, b.id })
  end)

  it("signs nothing itself: the payload is the Standard Webhooks body, fixed at entry time", function()
    local e = outbox.entry(notification("r1", true), nil, now)
    local p = core.json_decode(e.payload)
    assert.are.same({ "binding.failed", "FAILED", "CARD_EXPIRED" }, { p.type, p.data.status, p.data.resultCode })
  end)

  it("stores an entry once, whatever the number of puts", function()
    assert.is_true(outbox.put(store, outbox.entry(notification("r1"), nil, now)))
    assert.is_true(outbox.put(store, outbox.entry(notification("r1"), nil, now + 1)))
    assert.are.equal(1, (outbox.depth(store, now)))
  end)

  it("forwards oldest first and deletes what the backend took", function()
    outbox.put(store, outbox.entry(notification("r2"), nil, now + 1))
    outbox.put(store, outbox.entry(notification("r1"), nil, now))
    now = now + 2
    run()
    assert.are.same({ { "msg_bound_r1", "msg_bound_r2" }, 0 }, { posted, (outbox.depth(store, now)) })
  end)

  it("keeps a refused entry, with its attempt counted and the next one backed off", function()
    outbox.put(store, outbox.entry(notification("r1"), nil, now))
    answers.msg_bound_r1 = { false, "HTTP 500" }
    run()
    local e = outbox.list(store)[1]
    assert.are.same({ 1, now + 1000, "HTTP 500" }, { e.attempts, e.nextAt, e.lastError })
  end)

  it("does not try a backed-off entry before its time", function()
    outbox.put(store, outbox.entry(notification("r1"), nil, now))
    answers.msg_bound_r1 = { false, "HTTP 500" }
    run()
    now = now + 999
    run()
    assert.are.equal(1, #posted)
  end)

  it("sends a binding's later entry only in a later pass, after the earlier one", function()
    outbox.put(store, outbox.entry(notification("r1"), nil, now))
    outbox.put(store, outbox.entry(notification("r1", true), nil, now + 1))
    now = now + 2
    run()
    run()
    assert.are.same({ "msg_bound_r1", "msg_failed_r1" }, posted)
  end)

  it("hands each binding's head to `parallel`, with the concurrency", function()
    for i = 1, 5 do outbox.put(store, outbox.entry(notification("r" .. i), nil, now)) end
    local got
    run{ concurrency = 2, parallel = function(fns, width)
      got = { #fns, width }
      for _, fn in ipairs(fns) do fn() end
    end }
    assert.are.same({ 5, 2 }, got)
  end)

  it("holds a binding's later entry while an earlier one waits", function()
    outbox.put(store, outbox.entry(notification("r1"), nil, now))
    outbox.put(store, outbox.entry(notification("r1", true), nil, now + 1))
    answers.msg_bound_r1 = { false, "HTTP 500" }
    run()
    assert.are.same({ "msg_bound_r1" }, posted)
  end)

  it("still forwards other bindings past a refused one", function()
    outbox.put(store, outbox.entry(notification("r1"), nil, now))
    outbox.put(store, outbox.entry(notification("r2"), nil, now + 1))
    answers.msg_bound_r1 = { false, "HTTP 500" }
    now = now + 2
    run()
    assert.are.same({ "msg_bound_r1", "msg_bound_r2" }, posted)
  end)

  it("ends the pass when the backend does not answer at all", function()
    outbox.put(store, outbox.entry(notification("r1"), nil, now))
    outbox.put(store, outbox.entry(notification("r2"), nil, now + 1))
    answers.msg_bound_r1 = { false, "connect: refused", true }
    run()
    assert.are.same({ "msg_bound_r1" }, posted)
  end)

  it("stops when told to (the lock was lost)", function()
    outbox.put(store, outbox.entry(notification("r1"), nil, now))
    run{ keep_going = function() return false end }
    assert.are.same({}, posted)
  end)

  it("says nothing is due when it delivered everything", function()
    outbox.put(store, outbox.entry(notification("r1"), nil, now))
    assert.is_nil(run().next_at)
  end)

  it("says when a refused entry is due again", function()
    outbox.put(store, outbox.entry(notification("r1"), nil, now))
    answers.msg_bound_r1 = { false, "HTTP 500" }
    assert.are.equal(now + 1000, run().next_at)
  end)

  it("says a binding's next entry is due at once after its head was delivered", function()
    outbox.put(store, outbox.entry(notification("r1"), nil, now))
    outbox.put(store, outbox.entry(notification("r1", true), nil, now))
    assert.are.equal(now, run().next_at)
  end)

  it("backs off exponentially up to the maximum", function()
    assert.are.same({ 1, 2, 4, 8, 8 }, { outbox.backoff(1, 1, 8), outbox.backoff(2, 1, 8), outbox.backoff(3, 1, 8),
      outbox.backoff(4, 1, 8), outbox.backoff(9, 1, 8) })
  end)

  it("reports the oldest entry's age", function()
    outbox.put(store, outbox.entry(notification("r1"), nil, now))
    outbox.put(store, outbox.entry(notification("r2"), nil, now + 1000))
    local depth, age = outbox.depth(store, now + 3000)
    assert.are.same({ 2, 3 }, { depth, age })
  end)
end)
