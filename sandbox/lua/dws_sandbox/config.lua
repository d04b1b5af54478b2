-- The sandbox's config file (a Lua file returning a table) and the nginx.conf generated from it.
-- Used both by the launcher (plain Lua) and inside nginx (init_by_lua), so no ngx here.
--
--   return {
--     clients = { [client_id] = { public_key = "<PEM or bare base64>", notify_url = "http://...",
--                                 admin_token = "<16+ characters: reads this client's deliveries>" } },
--     notify_scale = 1.0,   -- multiplies Antom's re-delivery schedule
--     token_ttl = 1800,     -- cardToken lifetime, seconds
--     notify_delay = 0,     -- seconds before the pending card's notification
--     bound_notify_delay = 0, -- seconds before the notification of a card that binds at once
--                           -- (0: sent as the answer leaves, so it may beat the answer to the merchant)
--     latency = 0,          -- seconds before each API answer: a number, or { min = a, max = b }
--     http2 = false,        -- the HTTPS port offers HTTP/2 (ALPN h2) besides HTTP/1.1
--   }
-- http2 is a listen parameter: fixed while nginx runs (no admin endpoint changes it). Off by default:
-- the API pages do not say which protocols DWS speaks, so HTTP/1.1 is what a client must handle.
local M = {}

M.DEFAULTS = { notify_scale = 1.0, token_ttl = 1800, notify_delay = 0, bound_notify_delay = 0 }

local function check(conf, where)
  if type(conf) ~= "table" then return nil, where .. ": must return a table" end
  if type(conf.clients) ~= "table" then return nil, where .. ": clients must be a table" end
  for id, c in pairs(conf.clients) do
    if type(id) ~= "string" or id == "" then return nil, where .. ": client ids must be strings" end
    if type(c) ~= "table" or type(c.public_key) ~= "string" then
      return nil, where .. ": clients." .. id .. ".public_key must be a string"
    end
    if c.notify_url ~= nil and (type(c.notify_url) ~= "string" or not c.notify_url:match("^https?://")) then
      return nil, where .. ": clients." .. id .. ".notify_url must be an http(s) URL"
    end
    if c.admin_token ~= nil and (type(c.admin_token) ~= "string" or #c.admin_token < 16) then
      return nil, where .. ": clients." .. id .. ".admin_token must be a string of 16 characters or more"
    end
  end
  if conf.latency ~= nil then
    local ok, err = require("dws_sandbox.latency").bounds(conf.latency)
    if not ok then return nil, where .. ": " .. err end
  end
  if conf.http2 ~= nil and type(conf.http2) ~= "boolean" then
    return nil, where .. ": http2 must be a boolean"
  end
  conf.http2 = conf.http2 == true
  for k, default in pairs(M.DEFAULTS) do
    if conf[k] == nil then conf[k] = default end
    if type(conf[k]) ~= "number" or conf[k] < 0 then return nil, where .. ": " .. k .. " must be a number >= 0" end
  end
  return conf
end

-- -> conf | nil, err
function M.load(path)
  local chunk, err = loadfile(path)
  if not chunk then return nil, "config: " .. tostring(err) end
  local ok, conf = pcall(chunk)
  if not ok then return nil, "config " .. path .. ": " .. tostring(conf) end
  return check(conf, "config " .. path)
end

-- Lua source for a value made of tables, strings, numbers and booleans (keys sorted: stable files).
local function serialize(v, indent)
  indent = indent or ""
  local t = type(v)
  if t == "string" then
    if v:find("\n", 1, true) and not v:find("]]", 1, true) and not v:find("\r", 1, true) then
      return "[[\n" .. v .. "]]"
    end
    return string.format("%q", v)
  elseif t == "number" or t == "boolean" then
    return tostring(v)
  elseif t == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local out = { "{" }
    local inner = indent .. "  "
    for _, k in ipairs(keys) do
      local key = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or "[" .. serialize(k) .. "]"
      out[#out + 1] = inner .. key .. " = " .. serialize(v[k], inner) .. ","
    end
    out[#out + 1] = indent .. "}"
    return table.concat(out, "\n")
  end
  error("config: cannot write a " .. t)
end
M.serialize = serialize

-- The config holds every client's admin token: private (0600 whatever the umask), never written
-- through a link (dws_sandbox.nginx.write_new, the one writer of key and config files).
-- -> true | nil, err
function M.write(path, conf)
  local text = table.concat{
    "-- DWS sandbox config, read when the sandbox starts (see sandbox/lua/dws_sandbox/config.lua).\n",
    "-- clients[id].notify_url = \"http://127.0.0.1:PORT/notify\" turns binding notifications on;\n",
    "-- notify_scale multiplies the re-delivery schedule (0 s, 2 min, 10 min, 10 min, 1 h, 2 h, 6 h, 15 h).\n",
    "return ", serialize(conf), "\n" }
  local ok, err = require("dws_sandbox.nginx").write_new(path, text, "600")
  if not ok then return nil, "config " .. err end
  return true
end

-- p: { preamble, lua_paths, prefix, http_port, https_port, cert, cert_key, config, dws_private_key,
--      foreign_private_key, http2 }
function M.nginx_conf(p)
  local q = function(s) return string.format("%q", s) end
  local init = string.format("require(\"dws_sandbox.server\").init{ config = %s, dws_private_key = %s, " ..
    "foreign_private_key = %s }", q(p.config), q(p.dws_private_key), q(p.foreign_private_key))
  local tmp = p.prefix .. "/tmp"
  return p.preamble .. [[
events { worker_connections 1024; }

http {
]] .. p.lua_paths .. [[
    # One worker (preamble): timers, the fault counter and the reset generation live in one Lua VM;
    # everything else is in the shared dict anyway.
    lua_shared_dict dws_sandbox 64m;
    lua_shared_dict dws_sandbox_log 64m;

    # Bodies hold card numbers: never logged, never spooled to disk (the buffer is as large as the
    # largest body accepted, so nginx keeps every body in memory).
    access_log off;
    client_max_body_size 1m;
    client_body_buffer_size 1m;
    client_body_temp_path ]] .. tmp .. [[/body;
    proxy_temp_path ]] .. tmp .. [[/proxy;
    fastcgi_temp_path ]] .. tmp .. [[/fastcgi;
    uwsgi_temp_path ]] .. tmp .. [[/uwsgi;
    scgi_temp_path ]] .. tmp .. [[/scgi;

    lua_socket_log_errors off;
    lua_check_client_abort on;
    keepalive_requests 100000;
    server_tokens off;

    init_by_lua_block { ]] .. init .. [[ }

    server {
        listen 127.0.0.1:]] .. p.http_port .. [[;
        location / { content_by_lua_block { require("dws_sandbox.server").handle(true) } }
    }

    server {
        listen 127.0.0.1:]] .. p.https_port .. [[ ssl]] .. (p.http2 and " http2" or "") .. [[;
        ssl_certificate ]] .. p.cert .. [[;
        ssl_certificate_key ]] .. p.cert_key .. [[;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / { content_by_lua_block { require("dws_sandbox.server").handle(false) } }
    }
}
]]
end

return M
