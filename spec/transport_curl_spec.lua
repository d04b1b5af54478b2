-- dws.curl and dws.transport.curl against a real nginx on loopback (spec/helpers/httpd.lua).
local httpd = require "helpers.httpd"
local curl = require "dws.curl"
local transport = require "dws.transport.curl"
local timeouts = require "helpers.timeouts"
-- dws.curl keeps no defaults of its own: every handle is given its response limit.
local OPTS = { max_response_bytes = require("dws.defaults").options.max_response_bytes }

describe("dws.curl", function()
  it("reports the libcurl version", function()
    assert.matches("^%d+%.%d+%.%d+", curl.version())
  end)

  it("raises on wrong option types", function()
    assert.has_error(function() curl.new{ ca_file = 1, max_response_bytes = 1 } end)
    assert.has_error(function() curl.new{ verify = "no", max_response_bytes = 1 } end)
    assert.has_error(function() curl.new{ max_response_bytes = "big" } end)
    assert.has_error(function() curl.new{ max_response_bytes = 0 } end)
    assert.has_error(function() curl.new("x") end)
  end)

  it("has no response limit of its own: max_response_bytes is required", function()
    assert.has_error(function() curl.new{} end, "dws.curl.new: option 'max_response_bytes' is required (a number)")
  end)

  it("raises on wrong request arguments, and rejects header injection", function()
    local h = curl.new(OPTS)
    assert.has_error(function() h:request(nil) end)
    assert.has_error(function() h:request("http://127.0.0.1/", { 1 }) end)
    assert.has_error(function() h:request("http://127.0.0.1/", { "A: b\r\nX-Injected: 1" }) end)
    assert.has_error(function() h:request("http://127.0.0.1/", {}, nil, -1) end)
    h:close()
  end)

  it("closes idempotently, and refuses requests once closed", function()
    local h = curl.new(OPTS)
    h:close()
    h:close()
    assert.equal("dws.curl (closed)", tostring(h))
    assert.has_error(function() h:request("http://127.0.0.1/") end, "dws.curl: handle is closed")
  end)

  it("closes through __close and __gc as well", function()
    local h, g = curl.new(OPTS), curl.new(OPTS)
    local mt = getmetatable(h)
    mt.__gc(g)
    assert.equal("dws.curl (closed)", tostring(g))
    if _VERSION == "Lua 5.4" and not rawget(_G, "jit") then
      -- The to-be-closed syntax only parses on 5.4; load keeps this file valid for LuaJIT.
      local f = assert(load("local curl, opts = ...; local h <close> = curl.new(opts); return h"))
      assert.equal("dws.curl (closed)", tostring(f(curl, OPTS)))
    end
    mt.__close(h)
    assert.equal("dws.curl (closed)", tostring(h))
  end)

  it("answers 'connect' for a closed port", function()
    local h = curl.new(OPTS)
    local ok, kind, msg = h:request("http://127.0.0.1:" .. httpd.closed_port() .. "/", {}, "secret-body", 5, 5)
    assert.is_nil(ok)
    assert.equal("connect", kind)
    assert.is_string(msg)
    assert.is_nil(msg:find("secret-body", 1, true))
    h:close()
  end)

  it("answers 'error' for a scheme other than http and https", function()
    local h = curl.new(OPTS)
    local ok, kind = h:request("file:///etc/passwd", {}, nil, 5, 5)
    assert.is_nil(ok)
    assert.equal("error", kind)
    h:close()
  end)
end)

describe("transports over a live nginx", function()
  local srv

  setup(function()
    srv = assert(httpd.start())
  end)

  teardown(function()
    if srv then srv:stop() end
  end)

  describe("dws.transport.curl", function()
    local t

    before_each(function()
      t = transport.new{ ca_file = srv.ca, timeout = 10, connect_timeout = 5 }
    end)

    after_each(function()
      t:close()
    end)

    it("round-trips headers and a binary, UTF-8 body", function()
      local body = "caf\195\169 \226\130\172 \0\1\2\255 end"
      local res = assert(t:request{
        method = "POST",
        url = srv:url("/echo"),
        headers = { ["Content-Type"] = "application/json; charset=UTF-8", ["Client-Id"] = "T-1" },
        body = body,
      })
      assert.equal(200, res.status)
      assert.equal(body, res.body)
      assert.equal("POST", res.headers["x-echo-method"])
      assert.equal(tostring(#body), res.headers["x-echo-length"])
      assert.equal("T-1", res.headers["x-echo-h-client-id"])
      assert.equal("application/json; charset=UTF-8", res.headers["x-echo-h-content-type"])
      -- No "Expect: 100-continue" goes out.
      assert.is_nil(res.headers["x-echo-h-expect"])
    end)

    it("sends a body larger than libcurl's upload and receive buffers whole, HTTP and HTTPS", function()
      -- dws.curl gives libcurl a 16 KiB upload buffer and a 4 KiB receive buffer (csrc/curl.c):
      -- a 100 KiB body goes out in several reads and comes back in several writes.
      local body = string.rep("0123456789abcdef", 6400)
      for _, url in ipairs{ srv:url("/echo"), srv:surl("/echo") } do
        local res = assert(t:request{ method = "POST", url = url, body = body })
        assert.equal(body, res.body)
      end
    end)

    it("sends the configured User-Agent", function()
      local named = transport.new{ user_agent = "lua-dws/test" }
      local res = assert(named:request{ method = "GET", url = srv:url("/echo") })
      assert.equal("lua-dws/test", res.headers["x-echo-h-user-agent"])
      named:close()
    end)

    it("goes through the configured proxy", function()
      -- nginx serves absolute-URI requests itself, so it can stand in for an HTTP proxy: the
      -- host below does not resolve, and the request only arrives because it went to the proxy.
      local proxied = transport.new{ proxy = srv:url("/") }
      local res = assert(proxied:request{ method = "POST", url = "http://dws-gateway.invalid:8080/echo", body = "p" })
      assert.equal("p", res.body)
      assert.equal("dws-gateway.invalid:8080", res.headers["x-echo-h-host"])
      proxied:close()
    end)

    it("sends GET without a body", function()
      local res = assert(t:request{ method = "GET", url = srv:url("/echo") })
      assert.equal("GET", res.headers["x-echo-method"])
      assert.equal("", res.body)
    end)

    it("sends other methods when asked", function()
      local res = assert(t:request{ method = "PUT", url = srv:url("/echo"), body = "put" })
      assert.equal("PUT", res.headers["x-echo-method"])
      assert.equal("put", res.body)
      res = assert(t:request{ method = "HEAD", url = srv:url("/echo") })
      assert.equal(200, res.status)
      assert.equal("", res.body)
      res = assert(t:request{ method = "POST", url = srv:url("/echo") })
      assert.equal("POST", res.headers["x-echo-method"])
      assert.equal("0", res.headers["x-echo-length"])
    end)

    it("returns non-200 statuses as responses", function()
      local res = assert(t:request{ method = "GET", url = srv:url("/status/503") })
      assert.equal(503, res.status)
      assert.equal("status 503", res.body)
    end)

    it("lower-cases header names and turns repeated headers into arrays", function()
      local res = assert(t:request{ method = "GET", url = srv:url("/dup") })
      assert.same({ "a", "b" }, res.headers["x-dup"])
      assert.equal("1", res.headers["x-one"])
      assert.is_nil(res.headers["X-One"])
    end)

    it("opens exactly one connection for 20 sequential requests", function()
      for i = 1, 20 do
        local res = assert(t:request{ method = "POST", url = srv:url("/echo"), body = "n=" .. i })
        assert.equal("n=" .. i, res.body)
      end
      assert.same({ connects = 1, requests = 20 }, t:stats())
    end)

    it("reads a chunked body", function()
      local res = assert(t:request{ method = "GET", url = srv:url("/chunked") })
      assert.equal("chunk-1;chunk-2;chunk-3;chunk-4;chunk-5;", res.body)
    end)

    it("answers 'timeout' when the server is slower than the timeout", function()
      local res, kind = t:request{ method = "GET", url = srv:url("/slow?s=" .. timeouts.HOLD), timeout = timeouts.FIRE }
      assert.is_nil(res)
      assert.equal("timeout", kind)
    end)

    it("answers 'timeout' when a dripping answer outlasts the timeout", function()
      for _, path in ipairs{ "/drip", "/drip?from=head" } do
        local res, kind = t:request{ method = "GET", url = srv:url(path), timeout = timeouts.FIRE }
        assert.is_nil(res, path)
        assert.equal("timeout", kind, path)
      end
    end)

    it("answers 'too_large' over max_response_bytes, announced or not", function()
      local small = transport.new{ max_response_bytes = 1000 }
      local res, kind = small:request{ method = "GET", url = srv:url("/huge?n=5000") }
      assert.is_nil(res)
      assert.equal("too_large", kind)
      res = assert(small:request{ method = "GET", url = srv:url("/chunked") })
      assert.equal(200, res.status)
      local tiny = transport.new{ max_response_bytes = 20 }
      res, kind = tiny:request{ method = "GET", url = srv:url("/chunked") }
      assert.is_nil(res)
      assert.equal("too_large", kind)
      -- The handle stays usable after an aborted transfer.
      res = assert(small:request{ method = "GET", url = srv:url("/status/200") })
      assert.equal(200, res.status)
      small:close()
      tiny:close()
    end)

    it("reads a body delimited by the end of the connection", function()
      local res = assert(t:request{ method = "GET", url = srv:url("/eof") })
      assert.equal("body until close", res.body)
    end)

    it("reads a large header block, and refuses an oversized one", function()
      local res = assert(t:request{ method = "GET", url = srv:url("/bigheaders?n=40") })
      assert.equal(string.rep("h", 1000), res.headers["x-big-40"])
      local _, kind = t:request{ method = "GET", url = srv:url("/bigheaders?n=100") }
      assert.equal("too_large", kind)
    end)

    it("reads a body of several MiB within a larger limit", function()
      local big = transport.new{ max_response_bytes = 4 * 1048576 }
      local res = assert(big:request{ method = "GET", url = srv:url("/huge?n=3000000") })
      assert.equal(3000000, #res.body)
      assert.equal(string.rep("x", 3000000), res.body)
      big:close()
    end)

    it("answers 'protocol' for a short body, no answer, or a non-HTTP answer", function()
      for _, path in ipairs{ "/short", "/nothing", "/garbage" } do
        local res, kind = t:request{ method = "POST", url = srv:url(path), body = "x" }
        assert.is_nil(res)
        assert.equal("protocol", kind, path)
      end
    end)

    it("talks HTTPS when given the CA", function()
      local res = assert(t:request{ method = "POST", url = srv:surl("/echo"), body = "over tls" })
      assert.equal("over tls", res.body)
    end)

    it("fails TLS without the CA", function()
      local bare = transport.new()
      local res, kind = bare:request{ method = "GET", url = srv:surl("/echo") }
      assert.is_nil(res)
      assert.equal("tls", kind)
      bare:close()
    end)

    it("fails TLS for a certificate issued to another host", function()
      local res, kind = t:request{ method = "GET", url = srv:wrong_url("/") }
      assert.is_nil(res)
      assert.equal("tls", kind)
    end)

    it("accepts any certificate only with verify = false", function()
      local loose = transport.new{ verify = false }
      local res = assert(loose:request{ method = "GET", url = srv:wrong_url("/") })
      assert.equal("wrong", res.body)
      loose:close()
    end)

    it("sleeps", function()
      assert.has_no.errors(function()
        t:sleep(0.01)
        t:sleep(0)
      end)
    end)

    it("keeps one connection (a client talks to one gateway): switching servers reconnects", function()
      assert(t:request{ method = "GET", url = srv:url("/echo") })
      assert(t:request{ method = "GET", url = srv:url("/echo") })
      assert(t:request{ method = "GET", url = srv:surl("/echo") })
      assert(t:request{ method = "GET", url = srv:url("/echo") })
      assert.same({ connects = 3, requests = 4 }, t:stats())
    end)
  end)
end)

describe("dws.curl with a dws.buffer body", function()
  local core = require "dws.core"
  local srv

  setup(function() srv = assert(httpd.start()) end)
  teardown(function() if srv then srv:stop() end end)

  it("sends the buffer's bytes as the body, in place", function()
    local b = core.json_encode_buffer({ cardNo = "4111111111111111" }, true)
    local h = curl.new(OPTS)
    local status, headers, body = h:request(srv:url("/echo"), {}, b, 5, 5)
    h:close()
    assert.equal(200, status)
    assert.equal("POST", headers["x-echo-method"])
    assert.equal('{"cardNo":"4111111111111111"}', body)
  end)

  it("raises for any other userdata as a body", function()
    local h = curl.new(OPTS)
    assert.has_error(function() h:request(srv:url("/echo"), {}, h, 5, 5) end)
    h:close()
  end)
end)
