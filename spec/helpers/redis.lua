-- A real redis-server for a spec: a free loopback port, no persistence, its own temporary
-- directory; started, PINGed until it answers, and stopped by pid.
--
--   local r = assert(require("helpers.redis").start{ password = "s3cret" })
--   r.port, r.url ("redis://127.0.0.1:port/0"), r:cli("GET", "k") -> reply text, r:stop()
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

function Server:stop()
  local pid = self.pid
  if not pid then
    nginx.rmdir(self.dir)
    return true
  end
  nginx.run("kill -TERM " .. pid .. " 2>/dev/null")
  local deadline = os.time() + 5
  while nginx.read_file("/proc/" .. pid .. "/stat") and os.time() <= deadline do
    local stat = nginx.read_file("/proc/" .. pid .. "/stat")
    if stat and stat:match("^%d+ %b() (%a)") == "Z" then break end
    nginx.sleep(0.05)
  end
  nginx.run("kill -KILL " .. pid .. " 2>/dev/null")
  self.pid = nil
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
    local cmd = "redis-server --port " .. port .. " --bind 127.0.0.1 --save '' --appendonly no --dir " .. q(dir) ..
      " --daemonize yes --pidfile " .. q(dir .. "/redis.pid") .. " --logfile " .. q(dir .. "/redis.log") ..
      (opts.password and (" --requirepass " .. q(opts.password)) or "") .. " " .. (opts.extra or "")
    local s = setmetatable({ port = port, dir = dir, password = opts.password,
      url = "redis://127.0.0.1:" .. port .. "/0" }, Server)
    if nginx.run(cmd .. " >/dev/null 2>&1") then
      local deadline = os.time() + 10
      repeat
        s.pid = s.pid or tonumber((nginx.read_file(dir .. "/redis.pid") or ""):match("%d+"))
        if s.pid and s:cli("PING") == "PONG" then return s end
        nginx.sleep(0.05)
      until os.time() > deadline
    end
    last = nginx.read_file(dir .. "/redis.log") or "redis-server did not start"
    s:stop()
  end
  return nil, last
end

return M
