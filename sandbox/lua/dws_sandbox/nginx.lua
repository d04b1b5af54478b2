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

-- Writes a private or public file the way key and config files must be written: never through a
-- link (one already at `path` is refused: it is there to redirect the file), with `mode` whatever
-- the umask. The bytes go into a new file that the shell creates exclusively (noclobber is
-- O_CREAT|O_EXCL, which refuses a link too) under umask 077, get their mode, and are renamed over
-- `path` (rename replaces, it never follows). -> true | nil, err
function M.write_new(path, data, mode)
  if run("test -L " .. sh_quote(path)) then
    return nil, path .. ": is a symbolic link; refusing to write through it"
  end
  local tag = (read_file("/proc/sys/kernel/random/uuid") or tostring(os.time())):gsub("%W", "")
  local tmp = path .. ".new-" .. tag
  local sink = io.popen("umask 077 && set -C && cat > " .. sh_quote(tmp), "w")
  if sink then
    sink:write(data)
    sink:close()
  end
  -- LuaJIT's popen close does not report the shell's status: the bytes written back do.
  if read_file(tmp) ~= data or not run("chmod " .. (mode or "600") .. " " .. sh_quote(tmp)) then
    os.remove(tmp)
    return nil, path .. ": could not write " .. tmp
  end
  local ok, err = os.rename(tmp, path)
  if not ok then
    os.remove(tmp)
    return nil, path .. ": " .. tostring(err)
  end
  return true
end

function M.mkdir(path)
  return run("mkdir -p " .. sh_quote(path))
end

-- A directory for keys: made 0700 when missing, whatever the umask (in a directory others may write
-- to, a file's own mode does not stop them replacing it).
function M.mkdir_private(path)
  return run("test -d " .. sh_quote(path) .. " || mkdir -p -m 700 " .. sh_quote(path))
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

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function split_paths(list)
  local out = {}
  for entry in (list or ""):gmatch("[^;]+") do out[#out + 1] = entry end
  return out
end

-- The rocks trees (prefixes of <tree>/lib/lua/5.x/?.so) on this process's package.cpath, in order.
local function cpath_trees()
  local trees = {}
  for _, template in ipairs(split_paths(package.cpath)) do
    local tree = template:match("^(/.*)/lib/lua/5%.%d+/%?%.so$")
    if tree then trees[#trees + 1] = tree end
  end
  return trees
end

local INSTALL_JIT = "luarocks --lua-version 5.1 --tree %s make --deps-mode=none " ..
  "openresty/dws-openresty-scm-1.rockspec LUA_INCDIR=/usr/include/luajit-2.1"

-- Where nginx finds the LuaJIT build of dws.core (nginx runs LuaJIT: the Lua 5.4 build cannot load
-- there): DWS_SANDBOX_JIT_CPATH (a cpath template, e.g. build/jit/?.so in a source tree), else the
-- launcher's source tree, else the LuaJIT flavour the dws-openresty rock installs beside the Lua 5.4
-- one: <tree>/lib/lua/5.1/?.so of a tree on package.cpath. A build for another Lua is refused by name.
-- -> template | nil, err
function M.jit_cpath()
  local template, from = os.getenv("DWS_SANDBOX_JIT_CPATH"), "; DWS_SANDBOX_JIT_CPATH names it"
  if template == "" then template = nil end
  if not template and M.source_jit_cpath then
    template, from = M.source_jit_cpath, "; run make in the source tree"
  end
  if not template then
    for _, tree in ipairs(cpath_trees()) do
      if file_exists(tree .. "/lib/lua/5.1/dws/core.so") then
        template = tree .. "/lib/lua/5.1/?.so"
        break
      end
    end
  end
  if not template then
    local tree = cpath_trees()[1] or "<tree>"
    return nil, "the LuaJIT build of dws.core, which nginx loads, is not installed (no " .. tree ..
      "/lib/lua/5.1/dws/core.so): from the lua-dws source directory run " .. INSTALL_JIT:format(tree) ..
      " (README, Installing), or set DWS_SANDBOX_JIT_CPATH (e.g. to build/jit/?.so of a source tree)"
  end
  local core = template:gsub("%?", "dws/core")
  if not file_exists(core) then
    return nil, "no " .. core .. " (the LuaJIT build of dws.core, which nginx loads" .. from .. ")"
  end
  local abi_mod = require "dws.abi"
  local abi = abi_mod.file_abi(core)
  if abi and abi ~= abi_mod.LUAJIT then
    return nil, core .. " is built for " .. abi .. ", not LuaJIT, which nginx runs: point DWS_SANDBOX_JIT_CPATH " ..
      "at the LuaJIT build (" .. INSTALL_JIT:format("<tree>") .. " installs it in <tree>/lib/lua/5.1)"
  end
  return template
end

local luajit_defaults
-- LuaJIT's built-in package.path and package.cpath, absolute entries only: what nginx's ';;' gives
-- when LUA_PATH and LUA_CPATH are unset (Debian's nginx links the libluajit the luajit command runs;
-- lua-resty-core, which the Lua module loads at start, is on it). Asked once per process.
-- -> path entries, cpath entries
function M.luajit_defaults()
  if not luajit_defaults then
    local p = io.popen("env -u LUA_PATH -u LUA_CPATH luajit -e " ..
      [['io.write(package.path, "\n", package.cpath, "\n")' 2>/dev/null]])
    local path, cpath = p:read("*l"), p:read("*l")
    p:close()
    if not cpath then
      -- No luajit command: Debian's defaults but the multiarch directory.
      path = "/usr/local/share/lua/5.1/?.lua;/usr/local/share/lua/5.1/?/init.lua;" ..
        "/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua"
      cpath = "/usr/local/lib/lua/5.1/?.so;/usr/lib/lua/5.1/?.so"
    end
    local function absolute(list)
      local out = {}
      for _, e in ipairs(split_paths(list)) do
        if e:sub(1, 1) == "/" then out[#out + 1] = e end
      end
      return out
    end
    luajit_defaults = { absolute(path), absolute(cpath) }
  end
  return luajit_defaults[1], luajit_defaults[2]
end

-- The http-block lines that make our Lua modules loadable inside nginx, every directory named: no
-- ';;', which would add $LUA_PATH/$LUA_CPATH of nginx's environment, where a shell set up for Lua 5.4
-- holds Lua 5.4 C modules that cannot load into LuaJIT. The cpath is the LuaJIT build of dws.core and
-- LuaJIT's own directories, nothing else. The path: extra (a list of templates, first), the LuaJIT
-- flavour's Lua files, this process's own directories (source trees, rocks trees), LuaJIT's
-- directories, and last the system directories of this process's Lua, for modules found only there.
-- opts: { extra_path = { template, ... } }
function M.lua_paths(opts)
  local jit = assert(M.jit_cpath())
  local lj_path, lj_cpath = M.luajit_defaults()
  local path, seen, late = {}, {}, {}
  local function add(list, e)
    if not seen[e] then
      seen[e] = true
      list[#list + 1] = e
    end
  end
  for _, e in ipairs(opts and opts.extra_path or {}) do add(path, e) end
  local tree = jit:match("^(.*)/lib/lua/5%.1/%?%.so$")
  if tree then
    add(path, tree .. "/share/lua/5.1/?.lua")
    add(path, tree .. "/share/lua/5.1/?/init.lua")
  end
  -- nginx does not change directory: a relative entry means the launcher's, made absolute; the
  -- current directory itself ("./?.lua") is left out, as LuaJIT's is.
  local cwd = os.getenv("PWD")
  for _, e in ipairs(split_paths(package.path)) do
    if e:sub(1, 1) ~= "/" and e:sub(1, 2) ~= "./" and cwd then e = cwd .. "/" .. e end
    if e:sub(1, 1) == "/" then
      if e:match("^/usr/.*/lua/5%.[2-9]/") then late[#late + 1] = e else add(path, e) end
    end
  end
  for _, e in ipairs(lj_path) do add(path, e) end
  for _, e in ipairs(late) do add(path, e) end
  local cpath = { jit }
  for _, e in ipairs(lj_cpath) do if e ~= jit then cpath[#cpath + 1] = e end end
  return string.format('lua_package_path "%s";\nlua_package_cpath "%s";\n', table.concat(path, ";"),
    table.concat(cpath, ";"))
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
  if not cache or cache == "" then
    -- openssl writes where it is told, links followed: into a private directory, then into place.
    local tmp = M.tmpdir("dws-keys")
    local tmps = {}
    for i = 1, #paths do tmps[i] = tmp .. "/" .. i end
    generate(tmps)
    for i = 1, #paths do
      local ok, err = M.write_new(paths[i], assert(read_file(tmps[i]), "keys: " .. cache_name), "600")
      if not ok then
        M.rmdir(tmp)
        error(err, 0)
      end
    end
    M.rmdir(tmp)
    return
  end
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
    assert(M.write_new(paths[i], (assert(read_file(dst .. "/" .. i), "key cache: " .. cache_name)), "600"))
  end
end

-- Self-signed CA and a server certificate for the given SANs, with the openssl command line.
-- Returns { ca = path, cert = path, key = path }. Every directory gets a CA of its own (a spec may
-- need a CA that did not issue another server's certificate), except that the CAs made under one
-- `ca_name` are the same within a run with DWS_KEY_CACHE (the sandbox's, made at every start).
function M.make_certs(dir, sans, name, ca_name)
  name = name or "server"
  M.mkdir_private(dir)
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

-- RSA-2048 key pair with the openssl command line; returns PEM paths. The private key is 0600, the
-- public 0644, whatever the umask, and neither is written through a link (raises on one).
function M.make_keypair(dir, name)
  M.mkdir_private(dir)
  local priv, pub = dir .. "/" .. name .. "_private.pem", dir .. "/" .. name .. "_public.pem"
  if not read_file(priv) then
    cached({ priv, pub }, "keypair+pub-" .. name, function(p)
      assert(run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " .. sh_quote(p[1]) ..
        " >/dev/null 2>&1"), "openssl: genpkey")
      assert(run("openssl pkey -in " .. sh_quote(p[1]) .. " -pubout -out " .. sh_quote(p[2]) .. " >/dev/null 2>&1"),
        "openssl: pubout")
    end)
    -- public, but only its owner may change it: a key swapped in would be trusted
    assert(run("chmod 644 " .. sh_quote(pub)), "chmod: " .. pub)
  end
  return priv, pub
end

return M
