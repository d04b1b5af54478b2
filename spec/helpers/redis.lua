-- A real redis-server for a spec: a free loopback port, no persistence unless asked, its own
-- temporary directory; started, PINGed until it answers, and stopped by pid.
--
--   local r = assert(require("helpers.redis").start{ password = "s3cret" })
--   r.port, r.url ("redis://127.0.0.1:port/0"), r:cli("GET", "k") -> reply text, r:stop()
--   start{ durable = true }: append-only file, fsync per write (what survives a kill -9)
--   r:kill() (SIGKILL, the data directory kept), r:restart() (same port, same data)
local nginx = require "dws_sandbox.nginx"

local M = {}
local Server = {}
Server.__index = Server

local q = nginx.sh_quote

-- redis-cli (from redis-tools, which redis-server depends on) with this server's address.
function Server:cli(...)
  local args = {}
  for i = 1, select("#", ...) do args[#args + 1] = q(select(i, ...)) end
  local auth = self.password and ("--no-auth-warning -a " .. q(self.password) .. " ") or ""
  local p = io.popen("redis-cli -h 127.0.0.1 -p " .. self.port .. " " .. auth .. table.concat(args, " ") .. " 2>&1")
  local out = p:read("*a")
  p:close()
  return (out:gsub("\n$", ""))
end

local function gone(pid)
  local stat = nginx.read_file("/proc/" .. pid .. "/stat")
  return not stat or stat:match("^%d+ %b() (%a)") == "Z"
end

-- Killed as a crash would: no shutdown save, the data directory left for restart.
function Server:kill()
  if not self.pid then return true end
  nginx.run("kill -KILL " .. self.pid .. " 2>/dev/null")
  local deadline = os.time() + 5
  while not gone(self.pid) and os.time() <= deadline do nginx.sleep(0.01) end
  self.pid = nil
  return true
end

local function wait_up(s)
  local deadline = os.time() + 10
  repeat
    s.pid = s.pid or tonumber((nginx.read_file(s.dir .. "/redis.pid") or ""):match("%d+"))
    if s.pid and s:cli("PING") == "PONG" then return true end
    nginx.sleep(0.02)
  until os.time() > deadline
  return false
end

-- Started again on the same port and data directory (after kill).
function Server:restart()
  os.remove(self.dir .. "/redis.pid")
  self.pid = nil
  if not nginx.run(self.cmd .. " >/dev/null 2>&1") or not wait_up(self) then
    return nil, nginx.read_file(self.dir .. "/redis.log") or "redis-server did not restart"
  end
  return true
end

function Server:stop()
  local pid = self.pid
  if pid then
    nginx.run("kill -TERM " .. pid .. " 2>/dev/null")
    local deadline = os.time() + 5
    while not gone(pid) and os.time() <= deadline do nginx.sleep(0.05) end
    nginx.run("kill -KILL " .. pid .. " 2>/dev/null")
    self.pid = nil
  end
  nginx.rmdir(self.dir)
  return true
end

-- opts: password (requirepass), extra (more redis-server arguments, a string)
function M.start(opts)
  opts = opts or {}
  local last
  for _ = 1, 3 do -- free_ports is a snapshot: another process may take the port first
    local port = nginx.free_ports(1)[1]
    local dir = nginx.tmpdir("dws-redis")
    local persistence = opts.durable and "--appendonly yes --appendfsync always" or "--appendonly no"
    local cmd = "redis-server --port " .. port .. " --bind 127.0.0.1 --save '' " .. persistence ..
      " --dir " .. q(dir) ..
      " --daemonize yes --pidfile " .. q(dir .. "/redis.pid") .. " --logfile " .. q(dir .. "/redis.log") ..
      (opts.password and (" --requirepass " .. q(opts.password)) or "") .. " " .. (opts.extra or "")
    local s = setmetatable({ port = port, dir = dir, password = opts.password, cmd = cmd,
      url = "redis://127.0.0.1:" .. port .. "/0" }, Server)
    if nginx.run(cmd .. " >/dev/null 2>&1") and wait_up(s) then return s end
    last = nginx.read_file(dir .. "/redis.log") or "redis-server did not start"
    s:stop()
  end
  return nil, last
end

return M
