-- The gateway over Redis: redis-server killed and restarted (DWS is never acknowledged while the
-- outbox cannot take the event; once Redis is back, DWS's re-send is, and the event reaches the
-- backend), and two gateway nodes on one Redis (each event forwarded once).
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local gw = require "helpers.gateway"
local redis = require "helpers.redis"

local q = nginx.sh_quote

-- Redis with an append-only file written at every command, so a SIGKILL loses nothing written.
local DURABLE = "--appendonly yes --appendfsync always"

local function redis_command(r)
  return "redis-server --port " .. r.port .. " --bind 127.0.0.1 --save '' --dir " .. q(r.dir) ..
    " --daemonize yes --pidfile " .. q(r.dir .. "/redis.pid") .. " --logfile " .. q(r.dir .. "/redis.log") ..
    " " .. DURABLE
end

local function deliveries_for(sb, id)
  local out = {}
  for _, d in ipairs(sb:deliveries()) do
    if d.requestId == id then out[#out + 1] = d end
  end
  return out
end

describe("the gateway when redis-server is killed and restarted #nginx", function()
  local r, g, id

  setup(function()
    r = assert(redis.start{ extra = DURABLE })
    -- The BOUND notification comes 1.5 s after the binding: time to kill Redis first.
    g = assert(gw.start{ backend = true, store = r.url, sandbox = { bound_notify_delay = 1.5 } })
  end)

  teardown(function()
    if g then g:stop() end
    if r then r:stop() end
  end)

  it("binds a card with the journal in Redis", function()
    id = g:bind_cards(1)[1]
    assert.is_string(id)
  end)

  it("does not acknowledge the notification while Redis is down", function()
    nginx.run("kill -KILL " .. r.pid)
    local refused = gw.eventually(function()
      local list = deliveries_for(g.sb, id)
      return #list >= 2 and list
    end)
    local statuses = {}
    for _, d in ipairs(refused) do statuses[#statuses + 1] = d.status end
    assert.are.same({ 500, 500 }, { statuses[1], statuses[2] })
  end)

  it("acknowledges DWS's re-send once Redis is back, and forwards the event", function()
    os.remove(r.dir .. "/redis.pid")
    assert(nginx.run(redis_command(r) .. " >/dev/null 2>&1"), "redis-server did not restart")
    assert(gw.eventually(function() return r:cli("PING") == "PONG" end), "redis not answering")
    r.pid = tonumber((nginx.read_file(r.dir .. "/redis.pid") or ""):match("%d+"))
    local event = gw.eventually(function()
      local e = g:events()[1]
      return e and e.event
    end, 30)
    assert.are.same({ id, "BOUND" }, { event and event.data.requestId, event and event.data.status })
  end)
end)

describe("two gateway nodes on one Redis #nginx", function()
  local r, a, b, ids

  setup(function()
    r = assert(redis.start())
    a = assert(gw.start{ backend = true, store = r.url })
    b = assert(gw.start{ first = a, store = r.url })
  end)

  teardown(function()
    if a then a:stop() end
    if r then r:stop() end
  end)

  it("binds cards through both nodes", function()
    ids = a:bind_cards(3)
    for i, x in ipairs(b:bind_cards(3)) do ids[3 + i] = x end
    assert.are.equal(6, #ids)
  end)

  it("forwards each binding's event once", function()
    assert(gw.eventually(function() return #a:events() >= 6 end), "events missing")
    local got = {}
    for _, e in ipairs(a:events()) do got[#got + 1] = e.event.data.requestId end
    table.sort(got)
    table.sort(ids)
    assert.are.same({ ids, {} }, { got, a:repeats() })
  end)

  it("reads a binding made through one node as BOUND through the other", function()
    local status, _, body = b:request("GET", "/v1/bindings/" .. ids[1])
    assert.are.same({ 200, "BOUND" }, { status, core.json_decode(body).binding.status })
  end)
end)

describe("the gateway when the store refuses the outbox entry alone #nginx", function()
  local r, g, id

  setup(function()
    r = assert(redis.start())
    -- A Redis user that may write the journal and the de-dup marks, not the outbox.
    assert(r:cli("ACL", "SETUSER", "gw", "on", ">gw-secret", "~dws:binding:*", "~dws:notify:*", "~dws:gateway:*",
      "+@all") == "OK")
    g = assert(gw.start{ backend = true, store = "redis://gw:gw-secret@127.0.0.1:" .. r.port .. "/0" })
  end)

  teardown(function()
    if g then g:stop() end
    if r then r:stop() end
  end)

  it("answers DWS 500 (not acknowledged) for every delivery", function()
    id = g:bind_cards(1)[1]
    local list = gw.eventually(function()
      local l = deliveries_for(g.sb, id)
      return #l >= 2 and l
    end)
    assert.are.same({ 500, 500 }, { list[1].status, list[2].status })
  end)

  it("forwarded nothing", function()
    assert.are.same({}, g:events())
  end)

  it("acknowledges and forwards once the outbox can be written", function()
    assert(r:cli("ACL", "SETUSER", "gw", "~dws:outbox:*") == "OK")
    local event = gw.eventually(function()
      local e = g:events()[1]
      return e and e.event
    end, 30)
    assert.are.equal(id, event and event.data.requestId)
  end)
end)
