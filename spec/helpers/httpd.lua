-- A throw-away nginx for the transport specs: plain HTTP and HTTPS on one server (certificate
-- for localhost and 127.0.0.1 from a private CA), plus an HTTPS server whose certificate names
-- only wrong.example (same CA), each on a free loopback port.
--
--   local srv = assert(httpd.start{ locations = "...", http = "...", lua_files = { name = src } })
--   srv:url("/echo"), srv:surl("/echo"), srv:wrong_url("/"), srv.ca, srv:stop()
--
-- Locations served (the specs rely on them):
--   /echo            status 200; body = request body; x-echo-method, x-echo-length, and every
--                    request header reflected as x-echo-h-<name>
--   /status/<n>      status n, body "status <n>"
--   /dup             x-dup twice (a, b) and x-one once
--   /slow?s=<sec>    sleeps, then "slow"
--   /huge?n=<bytes>  n bytes of "x" with Content-Length
--   /chunked         "chunk-1;chunk-2;...;chunk-5;" in five flushed pieces (chunked encoding)
--   /short           announces Content-Length 100, sends 7 bytes, closes
--   /garbage         answers a line that is not HTTP, closes
--   /nothing         closes without answering
--   /eof             a body delimited by closing the connection (no length, not chunked)
--   /drip            the head at once, then a 40-byte body one byte every 0.1 s (from=head:
--                    the head dripped as well)
--   /bigheaders?n=<k> k headers x-big-1..k of 1000 bytes each
--   /brief           "brief"; the server closes the kept-alive connection after 300 ms idle
local nginx = require "dws_sandbox.nginx"

local M = {}

local LOCATIONS = [[
    location = /echo {
        content_by_lua_block {
            ngx.req.read_body()
            local body = ngx.req.get_body_data() or ""
            ngx.header["X-Echo-Method"] = ngx.req.get_method()
            ngx.header["X-Echo-Length"] = tostring(#body)
            for name, value in pairs(ngx.req.get_headers(100)) do
                ngx.header["X-Echo-H-" .. name] = value
            end
            ngx.print(body)
        }
    }
    location ~ ^/status/(\d+)$ {
        content_by_lua_block {
            ngx.status = tonumber(ngx.var[1])
            ngx.print("status ", ngx.var[1])
        }
    }
    location = /dup {
        content_by_lua_block {
            ngx.header["X-Dup"] = { "a", "b" }
            ngx.header["X-One"] = "1"
            ngx.print("dup")
        }
    }
    location = /slow {
        content_by_lua_block {
            ngx.sleep(tonumber(ngx.var.arg_s) or 2)
            ngx.print("slow")
        }
    }
    location = /huge {
        content_by_lua_block {
            local n = tonumber(ngx.var.arg_n) or 2097152
            ngx.header["Content-Length"] = n
            local piece = string.rep("x", 65536)
            while n > 0 do
                local k = n < #piece and n or #piece
                ngx.print(k == #piece and piece or piece:sub(1, k))
                n = n - k
            end
        }
    }
    location = /chunked {
        content_by_lua_block {
            for i = 1, 5 do
                ngx.print("chunk-", i, ";")
                ngx.flush(true)
            end
        }
    }
    location = /short {
        content_by_lua_block {
            local sock = ngx.req.socket(true)
            sock:send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: text/plain\r\n\r\npartial")
            ngx.exit(444)
        }
    }
    location = /garbage {
        content_by_lua_block {
            local sock = ngx.req.socket(true)
            sock:send("this is not http\r\n\r\n")
            ngx.exit(444)
        }
    }
    location = /nothing {
        return 444;
    }
    location = /eof {
        content_by_lua_block {
            local sock = ngx.req.socket(true)
            sock:send("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody until close")
            ngx.exit(444)
        }
    }
    location = /drip {
        content_by_lua_block {
            local body = string.rep("d", 40)
            local r = "HTTP/1.1 200 OK\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
            local at_once = ngx.var.arg_from == "head" and 0 or #r - #body
            local sock = ngx.req.socket(true)
            if at_once > 0 and not sock:send(r:sub(1, at_once)) then return ngx.exit(444) end
            for i = at_once + 1, #r do
                ngx.sleep(0.1)
                if not sock:send(r:sub(i, i)) then break end
            end
            ngx.exit(444)
        }
    }
    location = /bigheaders {
        content_by_lua_block {
            local v = string.rep("h", 1000)
            for i = 1, tonumber(ngx.var.arg_n) or 20 do ngx.header["X-Big-" .. i] = v end
            ngx.print("big headers")
        }
    }
    location = /brief {
        keepalive_timeout 300ms;
        content_by_lua_block { ngx.print("brief") }
    }
]]

local Server = {}
Server.__index = Server

function Server:url(path)
  return "http://127.0.0.1:" .. self.http_port .. (path or "/")
end

function Server:surl(path)
  return "https://127.0.0.1:" .. self.https_port .. (path or "/")
end

function Server:wrong_url(path)
  return "https://127.0.0.1:" .. self.wrong_port .. (path or "/")
end

function Server:error_log()
  return nginx.read_file(self.prefix .. "/logs/error.log") or ""
end

function Server:stop()
  if self.prefix then
    nginx.stop(self.prefix)
    nginx.rmdir(self.prefix)
    self.prefix = nil
  end
end

local function config(prefix, certs, wrong, ports, opts)
  local extra, extra_tls = opts.extra_ports or 0, opts.extra_tls_ports or 0
  local listens = {}
  for i = 4, 3 + extra do
    listens[#listens + 1] = "        listen 127.0.0.1:" .. ports[i] .. ";"
  end
  for i = 4 + extra, 3 + extra + extra_tls do
    listens[#listens + 1] = "        listen 127.0.0.1:" .. ports[i] .. " ssl;"
  end
  local paths = nginx.lua_paths():gsub('lua_package_path "', 'lua_package_path "' .. prefix .. '/lua/?.lua;', 1)
  local tmp = prefix .. "/tmp"
  return nginx.preamble(prefix) .. table.concat({
    "events { worker_connections 256; }",
    "http {",
    paths,
    "    access_log off;",
    "    client_body_temp_path " .. tmp .. "/body;",
    "    proxy_temp_path " .. tmp .. "/proxy;",
    "    fastcgi_temp_path " .. tmp .. "/fastcgi;",
    "    uwsgi_temp_path " .. tmp .. "/uwsgi;",
    "    scgi_temp_path " .. tmp .. "/scgi;",
    "    client_body_buffer_size 4m;",
    "    client_max_body_size 16m;",
    opts.trust == false and "" or "    lua_ssl_trusted_certificate " .. (opts.trust or certs.ca) .. ";",
    "    lua_ssl_verify_depth 3;",
    opts.http or "",
    "    server {",
    "        listen 127.0.0.1:" .. ports[1] .. ";",
    "        listen 127.0.0.1:" .. ports[2] .. " ssl;",
    table.concat(listens, "\n"),
    "        ssl_certificate " .. certs.cert .. ";",
    "        ssl_certificate_key " .. certs.key .. ";",
    "        keepalive_requests 10000;",
    LOCATIONS,
    opts.locations or "",
    "    }",
    "    server {",
    "        listen 127.0.0.1:" .. ports[3] .. " ssl;",
    "        ssl_certificate " .. wrong.cert .. ";",
    "        ssl_certificate_key " .. wrong.key .. ";",
    "        location / { return 200 \"wrong\"; }",
    "    }",
    "}",
  }, "\n") .. "\n"
end

-- opts.locations: extra location blocks for the main server; opts.http: extra http-block lines;
-- opts.lua_files: { modname = source } written where the server's Lua can require them;
-- opts.trust = false: no lua_ssl_trusted_certificate, so cosockets in it trust no server; a path:
-- cosockets trust that CA instead of the server's own (e.g. the sandbox's, sb.ca_file);
-- opts.extra_ports / opts.extra_tls_ports: how many more plain-HTTP / HTTPS ports the main server
-- listens on (srv.extra_ports, srv.extra_tls_ports), e.g. for a connection pool no other test uses.
function M.start(opts)
  opts = opts or {}
  local prefix = nginx.tmpdir("dws-httpd")
  -- One CA for every test server of a run (an RSA key less per start); not the sandbox's.
  local certs = nginx.make_certs(prefix .. "/certs", nil, nil, "httpd")
  local wrong = nginx.make_certs(prefix .. "/certs", "DNS:wrong.example", "wrong", "httpd")
  local extra, extra_tls = opts.extra_ports or 0, opts.extra_tls_ports or 0
  nginx.mkdir(prefix .. "/lua")
  for name, src in pairs(opts.lua_files or {}) do
    nginx.write_file(prefix .. "/lua/" .. name:gsub("%.", "/") .. ".lua", src)
  end
  local ports, err = nginx.start_on_free_ports(prefix, 3 + extra + extra_tls, function(p)
    return config(prefix, certs, wrong, p, opts)
  end)
  if not ports then
    nginx.stop(prefix)
    nginx.rmdir(prefix)
    return nil, err
  end
  local extra_ports, extra_tls_ports = {}, {}
  for i = 1, extra do extra_ports[i] = ports[3 + i] end
  for i = 1, extra_tls do extra_tls_ports[i] = ports[3 + extra + i] end
  return setmetatable({
    prefix = prefix,
    http_port = ports[1],
    https_port = ports[2],
    wrong_port = ports[3],
    extra_ports = extra_ports,
    extra_tls_ports = extra_tls_ports,
    ca = certs.ca,
  }, Server)
end

-- A loopback port nothing listens on (for "connection refused").
function M.closed_port()
  return nginx.free_ports(1)[1]
end

return M
