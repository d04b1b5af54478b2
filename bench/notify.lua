-- Section 8: verified-and-acknowledged notifications per second on the example merchant server
-- (examples/openresty) under wrk on loopback, against the verify floor times the worker count.
--
-- Notifications are signed here with the DWS private key (the sandbox's when it runs, else a
-- key pair made for the run), all with one fresh Request-Time so replay protection accepts them
-- for the few seconds of the run. Each has its own requestId; wrk cycles through the pool, so
-- after the first pass the merchant verifies each one and acknowledges it as already processed.
local nginx = require "dws_sandbox.nginx"
local util = require "bench.util"

local M = {}

local POOL = tonumber(os.getenv("DWS_BENCH_NOTIFICATIONS")) or 2000
local WRK_CONNECTIONS, WRK_THREADS = 4, 1
-- Issue 13, §3: acknowledged notifications per second per worker, and the SDK's share of a
-- notification's worker CPU (endpoint - baseline - one verify) as a fraction of one verify.
local GOAL_RATE, GOAL_SHARE = 20000, 0.5
local GOAL_SCALING = 0.9      -- two workers' rate / twice one worker's
-- The scaling measurement that spares the workers' cores: wrk writes PIPELINE notifications at once
-- on each of PIPE_CONNECTIONS connections per worker (HTTP/1.1 pipelining), so it wakes, reads and
-- writes less often per notification. Measured in the bench: 16 deep roughly halves wrk's CPU per
-- notification beside two workers (about 14 -> 8 us); deeper or more connections gain nothing more.
local PIPELINE, PIPE_CONNECTIONS = 16, 2

local function verdict(scale)
  return scale >= GOAL_SCALING and string.format("met (>= %.1fx)", GOAL_SCALING)
    or string.format("missed by %.2fx (goal >= %.1fx)", GOAL_SCALING - scale, GOAL_SCALING)
end

-- What the machine let two workers reach, per second: the CPUs left over by other processes during
-- the run, shared by the workers and wrk at their measured CPU per notification. Without
-- m.others (no /proc/stat), all CPUs.
local function ceiling(m)
  local free = M.cpus() - math.max(0, m.others or 0) / m.wall
  return free / (m.cpu_per + m.wrk_cpu_per), free
end

local function notification(core, i)
  return core.json_encode({
    requestId = string.format("bench-%08d-%s", i, core.uuid4()),
    referenceCustomerId = "300005538591",
    operateSource = "MERCHANT",
    paymentMethodDetail = {
      paymentMethodDetailType = "CARD",
      card = {
        brand = "VISA",
        cardToken = "PYMT" .. core.uuid4():gsub("-", ""),
        mask = "400005******5556",   -- a mask, as DWS sends: never a card number
        last4 = "5556",
        expiryMonth = "12",
        expiryYear = "2031",
        paymentMethodDetailMetadata = '{"isFirstBoundAssetForPayOrTopUp":"true","isBoundByOthers":"false"}',
      },
    },
  })
end

-- utime + stime of a process, in seconds.
local function proc_cpu(pid)
  local s = util.read_file("/proc/" .. pid .. "/stat")
  if not s then return nil end
  -- Fields after the command name (which may hold spaces) start at field 3.
  local rest = s:match("%) (.*)$")
  local f = {}
  for v in rest:gmatch("%S+") do f[#f + 1] = v end
  return (tonumber(f[12]) + tonumber(f[13])) / M.ticks()
end

function M.ticks()
  if not M.hz then
    local p = io.popen("getconf CLK_TCK")
    M.hz = tonumber(p:read("*l")) or 100
    p:close()
  end
  return M.hz
end

local function workers_of(master)
  local p = io.popen("pgrep -P " .. tonumber(master))
  local pids = {}
  for line in p:lines() do pids[#pids + 1] = tonumber(line) end
  p:close()
  return pids
end

local ACK = '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}'

-- Idle CPU seconds of the whole machine (all CPUs, /proc/stat: idle + iowait, which the kernel
-- keeps to the microsecond, unlike the tick-sampled busy fields). Over a run, CPUs x wall time minus
-- this is what everything used: what neither the workers nor wrk used came from other processes on
-- the same cores.
local function machine_idle()
  local s = util.read_file("/proc/stat") or ""
  local idle, iowait = s:match("^cpu%s+%d+%s+%d+%s+%d+%s+(%d+)%s+(%d+)")
  if not idle then return nil end
  return (tonumber(idle) + tonumber(iowait)) / M.ticks()
end

function M.cpus()
  if not M.ncpu then
    local n = 0
    for line in (util.read_file("/proc/stat") or ""):gmatch("[^\n]+") do
      if line:match("^cpu%d") then n = n + 1 end
    end
    M.ncpu = math.max(n, 1)
  end
  return M.ncpu
end

-- wrk at url for seconds; the worker CPU of the nginx in prefix over the run. opts.connections
-- (default WRK_CONNECTIONS), opts.pipeline (requests written at once per connection, default 1).
function M.measure(root, prefix, url, file, seconds, opts)
  opts = opts or {}
  local q = nginx.sh_quote
  local workers = workers_of(nginx.pid_of(prefix))
  local cpu0 = 0
  for _, pid in ipairs(workers) do cpu0 = cpu0 + (proc_cpu(pid) or 0) end
  local idle0, wall0 = machine_idle(), util.wall()
  -- `times` after wrk prints the CPU its children (wrk) used: the load generator's share of the two
  -- cores, which bounds what two workers can get on this machine.
  local cmd = string.format(
    "DWS_BENCH_NOTIFY_FILE=%s DWS_BENCH_PIPELINE=%d wrk -t%d -c%d -d%ds --timeout 2s -s %s %s 2>&1; times",
    q(file), opts.pipeline or 1, WRK_THREADS, opts.connections or WRK_CONNECTIONS, seconds,
    q(root .. "/bench/notify_wrk.lua"), q(url))
  local p = io.popen("sh -c " .. q(cmd))
  local out = p:read("*a")
  p:close()
  local idle1, wall = machine_idle(), util.wall() - wall0
  local wu, ws = out:match("(%d+m[%d.]+)s (%d+m[%d.]+)s%s*$")
  local function secs(v)
    local m, sec = v:match("^(%d+)m([%d.]+)$")
    return tonumber(m) * 60 + tonumber(sec)
  end
  local cpu1 = 0
  for _, pid in ipairs(workers) do cpu1 = cpu1 + (proc_cpu(pid) or 0) end
  local total = tonumber(out:match("(%d+) requests in"))
  local rate = tonumber(out:match("Requests/sec:%s*([%d.]+)"))
  if not (total and rate) then error("could not read wrk's output: " .. out:sub(1, 200), 0) end
  local wrk_cpu = wu and secs(wu) + secs(ws) or nil
  return {
    rate = rate, total = total, workers = #workers, cpu_per = (cpu1 - cpu0) / total,
    wrk_cpu_per = wrk_cpu and wrk_cpu / total or nil,
    -- CPU seconds of the machine that went neither to the workers nor to wrk while they ran.
    others = idle1 and wrk_cpu and M.cpus() * wall - (idle1 - idle0) - (cpu1 - cpu0) - wrk_cpu or nil,
    wall = wall,
    bad = tonumber(out:match("Non%-2xx or 3xx responses:%s*(%d+)")) or 0,
    errs = out:match("Socket errors:[^\n]*"),
  }
end

local function measure(ctx, prefix, url, file, seconds, connections)
  return M.measure(ctx.root, prefix, url, file, seconds, { connections = connections })
end

local function keys(ctx, dir)
  local sb = ctx.sb
  if sb and sb.dws_private_key_pem and sb.dws_public_key and sb.merchant then
    local pub = dir .. "/dws_public.key"
    nginx.write_file(pub, sb.dws_public_key, "600")
    local mpriv = dir .. "/merchant_private.key"
    nginx.write_file(mpriv, sb.merchant.private_key, "600")
    return sb.dws_private_key_pem, pub, mpriv, sb.merchant.client_id, "the sandbox's DWS key"
  end
  local dpriv, dpub = nginx.make_keypair(dir, "dws")
  local mpriv = nginx.make_keypair(dir, "merchant")
  return util.read_file(dpriv), dpub, mpriv, "SANDBOX_BENCH000000001", "a DWS key pair made for the run"
end

function M.run(ctx)
  local core, row = ctx.core, ctx.row
  if not nginx.run("command -v wrk >/dev/null 2>&1") then error("wrk is not installed", 0) end
  local have_server, server_mod = pcall(require, "merchant_server")
  if not have_server then error("examples/merchant_server.lua: " .. tostring(server_mod), 0) end

  local dir = nginx.tmpdir("dws-bench-notify")
  local server, baseline
  local ok, err = pcall(function()
    local dws_priv_pem, dws_pub_file, merchant_priv_file, client_id, whose = keys(ctx, dir)
    local s, e
    -- A second try on a new port: another process may take the free port before nginx binds it.
    for attempt = 1, 2 do
      s, e = server_mod.start{
        dir = dir .. "/nginx" .. attempt,
        -- No DWS calls are made in this test; the client only needs a loopback gateway.
        gateway = "http://127.0.0.1:9",
        client_id = client_id,
        private_key_file = merchant_priv_file,
        dws_public_key_file = dws_pub_file,
      }
      if s then break end
    end
    if not s then error("merchant server did not start: " .. tostring(e), 0) end
    server = s
    util.record_server(ctx.out, s.prefix .. "/logs/nginx.pid")

    -- The pool, signed now: the run is seconds long, well inside the 300 s replay tolerance.
    local key = assert(core.private_key(dws_priv_pem))
    local time = tostring(core.time_ms())
    local lines = {}
    for i = 1, POOL do
      local body = assert(notification(core, i))
      local sig = assert(core.sign(key, "POST", "/notify", client_id, time, body))
      lines[i] = table.concat({ time, client_id, core.signature_header(sig, "1"), body }, "\t")
    end
    key:close()
    local file = dir .. "/notifications.tsv"
    nginx.write_file(file, table.concat(lines, "\n") .. "\n")

    -- One by hand first: the endpoint must verify and acknowledge, or the rate means nothing.
    local t, cid, sig, body = lines[1]:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t(.+)$")
    local q = nginx.sh_quote
    local p = io.popen("curl -s -m 5 -o - -w '\\n%{http_code}' -X POST -H 'Content-Type: application/json' " ..
      "-H " .. q("Client-Id: " .. cid) .. " -H " .. q("Request-Time: " .. t) .. " -H " .. q("Signature: " .. sig) ..
      " --data-binary " .. q(body) .. " " .. q(s.notify_url))
    local answer = p:read("*a")
    p:close()
    local ack_body, code = answer:match("^(.-)\n(%d+)$")
    if code ~= "200" or not (ack_body or ""):find('"resultStatus":"S"', 1, true) then
      error("the notify endpoint did not acknowledge a valid notification (HTTP " .. tostring(code) .. ")", 0)
    end

    local m = measure(ctx, s.prefix, s.notify_url, file, ctx.seconds)
    local rate, total, bad, errs, workers, per = m.rate, m.total, m.bad, m.errs, m.workers, m.cpu_per
    local nw = workers
    local F = ctx.floor  -- final only when the table is printed: ratios are computed then
    ctx.goals.notify_rate = rate / nw
    local label = string.format("wrk -t%d -c%d -d%ds, %d worker%s", WRK_THREADS, WRK_CONNECTIONS, ctx.seconds,
      nw, nw == 1 and "" or "s")
    row("8", "acknowledged notifications/s, " .. label, string.format("%.0f /s", rate),
      function() return string.format("%.3fx", rate / (nw / F.verify)) end,
      function() return string.format("of the verify floor x workers (%.0f /s); %s", nw / F.verify,
        rate >= GOAL_RATE * nw and "met (>= 20000 /s per worker)"
          or string.format("missed by %.0f /s (goal >= %d /s per worker)", GOAL_RATE * nw - rate, GOAL_RATE)) end)
    row("8", "  nginx worker CPU per notification", string.format("%.1f us", per * 1e6),
      function() return string.format("%.2fx", per / F.verify) end, "ratio to one verify")
    row("8", string.format("  answers: %d in all, %d not 200", total, bad), bad == 0 and "ok" or "FAILED", "",
      string.format("%d distinct notifications, signed with %s%s", POOL, whose, errs and ("; " .. errs) or ""))

    -- Two workers against one: the same pool on a second server with worker_processes 2, twice the
    -- connections, right after the one-worker run; the ratio to twice the one-worker rate. wrk runs
    -- on the same 2-CPU machine, so two busy workers and wrk share two cores: the CPU per
    -- notification beside it says whether a worker does more work, or only waits for a core.
    local two = assert(server_mod.start{ dir = dir .. "/nginx-2w", gateway = "http://127.0.0.1:9",
      client_id = client_id, private_key_file = merchant_priv_file, dws_public_key_file = dws_pub_file,
      workers = 2 })
    util.record_server(ctx.out, two.prefix .. "/logs/nginx.pid")
    -- The shorter runs (two workers, pipelined, baselines) take half the time, to keep the bench
    -- near a minute.
    local short = math.max(2, math.floor(ctx.seconds / 2))
    local tok, tm = pcall(measure, ctx, two.prefix, two.notify_url, file, short, 2 * WRK_CONNECTIONS)
    -- The same two servers again under pipelined wrk, one worker then two, back to back, each as
    -- many connections per worker: both rates are measured the same way, so their ratio is the
    -- workers' scaling with the generator's CPU cut.
    local pipe = { connections = PIPE_CONNECTIONS, pipeline = PIPELINE }
    local pok, p1, p2 = pcall(function()
      local a = M.measure(ctx.root, s.prefix, s.notify_url, file, short, pipe)
      local b = M.measure(ctx.root, two.prefix, two.notify_url, file, short,
        { connections = 2 * PIPE_CONNECTIONS, pipeline = PIPELINE })
      return a, b
    end)
    two:stop()
    if tok then
      local scale = tm.rate / (2 * rate)
      row("8", string.format("  2 workers, wrk -t%d -c%d: notifications/s vs 2x one worker", WRK_THREADS,
        2 * WRK_CONNECTIONS), string.format("%.0f / %.0f /s", tm.rate, 2 * rate), string.format("%.2fx", scale),
        string.format("%s; worker CPU per notification %.1f vs %.1f us (%.2fx); %d not 200; %d workers",
          verdict(scale), tm.cpu_per * 1e6, per * 1e6, tm.cpu_per / per, tm.bad, tm.workers))
      ctx.goals.scaling, ctx.goals.scaling_how = scale, "one request per round trip"
      if tm.wrk_cpu_per then
        -- Two workers and wrk share two cores: at most 2 / (two workers' CPU + wrk's) per second.
        local top = 2 / (tm.cpu_per + tm.wrk_cpu_per)
        local _, free = ceiling(tm)
        row("8", "    the ceiling of this machine: 2 CPUs / (worker + wrk CPU per notification)",
          string.format("%.0f /s", top), string.format("%.2fx", top / (2 * rate)),
          string.format("of 2x one worker; wrk used %.1f us per notification, so two busy workers cannot "
            .. "get two cores here; other processes left %.2f CPUs", tm.wrk_cpu_per * 1e6, free))
      end
    else
      row("8", "  2 workers vs one", "skipped", "", tostring(tm))
    end
    if pok then
      local scale = p2.rate / (2 * p1.rate)
      local how = string.format("wrk -t%d, %d pipelined per connection", WRK_THREADS, PIPELINE)
      row("8", string.format("  %s, -c%d, 1 worker", how, PIPE_CONNECTIONS), string.format("%.0f /s", p1.rate),
        string.format("%.1f us", p1.cpu_per * 1e6), string.format("worker CPU per notification; wrk %.1f us; "
          .. "%d in all, %d not 200", (p1.wrk_cpu_per or 0) * 1e6, p1.total, p1.bad))
      row("8", string.format("  the same, -c%d, 2 workers: notifications/s vs 2x one worker", 2 * PIPE_CONNECTIONS),
        string.format("%.0f / %.0f /s", p2.rate, 2 * p1.rate), string.format("%.2fx", scale),
        string.format("%s; worker CPU per notification %.1f vs %.1f us (%.2fx); wrk %.1f us; %d not 200",
          verdict(scale), p2.cpu_per * 1e6, p1.cpu_per * 1e6, p2.cpu_per / p1.cpu_per,
          (p2.wrk_cpu_per or 0) * 1e6, p2.bad))
      -- The goal is read here: the workers' scaling with the least generator in their way.
      ctx.goals.scaling, ctx.goals.scaling_how = scale, string.format("%d pipelined per connection", PIPELINE)
      if p2.wrk_cpu_per then
        local top, free = ceiling(p2)
        ctx.goals.scaling_ceiling = top / (2 * p1.rate)
        row("8", "    its ceiling: CPUs left by other processes / (worker + wrk CPU per notification)",
          string.format("%.0f /s", top), string.format("%.2fx", top / (2 * p1.rate)),
          string.format("of 2x one worker; %.2f of %d CPUs were left (2 CPUs alone: %.2fx); the workers reached %.0f%%",
            free, M.cpus(), 2 / (p2.cpu_per + p2.wrk_cpu_per) / (2 * p1.rate), 100 * p2.rate / top))
      end
    else
      row("8", "  2 workers vs one, pipelined", "skipped", "", tostring(p1))
    end

    -- The same load and pool on a second merchant server whose de-dup store is a local
    -- redis-server (issue 9), measured right after the ngx.shared one: the ratio is one run's.
    local have_redis, redis_helper = pcall(require, "helpers.redis")
    local rs = have_redis and redis_helper.start() or nil
    if rs then
      local rok, rerr = pcall(function()
        local r = assert(server_mod.start{ dir = dir .. "/nginx-redis", gateway = "http://127.0.0.1:9",
          client_id = client_id, private_key_file = merchant_priv_file, dws_public_key_file = dws_pub_file,
          store = rs.url .. "?prefix=bench:" })
        util.record_server(ctx.out, r.prefix .. "/logs/nginx.pid")
        local rm_ok, rm = pcall(measure, ctx, r.prefix, r.notify_url, file, ctx.seconds)
        r:stop()
        if not rm_ok then error(rm, 0) end
        row("8", "  the same through the Redis store (loopback redis-server) vs ngx.shared",
          string.format("%.0f / %.0f /s", rm.rate, rate), string.format("%.2fx", rm.rate / rate),
          string.format("worker CPU %.1f vs %.1f us; %d not 200", rm.cpu_per * 1e6, per * 1e6, rm.bad))
      end)
      rs:stop()
      if not rok then row("8", "  Redis store vs ngx.shared", "skipped", "", tostring(rerr)) end
    else
      row("8", "  Redis store vs ngx.shared", "skipped", "", "redis-server did not start")
    end

    -- The same load on an endpoint that reads the body and acknowledges without verifying:
    -- what nginx, the Lua module and HTTP cost before the SDK does anything.
    local bprefix = dir .. "/baseline"
    local port = nginx.free_ports(1)[1]
    local conf = nginx.preamble(bprefix) .. "events { worker_connections 256; }\nhttp {\n" ..
      "  " .. nginx.lua_paths():gsub("\n", "\n  ") .. "\n" ..
      -- The floor endpoint's key, parsed once as the example does.
      "  init_by_lua_block {\n    local f = assert(io.open(\"" .. dws_pub_file .. "\"))\n" ..
      "    package.loaded.bench_floor_key = assert(require(\"dws.core\").public_key(f:read(\"*a\")))\n" ..
      "    f:close()\n  }\n" ..
      "  access_log off;\n  client_body_buffer_size 64k;\n  client_max_body_size 64k;\n" ..
      "  client_body_temp_path " .. bprefix .. "/tmp;\n" ..
      "  server {\n    listen 127.0.0.1:" .. port .. ";\n    location = /notify {\n" ..
      "      content_by_lua_block {\n        ngx.req.read_body()\n" ..
      "        ngx.header[\"Content-Type\"] = \"application/json\"\n" ..
      "        ngx.print('" .. ACK .. "')\n      }\n    }\n" ..
      -- The same plus the one info line the example's logger writes per repeated notification.
      "    location = /notify_floor {\n      content_by_lua_block {\n" ..
      "        local core, key = require(\"dws.core\"), package.loaded.bench_floor_key\n" ..
      "        ngx.req.read_body()\n        local body = ngx.req.get_body_data()\n" ..
      "        local h = ngx.req.get_headers(0, true)\n" ..
      "        local sig = core.parse_signature_header(h.Signature)\n" ..
      "        if core.verify(key, \"POST\", \"/notify\", h[\"Client-Id\"], h[\"Request-Time\"], body," ..
      " sig and sig.signature) ~= true then ngx.status = 401 end\n" ..
      "        ngx.header[\"Content-Type\"] = \"application/json\"\n" ..
      "        ngx.print('" .. ACK .. "')\n      }\n    }\n" ..
      "    location = /notify_logged {\n      content_by_lua_block {\n        ngx.req.read_body()\n" ..
      "        ngx.log(ngx.INFO, 'dws: notification already processed, acknowledged again ', " ..
      "'{\"requestId\":\"bench-00000001-62484013-28fe-4935-93b2-966ffe8a61bb\"}')\n" ..
      "        ngx.header[\"Content-Type\"] = \"application/json\"\n" ..
      "        ngx.print('" .. ACK .. "')\n      }\n    }\n  }\n}\n"
    local started, why = nginx.start(bprefix, conf, { port })
    if not started then error("baseline nginx did not start: " .. tostring(why), 0) end
    baseline = bprefix
    util.record_server(ctx.out, bprefix .. "/logs/nginx.pid")
    local bm = measure(ctx, bprefix, "http://127.0.0.1:" .. port .. "/notify", file, short)
    local lm = measure(ctx, bprefix, "http://127.0.0.1:" .. port .. "/notify_logged", file, short)
    local fm = measure(ctx, bprefix, "http://127.0.0.1:" .. port .. "/notify_floor", file, short)
    nginx.stop(bprefix)
    row("8", "  baseline: read body + acknowledge, no verification", string.format("%.0f /s", bm.rate),
      string.format("%.1f us", bm.cpu_per * 1e6), "worker CPU per request")
    row("8", "  baseline + one info-level error_log line", string.format("%.0f /s", lm.rate),
      string.format("%.1f us", lm.cpu_per * 1e6), string.format("the log line costs %.1f us; the example " ..
        "writes one per repeated notification (error_log info)", (lm.cpu_per - bm.cpu_per) * 1e6))
    -- The least any SDK must do in a handler, for scale: what it costs above the baseline and one
    -- verify is not the SDK's logic but the verify itself run between requests (cold caches) and
    -- reading the headers.
    row("8", "  floor: the baseline + read headers, decode the signature, verify", string.format("%.0f /s", fm.rate),
      string.format("%.1f us", fm.cpu_per * 1e6), string.format("worker CPU per request; %d not 200", fm.bad))
    row("8", "    the floor's own share: floor - baseline - one verify",
      function() return string.format("%.1f us", (fm.cpu_per - bm.cpu_per - F.verify) * 1e6) end,
      function() return string.format("%.2fx", (fm.cpu_per - bm.cpu_per - F.verify) / F.verify) end,
      "of one verify: a verify between requests costs more than in a hot loop")
    row("8", "    the SDK above the floor: endpoint - floor",
      string.format("%.1f us", (per - fm.cpu_per) * 1e6),
      function() return string.format("%.2fx", (per - fm.cpu_per) / F.verify) end,
      "of one verify: JSON, checks, replay window, de-dup store (a repeat: a locked add, 3 dict calls, "
        .. "then a get), the info line")
    ctx.goals.notify_share = function() return (per - bm.cpu_per - F.verify) / F.verify end
    row("8", "  the SDK's share: endpoint - baseline - one verify",
      function() return string.format("%.1f us", (per - bm.cpu_per - F.verify) * 1e6) end,
      function() return string.format("%.2fx", (per - bm.cpu_per - F.verify) / F.verify) end,
      function()
        local r = (per - bm.cpu_per - F.verify) / F.verify
        return (r <= GOAL_SHARE and "met" or string.format("missed by %.2fx", r - GOAL_SHARE))
          .. " (goal <= 0.5x one verify); header parsing, JSON, checks, de-dup store, logging"
      end)
  end)
  -- Stop whatever started, even after an error, before the prefix (and its pid file) goes.
  if server then
    server:stop()
  end
  if baseline then nginx.stop(baseline) end
  nginx.rmdir(dir)
  if not ok then error(err, 0) end
end

return M
