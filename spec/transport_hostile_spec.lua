-- A hostile gateway on the raw downstream socket of a throw-away nginx (ngx.req.socket(true)): it
-- answers by writing bytes of its choosing, over plain TCP and over TLS:
-- an unasked-for response must never be read as the next call's answer, and libcurl must never
-- send a request a second time on its own.
local httpd = require "helpers.httpd"
local curl = require "dws.curl"
local MAX_RESPONSE = require("dws.defaults").options.max_response_bytes
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local dws = require "dws"

-- The raw-socket server: serves the first request nginx parsed, then reads further requests
-- on the same connection itself. Every request it reads is counted under its X-Tag (or `tag`).
local HOSTILE = [[
local M = {}

local function read_request(sock)
  local line = sock:receive("*l")
  if not line then return nil end
  local headers = {}
  while true do
    local l = sock:receive("*l")
    if not l then return nil end
    if l == "" then break end
    local k, v = l:match("^([^:]+):%s*(.-)%s*$")
    if k then headers[k:lower()] = v end
  end
  local n = tonumber(headers["content-length"] or "0") or 0
  if n > 0 and not sock:receive(n) then return nil end
  return headers
end

local function response(body)
  return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
end

-- mode: "desync" (an extra response 0.1 s after the real one), "desync_same" (the extra one in
-- the same write), "close_second" (answer the first request, read the second, close). Each extra
-- response sent is counted under "<tag>:extra", so a spec waits for it rather than for a clock.
function M.serve(mode, tag)
  ngx.req.read_body()
  local h = ngx.req.get_headers()
  local dict = ngx.shared.hostile
  local counter = tag or h["x-tag"] or "-"
  dict:incr(counter, 1, 0)
  local sock = assert(ngx.req.socket(true))
  sock:settimeout(10000)
  local first = response("answer-to-" .. tostring(h["x-seq"]))
  if mode == "desync" then
    sock:send(first)
    ngx.sleep(0.1)
    sock:send(response("extra"))
    dict:incr(counter .. ":extra", 1, 0)
  elseif mode == "desync_same" then
    sock:send(first .. response("extra"))
    dict:incr(counter .. ":extra", 1, 0)
  else
    sock:send(first)
  end
  while true do
    local hh = read_request(sock)
    if not hh then break end
    dict:incr(tag or hh["x-tag"] or "-", 1, 0)
    if mode == "close_second" then break end
    sock:send(response("answer-to-" .. tostring(hh["x-seq"])))
  end
  ngx.exit(444)
end

return M
]]

local LOCATIONS = [[
    location = /desync { content_by_lua_block { require("hostile").serve("desync") } }
    location = /desync_same { content_by_lua_block { require("hostile").serve("desync_same") } }
    location = /close_second { content_by_lua_block { require("hostile").serve("close_second") } }
    location /ams/ { content_by_lua_block { require("hostile").serve("close_second", "ams") } }
    location = /count { content_by_lua_block { ngx.print(ngx.shared.hostile:get(ngx.var.arg_tag) or 0) } }
]]

describe("a hostile gateway on raw sockets (libcurl transport)", function()
  local srv

  setup(function()
    srv = assert(httpd.start{ locations = LOCATIONS, http = "    lua_shared_dict hostile 1m;",
      lua_files = { hostile = HOSTILE } })
  end)

  teardown(function()
    if srv then srv:stop() end
  end)

  local function count(tag)
    local h = curl.new{ max_response_bytes = MAX_RESPONSE }
    local status, _, body = h:request(srv:url("/count?tag=" .. tag), {}, nil, 5, 5)
    h:close()
    assert.equal(200, status)
    return tonumber(body)
  end

  -- Until the server has sent the extra response of call `seq` (on the wire before the next call).
  local function extra_sent(tag, seq)
    local deadline = core.monotonic() + 10
    while count(tag .. ":extra") < seq and core.monotonic() < deadline do core.sleep(0.01) end
    assert.is_true(count(tag .. ":extra") >= seq, "the server sent its extra response " .. seq)
  end

  local function post(h, url, tag, seq)
    return h:request(url, { "X-Tag: " .. tag, "X-Seq: " .. seq }, "body-" .. seq, 5, 5)
  end

  for _, scheme in ipairs{ "http", "https" } do
    local function url(path) return scheme == "http" and srv:url(path) or srv:surl(path) end

    for _, mode in ipairs{ "desync", "desync_same" } do
      it("never reads an unasked-for response as the next answer (" .. mode .. ", " .. scheme .. ")", function()
        local h = curl.new{ ca_file = srv.ca, max_response_bytes = MAX_RESPONSE }
        local tag = mode .. "-" .. scheme
        local answers = {}
        for seq = 1, 3 do
          local status, kind, body = post(h, url("/" .. mode), tag, seq)
          answers[seq] = status and body or kind
          extra_sent(tag, seq)
        end
        h:close()
        assert.same({ "answer-to-1", "answer-to-2", "answer-to-3" }, answers)
      end)
    end

    it("drops the connection the extra response came on and connects afresh (" .. scheme .. ")", function()
      local h = curl.new{ ca_file = srv.ca, max_response_bytes = MAX_RESPONSE }
      assert(post(h, url("/desync"), "stats-" .. scheme, 1))
      extra_sent("stats-" .. scheme, 1)
      assert(post(h, url("/desync"), "stats-" .. scheme, 2))
      local stats = h:stats()
      h:close()
      assert.same({ connects = 2, requests = 2 }, stats)
    end)

    it("does not resend a request whose reused connection closed after it was sent (" .. scheme .. ")", function()
      local h = curl.new{ ca_file = srv.ca, max_response_bytes = MAX_RESPONSE }
      local tag = "close-" .. scheme
      assert(post(h, url("/close_second"), tag, 1))
      local status, kind, message = post(h, url("/close_second"), tag, 2)
      h:close()
      assert.is_nil(status)
      assert.equal("protocol", kind)
      assert.matches("not resent", message, 1, true)
      assert.equal(2, count(tag), "the gateway saw the second request " .. (count(tag) - 1) .. " times")
    end)
  end

  it("reports as many attempts as requests reached the gateway (cacheCard, max_retries = 0)", function()
    local dir = nginx.tmpdir("dws-hostile-keys")
    local priv = nginx.make_keypair(dir, "merchant")
    local _, dws_pub = nginx.make_keypair(dir, "dws")
    local client = dws.client{ client_id = "SANDBOX_HOSTILE", gateway = srv:url(""),
      private_key = nginx.read_file(priv), dws_public_key = nginx.read_file(dws_pub),
      max_retries = 0, timeout = 5, connect_timeout = 5 }
    local request = { paymentMethodDetail = { paymentMethodDetailType = "card", card = {
      cardNo = "4111111111111111", securityCode = "123", expiryYear = "2040", expiryMonth = "12",
      instUserName = { firstName = "Ann", lastName = "Lee" } } } }
    -- The first call's answer is not a DWS answer; it only leaves a kept-alive connection behind.
    local _, first = client:cache_card(request)
    assert.equal("RESPONSE_MALFORMED", first.code)
    local before = count("ams")
    local res, err = client:cache_card(request)
    client:close()
    nginx.rmdir(dir)
    assert.is_nil(res)
    assert.equal("CONNECTION_FAILED", err.code)
    assert.equal(count("ams") - before, err.attempts)
  end)
end)

-- Proxies from the environment are never used (only the proxy option is).
describe("environment proxies (libcurl transport)", function()
  local srv, proxy_port, proxy_log, dir

  setup(function()
    dir = nginx.tmpdir("dws-envproxy")
    proxy_log = dir .. "/proxy.log"
    proxy_port = httpd.closed_port()
    -- A "proxy" that answers anything and logs every request it receives.
    srv = assert(httpd.start{ http = table.concat({
      "    server {",
      "        listen 127.0.0.1:" .. proxy_port .. ";",
      "        access_log " .. proxy_log .. ";",
      "        location / { return 200 \"via proxy\"; }",
      "    }" }, "\n") })
  end)

  teardown(function()
    if srv then srv:stop() end
    nginx.rmdir(dir)
  end)

  -- Runs a child interpreter of this flavour with every proxy variable pointing at the proxy.
  local function child(url, extra)
    local root = os.getenv("DWS_ROOT") or "."
    local flavour = os.getenv("DWS_FLAVOUR") or "5.4"
    local lua = flavour == "jit" and "luajit" or "lua5.4"
    local script = dir .. "/child.lua"
    nginx.write_file(script, [[
      local curl = require "dws.curl"
local MAX_RESPONSE = require("dws.defaults").options.max_response_bytes
      local h = curl.new(]] .. (extra or "") .. [[{ ca_file = arg[2], max_response_bytes = 65536 })
      local status, kind, body = h:request(arg[1], { "Content-Type: application/json" },
        '{"cardNo":"4111111111111111"}', 5, 5)
      io.write(tostring(status), " ", tostring(status and body or kind))
    ]])
    local p = "http://127.0.0.1:" .. proxy_port
    local env = "http_proxy=" .. p .. " HTTP_PROXY=" .. p .. " https_proxy=" .. p .. " HTTPS_PROXY=" .. p
      .. " all_proxy=" .. p .. " ALL_PROXY=" .. p .. " no_proxy= NO_PROXY="
    local cpath = os.getenv("LUA_CPATH") or (root .. "/build/" .. flavour .. "/?.so;;")
    local cmd = env .. " LUA_PATH='" .. root .. "/lua/?.lua;;' LUA_CPATH=" .. nginx.sh_quote(cpath) .. " "
      .. lua .. " " .. script .. " " .. nginx.sh_quote(url) .. " " .. nginx.sh_quote(srv.ca)
    local f = assert(io.popen(cmd .. " 2>&1"))
    local out = f:read("*a")
    f:close()
    return out
  end

  local function proxied()
    return (nginx.read_file(proxy_log) or "") ~= ""
  end

  it("sends plain HTTP straight to the server, never to http_proxy / ALL_PROXY", function()
    local out = child(srv:url("/echo"))
    assert.equal('200 {"cardNo":"4111111111111111"}', out)
    assert.is_false(proxied(), "the environment proxy received a request")
  end)

  it("does not tunnel HTTPS through HTTPS_PROXY from the environment either", function()
    local out = child(srv:surl("/echo"))
    assert.equal('200 {"cardNo":"4111111111111111"}', out)
    assert.is_false(proxied(), "the environment proxy received a request")
  end)
end)
