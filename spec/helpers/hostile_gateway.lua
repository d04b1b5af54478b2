-- A hostile DWS gateway on raw sockets (ngx.req.socket(true) in a throw-away nginx,
-- spec/helpers/httpd.lua), for the specs that hold a client to what it does with a misbehaving
-- answer: spec/run_all_hostile_spec.lua (libcurl, single calls and run_all) and
-- spec/ngx_hostile_spec.lua (the cosocket transport inside nginx).
--
--   local gw = assert(hostile.start{ max_response = 65536, hang = timeouts.HOLD })
--   gw:url(""), gw:surl(""), gw.ca        the gateway over http and https, and its CA
--   gw.keys.merchant / .dws_pub           key files for a client of it (.dws, .foreign: its own)
--   gw:cid(mode)                          a customerId, unique to this run, answered in `mode`
--   gw:control("/plan?api=cacheCard&m=" .. mode)   how cacheCard (which has no id) is answered
--   gw:count(id)                          requests seen for a customerId (or an API name, for
--                                         cacheCard); gw:count(id .. ":extra"): extra answers sent
--   gw:stop()
local httpd = require "helpers.httpd"
local curl = require "dws.curl"
local nginx = require "dws_sandbox.nginx"

local M = {}

-- What the gateway does with a request, by name. The mode of a consult is chosen by the first two
-- digits of its customerId (the index in this list); a cacheCard's by /plan?m= (it has no id).
M.MODES = {
  "good",          -- a signed S answer echoing the customerId; the connection kept
  "extra_same",    -- the good answer and an unasked-for signed S ("extra") in the same write
  "extra_late",    -- the good answer, then the extra one 0.1 s later
  "bad_sig",       -- signed with another key
  "other_body",    -- a signature over another body
  "other_client",  -- client-id another client's, signed as that client
  "unsigned_s",    -- S without signature and response-time
  "replayed",      -- signed, response-time an hour old
  "dup_sig",       -- two signature headers (the good one and another key's)
  "short_cl",      -- Content-Length 100 over the body sent, then close
  "cut_chunked",   -- a chunked body cut inside a chunk, then close
  "garbage",       -- a status line that is not HTTP, then close
  "big_headers",   -- a header block over dws.curl's 64 KiB limit
  "large_cl",      -- Content-Length over max_response_bytes (and that many bytes)
  "large_chunked", -- chunks adding up to over max_response_bytes, then close
  "hang",          -- reads the request, never answers
  "reset",         -- the head and part of the body, then a TCP reset
  "close_reused",  -- good on a fresh connection; on a reused one, reads the request and closes
  "echo_500",      -- 500 with the request body (card data) echoed back
  "echo_f",        -- an unsigned F whose resultMessage echoes the request body
}
local MODES = M.MODES
local MODE_INDEX = {}
for i, m in ipairs(MODES) do MODE_INDEX[m] = i end


local HOSTILE = [==[
local core = require "dws.core"
local conf = require "hostile_conf"
local ffi = require "ffi"

ffi.cdef[[
int getpeername(int fd, void *addr, unsigned int *len);
int setsockopt(int fd, int level, int name, const void *value, unsigned int len);
]]

local M = {}
local keys = {}

local function key(name)
  if not keys[name] then
    local f = assert(io.open(conf[name]))
    keys[name] = assert(core.private_key(f:read("*a")))
    f:close()
  end
  return keys[name]
end

-- The connection's socket (found by the client's port) set to linger 0: closing it sends a RST.
local function arm_reset()
  local port = tonumber(ngx.var.remote_port)
  local sa, len = ffi.new("uint8_t[128]"), ffi.new("unsigned int[1]")
  local linger = ffi.new("int[2]", 1, 0)
  for fd = 3, 4095 do
    len[0] = 128
    -- AF_INET (2, little-endian), then the port in network order
    if ffi.C.getpeername(fd, sa, len) == 0 and sa[0] == 2 and sa[1] == 0 and sa[2] * 256 + sa[3] == port then
      return ffi.C.setsockopt(fd, 1 --[[SOL_SOCKET]], 13 --[[SO_LINGER]], linger, 8) == 0
    end
  end
  return false
end

local function read_request(sock)
  local line = sock:receive("*l")
  if not line then return nil end
  local path = line:match("^%u+ (%S+)")
  local headers = {}
  while true do
    local l = sock:receive("*l")
    if not l then return nil end
    if l == "" then break end
    local k, v = l:match("^([^:]+):%s*(.-)%s*$")
    if k then headers[k:lower()] = v end
  end
  local n = tonumber(headers["content-length"] or "0") or 0
  local body = ""
  if n > 0 then
    body = sock:receive(n)
    if not body then return nil end
  end
  return path, headers["client-id"], body
end

local function response(status_line, headers, body)
  local lines = { status_line, "Content-Type: application/json; charset=UTF-8" }
  for i = 1, #headers do lines[#lines + 1] = headers[i] end
  lines[#lines + 1] = "Content-Length: " .. #body
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. body
end

local function now_ms() return string.format("%d", ngx.now() * 1000) end

-- Signature headers: o.key, o.time, o.client (header and signed), o.body (signed instead of body).
local function signed(path, client_id, body, o)
  o = o or {}
  local time = o.time or now_ms()
  local who = o.client or client_id
  local b64 = assert(core.sign(key(o.key or "dws"), "POST", path, who, time, o.body or body))
  return { "Client-Id: " .. who, "Response-Time: " .. time, "Signature: " .. core.signature_header(b64, "1") }
end

local function s_body(echo)
  return '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"},"paymentOptions":[],'
    .. '"echo":"' .. echo .. '"}'
end

local function good(path, client_id, echo)
  local body = s_body(echo)
  return response("HTTP/1.1 200 OK", signed(path, client_id, body), body)
end

-- One request: -> "keep" (read the next one on this connection) or "done" (close).
local function answer(sock, mode, path, client_id, echo, raw, reused, counter)
  local dict = ngx.shared.hostile
  local body = s_body(echo)
  if mode == "close_reused" then
    if reused then return "done" end
    mode = "good"
  end
  if mode == "good" then
    sock:send(good(path, client_id, echo))
  elseif mode == "extra_same" then
    sock:send(good(path, client_id, echo) .. good(path, client_id, "extra"))
    dict:incr(counter .. ":extra", 1, 0)
  elseif mode == "extra_late" then
    sock:send(good(path, client_id, echo))
    ngx.sleep(0.1)
    sock:send(good(path, client_id, "extra"))
    dict:incr(counter .. ":extra", 1, 0)
  elseif mode == "bad_sig" then
    sock:send(response("HTTP/1.1 200 OK", signed(path, client_id, body, { key = "foreign" }), body))
  elseif mode == "other_body" then
    sock:send(response("HTTP/1.1 200 OK", signed(path, client_id, body, { body = s_body("other") }), body))
  elseif mode == "other_client" then
    sock:send(response("HTTP/1.1 200 OK", signed(path, client_id, body, { client = "SANDBOX_OTHER" }), body))
  elseif mode == "unsigned_s" then
    sock:send(response("HTTP/1.1 200 OK", {}, body))
  elseif mode == "replayed" then
    local old = string.format("%d", ngx.now() * 1000 - 3600 * 1000)
    sock:send(response("HTTP/1.1 200 OK", signed(path, client_id, body, { time = old }), body))
  elseif mode == "dup_sig" then
    local h = signed(path, client_id, body)
    h[#h + 1] = signed(path, client_id, body, { key = "foreign" })[3]
    sock:send(response("HTTP/1.1 200 OK", h, body))
  elseif mode == "short_cl" then
    local r = response("HTTP/1.1 200 OK", signed(path, client_id, body), body)
    sock:send((r:gsub("Content%-Length: %d+", "Content-Length: " .. (#body + 100))))
    return "done"
  elseif mode == "cut_chunked" then
    local h = signed(path, client_id, body)
    sock:send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" .. table.concat(h, "\r\n") .. "\r\n\r\n"
      .. string.format("%x", #body) .. "\r\n" .. body:sub(1, 20))
    return "done"
  elseif mode == "garbage" then
    sock:send("this is not http " .. raw .. "\r\n\r\n")
    return "done"
  elseif mode == "big_headers" then
    local h = signed(path, client_id, body)
    for i = 1, 80 do h[#h + 1] = "X-Big-" .. i .. ": " .. string.rep("h", 1000) end
    sock:send(response("HTTP/1.1 200 OK", h, body))
  elseif mode == "large_cl" then
    local big = string.rep("x", conf.max_response + 1)
    sock:send(response("HTTP/1.1 200 OK", signed(path, client_id, big), big))
  elseif mode == "large_chunked" then
    sock:send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    local piece = string.rep("c", 4096)
    for _ = 1, math.ceil(conf.max_response / 4096) + 2 do
      if not sock:send(string.format("%x\r\n%s\r\n", #piece, piece)) then break end
    end
    sock:send("0\r\n\r\n")
    return "done"
  elseif mode == "hang" then
    ngx.sleep(conf.hang)
    return "done"
  elseif mode == "reset" then
    local r = response("HTTP/1.1 200 OK", signed(path, client_id, body), body)
    sock:send(r:sub(1, #r - 20))
    ngx.sleep(0.05)
    assert(arm_reset(), "no socket to reset")
    return "done"
  elseif mode == "echo_500" then
    sock:send(response("HTTP/1.1 500 " .. raw:gsub("[\r\n]", " "), {}, raw))
  elseif mode == "echo_f" then
    local f = core.json_encode({ result = { resultCode = "PARAM_ILLEGAL", resultStatus = "F", resultMessage = raw } })
    sock:send(response("HTTP/1.1 200 OK", {}, f))
  end
  return "keep"
end

local function mode_of(path, raw)
  local req = core.json_decode(raw)
  local cid = type(req) == "table" and req.customerId
  if type(cid) == "string" then return conf.modes[tonumber(cid:sub(1, 2))] or "good", cid, cid end
  local api = path:match("([^/]+)$")
  return ngx.shared.hostile:get("plan:" .. api) or "good", api, "none"
end

function M.serve()
  ngx.req.read_body()
  local dict = ngx.shared.hostile
  local path, client_id, raw = ngx.var.uri, ngx.req.get_headers()["client-id"], ngx.req.get_body_data() or ""
  local sock = assert(ngx.req.socket(true))
  sock:settimeout(10000)
  local reused = false
  while true do
    local mode, counter, echo = mode_of(path, raw)
    dict:incr(counter, 1, 0)
    if answer(sock, mode, path, client_id, echo, raw, reused, counter) ~= "keep" then break end
    path, client_id, raw = read_request(sock)
    if not path then break end
    reused = true
  end
  ngx.exit(444)
end

return M
]==]

local LOCATIONS = [[
    location /ams/ { content_by_lua_block { require("hostile").serve() } }
    location = /count { content_by_lua_block { ngx.print(ngx.shared.hostile:get(ngx.var.arg_k) or 0) } }
    location = /plan { content_by_lua_block { ngx.shared.hostile:set("plan:" .. ngx.var.arg_api, ngx.var.arg_m) } }
]]

-- Card data for the cacheCard cases: what must never come back in an err, tostring(err) or a log line.
M.CARD = { cardNo = "4111111111111111", securityCode = "737", expiryYear = "2040", expiryMonth = "12",
  instUserName = { firstName = "Ann", lastName = "Lee" } }

-- mode -> { code, attempts } a single call comes to (retryable failures: max_retries = 1)
M.CASES = {
  { "bad_sig", "SIGNATURE_INVALID", 1 },
  { "other_body", "SIGNATURE_INVALID", 1 },
  { "other_client", "SIGNATURE_INVALID", 1 },
  { "unsigned_s", "SIGNATURE_MISSING", 1 },
  { "replayed", "RESPONSE_TIME_INVALID", 1 },
  { "dup_sig", "SIGNATURE_INVALID", 1 },
  { "short_cl", "CONNECTION_FAILED", 2 },
  { "cut_chunked", "CONNECTION_FAILED", 2 },
  { "garbage", "CONNECTION_FAILED", 2 },
  { "big_headers", "RESPONSE_TOO_LARGE", 1 },
  { "large_cl", "RESPONSE_TOO_LARGE", 1 },
  { "large_chunked", "RESPONSE_TOO_LARGE", 1 },
  { "hang", "TIMEOUT", 2 },
  { "reset", "CONNECTION_FAILED", 2 },
}

-- The modes whose answers the leak checks send a cacheCard into.
M.LEAK_MODES = { "echo_500", "echo_f", "garbage", "bad_sig", "short_cl", "reset", "big_headers" }

-- { api, request } of a consult for customerId id.
function M.consult(id)
  return { "consultAddablePaymentMethod", { customerId = id, env = { terminalType = "WEB" }, scenes = { "TOPUP" } } }
end

-- { api, request } of a cacheCard of M.CARD.
function M.cache_card()
  return { "cacheCard", { paymentMethodDetail = { paymentMethodDetailType = "card", card = M.CARD } } }
end

-- Every string in v (tables walked, keys too) that holds the card number or security code, added to found.
function M.leaks(v, found, seen)
  seen = seen or {}
  if type(v) == "string" then
    if v:find(M.CARD.cardNo, 1, true) or v:find("securityCode%W*" .. M.CARD.securityCode) then
      found[#found + 1] = v
    end
  elseif type(v) == "table" and not seen[v] then
    seen[v] = true
    for k, x in pairs(v) do
      M.leaks(k, found, seen)
      M.leaks(x, found, seen)
    end
  end
  return found
end

local Gateway = {}
Gateway.__index = Gateway

function Gateway:url(path) return self.srv:url(path) end
function Gateway:surl(path) return self.srv:surl(path) end

function Gateway:control(path)
  local h = curl.new{ max_response_bytes = self.max_response }
  local status, _, body = h:request(self.srv:url(path), {}, nil, 5, 5)
  h:close()
  assert(status == 200, "hostile gateway " .. path .. ": " .. tostring(status) .. " " .. tostring(body))
  return body
end

function Gateway:count(k) return tonumber(self:control("/count?k=" .. k)) end

function Gateway:cid(mode)
  self.seq = self.seq + 1
  return string.format("%02d%08d", assert(MODE_INDEX[mode], mode), self.seq)
end

function Gateway:stop()
  if self.srv then self.srv:stop() end
  if self.dir then nginx.rmdir(self.dir) end
  self.srv, self.dir = nil, nil
end

-- opts.max_response: the client's max_response_bytes (large_* answer just over it);
-- opts.hang: seconds a "hang" request is held (well over the client's timeout);
-- opts.extra_ports / opts.extra_tls_ports: as httpd.start's (gw.srv.extra_ports...), ports whose
-- connection pools no other test shares.
function M.start(opts)
  local dir = nginx.tmpdir("dws-hostile")
  local keys = {}
  keys.merchant = nginx.make_keypair(dir, "merchant")
  keys.dws, keys.dws_pub = nginx.make_keypair(dir, "dws")
  keys.foreign = nginx.make_keypair(dir, "foreign")
  local quoted = {}
  for i, m in ipairs(MODES) do quoted[i] = string.format("%q", m) end
  local conf = string.format("return { dws = %q, foreign = %q, max_response = %d, hang = %d, modes = { %s } }",
    keys.dws, keys.foreign, opts.max_response, opts.hang, table.concat(quoted, ", "))
  local srv, err = httpd.start{ locations = LOCATIONS, http = "    lua_shared_dict hostile 4m;",
    lua_files = { hostile = HOSTILE, hostile_conf = conf },
    extra_ports = opts.extra_ports, extra_tls_ports = opts.extra_tls_ports }
  if not srv then
    nginx.rmdir(dir)
    return nil, err
  end
  return setmetatable({ srv = srv, dir = dir, keys = keys, ca = srv.ca, seq = 0,
    max_response = opts.max_response }, Gateway)
end

return M
