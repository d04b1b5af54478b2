-- The API pages (../shared/dws-api/*.txt), SIGNING.md and the README, read as a black-box tester
-- reads them: `require "dws"` driven against a recording raw-socket gateway (what goes on the wire,
-- and answers of our choosing) and against the sandbox. Signatures are checked with the openssl CLI,
-- an implementation that is not ours. Grouped by page; each `it` is one statement of a page.
local dws = require "dws"
local core = require "dws.core"
local httpd = require "helpers.httpd"
local nginx = require "dws_sandbox.nginx"
local sandbox = require "helpers.sandbox"
local files = require "helpers.files"
local keys = require "helpers.keys"

local EXAMPLE = files.EXAMPLE
local read = files.read
local q = nginx.sh_quote

local CONSULT_PATH = "/ams/api/v1/paymentMethods/consultAddablePaymentMethod"
local ADD_PATH = "/ams/api/v1/paymentMethods/addPaymentMethod"
local EXAMPLE_BODY = '{"customerId":"2162878776333","env":{"terminalType":"WEB"},"scenes":["TOPUP"]}'
local CONSULT = { customerId = "2162878776333", env = { terminalType = "WEB" }, scenes = { "TOPUP" } }
local ACK = '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}'

local function sh(cmd)
  local p = assert(io.popen("{ " .. cmd .. "\n} 2>&1; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)__rc=(%d+)%s*$")
  return body or out, tonumber(rc)
end

-- The recording gateway: every request to /ams/ is kept raw (request line, headers, body) and
-- answered with the raw bytes the spec armed (HTTP/1.1 with Connection: close), on the raw
-- downstream socket, so header names, their case and their number are exactly the spec's.
local GATEWAY = [[
local M = {}
function M.serve()
  ngx.req.read_body()
  local d = ngx.shared.gw
  local n = d:incr("n", 1, 0)
  d:set("req:" .. n, ngx.req.raw_header() .. (ngx.req.get_body_data() or ""))
  local answer = d:get("answer:" .. n) or d:get("answer")
    or "HTTP/1.1 500 Nothing armed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
  local sock = assert(ngx.req.socket(true))
  sock:send(answer)
end
function M.control()
  ngx.req.read_body()
  local d = ngx.shared.gw
  local what = ngx.var.arg_what
  if what == "arm" then
    d:set(ngx.var.arg_n and ("answer:" .. ngx.var.arg_n) or "answer", ngx.req.get_body_data() or "")
  elseif what == "reset" then
    d:flush_all()
  elseif what == "count" then
    ngx.print(tostring(d:get("n") or 0))
  else
    ngx.print(d:get("req:" .. ngx.var.arg_n) or "")
  end
end
return M
]]

local gw, tmp, ctl

local function control(query, body)
  local res = assert(ctl:request{ method = "POST", url = gw:url("/__gw?" .. query), headers = {},
    body = body or "", timeout = 10, connect_timeout = 5 })
  assert(res.status == 200, "gateway control failed")
  return res.body
end

local function requests_seen()
  return tonumber(control("what=count"))
end

-- The n-th request the gateway received: method, path, headers (lower-case names), body.
local function received(n)
  local raw = control("what=req&n=" .. (n or 1))
  local head, body = raw:match("^(.-)\r\n\r\n(.*)$")
  local method, target = head:match("^(%u+) (%S+) HTTP/1%.1")
  local headers = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do headers[name:lower()] = value end
  return { method = method, path = target, headers = headers, body = body }
end

-- A raw HTTP/1.1 answer: header lines as given (name spelling kept), then the body.
local function raw_answer(status, header_lines, body)
  local lines = { "HTTP/1.1 " .. status .. " X", "Content-Type: application/json", "Content-Length: " .. #body,
                  "Connection: close" }
  for _, l in ipairs(header_lines) do lines[#lines + 1] = l end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. body
end

local function arm(answer, n)
  control("what=arm" .. (n and ("&n=" .. n) or ""), answer)
end

-- openssl dgst -verify over the exact content SIGNING.md gives. -> true | false, openssl's output
local function openssl_verifies(public_pem_file, content, b64)
  files.write(tmp .. "/content", content)
  files.write(tmp .. "/sig.b64", b64)
  local out, rc = sh("base64 -d " .. q(tmp .. "/sig.b64") .. " > " .. q(tmp .. "/sig.bin")
    .. " && openssl dgst -sha256 -verify "
    .. q(public_pem_file) .. " -signature " .. q(tmp .. "/sig.bin") .. " " .. q(tmp .. "/content"))
  return rc == 0, out
end

-- The base64 signature inside a Signature header value, percent-decoded.
local function b64_of(header)
  local v = header:match("signature=([^,]*)")
  return (v:gsub("%%(%x%x)", function(x) return string.char(tonumber(x, 16)) end))
end

local dws_private, dws_public_b64, merchant_pem
-- The two private keys parsed once for the answers, notifications and clients every case makes (a
-- private key's pair-wise check costs ~40 ms); the keys-in-every-form cases sign from the texts.
local dws_key, merchant_key
local DWS_PUBLIC_PEM_FILE

-- An answer signed with the DWS key as SIGNING.md says: over the request's method and path, our
-- Client-Id, the response-time and the raw body.
local function signed_answer(path, client_id, body, opts)
  opts = opts or {}
  local time = opts.time or os.date("!%Y-%m-%dT%H:%M:%SZ")
  local header = assert(dws.signature.sign{ private_key = dws_key, method = "POST", path = path,
    client_id = client_id, time = time, body = opts.signed_body or body })
  if opts.header then header = opts.header(header) end
  local lines = {}
  if not opts.no_signature then lines[#lines + 1] = (opts.signature_name or "Signature") .. ": " .. header end
  if not opts.no_time then lines[#lines + 1] = (opts.time_name or "Response-Time") .. ": " .. time end
  lines[#lines + 1] = (opts.client_id_name or "Client-Id") .. ": " .. client_id
  return raw_answer(opts.status or 200, lines, body)
end

local function client(opts)
  local o = { client_id = "2022000000000001", private_key = merchant_key, dws_public_key = dws_public_b64,
              gateway = gw:url(""):gsub("/$", ""), max_retries = 0 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return dws.client(o)
end

local S_CONSULT = '{"paymentOptions":[{"enabled":true,"paymentMethodType":"MIXEDCARD",'
  .. '"paymentOptionDetail":"{\\"type\\":\\"card\\"}","rank":5000}],'
  .. '"result":{"resultCode":"SUCCESS","resultMessage":"success.","resultStatus":"S"}}'

describe("the API pages, as a black-box tester reads them", function()
  lazy_setup(function()
    tmp = nginx.tmpdir("dws-pages")
    gw = assert(httpd.start{
      http = "    lua_shared_dict gw 4m;",
      lua_files = { pages_gateway = GATEWAY },
      locations = [[
    location /ams/ { content_by_lua_block { require("pages_gateway").serve() } }
    location = /__gw { content_by_lua_block { require("pages_gateway").control() } }
]],
    })
    ctl = require("dws.transport.curl").new{ max_response_bytes = 16 * 1024 * 1024, user_agent = "spec" }
    local priv, pub = keys.pair("dws")
    dws_private, dws_public_b64 = priv, pub
    DWS_PUBLIC_PEM_FILE = tmp .. "/dws_public.pem"
    files.write(tmp .. "/dws_public.b64", pub)
    assert(select(2, sh("base64 -d " .. q(tmp .. "/dws_public.b64") .. " | openssl pkey -pubin -inform DER -out "
      .. q(DWS_PUBLIC_PEM_FILE))) == 0)
    merchant_pem = read(EXAMPLE .. "/merchant_private.pem")
    dws_key, merchant_key = assert(core.private_key(dws_private)), assert(core.private_key(merchant_pem))
  end)

  lazy_teardown(function()
    if gw then gw:stop() end
    if ctl then ctl:close() end
    if tmp then nginx.rmdir(tmp) end
  end)

  before_each(function() control("what=reset") end)

  describe("SIGNING.md", function()
    describe("the worked example", function()
      local function example_header()
        return assert(dws.signature.sign{ private_key = merchant_pem, method = "POST", path = CONSULT_PATH,
          client_id = "EXAMPLE0000000001", time = "1700000000000", body = EXAMPLE_BODY })
      end

      it("signs content.txt into signature_header.txt byte for byte", function()
        local want = read(EXAMPLE .. "/signature_header.txt"):gsub("\n$", "")
        assert.are.equal(want, example_header())
      end)

      it("signs content.txt into signature.b64 byte for byte", function()
        assert.are.equal(read(EXAMPLE .. "/signature.b64"), b64_of(example_header()))
      end)

      it("signs exactly what openssl verifies over content.txt", function()
        assert.is_true(openssl_verifies(EXAMPLE .. "/merchant_public.pem", read(EXAMPLE .. "/content.txt"),
          b64_of(example_header())))
      end)

      it("keyVersion is configurable in dws.signature.sign, as a number too", function()
        local h = assert(dws.signature.sign{ private_key = merchant_pem, method = "POST", path = CONSULT_PATH,
          client_id = "EXAMPLE0000000001", time = 1700000000000, body = EXAMPLE_BODY, key_version = 2.0 })
        assert.are.equal("algorithm=RSA256,keyVersion=2,signature=", h:match("^[^,]*,[^,]*,signature="))
      end)
    end)

    describe("keys in every form", function()
      local forms
      lazy_setup(function()
        local pem = EXAMPLE .. "/merchant_private.pem"
        local function run(cmd) local out, rc = sh(cmd); assert(rc == 0, out); return out end
        forms = {
          ["PKCS#8 PEM"] = merchant_pem,
          ["PKCS#1 PEM"] = run("openssl pkey -in " .. q(pem) .. " -traditional 2>/dev/null || openssl rsa -in "
            .. q(pem) .. " -traditional"),
          ["PKCS#8 bare base64 DER"] = run("openssl pkey -in " .. q(pem) .. " -outform DER | base64 -w0"),
          ["PKCS#1 bare base64 DER"] = run("openssl rsa -in " .. q(pem) .. " -traditional -outform DER 2>/dev/null"
            .. " | base64 -w0"),
        }
        assert.truthy(forms["PKCS#1 PEM"]:find("BEGIN RSA PRIVATE KEY", 1, true))
      end)

      for _, name in ipairs{ "PKCS#8 PEM", "PKCS#1 PEM", "PKCS#8 bare base64 DER", "PKCS#1 bare base64 DER" } do
        it("a private key as " .. name .. " signs the example as the example says", function()
          local h = assert(dws.signature.sign{ private_key = forms[name], method = "POST", path = CONSULT_PATH,
            client_id = "EXAMPLE0000000001", time = "1700000000000", body = EXAMPLE_BODY })
          assert.are.equal(read(EXAMPLE .. "/signature.b64"), b64_of(h))
        end)
      end

      it("a public key as bare base64 SubjectPublicKeyInfo verifies the example", function()
        local spki = sh("openssl pkey -pubin -in " .. q(EXAMPLE .. "/merchant_public.pem")
          .. " -outform DER | base64 -w0")
        assert.is_true(dws.signature.verify{ public_key = spki, method = "POST", path = CONSULT_PATH,
          client_id = "EXAMPLE0000000001", time = "1700000000000", body = EXAMPLE_BODY,
          signature = read(EXAMPLE .. "/signature_header.txt"):gsub("\n$", "") })
      end)

      it("a public key as PEM verifies the example", function()
        assert.is_true(dws.signature.verify{ public_key = read(EXAMPLE .. "/merchant_public.pem"), method = "POST",
          path = CONSULT_PATH, client_id = "EXAMPLE0000000001", time = "1700000000000", body = EXAMPLE_BODY,
          signature = read(EXAMPLE .. "/signature_header.txt"):gsub("\n$", "") })
      end)

      it("dws.client takes the DWS public key as PEM", function()
        local pem = read(DWS_PUBLIC_PEM_FILE)
        arm(signed_answer(CONSULT_PATH, "2022000000000001", S_CONSULT))
        local res, err = client{ dws_public_key = pem }:consult_addable_payment_method(CONSULT)
        assert.is_nil(err)
        assert.are.equal("S", res.result.resultStatus)
      end)
    end)

    describe("the request on the wire", function()
      local seen
      before_each(function()
        arm(signed_answer(CONSULT_PATH, "2022000000000001", S_CONSULT))
        local before = core.time_ms()
        assert(client():consult_addable_payment_method(CONSULT))
        seen = received(1)
        seen.before, seen.after = before, core.time_ms()
      end)

      it("is a POST to /ams/api/v1/paymentMethods/<api>", function()
        assert.are.same({ "POST", CONSULT_PATH }, { seen.method, seen.path })
      end)

      it("carries Content-Type: application/json; charset=UTF-8", function()
        assert.are.equal("application/json; charset=UTF-8", seen.headers["content-type"])
      end)

      it("carries Client-Id", function()
        assert.are.equal("2022000000000001", seen.headers["client-id"])
      end)

      it("carries Request-Time in milliseconds since the epoch by default", function()
        local t = seen.headers["request-time"]
        assert.truthy(t:find("^%d+$"))
        assert.is_true(tonumber(t) >= seen.before and tonumber(t) <= seen.after)
      end)

      it("carries Signature: algorithm=RSA256,keyVersion=1,signature=<url-encoded base64>", function()
        assert.truthy(seen.headers["signature"]:find("^algorithm=RSA256,keyVersion=1,signature=[%w%%]+$"))
      end)

      it("URL-encodes the signature with upper-case hex", function()
        local sig = seen.headers["signature"]:match("signature=(.*)$")
        assert.is_nil(sig:find("%%%x?[a-f]"))
      end)

      it("is signed over METHOD PATH \\n Client-Id.Request-Time.BODY (openssl)", function()
        local h = seen.headers
        local content = "POST " .. CONSULT_PATH .. "\n" .. h["client-id"] .. "." .. h["request-time"] .. "."
          .. seen.body
        assert.is_true(openssl_verifies(EXAMPLE .. "/merchant_public.pem", content, b64_of(h["signature"])))
      end)

      it("sends every scalar as a JSON string (the pages' note)", function()
        control("what=reset")
        arm(signed_answer(ADD_PATH, "2022000000000001", '{"requestId":"r-1","result":{"resultCode":"SUCCESS",'
          .. '"resultStatus":"S","resultMessage":"success"}}'))
        assert(client():add_payment_method{ requestId = "r-1", customerId = "2162878776333", isTemporary = false,
          paymentMethodDetail = { paymentMethodDetailType = "CARD", card = { cardToken = "PYMT1" } },
          env = { terminalType = "WEB" } })
        assert.truthy(received(1).body:find('"isTemporary":"false"', 1, true))
      end)
    end)

    it("sends and signs the /ams/sandbox/api path for a SANDBOX_ Client-Id (openssl)", function()
      local path = "/ams/sandbox/api/v1/paymentMethods/consultAddablePaymentMethod"
      arm(signed_answer(path, "SANDBOX_SHOP", S_CONSULT))
      assert(client{ client_id = "SANDBOX_SHOP" }:consult_addable_payment_method(CONSULT))
      local seen = received(1)
      assert.are.equal(path, seen.path)
      local content = "POST " .. path .. "\nSANDBOX_SHOP." .. seen.headers["request-time"] .. "." .. seen.body
      assert.is_true(openssl_verifies(EXAMPLE .. "/merchant_public.pem", content, b64_of(seen.headers["signature"])))
    end)

    it("keyVersion is configurable on the client", function()
      arm(signed_answer(CONSULT_PATH, "2022000000000001", S_CONSULT))
      assert(client{ key_version = 3 }:consult_addable_payment_method(CONSULT))
      assert.truthy(received(1).headers["signature"]:find("^algorithm=RSA256,keyVersion=3,signature="))
    end)

    it("Request-Time is configurable (ISO 8601), and signed verbatim (openssl)", function()
      arm(signed_answer(CONSULT_PATH, "2022000000000001", S_CONSULT))
      assert(client{ request_time = "iso8601" }:consult_addable_payment_method(CONSULT))
      local seen = received(1)
      local t = seen.headers["request-time"]
      assert.truthy(t:find("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d"))
      local content = "POST " .. CONSULT_PATH .. "\n2022000000000001." .. t .. "." .. seen.body
      assert.is_true(openssl_verifies(EXAMPLE .. "/merchant_public.pem", content, b64_of(seen.headers["signature"])))
    end)

    it("Request-Time from a function is sent as it returns it", function()
      arm(signed_answer(CONSULT_PATH, "2022000000000001", S_CONSULT))
      local t = os.date("!%Y-%m-%dT%H:%M:%S") .. "+0000"
      assert(client{ request_time = function() return t end }:consult_addable_payment_method(CONSULT))
      assert.are.equal(t, received(1).headers["request-time"])
    end)

    describe("the answer", function()
      local function consult(opts)
        arm(signed_answer(CONSULT_PATH, "2022000000000001", opts.body or S_CONSULT, opts))
        return client():consult_addable_payment_method(CONSULT)
      end
      local F_BODY = '{"result":{"resultCode":"ACCESS_DENIED","resultMessage":"Access denied.","resultStatus":"F"}}'
      local U_BODY = '{"result":{"resultCode":"UNKNOWN_EXCEPTION","resultMessage":"unknown","resultStatus":"U"}}'

      it("signed and verified: its data is returned", function()
        local res = assert(consult{})
        assert.are.equal("MIXEDCARD", res.paymentOptions[1].paymentMethodType)
      end)

      it("header names in any letter case", function()
        local res = consult{ signature_name = "SIGNATURE", time_name = "response-TIME", client_id_name = "client-ID" }
        assert.are.equal("S", res and res.result.resultStatus)
      end)

      it("a signature percent-encoded with lower-case hex (%2b) verifies", function()
        local res = consult{ header = function(h)
          return (h:gsub("%%(%x%x)", function(x) return "%" .. x:lower() end))
        end }
        assert.are.equal("S", res and res.result.resultStatus)
      end)

      it("a signature over other bytes: rejected, no data", function()
        local res, err = consult{ signed_body = S_CONSULT .. " " }
        assert.is_nil(res)
        assert.are.same({ "SIGNATURE_INVALID", "U" }, { err.code, err.status })
        assert.is_nil(err.response)
      end)

      it("a signed F whose signature does not verify is rejected too", function()
        local res, err = consult{ body = F_BODY, signed_body = U_BODY }
        assert.is_nil(res)
        assert.are.equal("SIGNATURE_INVALID", err.code)
      end)

      it("a signature that is not strict base64 (padding dropped): rejected", function()
        local res, err = consult{ header = function(h) return (h:gsub("%%3D", "")) end }
        assert.is_nil(res)
        assert.are.equal("SIGNATURE_INVALID", err.code)
      end)

      it("a signature in URL-safe base64 ('-', '_'): rejected", function()
        local res, err = consult{ header = function(h) return (h:gsub("%%2B", "-"):gsub("%%2F", "_")) end }
        assert.is_nil(res)
        assert.are.equal("SIGNATURE_INVALID", err.code)
      end)

      it("unsigned F: accepted as the F it says", function()
        local res, err = consult{ body = F_BODY, no_signature = true, no_time = true }
        assert.is_nil(res)
        assert.are.same({ "ACCESS_DENIED", "F" }, { err.code, err.status })
      end)

      it("unsigned U: accepted as the U it says", function()
        local res, err = consult{ body = U_BODY, no_signature = true, no_time = true }
        assert.is_nil(res)
        assert.are.same({ "UNKNOWN_EXCEPTION", "U" }, { err.code, err.status })
      end)

      it("unsigned S: rejected, no data", function()
        local res, err = consult{ no_signature = true, no_time = true }
        assert.is_nil(res)
        assert.are.same({ "SIGNATURE_MISSING", true }, { err.code, err.response == nil })
      end)

      it("S with a signature but no response-time: rejected", function()
        local res, err = consult{ no_time = true }
        assert.is_nil(res)
        assert.are.equal("SIGNATURE_MISSING", err.code)
      end)

      it("S with a response-time but no signature: rejected", function()
        local res, err = consult{ no_signature = true }
        assert.is_nil(res)
        assert.are.equal("SIGNATURE_MISSING", err.code)
      end)

      it("two signature headers (two spellings): rejected, no data", function()
        local res, err = consult{ header = function(h) return h .. "\r\nsignature: " .. h end }
        assert.is_nil(res)
        assert.are.same({ "SIGNATURE_INVALID", true }, { err.code, err.response == nil })
      end)

      it("an answer whose client-id header names another client: rejected", function()
        local res, err = consult{ client_id_name = "X-Ignored", header = function(h)
          return h .. "\r\nclient-id: 2022000000000002"
        end }
        assert.is_nil(res)
        assert.are.equal("SIGNATURE_INVALID", err.code)
      end)

      it("the signature= item is read wherever it stands in the header", function()
        local res = consult{ header = function(h)
          local sig = h:match("(signature=[^,]*)")
          return sig .. ",keyVersion=1,algorithm=RSA256"
        end }
        assert.are.equal("S", res and res.result.resultStatus)
      end)
    end)
  end)

  describe("notifyAddPaymentMethod page and SIGNING.md's notification", function()
    local SAMPLE = read(files.FIXTURES .. "/notify_sample.json")

    local function notification(opts)
      opts = opts or {}
      local time = opts.time or string.format("%d", core.time_ms())
      local body = opts.body or SAMPLE
      local header = assert(dws.signature.sign{ private_key = opts.key or dws_key, method = "POST",
        path = opts.signed_path or "/notify", client_id = "2022000000000001", time = time, body = body })
      return { method = "POST", path = opts.path or "/notify", body = body,
               headers = { ["client-id"] = "2022000000000001", ["request-time"] = time, signature = header } }
    end

    it("is verified over the notify URL's path without its query", function()
      local n, err = client():verify_notification(notification{ path = "/notify?shop=1" })
      assert.is_nil(err)
      assert.are.equal("20990501203220303032821078591", n.requestId)
    end)

    it("a notification signed over the path with its query is refused", function()
      local n, err = client():verify_notification(notification{ path = "/notify?shop=1",
        signed_path = "/notify?shop=1" })
      assert.is_nil(n)
      assert.are.equal("SIGNATURE_INVALID", err.code)
    end)

    it("the page's own sample (no operateSource) is acknowledged: 200, application/json, the exact body", function()
      local status, headers, body = client():handle_notification(notification(), function() return true end)
      assert.are.same({ 200, "application/json", ACK }, { status, headers["Content-Type"], body })
    end)

    it("a business failure in the handler is still acknowledged with S (the page)", function()
      local status, _, body = client():handle_notification(notification(), function() return false, "no wallet" end)
      assert.are.same({ 200, ACK }, { status, body })
    end)

    local function refused(request)
      local runs = 0
      local status, _, body = client():handle_notification(request, function() runs = runs + 1; return true end)
      return { status, runs, (dws.decode_json(body) or {}).result.resultStatus }
    end

    it("a forged notification (signed with another key) is refused, the handler not run", function()
      assert.are.same({ 401, 0, "F" }, refused(notification{ key = merchant_pem }))
    end)

    it("a replayed notification (Request-Time 10 minutes old) is refused, the handler not run", function()
      assert.are.same({ 401, 0, "F" }, refused(notification{ time = string.format("%d", core.time_ms() - 600000) }))
    end)

    it("a signed body that is not a notification is refused, the handler not run", function()
      assert.are.same({ 400, 0, "F" }, refused(notification{ body = "[1,2]" }))
    end)

    it("a re-sent notification is acknowledged again and handled once", function()
      local c, runs = client(), 0
      local function handler() runs = runs + 1; return true end
      c:handle_notification(notification(), handler)
      local status, _, body = c:handle_notification(notification(), handler)
      assert.are.same({ 200, ACK, 1 }, { status, body, runs })
    end)
  end)

  describe("consultAddablePaymentMethod page", function()
    it("customerId is required: refused before sending", function()
      local res, err = client():consult_addable_payment_method{ env = { terminalType = "WEB" } }
      assert.is_nil(res)
      assert.are.same({ "PARAM_ILLEGAL", "customerId", 0 }, { err.code, err.field, requests_seen() })
    end)

    it("customerId: at most 32 characters", function()
      local _, err = client():consult_addable_payment_method{ customerId = string.rep("2", 33),
        env = { terminalType = "WEB" } }
      assert.are.same({ "PARAM_ILLEGAL", "customerId" }, { err.code, err.field })
    end)

    it("env is required", function()
      local _, err = client():consult_addable_payment_method{ customerId = "2162878776333" }
      assert.are.same({ "PARAM_ILLEGAL", "env" }, { err.code, err.field })
    end)

    it("paymentOptionDetail stays a JSON string (dws.decode_json reads it)", function()
      arm(signed_answer(CONSULT_PATH, "2022000000000001", S_CONSULT))
      local res = assert(client():consult_addable_payment_method(CONSULT))
      assert.are.equal("card", dws.decode_json(res.paymentOptions[1].paymentOptionDetail).type)
    end)

    it("UNKNOWN_EXCEPTION (U): called again, as the page says", function()
      local U = '{"result":{"resultCode":"UNKNOWN_EXCEPTION","resultMessage":"x","resultStatus":"U"}}'
      arm(signed_answer(CONSULT_PATH, "2022000000000001", U), 1)
      arm(signed_answer(CONSULT_PATH, "2022000000000001", S_CONSULT), 2)
      local res = client{ max_retries = 1, retry_base_delay = 0 }:consult_addable_payment_method(CONSULT)
      assert.are.same({ "S", 2 }, { res and res.result.resultStatus, requests_seen() })
    end)

    it("REQUEST_TRAFFIC_EXCEED_LIMIT (U): called again, as the page says", function()
      local U = '{"result":{"resultCode":"REQUEST_TRAFFIC_EXCEED_LIMIT","resultMessage":"x","resultStatus":"U"}}'
      arm(signed_answer(CONSULT_PATH, "2022000000000001", U), 1)
      arm(signed_answer(CONSULT_PATH, "2022000000000001", S_CONSULT), 2)
      local res = client{ max_retries = 1, retry_base_delay = 0 }:consult_addable_payment_method(CONSULT)
      assert.are.same({ "S", 2 }, { res and res.result.resultStatus, requests_seen() })
    end)

    it("PROCESS_FAIL (F, \"Don't retry\"): not called again", function()
      local F = '{"result":{"resultCode":"PROCESS_FAIL","resultMessage":"x","resultStatus":"F"}}'
      arm(signed_answer(CONSULT_PATH, "2022000000000001", F))
      local _, err = client{ max_retries = 2, retry_base_delay = 0 }:consult_addable_payment_method(CONSULT)
      assert.are.same({ "PROCESS_FAIL", "F", 1 }, { err.code, err.status, requests_seen() })
    end)
  end)

  describe("cacheCard page", function()
    local CACHE_PATH = "/ams/api/v1/paymentMethods/cacheCard"
    local CARD_REQ = { paymentMethodDetail = { paymentMethodDetailType = "card", card = {
      cardNo = "4111111111111111", brand = "VISA", securityCode = "444", expiryYear = "2099", expiryMonth = "07" } } }

    it("the sample answer's resultMsg is given as resultMessage too", function()
      arm(signed_answer(CACHE_PATH, "2022000000000001", '{"expiryTime":"2001-07-04T12:08:56+05:30",'
        .. '"paymentMethodDetail":{"card":{"cardToken":"PYMT1342","last4":"1111"},"paymentMethodDetailType":"card"},'
        .. '"result":{"resultStatus":"S","resultCode":"SUCCESS","resultMsg":"success"}}'))
      local res = assert(client():cache_card(CARD_REQ))
      assert.are.same({ "success", "PYMT1342", "2001-07-04T12:08:56+05:30" },
        { res.result.resultMessage, res.paymentMethodDetail.card.cardToken, res.expiryTime })
    end)

    it("an F answer's error never shows the card number or security code", function()
      arm(signed_answer(CACHE_PATH, "2022000000000001",
        '{"result":{"resultStatus":"F","resultCode":"PARAM_ILLEGAL",'
          .. '"resultMessage":"bad card 4111111111111111 cvv 444"}}'))
      local _, err = client():cache_card(CARD_REQ)
      assert.is_nil(tostring(err):find("4111111111111111", 1, true) or tostring(err):find("444", 1, true))
    end)

    it("paymentMethodDetailType other than card: refused before sending (docs/sandbox.md Field limits)", function()
      local _, err = client():cache_card{ paymentMethodDetail = { paymentMethodDetailType = "GCASH_EBANK",
        card = CARD_REQ.paymentMethodDetail.card } }
      assert.are.same({ "PARAM_ILLEGAL", "paymentMethodDetail.paymentMethodDetailType", 0 },
        { err.code, err.field, requests_seen() })
    end)

    it("paymentMethodDetail is required", function()
      local _, err = client():cache_card{}
      assert.are.same({ "PARAM_ILLEGAL", "paymentMethodDetail" }, { err.code, err.field })
    end)
  end)

  describe("addPaymentMethod page", function()
    local ADD = function(extra)
      local r = { customerId = "2162878776333", env = { terminalType = "WEB" },
        paymentMethodDetail = { paymentMethodDetailType = "CARD", card = { cardToken = "PYMT1" } } }
      for k, v in pairs(extra or {}) do r[k] = v end
      return r
    end
    local S_ADD = function(id)
      return '{"actionForm":{},"paymentMethodDetail":{"card":{},"paymentMethodDetailType":"CARD"},"requestId":"'
        .. id .. '","result":{"resultStatus":"S","resultCode":"SUCCESS","resultMsg":"success"}}'
    end

    it("requestId: at most 64 characters", function()
      local _, err = client():add_payment_method(ADD{ requestId = string.rep("r", 65) })
      assert.are.same({ "PARAM_ILLEGAL", "requestId" }, { err.code, err.field })
    end)

    it("referenceCustomerId and referenceUserId: only one of them", function()
      local _, err = client():add_payment_method(ADD{ requestId = "r", referenceCustomerId = "a",
        referenceUserId = "b" })
      assert.are.equal("PARAM_ILLEGAL", err.code)
    end)

    it("isTemporary must be false with referenceUserId", function()
      local _, err = client():add_payment_method(ADD{ requestId = "r", referenceUserId = "b", isTemporary = true })
      assert.are.same({ "PARAM_ILLEGAL", "isTemporary" }, { err.code, err.field })
    end)

    it("a generated requestId is the same on every attempt (idempotency)", function()
      local U = '{"result":{"resultCode":"UNKNOWN_EXCEPTION","resultMessage":"x","resultStatus":"U"}}'
      arm(signed_answer(ADD_PATH, "2022000000000001", U))
      local _, err = client{ max_retries = 1, retry_base_delay = 0 }:add_payment_method(ADD())
      local a, b = dws.decode_json(received(1).body), dws.decode_json(received(2).body)
      assert.are.same({ err.request_id, err.request_id }, { a.requestId, b.requestId })
    end)

    it("every attempt sends the same body bytes, signed afresh", function()
      local U = '{"result":{"resultCode":"UNKNOWN_EXCEPTION","resultMessage":"x","resultStatus":"U"}}'
      arm(signed_answer(ADD_PATH, "2022000000000001", U))
      client{ max_retries = 1, retry_base_delay = 0 }:add_payment_method(ADD{ requestId = "same" })
      assert.are.equal(received(1).body, received(2).body)
    end)

    it("an S answer naming another requestId gives no data", function()
      arm(signed_answer(ADD_PATH, "2022000000000001", S_ADD("someone-else")))
      local res, err = client():add_payment_method(ADD{ requestId = "mine" })
      assert.is_nil(res)
      assert.are.equal("RESPONSE_MISMATCH", err.code)
    end)

    it("the page's sample answer (resultMsg, empty actionForm) is an S", function()
      arm(signed_answer(ADD_PATH, "2022000000000001", S_ADD("mine")))
      local res = assert(client():add_payment_method(ADD{ requestId = "mine" }))
      assert.are.same({ "S", "mine", "success" }, { res.result.resultStatus, res.requestId, res.result.resultMessage })
    end)
  end)

  describe("against the sandbox", function()
    local sb, c
    lazy_setup(function()
      sb = assert(sandbox.start{ notify_scale = 0.001 })
      c = dws.client(sb:client_options())
    end)
    lazy_teardown(function()
      if c then c:close() end
      if sb then sb:stop() end
    end)

    local function token()
      local res = assert(c:cache_card{ paymentMethodDetail = { paymentMethodDetailType = "card", card = {
        cardNo = "4111111111111111", securityCode = "123", expiryYear = "2099", expiryMonth = "12" } } })
      return res.paymentMethodDetail.card.cardToken
    end

    it("consult: the page's sample request answers S with brandName", function()
      local res = assert(c:consult_addable_payment_method{ customerId = "2162878776333", scenes = { "TOPUP" },
        env = { appVersion = "6.84.2", clientIp = "175.1.2.3", deviceModel = "TECNO LD7", language = "en-PH",
                operateEntrance = "DWS", osType = "Android", osVersion = "10", terminalType = "APP" } })
      assert.is_string(res.paymentOptions[1].brandName)
    end)

    it("addPaymentMethod is idempotent on requestId: the same answer again", function()
      local req = { requestId = "pages-idem-1", customerId = "2162878776333", env = { terminalType = "WEB" },
        paymentMethodDetail = { paymentMethodDetailType = "CARD", card = { cardToken = token() } } }
      local first = assert(c:add_payment_method(req))
      local second = assert(c:add_payment_method(req))
      assert.are.same(first, second)
    end)

    it("addPaymentMethod: the same requestId with other fields is REPEAT_REQ_INCONSISTENT (F)", function()
      local req = { requestId = "pages-idem-2", customerId = "2162878776333", env = { terminalType = "WEB" },
        paymentMethodDetail = { paymentMethodDetailType = "CARD", card = { cardToken = token() } } }
      assert(c:add_payment_method(req))
      req.referenceCustomerId = "shop-9"
      local _, err = c:add_payment_method(req)
      assert.are.same({ "REPEAT_REQ_INCONSISTENT", "F" }, { err.code, err.status })
    end)

    it("cacheCard: expiryTime is ISO 8601", function()
      local res = assert(c:cache_card{ paymentMethodDetail = { paymentMethodDetailType = "card", card = {
        cardNo = "4111111111111111", securityCode = "123", expiryYear = "2099", expiryMonth = "12" } } })
      assert.truthy(res.expiryTime:find("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d"))
    end)
  end)
end)
