-- Several merchant nodes (issue 9): two nginx sharing one real redis-server for notification
-- de-duplication, a third nginx driving deliveries at both at the same moment (ngx.thread.spawn)
-- and re-sending every non-S answer as DWS would; then a node whose handler dies mid-notification;
-- then one node whose lua_shared_dict is far too small. Handler runs are counted in Redis
-- (INCR started:<requestId> on entry, done:<requestId> on return), so no node can hide one.
-- Tagged #nginx (run under one busted flavour): every node and the driver run inside nginx; the
-- busted process only signs notifications and reads Redis.
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local redis_server = require "helpers.redis"

local CLIENT_ID = "SANDBOX_MULTINODE00001"
-- A node that dies holding a claim blocks that notification this long (the de-dup claim ttl).
local CLAIM_TTL = 1

local dir, redis, dws_key, nodes, driver, curl

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

-- The driver: POST /drive {file=, targets={urls}, deadline=}: for each line of the file (one
-- signed notification), every target gets it at the same moment; each delivery is re-sent while
-- the answer is not S, until deadline seconds have passed. Answers tallied by final status.
local DRIVER = [[
events { worker_connections 4096; }
http {
  %s
  access_log off;
  client_body_buffer_size 64k;
  server {
    listen 127.0.0.1:@PORT@;
    location = /drive {
      content_by_lua_block {
        local core = require "dws.core"
        ngx.req.read_body()
        local job = core.json_decode(ngx.req.get_body_data())
        local http = require("dws.transport.ngx").new{}
        local stop_at = ngx.now() + job.deadline
        local tally = { S = 0, other = 0, sends = 0 }
        local function deliver(url, n)
          while true do
            tally.sends = tally.sends + 1
            local res = http:request{ method = "POST", url = url, body = n.body, timeout = 10, connect_timeout = 5,
              headers = { ["Content-Type"] = "application/json", ["Client-Id"] = n.client_id,
                          ["Request-Time"] = n.time, ["Signature"] = n.signature } }
            if res and res.status == 200 and res.body:find('"resultStatus":"S"', 1, true) then
              tally.S = tally.S + 1
              return
            end
            if ngx.now() > stop_at then tally.other = tally.other + 1; return end
            ngx.sleep(0.05)
          end
        end
        local list = {}
        for line in io.lines(job.file) do list[#list + 1] = core.json_decode(line) end
        local batch = job.batch or 50
        for i = 1, #list, batch do
          local threads = {}
          for j = i, math.min(i + batch - 1, #list) do
            for _, url in ipairs(job.targets) do threads[#threads + 1] = ngx.thread.spawn(deliver, url, list[j]) end
          end
          for _, t in ipairs(threads) do ngx.thread.wait(t) end
        end
        ngx.print(core.json_encode(tally))
      }
    }
  }
}
]]

local function start(prefix, conf_fmt, ...)
  local body = string.format(conf_fmt, nginx.lua_paths(), ...)
  local ports, why = nginx.start_on_free_ports(prefix, 1, function(p)
    return nginx.preamble(prefix):gsub("worker_processes 1", "worker_processes 2") ..
      body:gsub("@PORT@", tostring(p[1]))
  end)
  return assert(ports, why)[1]
end

-- n notifications signed now, one JSON line each, in a file for the driver.
local function notifications(tag, n)
  local time = tostring(core.time_ms())
  local lines, ids = {}, {}
  for i = 1, n do
    local id = tag .. "-" .. i .. "-" .. core.uuid4()
    local body = assert(core.json_encode{ referenceCustomerId = "customer-" .. i, requestId = id,
      operateSource = "MERCHANT", paymentMethodDetail = { paymentMethodDetailType = "CARD",
      card = { brand = "VISA", cardToken = "PYMT" .. i, mask = "411111******1111" } } })
    local sig = core.signature_header(assert(core.sign(dws_key, "POST", "/notify", CLIENT_ID, time, body)), "1")
    lines[i] = assert(core.json_encode{ body = body, time = time, client_id = CLIENT_ID, signature = sig })
    ids[i] = id
  end
  local file = dir .. "/" .. tag .. ".jsonl"
  nginx.write_file(file, table.concat(lines, "\n") .. "\n")
  return file, ids
end

local function drive(file, targets, deadline, batch)
  local res, kind, message = curl:request{ method = "POST", url = "http://127.0.0.1:" .. driver .. "/drive",
    body = core.json_encode{ file = file, targets = targets, deadline = deadline, batch = batch },
    headers = { ["Content-Type"] = "application/json" }, timeout = 600, connect_timeout = 5 }
  assert(res, tostring(kind) .. " " .. tostring(message))
  assert(res.status == 200, res.body)
  return assert(core.json_decode(res.body))
end

-- { runs = total INCRs, ids = keys, max = largest count } over keys matching pattern.
local function counts(pattern)
  local out = redis:cli("EVAL", "local t, n, m = 0, 0, 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do " ..
    "local v = tonumber(redis.call('GET', k)) t = t + v n = n + 1 if v > m then m = v end end return {t, n, m}",
    "0", pattern)
  local t, n, m = out:match("^(%d+)\n(%d+)\n(%d+)$")
  assert(t, out)
  return { runs = tonumber(t), ids = tonumber(n), max = tonumber(m) }
end

local function url(port) return "http://127.0.0.1:" .. port .. "/notify" end

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
  driver = start(dir .. "/driver", DRIVER)
  curl = require("dws.transport.curl").new{}
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
    first = drive(file, { url(nodes[1].port), url(nodes[2].port) }, 60)
    -- some of them twice more, later, to either node
    local some = dir .. "/again.jsonl"
    local lines = {}
    local i = 0
    for line in io.lines(file) do
      i = i + 1
      if i % 10 == 0 then lines[#lines + 1] = line end
    end
    nginx.write_file(some, table.concat(lines, "\n") .. "\n")
    again = drive(some, { url(nodes[1].port), url(nodes[2].port) }, 60)
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
    tally = drive(file, { url(nodes[1].port), url(nodes[2].port) }, 60, 20)
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
    tally = drive(file, { url(nodes[3].port), url(nodes[3].port) }, 1.5)
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
