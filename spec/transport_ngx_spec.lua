-- dws.transport.ngx inside a real nginx: the location /t runs one case through the cosocket
-- transport against the other locations of the same server (spec/helpers/httpd.lua) and answers
-- "key=value" lines, which this spec asserts on. The spec talks to /t over dws.curl.
local httpd = require "helpers.httpd"
local curl = require "dws.curl"
local timeouts = require "helpers.timeouts"

-- Runs inside nginx (LuaJIT). Every case prints key=value lines; values hold no newline.
local CASES = [==[
local transport = require "dws.transport.ngx"

local M = {}

local function out(k, v)
  ngx.say(k, "=", tostring(v))
end

local function result(res, kind, msg)
  if res then
    out("status", res.status)
    out("body_len", #res.body)
  else
    out("kind", kind)
    out("message_is_string", type(msg) == "string")
  end
  return res
end

local BINARY = "caf\195\169 \226\130\172 \0\1\2\255 end"

local cases = {}

function cases.roundtrip(p)
  local t = transport.new{ timeout = 5 }
  local res = result(t:request{ method = "POST", url = p.http .. "/echo", body = BINARY,
    headers = { ["Content-Type"] = "application/json; charset=UTF-8", ["Client-Id"] = "T-1" } })
  out("body_match", res.body == BINARY)
  out("method", res.headers["x-echo-method"])
  out("client_id", res.headers["x-echo-h-client-id"])
  out("content_type", res.headers["x-echo-h-content-type"])
  out("length", res.headers["x-echo-length"])
end

-- nginx checks the certificate against DNS names only (X509_check_host), so an IP-literal URL
-- names the host to verify with server_name, as a merchant would for a pinned address.
function cases.https(p)
  local t = transport.new{ timeout = 5, server_name = "localhost" }
  local res = result(t:request{ method = "POST", url = p.https .. "/echo", body = BINARY })
  if res then out("body_match", res.body == BINARY) end
end

function cases.get(p)
  local t = transport.new()
  local res = result(t:request{ method = "GET", url = p.http .. "/echo" })
  out("method", res.headers["x-echo-method"])
end

function cases.methods(p)
  local t = transport.new()
  local res = result(t:request{ method = "PUT", url = p.http .. "/echo", body = "put" })
  out("put_method", res.headers["x-echo-method"])
  out("put_body", res.body)
  res = t:request{ method = "HEAD", url = p.http .. "/echo" }
  out("head_status", res.status)
  out("head_body_len", #res.body)
  res = t:request{ method = "POST", url = p.http .. "/echo" }
  out("empty_post_length", res.headers["x-echo-length"])
end

function cases.status(p)
  local t = transport.new()
  local res = result(t:request{ method = "GET", url = p.http .. "/status/503" })
  out("body", res.body)
end

function cases.dup(p)
  local t = transport.new()
  local res = result(t:request{ method = "GET", url = p.http .. "/dup" })
  local dup = res.headers["x-dup"]
  out("dup", type(dup) == "table" and table.concat(dup, ",") or dup)
  out("one", res.headers["x-one"])
end

function cases.keepalive(p)
  -- A port no other case uses, so its pool starts empty.
  local t = transport.new()
  local ok = 0
  for i = 1, 10 do
    local res = t:request{ method = "POST", url = p.fresh .. "/echo", body = "n=" .. i }
    if res and res.body == "n=" .. i then ok = ok + 1 end
  end
  out("ok", ok)
  out("connects", t:stats().connects)
  out("requests", t:stats().requests)
end

-- The server closes the pooled connection while it idles; the next request must not fail on it:
-- nginx drops a pooled connection that the server closed (the transport never resends a request
-- that went out; spec/ngx_hostile_spec.lua).
function cases.stale(p)
  local t = transport.new{ user_agent = "lua-dws/test" }
  local res1 = t:request{ method = "GET", url = p.fresh2 .. "/brief" }
  ngx.sleep(1.5)
  local res2, kind, msg = t:request{ method = "GET", url = p.fresh2 .. "/brief" }
  out("first", res1 and res1.body)
  out("second", res2 and res2.body or (tostring(kind) .. " " .. tostring(msg)))
  out("connects", t:stats().connects)
  local res3 = t:request{ method = "GET", url = p.fresh2 .. "/echo" }
  out("ua", res3 and res3.headers["x-echo-h-user-agent"])
end

function cases.keepalive_tls(p)
  local t = transport.new{ server_name = "localhost" }
  local ok = 0
  for i = 1, 10 do
    local res = t:request{ method = "POST", url = p.fresh_tls .. "/echo", body = "n=" .. i }
    if res and res.body == "n=" .. i then ok = ok + 1 end
  end
  out("ok", ok)
  out("connects", t:stats().connects)
end

function cases.timeout(p)
  local t = transport.new()
  result(t:request{ method = "GET", url = p.http .. "/slow?s=" .. p.hold, timeout = p.fire })
end

-- Every byte arrives well within the read timeout; only a deadline for the whole call stops it.
function cases.drip(p)
  local t = transport.new()
  local _, kind = t:request{ method = "GET", url = p.http .. "/drip", timeout = p.fire }
  out("body_kind", kind)
  _, kind = t:request{ method = "GET", url = p.http .. "/drip?from=head", timeout = p.fire }
  out("head_kind", kind)
end

function cases.too_large(p)
  local t = transport.new{ max_response_bytes = 1000 }
  result(t:request{ method = "GET", url = p.http .. "/huge?n=5000" })
  local tiny = transport.new{ max_response_bytes = 20 }
  local _, kind = tiny:request{ method = "GET", url = p.http .. "/chunked" }
  out("chunked_kind", kind)
end

function cases.chunked(p)
  local t = transport.new()
  local res = result(t:request{ method = "GET", url = p.http .. "/chunked" })
  out("body", res.body)
end

function cases.eof(p)
  local t = transport.new()
  local res = result(t:request{ method = "GET", url = p.http .. "/eof" })
  out("body", res.body)
end

function cases.bigheaders(p)
  local t = transport.new()
  local res = result(t:request{ method = "GET", url = p.http .. "/bigheaders?n=40" })
  out("big40", res.headers["x-big-40"] == string.rep("h", 1000))
  local _, kind = t:request{ method = "GET", url = p.http .. "/bigheaders?n=100" }
  out("oversized", kind)
end

function cases.protocol(p)
  local t = transport.new()
  for _, path in ipairs{ "short", "nothing", "garbage" } do
    local _, kind = t:request{ method = "POST", url = p.http .. "/" .. path, body = "x" }
    out(path, kind)
  end
end

function cases.connect(p)
  local t = transport.new{ connect_timeout = 2 }
  result(t:request{ method = "GET", url = "http://127.0.0.1:" .. p.closed .. "/" })
end

function cases.wrong_host(p)
  local t = transport.new{ server_name = "localhost" }
  result(t:request{ method = "GET", url = p.wrong .. "/" })
end

-- Run in an nginx that trusts no CA, against the server of another nginx.
function cases.untrusted(p)
  local kinds = {}
  for i = 1, 3 do
    local t = transport.new{ server_name = "localhost" }
    local _, kind, msg = t:request{ method = "POST", url = p.https .. "/echo", body = "x" }
    kinds[i] = kind
    if i == 1 then out("message", msg) end
  end
  out("kinds", table.concat(kinds, ","))
end

function cases.ip_literal(p)
  local t = transport.new()
  result(t:request{ method = "GET", url = p.https .. "/echo" })
end

function cases.no_verify(p)
  local t = transport.new{ verify = false }
  local res = result(t:request{ method = "GET", url = p.wrong .. "/" })
  if res then out("body", res.body) end
end

function cases.bad_url()
  local t = transport.new()
  result(t:request{ method = "GET", url = "ftp://127.0.0.1/" })
end

-- The same round trip from an ngx.timer callback; the handler waits for its outcome.
function cases.timer(p)
  local done
  local ok, err = ngx.timer.at(0, function(premature)
    if premature then return end
    local t = transport.new{ timeout = 5, server_name = "localhost" }
    local res, kind = t:request{ method = "POST", url = p.https .. "/echo", body = BINARY }
    done = { status = res and res.status, kind = kind, match = res and res.body == BINARY }
    t:sleep(0.01)
    done.slept = true
  end)
  out("scheduled", ok and true or err)
  for _ = 1, 500 do
    if done and done.slept then break end
    ngx.sleep(0.01)
  end
  done = done or {}
  out("status", done.status)
  out("kind", done.kind)
  out("body_match", done.match)
end

function M.run()
  local a = ngx.req.get_uri_args()
  local p = {
    http = "http://127.0.0.1:" .. a.http,
    https = "https://127.0.0.1:" .. a.https,
    wrong = "https://127.0.0.1:" .. a.wrong,
    fresh = "http://127.0.0.1:" .. a.fresh,
    fresh2 = "http://127.0.0.1:" .. a.fresh2,
    fresh_tls = "https://127.0.0.1:" .. a.fresh_tls,
    closed = a.closed,
    fire = tonumber(a.fire), hold = tonumber(a.hold), -- spec/helpers/timeouts.lua's
  }
  cases[a.case](p)
end

return M
]==]

describe("dws.transport.ngx outside nginx", function()
  it("loads, and refuses to make a transport without cosockets", function()
    local transport = require "dws.transport.ngx"
    assert.has_error(function() transport.new() end, "dws.transport.ngx: needs OpenResty (ngx.socket.tcp)")
  end)
end)

describe("dws.transport.ngx inside nginx #nginx", function()
  local srv, h, closed

  setup(function()
    srv = assert(httpd.start{
      extra_ports = 2,
      extra_tls_ports = 1,
      lua_files = { ngxcases = CASES },
      locations = "location = /t { content_by_lua_block { require('ngxcases').run() } }",
    })
    h = curl.new{ max_response_bytes = require("dws.defaults").options.max_response_bytes }
    closed = httpd.closed_port()
  end)

  teardown(function()
    if h then h:close() end
    if srv then srv:stop() end
  end)

  -- Runs a case in nginx; returns its key=value lines as a table.
  local function case(name)
    local url = srv:url(string.format(
      "/t?case=%s&http=%d&https=%d&wrong=%d&fresh=%d&fresh2=%d&fresh_tls=%d&closed=%d&fire=%s&hold=%s",
      name, srv.http_port, srv.https_port, srv.wrong_port, srv.extra_ports[1], srv.extra_ports[2],
      srv.extra_tls_ports[1], closed, timeouts.FIRE, timeouts.HOLD))
    local status, _, body = h:request(url, {}, nil, 30, 5)
    assert(status == 200, "case " .. name .. ": " .. tostring(status) .. " " .. tostring(body) ..
      "\n" .. srv:error_log():sub(-2000))
    local t = {}
    for k, v in body:gmatch("([%w_]+)=([^\n]*)") do t[k] = v end
    return t
  end

  it("round-trips headers and a binary, UTF-8 body over HTTP", function()
    local r = case("roundtrip")
    assert.equal("200", r.status)
    assert.equal("true", r.body_match)
    assert.equal("POST", r.method)
    assert.equal("T-1", r.client_id)
    assert.equal("application/json; charset=UTF-8", r.content_type)
    assert.equal("18", r.length)
  end)

  it("sends GET without a body", function()
    assert.equal("GET", case("get").method)
  end)

  it("verifies HTTPS against lua_ssl_trusted_certificate", function()
    local r = case("https")
    assert.equal("200", r.status)
    assert.equal("true", r.body_match)
  end)

  it("sends other methods when asked", function()
    local r = case("methods")
    assert.equal("PUT", r.put_method)
    assert.equal("put", r.put_body)
    assert.equal("200", r.head_status)
    assert.equal("0", r.head_body_len)
    assert.equal("0", r.empty_post_length)
  end)

  it("returns non-200 statuses as responses", function()
    local r = case("status")
    assert.equal("503", r.status)
    assert.equal("status 503", r.body)
  end)

  it("lower-cases header names and turns repeated headers into arrays", function()
    local r = case("dup")
    assert.equal("a,b", r.dup)
    assert.equal("1", r.one)
  end)

  it("keeps one connection alive over 10 requests", function()
    local r = case("keepalive")
    assert.equal("10", r.ok)
    assert.equal("1", r.connects)
    assert.equal("10", r.requests)
  end)

  it("keeps one verified TLS connection alive over 10 requests", function()
    local r = case("keepalive_tls")
    assert.equal("10", r.ok)
    assert.equal("1", r.connects)
  end)

  it("opens a new connection when the server closed the pooled one", function()
    local r = case("stale")
    assert.equal("brief", r.first)
    assert.equal("brief", r.second)
    assert.equal("2", r.connects)
    assert.equal("lua-dws/test", r.ua)
  end)

  it("answers 'timeout' when the server is slower than the timeout", function()
    assert.equal("timeout", case("timeout").kind)
  end)

  it("answers 'timeout' when a dripping answer outlasts the timeout", function()
    local r = case("drip")
    assert.equal("timeout", r.body_kind)
    assert.equal("timeout", r.head_kind)
  end)

  it("answers 'too_large' over max_response_bytes, by Content-Length or chunked", function()
    local r = case("too_large")
    assert.equal("too_large", r.kind)
    assert.equal("too_large", r.chunked_kind)
  end)

  it("reads a chunked body", function()
    local r = case("chunked")
    assert.equal("200", r.status)
    assert.equal("chunk-1;chunk-2;chunk-3;chunk-4;chunk-5;", r.body)
  end)

  it("reads a body delimited by the end of the connection", function()
    local r = case("eof")
    assert.equal("200", r.status)
    assert.equal("body until close", r.body)
  end)

  it("reads a header block of several pieces, and refuses one over 64 KiB", function()
    local r = case("bigheaders")
    assert.equal("true", r.big40)
    assert.equal("too_large", r.oversized)
  end)

  it("answers 'protocol' for a short body, no answer, or a non-HTTP answer", function()
    local r = case("protocol")
    assert.equal("protocol", r.short)
    assert.equal("protocol", r.nothing)
    assert.equal("protocol", r.garbage)
  end)

  it("answers 'connect' for a closed port", function()
    local r = case("connect")
    assert.equal("connect", r.kind)
    assert.equal("true", r.message_is_string)
  end)

  it("fails TLS for a certificate issued to another host", function()
    assert.equal("tls", case("wrong_host").kind)
  end)

  it("fails TLS, every time, in an nginx that trusts no CA", function()
    -- A client nginx of its own: ngx_lua can report a failed verification as a successful
    -- handshake when the handshake completes at once, which needs a server in another process.
    local client = assert(httpd.start{
      trust = false,
      lua_files = { ngxcases = CASES },
      locations = "location = /t { content_by_lua_block { require('ngxcases').run() } }",
    })
    local ok, r = pcall(function()
      local status, _, body = h:request(client:url(string.format(
        "/t?case=untrusted&http=%d&https=%d&wrong=%d&fresh=0&fresh2=0&fresh_tls=0&closed=0",
        srv.http_port, srv.https_port, srv.wrong_port)), {}, nil, 30, 5)
      assert(status == 200, tostring(body))
      local t = {}
      for k, v in body:gmatch("([%w_]+)=([^\n]*)") do t[k] = v end
      return t
    end)
    client:stop()
    assert(ok, r)
    assert.equal("tls,tls,tls", r.kinds, r.message)
  end)

  it("fails TLS for an IP-literal host without server_name (nginx matches DNS names only)", function()
    assert.equal("tls", case("ip_literal").kind)
  end)

  it("accepts that certificate only with verify = false", function()
    local r = case("no_verify")
    assert.equal("200", r.status)
    assert.equal("wrong", r.body)
  end)

  it("answers 'error' for a URL it cannot use", function()
    assert.equal("error", case("bad_url").kind)
  end)

  it("works from an ngx.timer callback", function()
    local r = case("timer")
    assert.equal("true", r.scheduled)
    assert.equal("200", r.status)
    assert.equal("true", r.body_match)
  end)
end)
