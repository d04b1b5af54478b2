-- Several merchant nodes: two nginx sharing one real redis-server for notification
-- de-duplication, a third nginx driving deliveries at both at the same moment (ngx.thread.spawn)
-- and re-sending every non-S answer as DWS would; then a node whose handler dies mid-notification;
-- then one node whose lua_shared_dict is far too small. Handler runs are counted in Redis
-- (INCR started:<requestId> on entry, done:<requestId> on return), so no node can hide one.
-- Tagged #nginx (run under one busted flavour): every node and the driver run inside nginx; the
-- busted process only signs notifications and reads Redis.
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local redis_server = require "helpers.redis"
local notify_nodes = require "helpers.notify_nodes"

local CLIENT_ID = "SANDBOX_MULTINODE00001"
-- A node that dies holding a claim blocks that notification this long (the de-dup claim ttl).
local CLAIM_TTL = 1

local dir, redis, dws_key, nodes, driver

-- One merchant node. store: "redis" (shared) or "shared_dict" (this node only, a tiny dict).
local NODE = [[
events { worker_connections 512; }
http {
  %s
  access_log off;
  client_body_buffer_size 64k;
  client_max_body_size 64k;
  lua_shared_dict tiny 32k;
  init_by_lua_block {
    local function read(p) local f = assert(io.open(p)); local s = f:read("*a"); f:close(); return s end
    local kind = "%s"
    local dws = require "dws"
    local store
    if kind == "redis" then
      store = require("dws.store.redis").new{ port = %d, prefix = "dedup:" }
    else
      store = require("dws.store.shared_dict").new(ngx.shared.tiny)
    end
    package.loaded.node_client = dws.client{
      client_id = "%s", gateway = "http://127.0.0.1:9",
      private_key = read("%s"), dws_public_key = read("%s"),
      notification_store = store,
      logger = function(level, message) ngx.log(level == "error" and ngx.ERR or ngx.INFO, "dws: ", message) end,
    }
  }
  server {
    listen 127.0.0.1:@PORT@;
    location = /notify {
      content_by_lua_block {
        local redis = require "nginx.redis"
        local function count(key)
          local red = redis:new(); red:set_timeout(5000)
          assert(red:connect("127.0.0.1", %d))
          local v = red:incr(key)
          local die = key:sub(1, 8) == "started:" and red:del("die:" .. key:sub(9))
          red:set_keepalive(10000, 64)
          return v, die == 1
        end
        ngx.req.read_body()
        local status, headers, body = package.loaded.node_client:handle_notification({
          method = "POST", path = ngx.var.uri, headers = ngx.req.get_headers(100, true),
          body = ngx.req.get_body_data() }, function(n)
            local _, die = count("started:" .. n.requestId)
            ngx.sleep(0.01) -- a handler takes time: deliveries overlap it
            if die then ngx.sleep(0.1); os.exit(1) end -- this worker dies holding the claim
            count("done:" .. n.requestId)
            return true
          end, { processing_ttl = %d, claim_ttl = %d })
        ngx.status = status
        for k, v in pairs(headers) do ngx.header[k] = v end
        ngx.print(body)
      }
    }
  }
}
]]

local start, drive, url = notify_nodes.start, notify_nodes.drive, notify_nodes.url

local function notifications(tag, n)
  return notify_nodes.sign(dir, dws_key, CLIENT_ID, tag, n)
end

local function counts(pattern)
  return notify_nodes.counts(redis, pattern)
end

lazy_setup(function()
  dir = nginx.tmpdir("dws-multinode")
  redis = assert(redis_server.start())
  local dpriv, dpub = nginx.make_keypair(dir, "dws")
  local mpriv = nginx.make_keypair(dir, "merchant")
  dws_key = assert(core.private_key(nginx.read_file(dpriv)))
  nodes = {}
  for i, kind in ipairs{ "redis", "redis", "shared_dict" } do
    local prefix = dir .. "/node" .. i
    nodes[i] = { prefix = prefix, port = start(prefix, NODE, kind, redis.port, CLIENT_ID, mpriv, dpub,
      redis.port, CLAIM_TTL, CLAIM_TTL) }
  end
  driver = notify_nodes.start_driver(dir .. "/driver")
end)

lazy_teardown(function()
  for _, n in ipairs(nodes or {}) do nginx.stop(n.prefix) end
  if dir then nginx.stop(dir .. "/driver") end
  if redis then redis:stop() end
  nginx.rmdir(dir)
end)

describe("two merchant nodes sharing one Redis #nginx", function()
  local first, again, ids
  lazy_setup(function()
    local file
    file, ids = notifications("both", 1000)
    first = drive(driver, file, { url(nodes[1].port), url(nodes[2].port) }, 60)
    -- some of them twice more, later, to either node
    local some = dir .. "/again.jsonl"
    local lines = {}
    local i = 0
    for line in io.lines(file) do
      i = i + 1
      if i % 10 == 0 then lines[#lines + 1] = line end
    end
    nginx.write_file(some, table.concat(lines, "\n") .. "\n")
    again = drive(driver, some, { url(nodes[1].port), url(nodes[2].port) }, 60)
  end)

  it("answers every delivery S (U answers re-sent until S)", function()
    assert.are.same({ 2000, 0 }, { first.S, first.other })
  end)

  it("answers the later re-sends S", function()
    assert.are.same({ 200, 0 }, { again.S, again.other })
  end)

  it("runs the handler exactly 1,000 times, once per notification", function()
    local c = counts("done:both-*")
    assert.are.same({ runs = 1000, ids = 1000, max = 1 }, c)
    assert.are.equal(#ids, c.ids)
  end)
end)

describe("a node killed in the middle of a handler #nginx", function()
  local tally, ids
  lazy_setup(function()
    local file
    file, ids = notifications("die", 20)
    for _, id in ipairs(ids) do redis:cli("SET", "die:" .. id, "1") end
    tally = drive(driver, file, { url(nodes[1].port), url(nodes[2].port) }, 60, 20)
  end)

  it("answers every delivery S once the claim has expired", function()
    assert.are.same({ 40, 0 }, { tally.S, tally.other })
  end)

  it("started each handler twice: the run that died, then the re-send", function()
    assert.are.same({ runs = 40, ids = 20, max = 2 }, counts("started:die-*"))
  end)

  it("completed each notification exactly once", function()
    assert.are.same({ runs = 20, ids = 20, max = 1 }, counts("done:die-*"))
  end)
end)

describe("a node with a far too small lua_shared_dict #nginx", function()
  local tally
  lazy_setup(function()
    local file = notifications("full", 1000)
    -- re-sent for 1.5 s: long enough for the dict to fill and the refusals to be re-sent
    tally = drive(driver, file, { url(nodes[3].port), url(nodes[3].port) }, 1.5)
  end)

  it("never runs the handler twice for one notification", function()
    assert.are.equal(1, counts("done:full-*").max)
  end)

  it("asked for re-sends (not S) once the dict was full", function()
    assert.is_true(tally.other > 0)
  end)

  it("logged the full dict as an error", function()
    local log = nginx.read_file(nodes[3].prefix .. "/logs/error.log")
    assert.matches("ngx.shared dict full", log)
  end)
end)
