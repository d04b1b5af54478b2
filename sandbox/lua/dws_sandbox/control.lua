-- Prepare, start and stop a sandbox in a directory; runs outside nginx (plain Lua 5.4 or LuaJIT).
-- Used by sandbox/bin/dws-sandbox and spec/helpers/sandbox.lua.
--
-- DIR layout: certs/{ca,server}.pem (+ keys), keys/{dws,foreign,merchant}_{private,public}.pem,
-- sandbox_config.lua (default config, 0600), conf/nginx.conf, logs/, tmp/, ports (the ports and the
-- config path of the running sandbox).
local nginx = require "dws_sandbox.nginx"
local config = require "dws_sandbox.config"

local M = {}

M.DEMO_CLIENT_ID = "SANDBOX_DEMO_MERCHANT"

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local p = io.popen("pwd")
  local cwd = p:read("*l")
  p:close()
  return cwd .. "/" .. path
end

-- Bare one-line base64 of a PEM (the form DWS hands its public key out in).
function M.pem_body(pem)
  return (pem:gsub("%-%-%-%-%-[^\n]*%-%-%-%-%-", ""):gsub("%s", ""))
end

-- 32 hex digits from the kernel's random source: a client's admin token for /__sandbox/deliveries.
function M.random_token()
  local f = assert(io.open("/dev/urandom", "rb"))
  local bytes = f:read(16)
  f:close()
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Creates whatever is missing under dir. Returns paths | nil, err.
function M.prepare(dir, opts)
  -- Key generation raises (openssl missing, a link planted where a key goes): an error to report.
  local ok, paths, err = pcall(M.prepare_files, dir, opts)
  if not ok then return nil, tostring(paths) end
  return paths, err
end

function M.prepare_files(dir, opts)
  opts = opts or {}
  nginx.mkdir_private(dir)
  local certs_dir, keys_dir = dir .. "/certs", dir .. "/keys"
  local certs
  if file_exists(certs_dir .. "/server.pem") and file_exists(certs_dir .. "/server.key") then
    certs = { ca = certs_dir .. "/ca.pem", cert = certs_dir .. "/server.pem", key = certs_dir .. "/server.key" }
  else
    certs = nginx.make_certs(certs_dir, "DNS:localhost,IP:127.0.0.1", "server", "sandbox")
  end
  nginx.run("chmod 600 " .. nginx.sh_quote(certs_dir) .. "/*.key 2>/dev/null")
  local dws_priv, dws_pub = nginx.make_keypair(keys_dir, "dws")
  -- Signs the foreign_key fault's answers: a well-formed signature from the wrong key.
  local foreign_priv = nginx.make_keypair(keys_dir, "foreign")
  local conf_path = opts.config and absolute(opts.config) or (dir .. "/sandbox_config.lua")
  if not opts.config and not file_exists(conf_path) then
    local _, merchant_pub = nginx.make_keypair(keys_dir, "merchant")
    local ok, err = config.write(conf_path, {
      clients = { [M.DEMO_CLIENT_ID] = { public_key = nginx.read_file(merchant_pub), admin_token = M.random_token() } },
      notify_scale = 1.0, token_ttl = 1800, notify_delay = 0, bound_notify_delay = 0,
    })
    if not ok then return nil, err end
  end
  return {
    ca = certs.ca, cert = certs.cert, cert_key = certs.key, config = conf_path,
    dws_private_key = dws_priv, dws_public_key = dws_pub, foreign_private_key = foreign_priv,
    merchant_private_key = keys_dir .. "/merchant_private.pem",
    merchant_public_key = keys_dir .. "/merchant_public.pem",
  }
end

local function running(dir)
  local pid = nginx.pid_of(dir)
  return pid and nginx.run("kill -0 " .. pid .. " 2>/dev/null")
end

-- opts: { config =, http_port =, https_port = }: a port left out or 0 is a free one, chosen at start.
-- -> info | nil, err
function M.start(dir, opts)
  opts = opts or {}
  dir = absolute(dir)
  if running(dir) then return nil, "a sandbox is already running in " .. dir end
  local jit, jit_err = nginx.jit_cpath()
  if not jit then return nil, jit_err end
  local paths, prep_err = M.prepare(dir, opts)
  if not paths then return nil, prep_err end
  local conf, err = config.load(paths.config)
  if not conf then return nil, err end
  local ok

  local function conf_for(ports)
    return config.nginx_conf{
      preamble = nginx.preamble(dir), lua_paths = nginx.lua_paths(), prefix = dir,
      http_port = ports[1], https_port = ports[2], cert = paths.cert, cert_key = paths.cert_key,
      config = paths.config, dws_private_key = paths.dws_private_key,
      foreign_private_key = paths.foreign_private_key, http2 = conf.http2,
    }
  end
  local ports
  local http_port, https_port = tonumber(opts.http_port), tonumber(opts.https_port)
  if http_port == 0 then http_port = nil end
  if https_port == 0 then https_port = nil end
  if http_port or https_port then
    -- A port asked for is used as given: one try.
    local free = nginx.free_ports(2)
    ports = { http_port or free[1], https_port or free[2] }
    nginx.mkdir(dir .. "/logs")
    nginx.write_file(dir .. "/logs/error.log", "") -- so the tail on failure is this start's
    ok, err = nginx.start(dir, conf_for(ports), ports, 10)
    if not ok then
      ports = nil
      if tostring(err):find("Address already in use", 1, true) then
        local busy, seen = {}, {}
        for port in tostring(err):gmatch("bind%(%) to [^\n]-:(%d+) failed") do
          if not seen[port] then busy[#busy + 1], seen[port] = port, true end
        end
        err = (#busy > 1 and "ports " or "port ") .. table.concat(busy, " and ") ..
          " in use (another sandbox, or another server): choose others with --http-port and --https-port, " ..
          "or --free-ports"
      end
    end
  else
    ports, err = nginx.start_on_free_ports(dir, 2, conf_for, 10)
  end
  if ports then
    -- Read back by status: the ports, and the config really served (its clients).
    nginx.write_file(dir .. "/ports", "http=" .. ports[1] .. " https=" .. ports[2] .. "\nconfig=" ..
      paths.config .. "\n")
    paths.http_port, paths.https_port, paths.dir = ports[1], ports[2], dir
    return paths
  end
  return nil, err
end

-- Gone, or a zombie waiting for a reaper: where PID 1 reaps slowly (containers), `kill -0` keeps
-- succeeding for a second or more after nginx has exited.
local function exited(pid)
  local stat = nginx.read_file("/proc/" .. pid .. "/stat")
  return not stat or stat:match("^%d+ %b() (%a)") == "Z"
end

function M.stop(dir)
  dir = absolute(dir)
  local pid = nginx.pid_of(dir)
  if pid then
    nginx.run("kill -QUIT " .. pid .. " 2>/dev/null")
    for _ = 1, 100 do
      if exited(pid) then
        os.remove(dir .. "/logs/nginx.pid")
        return true
      end
      nginx.sleep(0.05)
    end
  end
  return nginx.stop(dir) -- still there after 5 s: nginx.stop ends it with SIGKILL
end

-- The client ids the config at `path` serves, sorted; {} when it cannot be read.
local function served_clients(path)
  local conf = path and config.load(path)
  local ids = {}
  for id in pairs(conf and conf.clients or {}) do ids[#ids + 1] = id end
  table.sort(ids)
  return ids
end

-- A running sandbox in dir: { pid, http_port, https_port, dir, ca, config, clients (the ids it
-- serves, sorted), client_id, dws_public_key, dws_private_key, merchant_private_key,
-- merchant_public_key (the key pair the sandbox made, DIR/keys/merchant_*) } | nil, "not running".
-- client_id is the demo client when the config serves it, else the only client's, or nil when there
-- are several.
function M.status(dir)
  dir = absolute(dir)
  local pid = nginx.pid_of(dir)
  if not pid or exited(pid) then return nil, "not running" end
  local ports = nginx.read_file(dir .. "/ports") or ""
  local conf_path = ports:match("\nconfig=([^\n]+)") or (dir .. "/sandbox_config.lua")
  local clients = served_clients(conf_path)
  local demo = false
  for _, id in ipairs(clients) do demo = demo or id == M.DEMO_CLIENT_ID end
  local st = {
    pid = pid, dir = dir, config = conf_path, clients = clients,
    http_port = tonumber(ports:match("http=(%d+)")), https_port = tonumber(ports:match("https=(%d+)")),
    ca = dir .. "/certs/ca.pem",
    dws_public_key = dir .. "/keys/dws_public.pem", dws_private_key = dir .. "/keys/dws_private.pem",
    merchant_private_key = dir .. "/keys/merchant_private.pem",
    merchant_public_key = dir .. "/keys/merchant_public.pem",
  }
  if demo then
    st.client_id = M.DEMO_CLIENT_ID
  elseif #clients == 1 then
    st.client_id = clients[1]
  end
  return st
end

-- Where the launcher listens unless told otherwise (docs/sandbox.md "Running it"): fixed, so that a
-- merchant's config and scripts can name them. Below the ephemeral range (nginx.lua says why).
M.DEFAULT_HTTP_PORT, M.DEFAULT_HTTPS_PORT = 12080, 12443

local USAGE = [[
usage: dws-sandbox start [--dir DIR] [--http-port N] [--https-port N] [--free-ports] [--config FILE]
                         [--foreground]
       dws-sandbox stop [--dir DIR]
       dws-sandbox status [--dir DIR]   (exit status 0 running, 3 not running)
       dws-sandbox --help

  start         generate what DIR lacks (CA, certificates, DWS keys, a demo client), start nginx, print
                http= https= dir= ca_file= client_id= (the clients the config serves)
  stop          stop the sandbox running in DIR
  status        print running pid= http= https= dir= ca_file= client_id=, or stopped dir=
  --dir DIR     the sandbox's directory (default $DWS_SANDBOX_DIR, else /tmp/dws-sandbox-$USER)
  --http-port N   admin endpoints and the APIs over plain HTTP (default $DWS_SANDBOX_HTTP_PORT, else 12080)
  --https-port N  the APIs over HTTPS, the gateway a client uses (default $DWS_SANDBOX_HTTPS_PORT, else 12443)
                0: a free port, chosen at start
  --free-ports  both ports free ones, chosen at start (as tests want: several sandboxes at once)
  --config FILE   a config file of your own (clients, keys, notify URLs) instead of DIR/sandbox_config.lua
  --foreground  stay until Ctrl-C (or SIGTERM), then stop the sandbox

nginx runs LuaJIT: it loads the LuaJIT build of dws.core that the dws-openresty rock installs in
<tree>/lib/lua/5.1 beside the dws rock (README, Installing), or the one $DWS_SANDBOX_JIT_CPATH names.]]

local function default_dir()
  local env = os.getenv("DWS_SANDBOX_DIR")
  if env and env ~= "" then return env end
  return "/tmp/dws-sandbox-" .. (os.getenv("USER") or "user")
end

-- A port from the command line, else the environment, else the fixed default.
local function default_port(given, env_name, default)
  if given then return given end
  local env = os.getenv(env_name)
  if env and env ~= "" then return env end
  return tostring(default)
end

-- The launcher's ports: the flags (opts.http_port, opts.https_port as strings, opts.free_ports),
-- else $DWS_SANDBOX_HTTP_PORT / $DWS_SANDBOX_HTTPS_PORT, else the fixed defaults; 0 is a free port.
-- -> http, https (numbers) | nil, nil, err
function M.ports(opts)
  local http, https = opts.http_port, opts.https_port
  if opts.free_ports then
    if http or https then return nil, nil, "--free-ports and a port given: choose one" end
    http, https = "0", "0"
  end
  local out = {}
  for i, p in ipairs{ { http, "DWS_SANDBOX_HTTP_PORT", M.DEFAULT_HTTP_PORT, "--http-port" },
                      { https, "DWS_SANDBOX_HTTPS_PORT", M.DEFAULT_HTTPS_PORT, "--https-port" } } do
    local v = default_port(p[1], p[2], p[3])
    local n = v:match("^%d+$") and tonumber(v)
    if not n or n > 65535 then
      return nil, nil, p[4] .. " (or $" .. p[2] .. ") must be a port number (0: a free one)"
    end
    out[i] = n
  end
  return out[1], out[2]
end

local function print_info(st)
  io.stdout:write(string.format("http=%s https=%s dir=%s ca_file=%s client_id=%s\n", tostring(st.http_port),
    tostring(st.https_port), st.dir, st.ca, table.concat(st.clients or {}, ",")))
end

-- Waits in a shell (Lua has no signals): it ends on SIGINT/SIGTERM, when nginx exits, or when this
-- process is gone (killed), and then stops nginx itself, so a killed launcher leaves nothing behind.
local function foreground(dir)
  local pid = nginx.pid_of(dir)
  local ppid = nginx.read_file("/proc/self/stat") -- this process: the shell's parent
  ppid = ppid and ppid:match("^(%d+)")
  nginx.run("trap 'kill -QUIT " .. pid .. " 2>/dev/null; exit 0' INT TERM HUP; " ..
    "while kill -0 " .. pid .. " 2>/dev/null && [ \"$(cut -d' ' -f4 /proc/$$/stat)\" = " .. ppid .. " ]; " ..
    "do sleep 1; done; kill -QUIT " .. pid .. " 2>/dev/null")
  M.stop(dir)
end

-- sandbox/bin/dws-sandbox and `dws sandbox`: returns the exit status.
function M.main(args)
  local cmd = args[1]
  if cmd == "--help" or cmd == "-h" or cmd == "help" then
    io.stdout:write(USAGE, "\n")
    return 0
  end
  local opts = {}
  local i = 2
  while i <= #args do
    local a, v = args[i], args[i + 1]
    if a == "--foreground" or a == "--free-ports" then
      opts[a:sub(3):gsub("%-", "_")] = true
      i = i + 1
    elseif a == "--help" or a == "-h" then
      io.stdout:write(USAGE, "\n")
      return 0
    else
      local key = ({ ["--dir"] = "dir", ["--http-port"] = "http_port", ["--https-port"] = "https_port",
                     ["--config"] = "config" })[a]
      if not key or not v then
        io.stderr:write(USAGE, "\n")
        return 2
      end
      opts[key] = v
      i = i + 2
    end
  end
  opts.dir = opts.dir or default_dir()
  if cmd ~= "start" and cmd ~= "stop" and cmd ~= "status" then
    io.stderr:write(USAGE, "\n")
    return 2
  end
  if cmd == "start" then
    local perr
    opts.http_port, opts.https_port, perr = M.ports(opts)
    if not opts.http_port then
      io.stderr:write("dws-sandbox: ", perr, "\n")
      return 2
    end
  end
  if cmd == "stop" then
    M.stop(opts.dir)
    return 0
  end
  if cmd == "status" then
    local st = M.status(opts.dir)
    if not st then
      io.stdout:write("stopped dir=", absolute(opts.dir), "\n")
      return 3 -- as LSB init scripts: "program is not running"
    end
    io.stdout:write(string.format("running pid=%d http=%s https=%s dir=%s ca_file=%s client_id=%s\n", st.pid,
      tostring(st.http_port), tostring(st.https_port), st.dir, st.ca, table.concat(st.clients, ",")))
    return 0
  end
  local info, err = M.start(opts.dir, opts)
  if not info then
    io.stderr:write("dws-sandbox: ", tostring(err), "\n")
    return 1
  end
  print_info(M.status(info.dir) or info)
  if opts.foreground then
    io.stdout:flush()
    foreground(info.dir)
  end
  return 0
end

return M
