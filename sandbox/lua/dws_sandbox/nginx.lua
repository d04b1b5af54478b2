-- Start and stop a private nginx (with the Lua module) from Lua 5.4 or LuaJIT.
--
-- Used by sandbox/bin/dws-sandbox, the specs and the examples: each server gets its own prefix
-- directory, free loopback ports, and is stopped by pid. Nothing here runs inside nginx but
-- read_file, the sandbox's one file reader (dws_sandbox.server reads its keys with it).
local M = {}

local MODULES_DIR = os.getenv("DWS_NGINX_MODULES") or "/usr/lib/nginx/modules"
local NGINX = os.getenv("DWS_NGINX") or "nginx"

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.sh_quote = sh_quote

-- os.execute returns a number on 5.1/LuaJIT and (ok, how, code) on 5.2+.
local function run(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0, a end
  return a == true, c
end
M.run = run

-- A whole file, or nil, err (io.open's message, which names the path).
local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end
M.read_file = read_file

local function write_file(path, data, mode)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  f:write(data)
  f:close()
  if mode then run("chmod " .. mode .. " " .. sh_quote(path)) end
  return true
end
M.write_file = write_file

function M.mkdir(path)
  return run("mkdir -p " .. sh_quote(path))
end

function M.tmpdir(tag)
  local p = io.popen("mktemp -d /tmp/" .. (tag or "dws") .. ".XXXXXX")
  local dir = p:read("*l")
  p:close()
  return dir
end

function M.rmdir(path)
  if path and path:match("^/tmp/") then run("rm -rf " .. sh_quote(path)) end
end

-- Ports in LISTEN state, from /proc (no socket library needed on plain Lua).
local function listening_ports()
  local used = {}
  for _, file in ipairs{ "/proc/net/tcp", "/proc/net/tcp6" } do
    local f = io.open(file, "r")
    if f then
      for line in f:lines() do
        local port, state = line:match("^%s*%d+:%s+%x+:(%x+)%s+%x+:%x+%s+(%x+)")
        if port and state == "0A" then used[tonumber(port, 16)] = true end
      end
      f:close()
    end
  end
  return used
end
M.listening_ports = listening_ports

local seeded = false
-- n distinct ports that nothing listens on now; nginx's own bind is the final check.
function M.free_ports(n)
  if not seeded then
    local r = read_file("/proc/sys/kernel/random/uuid") or tostring(os.time())
    local seed = 0
    for i = 1, #r do seed = (seed * 31 + r:byte(i)) % 2147483647 end
    math.randomseed(seed)
    seeded = true
  end
  -- Stay below the ephemeral range, so an outgoing connection cannot take the port before nginx binds it.
  local range = read_file("/proc/sys/net/ipv4/ip_local_port_range")
  local low = range and tonumber(range:match("%d+")) or 32768
  local top = math.max(low - 1, 20100)
  local used, out = listening_ports(), {}
  while #out < n do
    local p = math.random(20000, top)
    if not used[p] then
      used[p] = true
      out[#out + 1] = p
    end
  end
  return out
end

function M.port_listening(port)
  return listening_ports()[port] == true
end

local function sleep(s)
  run("sleep " .. s)
end
M.sleep = sleep

-- The main-context lines every generated config starts with.
function M.preamble(prefix)
  local lines = {
    "load_module " .. MODULES_DIR .. "/ndk_http_module.so;",
    "load_module " .. MODULES_DIR .. "/ngx_http_lua_module.so;",
    "daemon on;",
    "master_process on;",
    "worker_processes 1;",
    "pid " .. prefix .. "/logs/nginx.pid;",
    "error_log " .. prefix .. "/logs/error.log info;",
  }
  -- Workers would otherwise drop to nobody and lose access to the private prefix.
  local p = io.popen("id -u")
  local uid = p and p:read("*l")
  if p then p:close() end
  if uid == "0" then lines[#lines + 1] = "user root root;" end
  return table.concat(lines, "\n") .. "\n"
end

-- Where nginx finds the LuaJIT build of dws.core (nginx runs LuaJIT: the Lua 5.4 build cannot load
-- there): DWS_SANDBOX_JIT_CPATH (a cpath template, e.g. build/jit/?.so in a source tree), else the
-- build the dws-sandbox rock installs as dws_sandbox/jit/dws/core.so beside this process's modules.
-- -> template | nil, err
function M.jit_cpath()
  local env = os.getenv("DWS_SANDBOX_JIT_CPATH")
  if env and env ~= "" then return env end
  if M.source_jit_cpath then return M.source_jit_cpath end -- set by the launcher run from a source tree
  for template in package.cpath:gmatch("[^;]+") do
    local f = io.open((template:gsub("%?", "dws_sandbox/jit/dws/core")), "rb")
    if f then
      f:close()
      return (template:gsub("%?", "dws_sandbox/jit/?"))
    end
  end
  return nil, "the LuaJIT build of dws.core was not found on package.cpath (as dws_sandbox/jit/dws/core.so, " ..
    "which the dws-sandbox rock installs); set DWS_SANDBOX_JIT_CPATH (e.g. to build/jit/?.so of a source tree)"
end

-- The http-block lines that make our Lua modules loadable inside nginx: the Lua files come from this
-- process's package.path (the same files load under LuaJIT), never from a source tree's layout.
function M.lua_paths()
  local cpath = assert(M.jit_cpath())
  return string.format('lua_package_path "%s;;";\nlua_package_cpath "%s;;";\n', package.path, cpath)
end

local function pid_of(prefix)
  local s = read_file(prefix .. "/logs/nginx.pid")
  return s and tonumber(s:match("%d+"))
end
M.pid_of = pid_of

-- A zombie has exited: where PID 1 reaps slowly, kill -0 would keep answering for it.
local function alive(pid)
  if not pid then return false end
  local stat = read_file("/proc/" .. pid .. "/stat")
  if stat then return stat:match("^%d+ %b() (%a)") ~= "Z" end
  return run("kill -0 " .. pid .. " 2>/dev/null")
end

-- Start nginx on conf text (a complete nginx.conf) in prefix; wait until every port listens.
-- Returns true, or nil and the tail of the error log.
function M.start(prefix, conf, ports, timeout)
  M.mkdir(prefix .. "/logs")
  M.mkdir(prefix .. "/conf")
  M.mkdir(prefix .. "/tmp")
  write_file(prefix .. "/conf/nginx.conf", conf)
  local ok = run(NGINX .. " -p " .. sh_quote(prefix) .. " -c " .. sh_quote(prefix .. "/conf/nginx.conf") ..
    " -e " .. sh_quote(prefix .. "/logs/error.log") .. " >>" .. sh_quote(prefix .. "/logs/start.log") .. " 2>&1")
  if not ok then
    return nil, "nginx did not start: " .. ((read_file(prefix .. "/logs/error.log") or ""):sub(-2000))
  end
  local deadline = os.time() + (timeout or 10)
  repeat
    local ready = pid_of(prefix) ~= nil
    for _, port in ipairs(ports or {}) do
      if not M.port_listening(port) then ready = false end
    end
    if ready then return true end
    sleep(0.05)
  until os.time() > deadline
  M.stop(prefix)
  return nil, "nginx did not come up: " .. ((read_file(prefix .. "/logs/error.log") or ""):sub(-2000))
end

-- Start nginx on n free loopback ports; conf_for(ports) gives the nginx.conf text. free_ports is a
-- snapshot, so another process (a parallel spec) may bind a port first: that lost race, and only
-- that, is tried again with other ports; any other failure is returned at once.
-- -> ports | nil, err
function M.start_on_free_ports(prefix, n, conf_for, timeout)
  local err
  for _ = 1, 5 do
    local ports = M.free_ports(n)
    M.mkdir(prefix .. "/logs")
    write_file(prefix .. "/logs/error.log", "") -- so the log read on failure is this try's
    local ok
    ok, err = M.start(prefix, conf_for(ports), ports, timeout)
    if ok then return ports end
    if not tostring(err):find("Address already in use", 1, true) then break end
  end
  return nil, err
end

-- Stop by pid: SIGQUIT lets workers finish, SIGKILL after timeout seconds.
function M.stop(prefix, timeout)
  local pid = pid_of(prefix)
  if not pid then return true end
  run("kill -QUIT " .. pid .. " 2>/dev/null")
  local deadline = os.time() + (timeout or 5)
  while alive(pid) and os.time() <= deadline do sleep(0.05) end
  if alive(pid) then run("kill -KILL " .. pid .. " 2>/dev/null") end
  os.remove(prefix .. "/logs/nginx.pid")
  return true
end

-- Key material is the slow part of starting a sandbox or a test server (an RSA-2048 key takes the
-- openssl command line about a quarter of a second). When DWS_KEY_CACHE names a directory (spec/run
-- makes one per run), each piece is generated once per run under its name there and copied where
-- it is wanted: the same name gives the same material within a run, different names different keys.
-- `paths` are the files one generation writes (a CA's key and certificate go together).
-- Several processes fill the cache at once (spec/run runs spec files in parallel): the first to
-- create `<name>.lock` generates, into a directory of its own renamed into place whole, and the
-- others wait for it rather than spend the same CPU; a reader never sees a CA key without its
-- certificate. A lock whose holder died is waited out (60 s), then the piece is generated anyway.
local function cached(paths, cache_name, generate)
  local cache = os.getenv("DWS_KEY_CACHE")
  if not cache or cache == "" then return generate(paths) end
  local dst = cache .. "/" .. cache_name
  local function present() return read_file(dst .. "/" .. #paths) ~= nil end
  if not present() and not run("mkdir " .. sh_quote(dst .. ".lock") .. " 2>/dev/null") then
    local deadline = os.time() + 60
    while not present() and os.time() <= deadline do sleep(0.05) end
  end
  if not present() then
    local tmp = dst .. ".tmp-" .. assert(read_file("/proc/sys/kernel/random/uuid")):gsub("%W", "")
    assert(M.mkdir(tmp), "key cache: mkdir")
    local tmps = {}
    for i = 1, #paths do tmps[i] = tmp .. "/" .. i end
    generate(tmps)
    if not os.rename(tmp, dst) then run("rm -rf " .. sh_quote(tmp)) end -- lost a race: theirs is whole
  end
  for i = 1, #paths do
    write_file(paths[i], (assert(read_file(dst .. "/" .. i), "key cache: " .. cache_name)))
    run("chmod 600 " .. sh_quote(paths[i]))
  end
end

-- Self-signed CA and a server certificate for the given SANs, with the openssl command line.
-- Returns { ca = path, cert = path, key = path }. Every directory gets a CA of its own (a spec may
-- need a CA that did not issue another server's certificate), except that the CAs made under one
-- `ca_name` are the same within a run with DWS_KEY_CACHE (the sandbox's, made at every start).
function M.make_certs(dir, sans, name, ca_name)
  name = name or "server"
  M.mkdir(dir)
  local ca, cakey = dir .. "/ca.pem", dir .. "/ca.key"
  local q = sh_quote
  if not read_file(ca) then
    cached({ cakey, ca }, "ca-" .. (ca_name or dir:gsub("[^%w]", "_")), function(p)
      assert(run("openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj '/CN=lua-dws test CA'" ..
        " -keyout " .. q(p[1]) .. " -out " .. q(p[2]) .. " >/dev/null 2>&1"), "openssl: CA")
    end)
  end
  local cert, key, csr = dir .. "/" .. name .. ".pem", dir .. "/" .. name .. ".key", dir .. "/" .. name .. ".csr"
  local ext = dir .. "/" .. name .. ".ext"
  write_file(ext, "subjectAltName=" .. (sans or "DNS:localhost,IP:127.0.0.1") .. "\n")
  cached({ key }, "server-" .. name, function(p)
    assert(run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " .. q(p[1]) ..
      " >/dev/null 2>&1"), "openssl: server key")
  end)
  local function issue(p)
    assert(run("openssl req -new -key " .. q(key) .. " -subj '/CN=" .. name .. "' -out " .. q(csr) ..
      " >/dev/null 2>&1"), "openssl: csr")
    assert(run("openssl x509 -req -in " .. q(csr) .. " -CA " .. q(ca) .. " -CAkey " .. q(cakey) ..
      " -CAcreateserial -days 3650 -extfile " .. q(ext) .. " -out " .. q(p[1]) .. " >/dev/null 2>&1"),
      "openssl: sign")
  end
  if ca_name then
    -- The CA, the key and the names are the same within a run: so is the certificate.
    cached({ cert }, "cert-" .. ca_name .. "-" .. name .. "-" .. (sans or "default"):gsub("[^%w]", "_"), issue)
    run("chmod 644 " .. q(cert))
  else
    issue({ cert })
  end
  return { ca = ca, cert = cert, key = key }
end

-- RSA-2048 key pair with the openssl command line; returns PEM paths.
function M.make_keypair(dir, name)
  M.mkdir(dir)
  local priv, pub = dir .. "/" .. name .. "_private.pem", dir .. "/" .. name .. "_public.pem"
  if not read_file(priv) then
    cached({ priv, pub }, "keypair+pub-" .. name, function(p)
      assert(run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " .. sh_quote(p[1]) ..
        " >/dev/null 2>&1"), "openssl: genpkey")
      assert(run("openssl pkey -in " .. sh_quote(p[1]) .. " -pubout -out " .. sh_quote(p[2]) .. " >/dev/null 2>&1"),
        "openssl: pubout")
    end)
    run("chmod 600 " .. sh_quote(priv))
    run("chmod 644 " .. sh_quote(pub))
  end
  return priv, pub
end

return M
