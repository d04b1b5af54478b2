-- Clocks, memory readings, the floor program, and the table printer for bench/bench.lua.
local M = {}

local have_core, core = pcall(require, "dws.core")

-- CPU time of this process, user + sys (clock(3)): what the client costs, not what it waits for.
M.cpu = os.clock

-- User and system CPU apart, when bench/run has built bench_rusage; else all counted as user.
local have_ru, ru = pcall(require, "bench_rusage")
if have_ru then
  M.usage = function()
    local u, s = ru.self()
    return u, s
  end
else
  M.usage = function() return os.clock(), 0 end
end

-- Wall time, for context only; the ratios use CPU time.
if have_core and core.monotonic then
  M.wall = core.monotonic
else
  local t0 = os.time()
  M.wall = function() return os.time() - t0 + os.clock() % 1 end
end

local read_file = require("dws_sandbox.nginx").read_file
M.read_file = read_file
M.write_file = require("dws_sandbox.nginx").write_file

function M.rss_kib(pid)
  local s = read_file("/proc/" .. (pid or "self") .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

-- Resident memory once the collector has finished: a leak shows, garbage not yet swept does not.
function M.settled_rss()
  collectgarbage("collect")
  collectgarbage("collect")
  return M.rss_kib(), collectgarbage("count")
end

function M.thousands(n)
  local s = tostring(math.floor(n))
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

function M.median(t)
  local s = {}
  for i = 1, #t do s[i] = t[i] end
  table.sort(s)
  local n = #s
  if n == 0 then return 0 end
  if n % 2 == 1 then return s[(n + 1) / 2] end
  return (s[n / 2] + s[n / 2 + 1]) / 2
end

-- CPU seconds per call of f, in batches until budget seconds have gone.
local function per_call(f, budget)
  local n, batch = 0, 64
  local c0 = M.cpu()
  local spent
  repeat
    for _ = 1, batch do f() end
    n = n + batch
    spent = M.cpu() - c0
    if spent < budget / 8 then batch = batch * 2 end
  until spent >= budget
  return spent / n
end

-- Two implementations of the same operation, interleaved and best of five rounds each, so a
-- burst of noise on the machine does not land on one side only.
function M.compare(a, b, budget)
  budget = budget or 0.04
  per_call(a, budget / 4)
  per_call(b, budget / 4)
  local ba, bb = math.huge, math.huge
  for _ = 1, 5 do
    ba = math.min(ba, per_call(a, budget))
    bb = math.min(bb, per_call(b, budget))
  end
  return ba, bb
end

-- Runs build/bench/floor; returns { sign =, verify =, sign_init =, sign_dup =, ... } in seconds.
function M.run_floor(bin, key_path, budget)
  local cmd = string.format("%q %q %s", bin, key_path or "", tostring(budget or 0.5))
  local p = assert(io.popen(cmd))
  local text = p:read("*a")
  p:close()
  local r = {}
  for name, value in text:gmatch("(%S+) (%S+)\n") do
    r[name] = tonumber(value) or value
  end
  if not r.sign_us then error("floor program failed: " .. cmd) end
  return {
    openssl = "OpenSSL " .. tostring(r.openssl),
    sign = r.sign_us / 1e6, verify = r.verify_us / 1e6,
    sign_init = r.sign_init_us / 1e6, sign_dup = r.sign_dup_us / 1e6,
    verify_init = r.verify_init_us / 1e6, verify_dup = r.verify_dup_us / 1e6,
  }
end

-- The C floor client (bench/floor_client.c): `calls` consults in `rounds` rounds over one TLS
-- connection, after its warm-up. -> { cpu =, user =, sys =, wall = } seconds per call in its
-- cheapest round.
function M.run_floor_client(bin, o)
  local q = require("dws_sandbox.nginx").sh_quote
  local cmd = table.concat({ q(bin), q(o.host), q(o.port), q(o.ca_file), q(o.client_id), q(o.private_key_file),
    q(o.dws_public_key_file), q(o.body_file), tostring(o.calls), tostring(o.rounds) }, " ") .. " 2>&1"
  local p = assert(io.popen(cmd))
  local text = p:read("*a")
  p:close()
  local r = {}
  for name, value in text:gmatch("(%S+) (%S+)\n") do r[name] = tonumber(value) end
  if not r.cpu then error("floor client failed: " .. text:sub(1, 300), 0) end
  return r
end

-- A transport that opens a new connection for every request (the naive SDK), counting them.
function M.fresh_connection_transport(make)
  local stats = { connects = 0, requests = 0 }
  local t = {}
  function t.request(_, req)
    local inner = make()
    local res, kind, msg = inner:request(req)
    local st = inner.stats and inner:stats()
    stats.connects = stats.connects + (st and st.connects or 1)
    stats.requests = stats.requests + 1
    if inner.close then inner:close() end
    return res, kind, msg
  end
  function t.sleep(_, s)
    return make():sleep(s)
  end
  function t.stats() return { connects = stats.connects, requests = stats.requests } end
  function t.close() end
  return t
end

-- Servers this run started, by pid file, so bench/run can stop them if the bench is killed.
function M.record_server(out, pidfile)
  local f = io.open(out .. "/servers", "a")
  if f then
    f:write(pidfile, "\n")
    f:close()
  end
end

function M.forget_servers(out)
  os.remove(out .. "/servers")
end

-- The 1-minute load average: above ~0.5 on this 2-core machine, other processes share the cores
-- and every CPU figure of the run is inflated (the floor least, being the fastest of 5 rounds).
function M.loadavg()
  return ((read_file("/proc/loadavg") or "?"):match("^(%S+)"))
end

function M.describe(c, cjson)
  local parts = { _VERSION }
  if c and c.versions then
    local v = c.versions()
    parts[#parts + 1] = tostring(v.openssl)
    parts[#parts + 1] = "cJSON " .. tostring(v.cjson)
  end
  local ok, curl = pcall(require, "dws.curl")
  if ok and curl.version then parts[#parts + 1] = "libcurl " .. curl.version() end
  if cjson then parts[#parts + 1] = "lua-cjson " .. tostring(cjson._VERSION) end
  local cpus = 0
  for line in (read_file("/proc/cpuinfo") or ""):gmatch("[^\n]+") do
    if line:find("^processor") then cpus = cpus + 1 end
  end
  parts[#parts + 1] = cpus .. " CPUs"
  return table.concat(parts, ", ")
end

function M.print_table(rows, opts)
  -- By section, in the order measured within one (stable).
  for i, r in ipairs(rows) do r.order = i end
  table.sort(rows, function(a, b)
    if a.sec ~= b.sec then return a.sec < b.sec end
    return a.order < b.order
  end)
  for _, r in ipairs(rows) do
    for _, k in ipairs{ "value", "ratio", "goal" } do
      if type(r[k]) == "function" then r[k] = r[k]() end
    end
  end
  local w = { 0, 0, 0 }
  for _, r in ipairs(rows) do
    w[1] = math.max(w[1], #r.label)
    w[2] = math.max(w[2], #r.value)
    w[3] = math.max(w[3], #r.ratio)
  end
  local fmt = "%-2s %-" .. w[1] .. "s  %" .. w[2] .. "s  %" .. w[3] .. "s  %s\n"
  io.write(string.format("%s (%s), %s\n", opts.title, os.date("!%Y-%m-%d %H:%M UTC"), opts.info))
  io.write(string.format(fmt, "#", "measure", "value", "ratio", "goal / notes"))
  local last
  for _, r in ipairs(rows) do
    if last and r.sec ~= last then io.write("\n") end
    last = r.sec
    io.write((string.format(fmt, r.sec, r.label, r.value, r.ratio, r.goal):gsub("%s+\n$", "\n")))
  end
  io.write(string.format("(measured in %.0f s; load average %s at the start, %s at the end)\n", opts.seconds,
    opts.load_start or "?", M.loadavg()))
end

return M
