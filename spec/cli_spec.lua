-- The `dws` command line, run as a child process (lua5.4 bin/dws) against the real sandbox; keys
-- and signatures checked with the openssl command line. Tagged #nginx (run under one busted
-- flavour): what is under test is that child process, whatever busted runs under.
local core = require "dws.core"
local dws = require "dws"
local nginx = require "dws_sandbox.nginx"
local sandbox = require "helpers.sandbox"
local httpd = require "helpers.httpd"
local files = require "helpers.files"
local keys = require "helpers.keys"

local ROOT = os.getenv("DWS_ROOT")
local q = nginx.sh_quote

-- Runs `dws ARGS` -> exit status, stdout, stderr.
local function dws_cmd(args, stdin, env)
  local dir = nginx.tmpdir("dws-cli-run")
  local cmd = (env or "") .. " lua5.4 " .. q(ROOT .. "/bin/dws") .. " " .. args
    .. " >" .. dir .. "/out 2>" .. dir .. "/err"
  if stdin then
    files.write(dir .. "/in", stdin)
    cmd = cmd .. " <" .. dir .. "/in"
  else
    cmd = cmd .. " </dev/null"
  end
  -- The status through a file: os.execute's results differ between Lua 5.4 and LuaJIT.
  os.execute("(" .. cmd .. "); echo $? >" .. dir .. "/rc")
  local status = tonumber(files.read(dir .. "/rc"))
  local out, err = files.read(dir .. "/out"), files.read(dir .. "/err")
  nginx.rmdir(dir)
  return status, out, err
end

local function sh(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  return ok == true or ok == 0
end

local BODY = '{"customerId":"2162878776333","env":{"terminalType":"WEB"},"scenes":["TOPUP"]}'
local CID = "SANDBOX_CLI_TEST"

describe("dws keygen, sign, verify #nginx", function()
  local dir
  setup(function()
    dir = nginx.tmpdir("dws-cli")
    files.write(dir .. "/body.json", BODY)
  end)
  teardown(function() nginx.rmdir(dir) end)

  it("writes a PKCS#8 private key 0600 that openssl checks, and the portal's base64", function()
    local status, out = dws_cmd("keygen --out " .. q(dir))
    assert.are.equal(0, status)
    assert.truthy(sh("openssl pkey -check -noout -in " .. q(dir .. "/merchant_private.pem")))
    assert.truthy(files.read(dir .. "/merchant_private.pem"):find("^%-%-%-%-%-BEGIN PRIVATE KEY%-%-%-%-%-\n"))
    local p = io.popen("stat -c %a " .. q(dir .. "/merchant_private.pem"))
    assert.are.equal("600", p:read("l"))
    p:close()
    local b64 = files.read(dir .. "/merchant_public.b64"):gsub("\n$", "")
    assert.truthy(out:find(b64, 1, true))
    local priv = core.private_key(files.read(dir .. "/merchant_private.pem"))
    assert.are.equal(priv:public_der(), core.public_key(b64):public_der())
    local pem = files.read(dir .. "/merchant_public.pem")
    assert.are.equal(priv:public_der(), core.public_key(pem):public_der())
    assert.truthy(sh("openssl pkey -pubin -noout -in " .. q(dir .. "/merchant_public.pem")))
  end)

  it("refuses to overwrite a key", function()
    local status, _, err = dws_cmd("keygen --out " .. q(dir))
    assert.are.equal(1, status)
    assert.truthy(err:find("refusing to overwrite", 1, true))
  end)

  it("signs: the content printed is what openssl dgst verifies the signature over", function()
    local status, out = dws_cmd("sign --private-key " .. q(dir .. "/merchant_private.pem") .. " --client-id " .. CID
      .. " --api consultAddablePaymentMethod --time 1700000000000 " .. q(dir .. "/body.json"))
    assert.are.equal(0, status)
    local content = out:match("between the lines:\n%-%-%-%-%-\n(.-)\n%-%-%-%-%-\n")
    assert.are.equal("POST /ams/sandbox/api/v1/paymentMethods/consultAddablePaymentMethod\n" .. CID
      .. ".1700000000000." .. BODY, content)
    local sig = out:match("Signature: algorithm=RSA256,keyVersion=1,signature=(%S+)")
    files.write(dir .. "/content", content)
    files.write(dir .. "/sig", core.base64_decode(core.url_decode(sig)))
    assert.truthy(sh("openssl dgst -sha256 -verify " .. q(dir .. "/merchant_public.pem") .. " -signature "
      .. q(dir .. "/sig") .. " " .. q(dir .. "/content")))
  end)

  describe("verify", function()
    local header, dws_priv, dws_pub_file
    setup(function()
      local priv = files.read(dir .. "/merchant_private.pem")
      header = dws.signature.sign{ private_key = priv, method = "POST", client_id = CID, time = "1700000000000",
        path = "/ams/sandbox/api/v1/paymentMethods/consultAddablePaymentMethod", body = BODY }
      local pub
      dws_priv, pub = keys.pair("dws")
      dws_pub_file = dir .. "/dws_public.b64"
      files.write(dws_pub_file, pub)
      files.write(dir .. "/dws_private.pem", dws_priv)
    end)
    local function verify(extra, body_file, public_key, signature)
      local key = public_key or (dir .. "/merchant_public.pem")
      return dws_cmd("verify --public-key " .. q(key) .. " --client-id " .. CID
        .. " --time 1700000000000 --signature " .. q(signature or header) .. " " .. (extra or "")
        .. " " .. q(body_file or (dir .. "/body.json")))
    end
    local API = "--api consultAddablePaymentMethod"

    it("exits 0 when the signature verifies", function()
      local status, out = verify(API)
      assert.are.equal(0, status)
      assert.truthy(out:find("verified: the signature matches this content", 1, true))
    end)

    it("finds the sandbox path rewrite", function()
      local status, out = verify("--path /ams/api/v1/paymentMethods/consultAddablePaymentMethod")
      assert.are.equal(1, status)
      assert.truthy(out:find("found: the signed path is /ams/sandbox/api/v1/paymentMethods/consultAddablePaymentMethod"
        .. ": a SANDBOX_ client id rewrites", 1, true), out)
    end)

    it("finds a signature URL-encoded twice", function()
      local status, out = verify(API, nil, nil, (header:gsub("%%", "%%25")))
      assert.are.equal(1, status)
      assert.truthy(out:find("found: the signature is URL-encoded twice", 1, true), out)
    end)

    it("finds a body re-serialised (whitespace and key order)", function()
      files.write(dir .. "/pretty.json",
        '{ "scenes": ["TOPUP"], "customerId": "2162878776333", "env": {"terminalType": "WEB"} }')
      local status, out = verify(API .. " --try-body " .. q(dir .. "/body.json"), dir .. "/pretty.json")
      assert.are.equal(1, status)
      assert.truthy(out:find("found: the body signed differs from yours in: whitespace outside strings; key order",
        1, true), out)
    end)

    it("finds a trailing newline that was not signed, without being told", function()
      files.write(dir .. "/nl.json", BODY .. "\n")
      local status, out = verify(API, dir .. "/nl.json")
      assert.are.equal(1, status)
      assert.truthy(out:find("a trailing newline that was not signed", 1, true), out)
    end)

    it("finds a time differing when the candidate is given", function()
      local status, out = dws_cmd("verify --public-key " .. q(dir .. "/merchant_public.pem") .. " --client-id " .. CID
        .. " --time 1700000000999 --try-time 1700000000000 --signature " .. q(header) .. " " .. API .. " "
        .. q(dir .. "/body.json"))
      assert.are.equal(1, status)
      assert.truthy(out:find("found: the signed time is 1700000000000, not 1700000000999", 1, true), out)
    end)

    it("finds a message signed by your own key when it was verified with the DWS key", function()
      local status, out = verify(API .. " --private-key " .. q(dir .. "/merchant_private.pem"), nil, dws_pub_file)
      assert.are.equal(1, status)
      assert.truthy(out:find("found: it was signed by your own key", 1, true), out)
    end)

    it("says when the key given is the public half of your own private key", function()
      local _, out = verify(API .. " --private-key " .. q(dir .. "/merchant_private.pem"))
      assert.truthy(out:find("found: the --public-key is the public half of your own private key", 1, true), out)
    end)

    it("says nothing was found for a signature of other content", function()
      local other = dws.signature.sign{ private_key = dws_priv, method = "POST", client_id = CID, time = "1",
        path = "/x", body = "{}" }
      local status, out = verify(API, nil, dws_pub_file, other)
      assert.are.equal(1, status)
      assert.truthy(out:find("not found:", 1, true), out)
    end)
  end)

  it("exits 64 on a usage error", function()
    local status, _, err = dws_cmd("sign --client-id X")
    assert.are.equal(64, status)
    assert.truthy(err:find("Usage:", 1, true))
  end)
end)

describe("dws against the sandbox #nginx", function()
  local sb, dir
  local CARD, CVC = "4111111111111111", "737"
  setup(function()
    sb = assert(sandbox.start{ notify_scale = 0.001 })
    dir = nginx.tmpdir("dws-cli-sb")
    files.write(dir .. "/profile.lua", string.format(
      "return { client_id = %q, private_key = %q, dws_public_key = %q, gateway = %q, ca_file = %q, max_retries = 0 }",
      sb.merchant.client_id, sb.merchant.private_key, sb.dws_public_key, sb.https_url, sb.ca_file))
  end)
  teardown(function()
    if sb then sb:stop() end
    nginx.rmdir(dir)
  end)
  local function profile() return "--profile " .. q(dir .. "/profile.lua") end

  it("call prints the verified answer as JSON and exits 0 on S", function()
    local status, out = dws_cmd("call consultAddablePaymentMethod " .. profile(), BODY)
    assert.are.equal(0, status)
    local res = core.json_decode(out)
    assert.are.equal("S", res.result.resultStatus)
  end)

  it("call exits 1 on F with the error on stderr", function()
    local status, out, err = dws_cmd("call consult_addable_payment_method " .. profile(),
      '{"customerId":"2188000000000001","env":{"terminalType":"WEB"}}')
    assert.are.equal(1, status)
    assert.are.equal("", out)
    assert.truthy(err:find("USER_STATUS_ABNORMAL (F)", 1, true), err)
  end)

  it("call exits 2 on U", function()
    sb:fault("unknown_exception", 1)
    local status, _, err = dws_cmd("call consultAddablePaymentMethod " .. profile(), BODY)
    assert.are.equal(2, status)
    assert.truthy(err:find("UNKNOWN_EXCEPTION (U)", 1, true), err)
  end)

  it("call takes its profile from the environment", function()
    local env = string.format("DWS_CLIENT_ID=%s DWS_PRIVATE_KEY=%s DWS_PUBLIC_KEY=%s DWS_GATEWAY=%s DWS_CA_FILE=%s",
      q(sb.merchant.client_id), q(sb.merchant.private_key), q(sb.dws_public_key), q(sb.https_url), q(sb.ca_file))
    local status, out = dws_cmd("call consultAddablePaymentMethod", BODY, env)
    assert.are.equal(0, status)
    assert.are.equal("S", core.json_decode(out).result.resultStatus)
  end)

  it("bind --card - reads the card and security code from stdin, never echoing them", function()
    local status, out, err = dws_cmd("bind " .. profile() .. " --card -", CARD .. "\n" .. CVC .. "\n")
    assert.are.same({ 0, true, nil, nil }, { status, out:find("status%s+ACCEPTED") ~= nil,
      (out .. err):find(CARD, 1, true), (out .. err):find("%f[%w]" .. CVC .. "%f[%W]") })
  end)

  it("bind --card - refuses stdin without a security code (usage, exit 64)", function()
    local status = dws_cmd("bind " .. profile() .. " --card -", CARD .. "\n")
    assert.are.equal(64, status)
  end)

  it("bind prints each step and the outcome, and no card number or security code", function()
    local status, out, err = dws_cmd("bind " .. profile() .. " --card " .. CARD .. " --security-code " .. CVC)
    assert.are.equal(0, status, err)
    assert.truthy(out:find("consultAddablePaymentMethod%s+S SUCCESS"))
    assert.truthy(out:find("cacheCard%s+S SUCCESS"))
    assert.truthy(out:find("addPaymentMethod%s+S SUCCESS"))
    assert.truthy(out:find("status%s+ACCEPTED"))
    assert.truthy(out:find("411111******1111", 1, true))
    local all = out .. err
    assert.is_nil(all:find(CARD, 1, true))
    assert.is_nil(all:find("%f[%w]" .. CVC .. "%f[%W]"))
  end)

  it("bind exits 1 on a risk rejection", function()
    local status, _, err = dws_cmd("bind " .. profile() .. " --card 4000000000000101")
    assert.are.equal(1, status)
    assert.truthy(err:find("RISK_REJECT", 1, true))
  end)

  describe("notify send", function()
    local srv
    setup(function()
      srv = assert(httpd.start{ locations = [[
    location = /ack {
        content_by_lua_block {
            ngx.header["Content-Type"] = "application/json"
            ngx.print('{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}')
        }
    }
    location = /ack-loose {
        content_by_lua_block {
            ngx.header["Content-Type"] = "application/json"
            ngx.print('{"result": {"resultStatus": "S", "resultCode": "SUCCESS", "resultMessage": "ok"}}')
        }
    }
]] })
      files.write(dir .. "/dws_private.pem", sb.dws_private_key_pem)
    end)
    teardown(function() if srv then srv:stop() end end)
    local function send(path, extra)
      return dws_cmd("notify send " .. q(srv:url(path)) .. " --dws-private-key " .. q(dir .. "/dws_private.pem")
        .. " --client-id " .. CID .. " " .. (extra or ""))
    end

    it("posts a notification signed with the DWS key over the URL's path", function()
      local status, out = send("/echo", "--request-id req-cli-1 --time 1700000000123")
      assert.are.equal(1, status) -- the echo is not an acknowledgement
      assert.truthy(out:find("acknowledged: no", 1, true))
      -- The echo endpoint answered with the body and headers it received: verify them as a merchant would.
      local body = out:match("\nanswer: ([^\n]*)")
      local t = core.json_decode(body)
      assert.are.equal("req-cli-1", t.requestId)
      local c = dws.client{ client_id = CID, private_key = sb.merchant.private_key, dws_public_key = sb.dws_public_key,
                            gateway = "https://dws.example" }
      local sig = out:match("\nsignature: ([^\n]*)")
      local n, err = c:verify_notification({ method = "POST", path = "/echo", body = body,
        headers = { ["client-id"] = CID, ["request-time"] = "1700000000123", signature = sig } },
        { now = 1700000000123 })
      assert.truthy(n, tostring(err))
    end)

    it("reports the exact acknowledgement", function()
      local status, out = send("/ack")
      assert.are.equal(0, status)
      assert.truthy(out:find("acknowledged: yes, exactly the acknowledgement the page requires", 1, true))
    end)

    it("reports an S acknowledgement that is not the page's bytes", function()
      local status, out = send("/ack-loose")
      assert.are.equal(0, status)
      assert.truthy(out:find("not exactly the page's acknowledgement", 1, true), out)
    end)
  end)
end)

describe("dws sandbox #nginx", function()
  it("starts, reports status, stops", function()
    local dir = nginx.tmpdir("dws-cli-sbx")
    local status, out, err = dws_cmd("sandbox start --free-ports --dir " .. q(dir))
    assert.are.equal(0, status, err)
    assert.truthy(out:find("^http=%d+ https=%d+"))
    status, out = dws_cmd("sandbox status --dir " .. q(dir))
    assert.are.equal(0, status)
    assert.truthy(out:find("^running pid=%d+"))
    local bstatus, bout = dws_cmd("bind --sandbox " .. q(dir))
    assert.are.equal(0, bstatus)
    assert.truthy(bout:find("status%s+ACCEPTED"))
    status = dws_cmd("sandbox stop --dir " .. q(dir))
    assert.are.equal(0, status)
    status, out = dws_cmd("sandbox status --dir " .. q(dir))
    assert.are.equal(3, status)
    assert.truthy(out:find("^stopped"))
    nginx.rmdir(dir)
  end)
end)
