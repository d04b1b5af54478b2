-- Section 10: the DWS gateway (docs/gateway.md).
--   CPU of the gateway's worker per consult call made through /v1/, against the same call made by
--   lua-dws directly inside the same nginx (bench/gateway_direct.lua): goal at most 1.3x.
--   Forwarded notifications per second by one worker to a loopback backend (a plain nginx answering
--   204), the outbox in Redis: goal at least 5,000 /s.
local nginx = require "dws_sandbox.nginx"
local config = require "dws.gateway.config"
local outbox = require "dws.gateway.outbox"
local util = require "bench.util"

local M = {}

local GOAL_RATIO, GOAL_RATE = 1.3, 5000
local CALLS = tonumber(os.getenv("DWS_BENCH_GATEWAY_CALLS")) or 500
local ROUNDS = 3
local EVENTS = tonumber(os.getenv("DWS_BENCH_GATEWAY_EVENTS")) or 10000
local TOKEN = string.rep("c3", 20)

-- A process's CPU time in seconds, to the nanosecond (/proc/PID/schedstat's first field), not in
-- the 10 ms ticks of /proc/PID/stat: a call costs well under a tick.
local function proc_cpu(pid)
  local s = util.read_file("/proc/" .. pid .. "/schedstat")
  return tonumber(s:match("^(%d+)")) / 1e9
end

local function worker_of(prefix)
  local p = io.popen("pgrep -P " .. tonumber(nginx.pid_of(prefix)))
  local pid = tonumber(p:read("*l"))
  p:close()
  return pid
end

local function us(s) return string.format("%.1f us", s * 1e6) end

function M.run(ctx)
  local sb, core, row = ctx.sb, ctx.core, ctx.row
  if not sb then error("no sandbox", 0) end
  local dir = nginx.tmpdir("dws-bench-gateway")
  local r = assert(require("helpers.redis").start())
  local backend_dir, gw_dir = dir .. "/backend", dir .. "/gw"
  local ok, err = pcall(function()
    local ports = nginx.free_ports(4)
    local backend_port = ports[4]
    assert(nginx.start(backend_dir, nginx.preamble(backend_dir) .. "events { worker_connections 256; }\nhttp {\n" ..
      "  access_log off;\n  server {\n    listen 127.0.0.1:" .. backend_port .. ";\n" ..
      "    location / { return 204; }\n  }\n}\n", { backend_port }))
    util.record_server(ctx.out, backend_dir .. "/logs/nginx.pid")
    nginx.write_file(dir .. "/merchant.pem", sb.merchant.private_key, "600")
    local path = dir .. "/gateway.json"
    nginx.write_file(path, assert(core.json_encode{
      dir = gw_dir, client_id = sb.merchant.client_id, private_key_file = dir .. "/merchant.pem",
      dws_public_key_file = sb.dws_public_key_file, gateway = sb.https_url, ca_file = sb.ca_file,
      server_name = "localhost", store = r.url, log_level = "error",
      listen = "127.0.0.1:" .. ports[1], notify_listen = "127.0.0.1:" .. ports[2],
      metrics_listen = "127.0.0.1:" .. ports[3],
      backends = { bench = { token = TOKEN, apis = { "consultAddablePaymentMethod" } } },
      forward_to = "http://127.0.0.1:" .. backend_port .. "/events",
      forward_secret = "whsec_" .. core.base64_encode(string.rep("s", 32)),
      forward_retry_base = 0.05, forward_retry_max = 0.1, forward_interval = 0.05, sweep_interval = 3600,
      -- Entries are written here, not by the notify handler, so no signal tells the forwarder.
      forward_rescan = 0.05,
    }))
    local c = assert(config.load(path))
    local p = io.popen("id -u")
    local uid = p:read("*l")
    p:close()
    local conf = config.nginx_conf(c, { lua_lines = nginx.lua_paths(), uid = uid })
    conf = conf:gsub("(        location @too_large)", '        location = /__direct { content_by_lua_block { ' ..
      'require("bench.gateway_direct").run("' .. path .. '") } }\n%1')
    assert(nginx.start(gw_dir, conf, { ports[1], ports[2], ports[3] }))
    util.record_server(ctx.out, gw_dir .. "/logs/nginx.pid")
    local worker = worker_of(gw_dir)

    -- 1. CPU per call: interleaved rounds, the best round of each.
    local http = require("dws.curl").new{ max_response_bytes = 1024 * 1024 }
    local base = "http://127.0.0.1:" .. ports[1]
    local body = '{"customerId":"2162878776333","env":{"terminalType":"WEB"}}'
    local function gateway_call()
      local s = http:request(base .. "/v1/consultAddablePaymentMethod", { "Authorization: Bearer " .. TOKEN,
        "Content-Type: application/json" }, body, 30, 5, "POST")
      assert(s == 200, "gateway call: " .. tostring(s))
    end
    local function direct_call()
      local s = http:request(base .. "/__direct", {}, nil, 30, 5, "GET")
      assert(s == 200, "direct call: " .. tostring(s))
    end
    local function round(fn, n)
      local c0 = proc_cpu(worker)
      for _ = 1, n do fn() end
      return (proc_cpu(worker) - c0) / n
    end
    round(gateway_call, 30)
    round(direct_call, 30)
    local best_g, best_d = math.huge, math.huge
    for _ = 1, ROUNDS do
      best_g = math.min(best_g, round(gateway_call, CALLS))
      best_d = math.min(best_d, round(direct_call, CALLS))
    end
    http:close()
    local ratio = best_g / best_d
    row("10", "gateway: worker CPU per consult call via /v1/", us(best_g), string.format("%.2fx", ratio),
      ratio <= GOAL_RATIO and string.format("met (<= %.1fx direct)", GOAL_RATIO)
        or string.format("missed by %.2fx (goal <= %.1fx direct)", ratio - GOAL_RATIO, GOAL_RATIO))
    row("10", "  the same call by lua-dws directly in nginx", us(best_d))

    -- 2. Forwarding: EVENTS entries written straight into the outbox, then timed until it is empty.
    local store = require("dws.store.redis").new{ host = "127.0.0.1", port = r.port, backend = "hiredis" }
    local redis = require("dws.redis")
    local conn = assert(redis.connect("127.0.0.1", r.port, 5))
    local function keys_now()
      return conn:call("EVAL", "return #redis.call('KEYS', ARGV[1])", "0", outbox.PREFIX .. "*")
    end
    -- Polled as DBSIZE less the keys that were there before (the leases): KEYS every 10 ms would
    -- cost Redis more than the forwarder's own commands.
    local others = conn:call("DBSIZE") - keys_now()
    local function depth() return conn:call("DBSIZE") - others end
    local now = core.time_ms()
    for i = 1, EVENTS do
      local n = { requestId = string.format("bench-%06d", i),
        paymentMethodDetail = { card = { cardToken = "tok" .. i, mask = "411111******1111" } } }
      assert(outbox.put(store, outbox.entry(n, nil, now)))
    end
    local c0, w0 = proc_cpu(worker), util.wall()
    local d = depth()
    local deadline = w0 + 120
    -- Timed from the first entry gone: the forwarder's next look is not its speed.
    while d >= EVENTS and util.wall() < deadline do
      core.sleep(0.002)
      d = depth()
    end
    local start_depth, t_start = d, util.wall()
    while d > 0 and util.wall() < deadline do
      core.sleep(0.01)
      d = depth()
    end
    local wall, cpu = util.wall() - t_start, proc_cpu(worker) - c0
    local left = keys_now()
    conn:close()
    store:close()
    assert(left == 0, "the outbox did not drain: " .. tostring(left) .. " left")
    local rate = start_depth / wall
    row("10", "gateway: forwarded notifications /s, one worker", string.format("%.0f /s", rate),
      us(cpu / start_depth) .. " CPU each",
      rate >= GOAL_RATE and string.format("met (>= %d /s)", GOAL_RATE)
        or string.format("missed by %.0f /s (goal >= %d /s)", GOAL_RATE - rate, GOAL_RATE))
    -- The wall-clock rate shares two cores with Redis, the backend and the rest of the machine; what
    -- the worker's own CPU allows is the other half of the answer.
    row("10", "  the worker's CPU-bound rate (1 / CPU per forward)", string.format("%.0f /s", start_depth / cpu))
  end)
  nginx.stop(gw_dir)
  nginx.stop(backend_dir)
  r:stop()
  nginx.rmdir(dir)
  if not ok then error(err, 0) end
end

return M
