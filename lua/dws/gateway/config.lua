--- The DWS gateway's configuration: one JSON file, checked once, from which the nginx.conf is made.
-- The same `load` runs in `dws gateway` (Lua 5.4) and inside nginx (LuaJIT, init_by_lua), so the
-- two can never disagree about what a file means. docs/gateway.md documents every key.
-- @module dws.gateway.config
local core = require "dws.core"

local M = {}

--- Every default of the gateway (our choice where the API pages are silent), by key.
M.DEFAULTS = {
  listen = "127.0.0.1:8480",         -- backends: loopback only unless TLS is configured
  notify_listen = "127.0.0.1:8481",  -- DWS's notifications (put TLS in front, as for any merchant)
  notify_path = "/notify",
  metrics_listen = "127.0.0.1:9480",
  workers = 1,
  max_body = 64 * 1024,               -- bytes of one backend request (a card binding is < 2 KiB)
  shared_dict_size = "16m",           -- the node-local store when no "store" URL is given
  forward_timeout = 5,                -- seconds per forwarding attempt
  forward_interval = 0.2,             -- seconds between looks for news (a cheap check)
  forward_rescan = 5,                 -- seconds between full reads of the outbox with no news
  forward_concurrency = 16,           -- bindings forwarded at once (each binding's events stay in order)
  forward_retry_base = 1,             -- seconds; doubles per failed attempt
  forward_retry_max = 300,            -- seconds; the longest wait between two attempts
  sweep_interval = 30,                -- seconds between sweeper runs
  resume_after = 60,                  -- seconds a binding stays UNKNOWN before the sweeper resumes it
  report_pending_after = 3600,        -- seconds after which a pending binding is reported
  nginx = "nginx",
  nginx_modules = "/usr/lib/nginx/modules", -- "" for OpenResty (the Lua module is built in)
  log_level = "warn",
}

--- The names a backend's `apis` list may hold: the three API calls and the binding resources.
M.APIS = {
  consultAddablePaymentMethod = true, cacheCard = true, addPaymentMethod = true,
  bind_card = true, binding = true, resume_binding = true, pending_bindings = true,
}

local KEYS = {
  dir = "string", client_id = "string", private_key_file = "string", dws_public_key_file = "string",
  gateway = "string", ca_file = "string", server_name = "string", key_version = "string",
  request_time = "string", timeout = "number", connect_timeout = "number", max_retries = "number",
  store = "string", listen = "string", notify_listen = "string", notify_path = "string",
  metrics_listen = "string", backends = "table", forward_to = "string", forward_secret = "string",
  forward_secret_file = "string", forward_timeout = "number", forward_interval = "number",
  forward_concurrency = "number", forward_rescan = "number",
  forward_retry_base = "number", forward_retry_max = "number", sweep_interval = "number",
  resume_after = "number", report_pending_after = "number", workers = "number", max_body = "number",
  shared_dict_size = "string", tls_cert = "string", tls_key = "string", nginx = "string",
  nginx_modules = "string", lua_package_path = "string", lua_package_cpath = "string",
  log_level = "string", user = "string",
}

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end
M.read_file = read_file

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- "127.0.0.1:8480", "[::1]:8480", "unix:/run/dws.sock" -> kind ("tcp"|"unix"), host, port
function M.parse_listen(s)
  if s:sub(1, 5) == "unix:" then
    local path = s:sub(6)
    if path:sub(1, 1) ~= "/" then return nil, "a unix socket path must be absolute" end
    return "unix", path
  end
  local host, port = s:match("^%[([%x:]+)%]:(%d+)$")
  if not host then host, port = s:match("^([%w.-]+):(%d+)$") end
  port = tonumber(port)
  if not host or not port or port < 1 or port > 65535 then
    return nil, "must be host:port, [v6]:port or unix:/path"
  end
  return "tcp", host, port
end

local function loopback(host)
  return host == "localhost" or host == "::1" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end
M.loopback = loopback

local function fail(key, why)
  return nil, "gateway config: " .. key .. " " .. why
end

-- A backend's token: at least 32 characters (128 bits as hex), from the file or inline.
local function backend_token(name, b)
  local token = b.token
  if b.token_file then
    local text, err = read_file(b.token_file)
    if not text then return fail("backends." .. name .. ".token_file", "cannot be read: " .. tostring(err)) end
    token = trim(text)
  end
  if type(token) ~= "string" then return fail("backends." .. name, "needs token or token_file") end
  if #token < 32 or token:find("[%c%s]") then
    return fail("backends." .. name .. ".token",
      "must be at least 32 characters without spaces (e.g. `openssl rand -hex 32`)")
  end
  return token
end

--- Read and check a configuration file. Relative paths in it are taken from the file's directory.
-- syntax: `cfg, err = config.load(path)`
-- @tparam string path the JSON file
-- @treturn table the configuration, defaults filled in, tokens and the forward secret read
-- @treturn[2] nil
-- @treturn[2] string err naming the key at fault
function M.load(path)
  local text, rerr = read_file(path)
  if not text then return nil, "gateway config: " .. tostring(rerr) end
  local c, jerr = core.json_decode(text)
  if type(c) ~= "table" then return nil, "gateway config: " .. path .. " is not a JSON object: " .. tostring(jerr) end
  for k, v in pairs(c) do
    if not KEYS[k] then return fail(k, "is not a known key (see docs/gateway.md)") end
    if type(v) ~= KEYS[k] then return fail(k, "must be a " .. KEYS[k]) end
  end
  for k, v in pairs(M.DEFAULTS) do
    if c[k] == nil then c[k] = v end
  end
  local base = path:match("^(.*)/[^/]*$") or "."
  for _, k in ipairs{ "dir", "private_key_file", "dws_public_key_file", "ca_file", "forward_secret_file",
                      "tls_cert", "tls_key" } do
    if type(c[k]) == "string" and c[k]:sub(1, 1) ~= "/" then c[k] = base .. "/" .. c[k] end
  end
  c.config_file = path:sub(1, 1) == "/" and path or (os.getenv("PWD") or ".") .. "/" .. path
  for _, k in ipairs{ "dir", "client_id", "private_key_file", "dws_public_key_file", "gateway" } do
    if c[k] == nil or c[k] == "" then return fail(k, "is required") end
  end
  if c.dir:find('[%c"\'\\;{}$%s]') then return fail("dir", "must be a plain path") end

  for _, k in ipairs{ "listen", "notify_listen", "metrics_listen" } do
    local kind, host_or_err = M.parse_listen(c[k])
    if not kind then return fail(k, host_or_err) end
    -- Never an open signing oracle, and card data never in clear over a network.
    if k == "listen" and kind == "tcp" and not loopback(host_or_err) and not (c.tls_cert and c.tls_key) then
      return fail(k, "is not loopback: set tls_cert and tls_key (card data travels only over loopback, a unix " ..
        "socket or TLS)")
    end
  end
  if c.notify_path:sub(1, 1) ~= "/" or c.notify_path:find("[%s;{}\"'\\]") then
    return fail("notify_path", "must be a plain absolute path")
  end
  local levels = { debug = true, info = true, notice = true, warn = true, error = true, crit = true }
  if not levels[c.log_level] then return fail("log_level", "must be debug, info, notice, warn, error or crit") end
  if c.workers < 1 or c.workers > 64 or c.workers % 1 ~= 0 then return fail("workers", "must be 1..64") end
  if c.forward_concurrency < 1 or c.forward_concurrency > 256 or c.forward_concurrency % 1 ~= 0 then
    return fail("forward_concurrency", "must be 1..256")
  end
  if c.max_body < 1024 or c.max_body > 1024 * 1024 then return fail("max_body", "must be 1 KiB .. 1 MiB") end
  for _, k in ipairs{ "forward_timeout", "forward_interval", "forward_rescan", "forward_retry_base",
                      "forward_retry_max",
                      "sweep_interval", "resume_after", "report_pending_after" } do
    if not (c[k] > 0 and c[k] < 1e7) then return fail(k, "must be a positive number of seconds") end
  end
  if not c.shared_dict_size:match("^%d+[km]$") then return fail("shared_dict_size", 'must be like "16m"') end

  local names = {}
  for name, b in pairs(c.backends or {}) do
    if type(name) ~= "string" or not name:match("^[%w_.-]+$") then
      return fail("backends", "names are [A-Za-z0-9_.-]+")
    end
    if type(b) ~= "table" then return fail("backends." .. name, "must be an object") end
    local token, terr = backend_token(name, b)
    if not token then return nil, terr end
    if type(b.apis) ~= "table" or #b.apis == 0 then
      return fail("backends." .. name .. ".apis", "must list the APIs this backend may use")
    end
    local allowed = {}
    for _, a in ipairs(b.apis) do
      if not M.APIS[a] then return fail("backends." .. name .. ".apis", "has an unknown API " .. tostring(a)) end
      allowed[a] = true
    end
    b.token, b.token_file, b.allowed = token, nil, allowed
    names[#names + 1] = name
  end
  if #names == 0 then return fail("backends", "must name at least one backend with its token") end

  if c.forward_to then
    if not c.forward_to:match("^https?://[^%s]+$") then return fail("forward_to", "must be an http(s) URL") end
    local secret = c.forward_secret
    if c.forward_secret_file then
      local s, serr = read_file(c.forward_secret_file)
      if not s then return fail("forward_secret_file", "cannot be read: " .. tostring(serr)) end
      secret = trim(s)
    end
    if type(secret) ~= "string" then return fail("forward_to", "needs forward_secret or forward_secret_file") end
    local key = secret:match("^whsec_(.+)$")
    key = key and core.base64_decode(key)
    if not key or #key < 24 then
      return fail("forward_secret", 'must be "whsec_" and the base64 of 24 to 64 random bytes (Standard Webhooks)')
    end
    c.forward_key, c.forward_secret, c.forward_secret_file = key, nil, nil
  end
  return c
end

local function q(s)
  return '"' .. s:gsub('["\\]', "\\%0") .. '"'
end

local function listen_line(addr, extra)
  local kind, host, port = M.parse_listen(addr)
  if kind == "unix" then return "listen unix:" .. host .. (extra or "") .. ";" end
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  return "listen " .. host .. ":" .. port .. (extra or "") .. ";"
end

--- The TCP ports a configuration listens on (for waiting until nginx is up) and its unix sockets.
-- @treturn {int,...} ports
-- @treturn {string,...} socket paths
function M.listen_ports(c)
  local ports, sockets = {}, {}
  for _, k in ipairs{ "listen", "notify_listen", "metrics_listen" } do
    local kind, host, port = M.parse_listen(c[k])
    if kind == "tcp" then ports[#ports + 1] = port else sockets[#sockets + 1] = host end
  end
  return ports, sockets
end

--- The nginx.conf for a loaded configuration.
-- syntax: `text = config.nginx_conf(cfg, paths)`
-- @tparam table c as `load` returns it
-- @tparam table paths `lua_lines` (the lua_package_path and lua_package_cpath lines: LuaJIT's, as
-- nginx runs LuaJIT), `uid`
-- @treturn string the nginx.conf
function M.nginx_conf(c, paths)
  local dir = c.dir
  local o = {}
  local function add(...) o[#o + 1] = table.concat({ ... }) end
  add("# Generated by `dws gateway` from ", c.config_file, ": edit that file, not this one.")
  if c.nginx_modules ~= "" then
    add("load_module ", c.nginx_modules, "/ndk_http_module.so;")
    add("load_module ", c.nginx_modules, "/ngx_http_lua_module.so;")
  end
  add("daemon on;")
  add("master_process on;")
  add("worker_processes ", tostring(c.workers), ";")
  add("pid ", dir, "/logs/nginx.pid;")
  add("error_log ", dir, "/logs/error.log ", c.log_level, ";")
  -- Workers would otherwise drop to nobody and lose access to the private prefix (our choice).
  if c.user then add("user ", c.user, ";") elseif paths.uid == "0" then add("user root root;") end
  add("events { worker_connections 1024; }")
  add("http {")
  for line in paths.lua_lines:gmatch("[^\n]+") do add("    ", line) end
  -- Bodies carry card data: no access log, and bodies stay in memory (never spooled to disk).
  add("    access_log off;")
  add("    server_tokens off;")
  add("    client_body_buffer_size ", tostring(c.max_body), ";")
  add("    client_max_body_size ", tostring(c.max_body), ";")
  for _, t in ipairs{ "client_body", "proxy", "fastcgi", "uwsgi", "scgi" } do
    add("    ", t, "_temp_path ", dir, "/tmp/", t, ";")
  end
  add("    lua_shared_dict dws_gateway ", c.shared_dict_size, ";")
  add("    lua_shared_dict dws_gateway_metrics 2m;")
  add("    lua_shared_dict dws_gateway_signals 64k;")
  if c.ca_file then
    add("    lua_ssl_trusted_certificate ", c.ca_file, ";")
    add("    lua_ssl_verify_depth 3;")
  end
  add("    init_by_lua_block { require(\"dws.gateway.server\").init(", q(c.config_file), ") }")
  add("    init_worker_by_lua_block { require(\"dws.gateway.server\").init_worker() }")
  add("    server {")
  if c.tls_cert and c.tls_key then
    add("        ", listen_line(c.listen, " ssl"))
    add("        ssl_certificate ", c.tls_cert, ";")
    add("        ssl_certificate_key ", c.tls_key, ";")
    add("        ssl_protocols TLSv1.2 TLSv1.3;")
  else
    add("        ", listen_line(c.listen))
  end
  add("        default_type application/json;")
  add("        error_page 413 = @too_large;")
  add("        location / { content_by_lua_block { require(\"dws.gateway.server\").backend() } }")
  add("        location @too_large { content_by_lua_block { require(\"dws.gateway.server\").too_large() } }")
  add("    }")
  add("    server {")
  add("        ", listen_line(c.notify_listen))
  add("        default_type application/json;")
  add("        location = ", c.notify_path, " { content_by_lua_block { require(\"dws.gateway.server\").notify() } }")
  add("        location / { return 404; }")
  add("    }")
  add("    server {")
  add("        ", listen_line(c.metrics_listen))
  add("        location = /metrics { content_by_lua_block { require(\"dws.gateway.server\").metrics() } }")
  add("        location / { return 404; }")
  add("    }")
  add("}")
  return table.concat(o, "\n") .. "\n"
end

return M
