-- TLS and plain-HTTP policy (issue "Hardening" §5): certificates are verified by default, a
-- certificate for another host or from an unknown CA fails with TLS_ERROR and is not retried (no
-- request reaches the gateway), TLS below 1.2 is refused, and plain http is refused at client
-- creation for anything but loopback unless allow_insecure_http = true.
local dws = require "dws"
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local sandbox = require "helpers.sandbox"

local CLIENT_ID = "SANDBOX_TLS0000000001"
local CUSTOMER = "2162878776333"
local ENV = { terminalType = "WEB" }
local TIMEOUT, CONNECT_TIMEOUT, MAX_RETRIES, BASE_DELAY = 1, 1, 2, 0.01
-- A TLS failure is not retried: one attempt, within its timeout, plus slack.
local ONE_ATTEMPT_BOUND = TIMEOUT + CONNECT_TIMEOUT + 5

local dir, sb, merchant_key
local front -- a second nginx: TLS on 127.0.0.1 in front of the sandbox's plain-HTTP port
local front_prefix

local function make_client(over)
  local opts = {
    client_id = CLIENT_ID,
    private_key = merchant_key,
    dws_public_key = sb.dws_public_key,
    gateway = sb.https_url,
    timeout = TIMEOUT,
    connect_timeout = CONNECT_TIMEOUT,
    max_retries = MAX_RETRIES,
    retry_base_delay = BASE_DELAY,
  }
  for k, v in pairs(over or {}) do opts[k] = v end
  return dws.client(opts)
end

local function consult(client)
  local t0 = core.monotonic()
  local res, err = client:consult_addable_payment_method{ customerId = CUSTOMER, env = ENV, scenes = { "TOPUP" } }
  return res, err, core.monotonic() - t0
end

local function count_requests()
  return #sb:requests()
end

local function assert_tls_failure(res, err, elapsed, before)
  assert.is_nil(res)
  assert.is_table(err)
  assert.are.equal("TLS_ERROR", err.code)
  assert.are.equal("U", err.status)
  assert.is_false(err.retryable)
  assert.are.equal(1, err.attempts, "a TLS failure is not retried")
  assert.is_nil(err.response)
  assert.is_nil(err.http_status)
  assert.matches("TLS_ERROR", tostring(err), 1, true)
  assert.is_true(elapsed < ONE_ATTEMPT_BOUND, string.format("took %.2f s", elapsed))
  assert.are.equal(before, count_requests(), "no request may reach the gateway over an unverified channel")
end

-- The front nginx: one TLS port per certificate, all proxying to the sandbox's HTTP port.
local function start_front()
  front_prefix = nginx.tmpdir("dws-tls-front")
  local certs = front_prefix .. "/certs"
  local right = nginx.make_certs(certs, "DNS:localhost,IP:127.0.0.1", "right")
  local wrong = nginx.make_certs(certs, "DNS:wrong.example", "wrong")
  local upstream = assert(sb.http_url:match("^http://([^/]+)"), "sandbox http_url")
  local tmp = front_prefix .. "/tmp"
  local function server(port, cert, extra, location_extra)
    return table.concat({
      "    server {",
      "        listen 127.0.0.1:" .. port .. " ssl;",
      "        ssl_certificate " .. cert.cert .. ";",
      "        ssl_certificate_key " .. cert.key .. ";",
      extra or "        ssl_protocols TLSv1.2 TLSv1.3;",
      "        location / {",
      location_extra or "",
      "            proxy_http_version 1.1;",
      "            proxy_set_header Connection \"\";",
      "            proxy_pass http://" .. upstream .. ";",
      "        }",
      "    }",
    }, "\n")
  end
  local function conf_for(ports)
    return nginx.preamble(front_prefix) .. table.concat({
      "events { worker_connections 64; }",
      "http {",
      "    access_log off;",
      "    client_body_temp_path " .. tmp .. "/body;",
      "    proxy_temp_path " .. tmp .. "/proxy;",
      "    fastcgi_temp_path " .. tmp .. "/fastcgi;",
      "    uwsgi_temp_path " .. tmp .. "/uwsgi;",
      "    scgi_temp_path " .. tmp .. "/scgi;",
      "    client_body_buffer_size 1m;",
      server(ports[1], right),
      server(ports[2], wrong),
      -- TLS 1.1 only, with the legacy ciphers it needs: a server the client must refuse.
      server(ports[3], right, "        ssl_protocols TLSv1.1;\n        ssl_ciphers DEFAULT:@SECLEVEL=0;"),
      -- a proxy that adds a second response-time, or a second client-id, to the signed answer
      server(ports[4], right, nil, '            add_header Response-Time "2001-01-01T00:00:00+00:00" always;'),
      server(ports[5], right, nil, '            add_header Client-Id "SANDBOX_SOMEONE_ELSE" always;'),
      "}",
    }, "\n") .. "\n"
  end
  local ports = assert(nginx.start_on_free_ports(front_prefix, 5, conf_for))
  return { ca = right.ca, right_port = ports[1], wrong_port = ports[2], tls11_port = ports[3],
           dup_time_port = ports[4], dup_client_port = ports[5] }
end

setup(function()
  dir = nginx.tmpdir("dws-tls")
  local priv = nginx.make_keypair(dir, "merchant")
  merchant_key = assert(core.private_key(nginx.read_file(priv))) -- parsed once for every client here
  sb = assert(sandbox.start{
    clients = { [CLIENT_ID] = { public_key = nginx.read_file(dir .. "/merchant_public.pem") } },
  })
  front = start_front()
end)

teardown(function()
  if front_prefix then
    nginx.stop(front_prefix)
    nginx.rmdir(front_prefix)
  end
  if sb then sb:stop() end
  nginx.rmdir(dir)
end)

describe("TLS", function()
  it("the sandbox's self-signed certificate fails without ca_file: TLS_ERROR, not retried", function()
    local before = count_requests()
    local res, err, elapsed = consult(make_client())
    assert_tls_failure(res, err, elapsed, before)
  end)

  it("the same certificate passes with ca_file = the sandbox's CA", function()
    local before = count_requests()
    local res, err = consult(make_client{ ca_file = sb.ca_file })
    assert.is_nil(err, tostring(err))
    assert.are.equal("S", res.result.resultStatus)
    assert.are.equal(before + 1, count_requests())
  end)

  it("a card is never sent over a channel that failed verification", function()
    local before = count_requests()
    local t0 = core.monotonic()
    local res, err = make_client():cache_card{ paymentMethodDetail = { paymentMethodDetailType = "card",
      card = { cardNo = "4111111111111111", securityCode = "737", expiryMonth = "06",
               expiryYear = tostring(tonumber(os.date("!%Y")) + 2) } } }
    assert_tls_failure(res, err, core.monotonic() - t0, before)
    assert.is_nil(tostring(err):find("4111111111111111", 1, true))
  end)

  it("a CA that did not issue the server's certificate fails (ca_file replaces, never widens)", function()
    local before = count_requests()
    local res, err, elapsed = consult(make_client{ ca_file = front.ca })
    assert_tls_failure(res, err, elapsed, before)
  end)

  it("an unreadable ca_file (missing, not a certificate) fails: TLS_ERROR, not retried", function()
    for _, ca in ipairs{ dir .. "/no-such-ca.pem", dir .. "/merchant_public.pem" } do
      local before = count_requests()
      local res, err, elapsed = consult(make_client{ ca_file = ca })
      assert_tls_failure(res, err, elapsed, before)
    end
  end)

  it("control: the front server's right-name certificate passes with its CA", function()
    local before = count_requests()
    local res, err = consult(make_client{ gateway = "https://127.0.0.1:" .. front.right_port, ca_file = front.ca })
    assert.is_nil(err, tostring(err))
    assert.are.equal("S", res.result.resultStatus)
    assert.are.equal(before + 1, count_requests())
    local res2, err2 = consult(make_client{ gateway = "https://localhost:" .. front.right_port, ca_file = front.ca })
    assert.is_nil(err2, tostring(err2))
    assert.are.equal("S", res2.result.resultStatus)
  end)

  it("a certificate for the wrong host (wrong.example, same trusted CA) fails: TLS_ERROR, not retried", function()
    local before = count_requests()
    local res, err, elapsed = consult(make_client{ gateway = "https://127.0.0.1:" .. front.wrong_port,
                                                   ca_file = front.ca })
    assert_tls_failure(res, err, elapsed, before)
    res, err, elapsed = consult(make_client{ gateway = "https://localhost:" .. front.wrong_port, ca_file = front.ca })
    assert_tls_failure(res, err, elapsed, before)
  end)

  it("a server that speaks only TLS 1.1 is refused", function()
    -- control: the server does complete a TLS 1.1 handshake with a client that allows it
    local ok = nginx.run("curl -s -k --tlsv1.1 --tls-max 1.1 --ciphers 'DEFAULT:@SECLEVEL=0' -o /dev/null " ..
      "--max-time 5 https://127.0.0.1:" .. front.tls11_port .. "/__sandbox/requests")
    assert.is_true(ok, "control: the TLS 1.1 server did not answer a TLS 1.1 client")
    local before = count_requests()
    local res, err, elapsed = consult(make_client{ gateway = "https://127.0.0.1:" .. front.tls11_port,
                                                   ca_file = front.ca })
    assert_tls_failure(res, err, elapsed, before)
  end)
end)

describe("headers added by a proxy in front of the gateway", function()
  -- The answer's own headers verify; a second copy of response-time or client-id makes it unknowable
  -- which one was signed over: SIGNATURE_INVALID, no data, not retried.
  for _, case in ipairs{ { "a second response-time", "dup_time_port" }, { "a second client-id", "dup_client_port" } } do
    it(case[1] .. ": SIGNATURE_INVALID, no data, not retried", function()
      local before = count_requests()
      local res, err = consult(make_client{ gateway = "https://127.0.0.1:" .. front[case[2]], ca_file = front.ca })
      assert.is_nil(res)
      assert.are.equal("SIGNATURE_INVALID", err.code, tostring(err))
      assert.matches("more than once", err.message, 1, true) -- refused for the duplicate, not by chance
      assert.are.equal("U", err.status)
      assert.are.equal(1, err.attempts)
      assert.is_nil(err.response)
      assert.are.equal(before + 1, count_requests(), "the request did reach the gateway, once")
    end)
  end
end)

describe("plain http", function()
  local function creates(gateway, over)
    local opts = { gateway = gateway }
    for k, v in pairs(over or {}) do opts[k] = v end
    return pcall(make_client, opts)
  end

  it("to a non-loopback gateway raises at creation", function()
    for _, gw in ipairs{ "http://192.0.2.1", "http://192.0.2.1:8080", "HTTP://192.0.2.1/", "http://10.0.0.1",
                         "http://open-sea-global.alipay.com", "http://127.0.0.1.example.com",
                         "http://localhost.example.com", "http://[2001:db8::1]:80", "http://128.0.0.1",
                         "http://127.0.0.1@192.0.2.1", "http://localhost@192.0.2.1", "http://127.0.0.1:80@192.0.2.1",
                         "http://[::ffff:192.0.2.1]", "http://0x7f.0.0.1" } do
      local ok, err = creates(gw)
      assert.is_false(ok, gw .. " was accepted")
      local msg = tostring(err)
      assert.is_truthy(msg:find("http", 1, true) or msg:find("gateway", 1, true), msg)
    end
  end)

  it("to an address that only looks like loopback raises (libcurl reads 0127.0.0.1 as octal: 87.0.0.1)", function()
    for _, gw in ipairs{ "http://0127.0.0.1", "http://0127.0.0.1:8080", "http://00127.0.0.1" } do
      local ok, err = creates(gw)
      assert.is_false(ok, gw .. " was accepted as loopback: card data would go in clear text to 87.0.0.1")
      assert.matches("http", tostring(err), 1, true)
    end
  end)

  it("to a non-loopback gateway is allowed with allow_insecure_http = true (never contacted here)", function()
    local ok, client = creates("http://192.0.2.1", { allow_insecure_http = true })
    assert.is_true(ok, tostring(client))
    assert.matches("^dws%.client", tostring(client))
  end)

  it("allow_insecure_http must be a boolean: a truthy string does not count", function()
    local ok = creates("http://192.0.2.1", { allow_insecure_http = "yes" })
    assert.is_false(ok)
  end)

  it("to loopback is allowed and works (http://127.0.0.1, http://localhost)", function()
    local port = assert(sb.http_url:match(":(%d+)$") or sb.http_url:match(":(%d+)/?$"))
    for _, gw in ipairs{ sb.http_url, "http://localhost:" .. port } do
      local ok, client = creates(gw)
      assert.is_true(ok, tostring(client))
      local res, err = consult(client)
      assert.is_nil(err, gw .. ": " .. tostring(err))
      assert.are.equal("S", res.result.resultStatus)
    end
  end)
end)
