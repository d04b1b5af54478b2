-- The de-dup store dies while handlers run: two nginx nodes share one redis-server (append-only,
-- fsync per write: what a production Redis journal runs with), every notification is delivered to
-- both at once and re-sent while the answer is not S, as DWS does; the redis-server is killed
-- (SIGKILL) while every handler is running and started again a second later. A handler's run is
-- counted in a second redis-server that stays up (INCR started:<requestId> on entry).
-- Tagged #nginx (run under one busted flavour): the nodes and the driver run inside nginx.
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local redis_server = require "helpers.redis"
local notify_nodes = require "helpers.notify_nodes"

local CLIENT_ID = "SANDBOX_OUTAGE000000001"
local N = 30
-- The claim outlives the outage (about a second) by a margin: a delivery after it expires would
-- run the handler again, and this spec is about an outage shorter than the claim.
local CLAIM_TTL = 5
local HANDLER_SECONDS = 0.6

local dir, store_redis, count_redis, dws_key, nodes, driver

local NODE = [[
events { worker_connections 512; }
http {
  %s
  access_log off;
  client_body_buffer_size 64k;
  init_by_lua_block {
    local function read(p) local f = assert(io.open(p)); local s = f:read("*a"); f:close(); return s end
    local dws = require "dws"
    package.loaded.node_client = dws.client{
      client_id = "%s", gateway = "http://127.0.0.1:9",
      private_key = read("%s"), dws_public_key = read("%s"),
      notification_store = require("dws.store.redis").new{ port = %d, prefix = "dedup:", timeout = 0.5 },
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
          red:incr(key)
          red:set_keepalive(10000, 64)
        end
        ngx.req.read_body()
        local status, headers, body = package.loaded.node_client:handle_notification({
          method = "POST", path = ngx.var.uri, headers = ngx.req.get_headers(100, true),
          body = ngx.req.get_body_data() }, function(n)
            count("started:" .. n.requestId)
            ngx.sleep(%s)
            return true
          end, { claim_ttl = %d })
        ngx.status = status
        for k, v in pairs(headers) do ngx.header[k] = v end
        ngx.print(body)
      }
    }
  }
}
]]

lazy_setup(function()
  dir = nginx.tmpdir("dws-outage")
  store_redis = assert(redis_server.start{ durable = true })
  count_redis = assert(redis_server.start())
  local dpriv, dpub = nginx.make_keypair(dir, "dws")
  local mpriv = nginx.make_keypair(dir, "merchant")
  dws_key = assert(core.private_key(nginx.read_file(dpriv)))
  nodes = {}
  for i = 1, 2 do
    local prefix = dir .. "/node" .. i
    nodes[i] = { prefix = prefix, port = notify_nodes.start(prefix, NODE, CLIENT_ID, mpriv, dpub, store_redis.port,
      count_redis.port, tostring(HANDLER_SECONDS), CLAIM_TTL) }
  end
  driver = notify_nodes.start_driver(dir .. "/driver")
end)

lazy_teardown(function()
  for _, n in ipairs(nodes or {}) do nginx.stop(n.prefix) end
  if dir then nginx.stop(dir .. "/driver") end
  if store_redis then store_redis:stop() end
  if count_redis then count_redis:stop() end
  nginx.rmdir(dir)
end)

local function started()
  return tonumber(count_redis:cli("EVAL", "return #redis.call('KEYS', ARGV[1])", "0", "started:*")) or 0
end

describe("the de-dup redis-server killed while every handler runs #nginx", function()
  local tally, again, killed_mid_handler

  lazy_setup(function()
    local file = notify_nodes.sign(dir, dws_key, CLIENT_ID, "outage", N)
    local targets = { notify_nodes.url(nodes[1].port), notify_nodes.url(nodes[2].port) }
    -- The driver delivers in the background of this process: its answer comes once every
    -- delivery was acknowledged. Meanwhile: wait for every handler to be running, kill, restart.
    local out = dir .. "/tally.json"
    local cmd = string.format("curl -s -m 60 -X POST -H 'Content-Type: application/json' --data %s %s > %s &",
      nginx.sh_quote(core.json_encode{ file = file, targets = targets, deadline = 30, batch = N }),
      nginx.sh_quote("http://127.0.0.1:" .. driver .. "/drive"), nginx.sh_quote(out))
    assert(nginx.run(cmd))
    local deadline = core.monotonic() + 10
    while started() < N and core.monotonic() < deadline do nginx.sleep(0.01) end
    killed_mid_handler = started() == N
    store_redis:kill()
    nginx.sleep(1)
    assert(store_redis:restart())
    deadline = core.monotonic() + 60
    while core.monotonic() < deadline do
      local text = nginx.read_file(out)
      if text and text:find("}", 1, true) then
        tally = core.json_decode(text)
        break
      end
      nginx.sleep(0.05)
    end
    assert(tally, "the driver did not answer")
    -- DWS's later re-sends of every notification, once the store is back.
    again = notify_nodes.drive(driver, file, targets, 30, N)
  end)

  it("killed the store while every handler was running", function()
    assert.is_true(killed_mid_handler)
  end)

  it("could not write the done marks then", function()
    local log = nginx.read_file(nodes[1].prefix .. "/logs/error.log") .. nginx.read_file(nodes[2].prefix ..
      "/logs/error.log")
    assert.matches("could not remember notification, retrying", log, 1, true)
  end)

  it("acknowledged every delivery in the end", function()
    assert.are.same({ 2 * N, 0 }, { tally.S, tally.other })
  end)

  it("acknowledged the later re-sends", function()
    assert.are.same({ 2 * N, 0 }, { again.S, again.other })
  end)

  it("ran each handler exactly once", function()
    assert.are.same({ runs = N, ids = N, max = 1 }, notify_nodes.counts(count_redis, "started:outage-*"))
  end)
end)
