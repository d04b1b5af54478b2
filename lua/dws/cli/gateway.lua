-- `dws gateway start|stop|status|reload|config --config FILE`: the DWS gateway (lua-dws in nginx)
-- from its one configuration file (docs/gateway.md). Runs under Lua 5.4; nginx runs LuaJIT, so the
-- generated nginx.conf points lua_package_cpath at the LuaJIT build of dws.core.
local config = require "dws.gateway.config"
local util = require "dws.cli.util"

local M = {}

local out, fail = util.out, util.fail
local EXIT_OK, EXIT_NOT_RUNNING, EXIT_USAGE = 0, 3, 64

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function run(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0, a end
  return a == true, c
end

-- The generated nginx.conf (no secret in it: keys and tokens stay in their own files).
local function write_file(path, data)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(data)
  f:close()
  if not ok then return nil, werr end
  return true
end

local function capture(cmd)
  local p = io.popen(cmd)
  if not p then return nil end
  local s = p:read("*l")
  p:close()
  return s
end

-- The lua_package_path / lua_package_cpath lines: the config's own when it names both (e.g. for
-- OpenResty's trees), else those dws_sandbox.nginx makes for every nginx we start: every directory
-- named, the LuaJIT build of dws.core first on the cpath, no ';;' (docs/openresty.md says why).
local function lua_lines(c)
  if c.lua_package_path and c.lua_package_cpath then
    return string.format('lua_package_path "%s";\nlua_package_cpath "%s";\n', c.lua_package_path,
      c.lua_package_cpath)
  end
  local has_sb, sb = pcall(require, "dws_sandbox.nginx")
  if not has_sb then
    return nil, "set lua_package_path and lua_package_cpath in the gateway config (docs/openresty.md): " ..
      "the LuaJIT build of dws.core and LuaJIT's own directories"
  end
  local jit, err = sb.jit_cpath()
  if not jit then return nil, err end
  return sb.lua_paths()
end

local function load(a)
  local c, err = config.load(a.config)
  if not c then return nil, err end
  local lines, lerr = lua_lines(c)
  if not lines then return nil, lerr end
  return c, config.nginx_conf(c, { lua_lines = lines, uid = capture("id -u") })
end

local function pid_of(c)
  local s = util.read_file(c.dir .. "/logs/nginx.pid")
  return s and tonumber(s:match("%d+"))
end

local function alive(pid)
  if not pid then return false end
  local stat = util.read_file("/proc/" .. pid .. "/stat")
  if stat then return stat:match("^%d+ %b() (%a)") ~= "Z" end
  return run("kill -0 " .. pid .. " 2>/dev/null")
end

local function listening(port)
  for _, file in ipairs{ "/proc/net/tcp", "/proc/net/tcp6" } do
    local f = io.open(file, "r")
    if f then
      for line in f:lines() do
        local p, state = line:match("^%s*%d+:%s+%x+:(%x+)%s+%x+:%x+%s+(%x+)")
        if p and state == "0A" and tonumber(p, 16) == port then
          f:close()
          return true
        end
      end
      f:close()
    end
  end
  return false
end

local function nginx_cmd(c, extra)
  local conf = c.dir .. "/conf/nginx.conf"
  return c.nginx .. " -p " .. sh_quote(c.dir) .. " -c " .. sh_quote(conf) .. " -e " ..
    sh_quote(c.dir .. "/logs/error.log") .. (extra or "") .. " >>" .. sh_quote(c.dir .. "/logs/start.log") .. " 2>&1"
end

local function error_tail(c)
  return ((util.read_file(c.dir .. "/logs/start.log") or "") .. (util.read_file(c.dir .. "/logs/error.log") or ""))
    :sub(-1500)
end

local function sleep(s)
  run("sleep " .. s)
end

local function start(c, conf)
  if alive(pid_of(c)) then return fail("the gateway is already running (pid " .. pid_of(c) .. ")") end
  for _, d in ipairs{ "", "/conf", "/logs", "/tmp" } do
    local ok, err = util.mkdir_private(c.dir .. d)
    if not ok then return fail(err) end
  end
  local ok, werr = write_file(c.dir .. "/conf/nginx.conf", conf)
  if not ok then return fail(werr) end
  local ports, sockets = config.listen_ports(c)
  -- A socket left by a gateway that did not stop cleanly (none runs: checked above) would refuse the bind.
  for _, s in ipairs(sockets) do
    if run("test -S " .. sh_quote(s)) then os.remove(s) end
  end
  if not run(nginx_cmd(c)) then return fail("nginx did not start:\n" .. error_tail(c)) end
  for _ = 1, 200 do
    local ready = alive(pid_of(c))
    for _, p in ipairs(ports) do ready = ready and listening(p) end
    for _, s in ipairs(sockets) do ready = ready and run("test -S " .. sh_quote(s)) end
    if ready then
      out("dws gateway: running (pid ", pid_of(c), "); backends on ", c.listen, ", DWS notifications on ",
        c.notify_listen, c.notify_path, ", metrics on ", c.metrics_listen, "\n")
      return EXIT_OK
    end
    sleep(0.05)
  end
  return fail("nginx did not come up:\n" .. error_tail(c))
end

local function stop(c)
  local pid = pid_of(c)
  if not alive(pid) then
    out("dws gateway: not running\n")
    return EXIT_OK
  end
  run("kill -QUIT " .. pid .. " 2>/dev/null")
  for _ = 1, 200 do
    if not alive(pid) then
      out("dws gateway: stopped\n")
      return EXIT_OK
    end
    sleep(0.05)
  end
  run("kill -KILL " .. pid .. " 2>/dev/null")
  out("dws gateway: killed (did not stop within 10 s)\n")
  return EXIT_OK
end

--- Run `dws gateway <command>` with argparse's result `a`. Returns the exit status.
function M.main(a)
  if not a.config then return fail("--config FILE is required", EXIT_USAGE) end
  local c, conf = load(a)
  if not c then return fail(conf) end
  local cmd = a.gateway_command
  if cmd == "config" then
    if a.print then out(conf) else out("dws gateway: ", a.config, " is valid\n") end
    return EXIT_OK
  elseif cmd == "start" then
    return start(c, conf)
  elseif cmd == "stop" then
    return stop(c)
  elseif cmd == "reload" then
    local pid = pid_of(c)
    if not alive(pid) then return fail("the gateway is not running", EXIT_NOT_RUNNING) end
    local ok, werr = write_file(c.dir .. "/conf/nginx.conf", conf)
    if not ok then return fail(werr) end
    if not run(nginx_cmd(c, " -t")) then return fail("the new configuration is refused:\n" .. error_tail(c)) end
    run("kill -HUP " .. pid)
    out("dws gateway: reloaded (pid ", pid, ")\n")
    return EXIT_OK
  end
  local pid = pid_of(c)
  if alive(pid) then
    out("dws gateway: running (pid ", pid, ")\n")
    return EXIT_OK
  end
  out("dws gateway: not running\n")
  return EXIT_NOT_RUNNING
end

return M
