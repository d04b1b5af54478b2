--- The transport over OpenResty cosockets that `dws.client` uses inside nginx: HTTP/1.1 that never
-- blocks the worker, a keep-alive pool per gateway; TLS trust from `lua_ssl_trusted_certificate`.
-- @module dws.transport.ngx

-- Transport over OpenResty cosockets (ngx.socket.tcp): a small HTTP/1.1 client that never blocks
-- the nginx worker. Works wherever cosockets do (rewrite/access/content phases, ngx.timer).
--
--   local t = require("dws.transport.ngx").new{ verify =, max_response_bytes =, timeout =,
--       connect_timeout =, pool_size =, idle_timeout =, user_agent =, server_name = }
--   t:request{ method =, url =, headers = { Name = value }, body =, timeout =, connect_timeout = }
--     -> { status =, headers =, body = } | nil, kind, message   (kinds as dws.curl)
--
-- Trust for HTTPS comes from nginx's lua_ssl_trusted_certificate (and lua_ssl_verify_depth);
-- verification is on unless verify = false is passed explicitly. server_name (SNI and the name
-- verified) defaults to the URL's host; nginx verifies DNS names only, so a URL with an IP address
-- needs server_name to pass verification.
local type, tostring, tonumber, pairs, setmetatable, error = type, tostring, tonumber, pairs, setmetatable, error
local concat = table.concat
local lower, byte, find, sub = string.lower, string.byte, string.find, string.sub

local defaults = require "dws.defaults"
local durl = require "dws.url"

local M = {}

local Transport = {}
Transport.__index = Transport

local MAX_HEADER_BYTES = 65536
local READ_MAX = 65536
local MAX_CACHED_URLS = 64

-- Headers the transport writes itself; a caller's copy would contradict them.
local OWN_HEADERS = { host = true, ["content-length"] = true, connection = true, ["transfer-encoding"] = true }

local function ms(seconds)
  return math.ceil(seconds * 1000)
end

--- A cosocket transport.
-- syntax: `t = require("dws.transport.ngx").new{ verify =, max_response_bytes =, timeout =,
-- connect_timeout =, pool_size =, idle_timeout =, user_agent =, server_name = }`
-- @tparam[opt] table opts `server_name`: the certificate name to expect (for a gateway given by IP)
-- @treturn Transport the transport
-- @raise outside nginx, on a wrongly typed option, or with `proxy` (cosockets cannot use one)
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("dws.transport.ngx.new: opts must be a table", 2) end
  if opts.verify ~= nil and type(opts.verify) ~= "boolean" then
    error("dws.transport.ngx.new: verify must be a boolean", 2)
  end
  if ngx == nil or ngx.socket == nil or ngx.socket.tcp == nil then
    error("dws.transport.ngx: needs OpenResty (ngx.socket.tcp)", 2)
  end
  -- Cosockets cannot tunnel through a proxy: refuse rather than silently go direct.
  -- (ca_file is ignored: trust comes from nginx's lua_ssl_trusted_certificate.)
  if opts.proxy ~= nil then error("dws.transport.ngx.new: proxy is not supported inside nginx", 2) end
  local max = opts.max_response_bytes or defaults.options.max_response_bytes
  if type(max) ~= "number" or max < 1 then
    error("dws.transport.ngx.new: max_response_bytes must be a positive number", 2)
  end
  return setmetatable({
    verify = opts.verify ~= false,
    max_response_bytes = max,
    timeout = opts.timeout or defaults.options.timeout,
    connect_timeout = opts.connect_timeout or defaults.options.connect_timeout,
    pool_size = opts.pool_size or defaults.pool_size,
    idle_timeout_ms = ms(opts.idle_timeout or defaults.idle_timeout),
    user_agent = opts.user_agent,
    server_name = opts.server_name,
    urls = {},
    nurls = 0,
    connects = 0,
    requests = 0,
  }, Transport)
end

-- url -> { https, host, port, path, host_header, server_name, connect_opts } | nil, err
local function parse_url(self, url)
  local u, why = durl.split(url)
  if not u then return nil, "bad URL: " .. why end
  local scheme = u.scheme
  if scheme ~= "http" and scheme ~= "https" then return nil, "only http and https URLs are supported" end
  if u.authority == "" or u.userinfo then return nil, "bad authority in URL" end
  local https = scheme == "https"
  local host, port = u.host, u.port or (https and 443 or 80)
  local authority = u.authority
  local path = u.path .. (u.query and "?" .. u.query or "")
  if path == "" then
    path = "/"
  elseif byte(path, 1) ~= 47 then -- "?query" without a path
    path = "/" .. path
  end
  local server_name = self.server_name or host
  -- Pooled connections must only be shared by requests that would have made the same one.
  local pool = concat{ scheme, "://", host, ":", tostring(port),
    https and (self.verify and ":verify:" or ":noverify:") .. server_name or "" }
  return {
    https = https,
    host = host,
    port = port,
    path = path,
    host_header = authority,
    server_name = server_name,
    ip_literal = self.server_name == nil and (host:find("^[%d.]+$") ~= nil or host:find(":", 1, true) ~= nil),
    connect_opts = { pool = pool, pool_size = self.pool_size },
  }
end

local function url_parts(self, url)
  local u = self.urls[url]
  if u then return u end
  local err
  u, err = parse_url(self, url)
  if not u then return nil, err end
  -- A client calls a handful of URLs; bound the cache anyway.
  if self.nurls >= MAX_CACHED_URLS then
    self.urls, self.nurls = {}, 0
  end
  self.urls[url] = u
  self.nurls = self.nurls + 1
  return u
end

-- The request head as an array for sock:send (no concatenation of the body).
local function request_parts(self, method, u, headers, body)
  local parts = { method, " ", u.path, " HTTP/1.1\r\nHost: ", u.host_header, "\r\n" }
  local n = #parts
  local has_ua = false
  if headers then
    for name, value in pairs(headers) do
      local lname = lower(name)
      if not OWN_HEADERS[lname] then
        if lname == "user-agent" then has_ua = true end
        local values = type(value) == "table" and value or { value }
        for i = 1, #values do
          local v = tostring(values[i])
          if name:find("[\r\n:]") or v:find("[\r\n]") then
            error("dws.transport.ngx: header " .. name .. " contains CR, LF or ':'", 3)
          end
          parts[n + 1], parts[n + 2], parts[n + 3], parts[n + 4] = name, ": ", v, "\r\n"
          n = n + 4
        end
      end
    end
  end
  if self.user_agent and not has_ua then
    parts[n + 1], parts[n + 2], parts[n + 3] = "User-Agent: ", self.user_agent, "\r\n"
    n = n + 3
  end
  if body then
    parts[n + 1], parts[n + 2], parts[n + 3] = "Content-Length: ", tostring(#body), "\r\n"
    n = n + 3
  end
  parts[n + 1] = "Connection: keep-alive\r\n\r\n"
  if body and body ~= "" then parts[n + 2] = body end
  return parts
end

-- The response is read with receiveany, never receive(n) or a receiveuntil iterator: those wait
-- for all their bytes and nginx re-arms the read timer on every arrival, so a server dripping
-- one byte at a time could hold a call far past its timeout. Each receiveany call gets what is
-- left until the deadline. Unconsumed bytes are st.buf from st.pos on.
local function fill(st)
  local left = st.deadline - ngx.now()
  if left <= 0 then return nil, "timeout" end
  local sock = st.sock
  sock:settimeout(ms(left))
  local data, err = sock:receiveany(READ_MAX)
  if not data then return nil, err end
  st.got = st.got + #data
  return data
end

-- Bytes up to delim (delim consumed, not returned) | nil, err ("too_large" past max bytes).
local function read_until(st, delim, max)
  local from = st.pos
  while true do
    local i = find(st.buf, delim, from, true)
    if i then
      local s = sub(st.buf, st.pos, i - 1)
      st.pos = i + #delim
      return s
    end
    if #st.buf - st.pos + 1 > max then return nil, "too_large" end
    local data, err = fill(st)
    if not data then return nil, err end
    local rest = sub(st.buf, st.pos)
    st.buf, st.pos = rest .. data, 1
    -- Search again from just before the old end, in case delim straddles the two pieces.
    from = #rest - #delim + 2
    if from < 1 then from = 1 end
  end
end

-- Exactly n bytes | nil, err.
local function read_exact(st, n)
  local pos, buf = st.pos, st.buf
  local avail = #buf - pos + 1
  if avail >= n then
    st.pos = pos + n
    return sub(buf, pos, pos + n - 1)
  end
  local parts, k, have = { sub(buf, pos) }, 1, avail
  st.buf, st.pos = "", 1
  while have < n do
    local data, err = fill(st)
    if not data then return nil, err end
    local need = n - have
    k = k + 1
    if #data > need then
      parts[k] = sub(data, 1, need)
      st.buf = sub(data, need + 1)
      have = n
    else
      parts[k] = data
      have = have + #data
    end
  end
  return concat(parts)
end

local function read_chunked(st, max)
  local parts, n, total = {}, 0, 0
  while true do
    local line, err = read_until(st, "\r\n", 4096)
    if not line then return nil, err end
    local size = tonumber(line:match("^%s*(%x+)"), 16)
    if not size then return nil, "bad chunk size line" end
    if size == 0 then
      -- Trailers, up to the empty line that ends the message.
      repeat
        line, err = read_until(st, "\r\n", MAX_HEADER_BYTES)
        if not line then return nil, err end
      until line == ""
      return concat(parts)
    end
    total = total + size
    if total > max then return nil, "too_large" end
    local data
    data, err = read_exact(st, size)
    if not data then return nil, err end
    n = n + 1
    parts[n] = data
    data, err = read_exact(st, 2)
    if not data then return nil, err end
    if data ~= "\r\n" then return nil, "chunk not followed by CRLF" end
  end
end

local function read_to_close(st, max)
  local parts, n = { sub(st.buf, st.pos) }, 1
  local total = #parts[1]
  st.buf, st.pos = "", 1
  while true do
    if total > max then return nil, "too_large" end
    local data, err = fill(st)
    if not data then
      if err == "closed" then return concat(parts) end
      return nil, err
    end
    n = n + 1
    parts[n] = data
    total = total + #data
  end
end

-- Parses a header block: status, headers, http minor version | nil.
local function parse_head(head)
  local minor, status = head:match("^HTTP/1%.([01]) (%d%d%d)")
  if not status then return nil end
  local headers = {}
  for name, value in head:gmatch("\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
    name = lower(name)
    local last = byte(value, -1)
    if last == 32 or last == 9 then value = value:match("^(.-)[ \t]*$") end
    local old = headers[name]
    if old == nil then
      headers[name] = value
    elseif type(old) == "table" then
      old[#old + 1] = value
    else
      headers[name] = { old, value }
    end
  end
  return tonumber(status), headers, minor
end

local function header_has(value, token)
  if type(value) == "table" then value = concat(value, ",") end
  return value ~= nil and lower(value):find(token, 1, true) ~= nil
end

-- A failed read as nil, kind, message; the socket is closed.
local function read_failure(sock, what, err)
  sock:close()
  if err == "timeout" then return nil, "timeout", what .. ": timeout" end
  if err == "too_large" then return nil, "too_large", what .. ": over the size limit" end
  return nil, "protocol", what .. ": " .. tostring(err)
end

-- The body as framed by the headers | nil, err. Sets st.close when the connection cannot be reused.
local function read_body(st, method, status, headers, max)
  if method == "HEAD" or status == 204 or status == 304 or status < 200 then return "" end
  local te, cl = headers["transfer-encoding"], headers["content-length"]
  if te ~= nil and header_has(te, "chunked") then
    return read_chunked(st, max)
  elseif cl ~= nil then
    local len = type(cl) == "string" and cl:match("^%d+$") and tonumber(cl)
    if not len then return nil, "bad Content-Length" end
    if len > max then return nil, "too_large" end
    return read_exact(st, len)
  end
  st.close = true
  return read_to_close(st, max)
end

-- One attempt on one connection. Nothing here sends a request twice, as libcurl never does: a
-- failed attempt is the client's to retry (lua/dws/retry.lua), which counts it.
local function attempt(self, u, method, parts, timeout, connect_timeout)
  -- timeout bounds the whole exchange, as libcurl's does.
  local deadline = ngx.now() + timeout
  local sock = ngx.socket.tcp()
  sock:settimeouts(ms(connect_timeout), ms(timeout), ms(timeout))
  local ok, err = sock:connect(u.host, u.port, u.connect_opts)
  if not ok then
    if err == "timeout" then return nil, "timeout", "connect: timeout" end
    return nil, "connect", "connect: " .. tostring(err)
  end
  local reused = sock:getreusedtimes() > 0
  if not reused then
    self.connects = self.connects + 1
    if u.https then
      -- false: no session object to keep; the pooled connection is what we reuse.
      ok, err = sock:sslhandshake(false, u.server_name, self.verify)
      -- ngx_lua (0.10.23 here) reports a handshake that completed at once but then failed
      -- verification as a success, having closed the socket: make sure it is still open.
      if ok and not sock:getreusedtimes() then
        ok, err = nil, "certificate verification failed"
      end
      if not ok then
        sock:close()
        if err == "timeout" then return nil, "timeout", "TLS handshake: timeout" end
        err = tostring(err)
        if u.ip_literal and err:find("host mismatch", 1, true) then
          -- nginx matches DNS names only (X509_check_host), never IP addresses.
          err = err .. " (pass server_name: nginx verifies DNS names, not IP addresses)"
        end
        return nil, "tls", "TLS handshake: " .. err
      end
    end
  end

  local sent
  sent, err = sock:send(parts)
  if not sent then return read_failure(sock, "sending request", err) end

  local st = { sock = sock, deadline = deadline, buf = "", pos = 1, got = 0 }
  local status, headers, minor
  repeat
    local head
    head, err = read_until(st, "\r\n\r\n", MAX_HEADER_BYTES)
    if not head then
      local r1, r2, r3 = read_failure(sock, "reading response headers", err)
      -- A pooled connection closed with nothing read back: the server may have closed it idle, or
      -- after reading the request (and acted on it), so it is not sent again here.
      if reused and st.got == 0 and r2 == "protocol" then r3 = r3 .. " (reused connection; not resent)" end
      return r1, r2, r3
    end
    status, headers, minor = parse_head(head)
    if not status then
      sock:close()
      return nil, "protocol", "malformed status line"
    end
  -- 1xx interim answers precede the real one (101 would be a protocol switch: not ours).
  until status >= 200 or status == 101

  local body
  body, err = read_body(st, method, status, headers, self.max_response_bytes)
  if not body then return read_failure(sock, "reading response body", err) end

  local keepalive = not st.close and st.pos > #st.buf and
    (minor == "1" and not header_has(headers.connection, "close")
      or minor == "0" and header_has(headers.connection, "keep-alive"))
  if keepalive then
    sock:setkeepalive(self.idle_timeout_ms, self.pool_size)
  else
    sock:close()
  end
  return { status = status, headers = headers, body = body }
end

--- A transport, as `new` makes it.
-- @type Transport

--- Send one request over a pooled connection; never sent twice (a failure is the caller's to retry).
-- syntax: `res, kind, message = transport:request{ method =, url =, headers =, body =, timeout =, connect_timeout = }`
-- @tparam table req `method` ("POST"), `url`, `headers` (name -> value), `body`, `timeout`,
-- `connect_timeout` (seconds)
-- @treturn table `{ status =, headers = { ["lower-name"] = value or {v1, v2} }, body = }`
-- @treturn[2] nil
-- @treturn[2] string kind: `"timeout"`, `"connect"`, `"tls"`, `"too_large"`, `"protocol"` or `"error"`
-- @treturn[2] string message
-- @raise when `body` is not a string
function Transport:request(req)
  local u, err = url_parts(self, req.url)
  if not u then return nil, "error", err end
  local body = req.body
  local method = req.method or (body and "POST" or "GET")
  if body == nil and (method == "POST" or method == "PUT" or method == "PATCH") then body = "" end
  if body ~= nil and type(body) ~= "string" then error("dws.transport.ngx: body must be a string", 2) end
  local parts = request_parts(self, method, u, req.headers, body)
  local timeout = req.timeout or self.timeout
  local connect_timeout = req.connect_timeout or self.connect_timeout
  self.requests = self.requests + 1
  local res, kind, msg = attempt(self, u, method, parts, timeout, connect_timeout)
  if not res then return nil, kind, msg end
  return res
end

--- Wait between retries (`ngx.sleep`, yielding the worker).
-- syntax: `transport:sleep(seconds)`
-- @tparam number seconds
function Transport:sleep(seconds) -- luacheck: ignore 212/self
  if seconds and seconds > 0 then ngx.sleep(seconds) end
end

--- Counters since the transport was made.
-- syntax: `stats = transport:stats()`
-- @treturn table `{ connects = <connections opened>, requests = <n> }`
function Transport:stats()
  return { connects = self.connects, requests = self.requests }
end

-- Pooled connections belong to the worker, not to this object: nothing to release.

--- Nothing to release (pooled connections belong to the worker); for the interface.
-- syntax: `transport:close()`
function Transport:close() -- luacheck: ignore 212/self
end

--- Module functions.
-- @section module

--- The method table of transports (for wrapping them).
-- @table Transport
M.Transport = Transport

return M
