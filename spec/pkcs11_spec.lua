-- Private keys held by a PKCS#11 token (docs/keys.md "PKCS#11"), against a real softhsm2 token
-- through OpenSSL's "pkcs11" engine (libp11). The key is generated in the token as sensitive and
-- never extractable, so every signature below is made inside the token's library. What loads the
-- token runs as a Lua 5.4 child process (helpers/softhsm.lua says why), so these are #once: the
-- busted flavour does not change what runs. In nginx: spec/pkcs11_nginx_spec.lua.
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local sandbox = require "helpers.sandbox"
local softhsm = require "helpers.softhsm"
local files = require "helpers.files"

local q = nginx.sh_quote
local ROOT = os.getenv("DWS_ROOT")
local CID = "SANDBOX_PKCS11_MERCHANT"

local token, sb, pub_b64

-- The token key's public half as the child process reads it (bare base64 SPKI).
local function public_half(uri)
  local rc, out = token:lua(string.format([[
    local k = assert(require("dws.core").private_key(%q))
    io.write(require("dws.core").base64_encode(k:public_der()))
  ]], uri))
  assert(rc == 0, out)
  return out
end

-- The error core.private_key answers for uri (and opts, a Lua table constructor as text).
local function load_error(uri, opts, env)
  local rc, out = token:lua(string.format([[
    local k, err = require("dws.core").private_key(%q, %s)
    io.write(k and "loaded" or err)
  ]], uri, opts or "nil"), env)
  assert(rc == 0, out)
  return out
end

lazy_setup(function()
  token = softhsm.start()
  token:keygen("signer", "01")
  pub_b64 = public_half(token:uri("signer"))
  sb = assert(sandbox.start{ clients = { [CID] = { public_key = pub_b64 } } })
end)

lazy_teardown(function()
  if sb then sb:stop() end
  if token then token:stop() end
end)

describe("a private key in a PKCS#11 token #once", function()
  it("was generated sensitive and never extractable", function()
    local _, out = token:tool("--list-objects --type privkey")
    assert.truthy(out:find("Access:%s+sensitive, always sensitive, never extractable"), out)
  end)

  it("signs content that openssl verifies with the public half", function()
    local content = "POST /ams/api/v1/paymentMethods/cacheCard\nC.1700000000000.{}"
    local rc, out = token:lua(string.format([[
      local core = require "dws.core"
      local k = assert(core.private_key(%q))
      io.write(assert(k:sign(%q)))
    ]], token:uri("signer"), content))
    assert(rc == 0, out)
    local dir = token.dir
    files.write(dir .. "/content", content)
    files.write(dir .. "/sig", out)
    files.write(dir .. "/pub.pem", "-----BEGIN PUBLIC KEY-----\n" .. pub_b64:gsub(("."):rep(64), "%0\n")
      .. "\n-----END PUBLIC KEY-----\n")
    local ok = os.execute("openssl dgst -sha256 -verify " .. q(dir .. "/pub.pem") .. " -signature " .. q(dir .. "/sig")
      .. " " .. q(dir .. "/content") .. " >/dev/null 2>&1")
    assert.is_true(ok == true or ok == 0)
  end)

  it("signs every call of a client against the sandbox", function()
    local rc, out = token:lua(string.format([[
      local client = require("dws").client{ client_id = %q, private_key = %q, dws_public_key = %q,
        gateway = %q, ca_file = %q, max_retries = 0 }
      for _ = 1, 20 do
        local res, err = client:consult_addable_payment_method{ customerId = "2162878776333",
          env = { terminalType = "WEB" } }
        io.write(res and "S" or tostring(err), " ")
      end
    ]], CID, token:uri("signer"), sb.dws_public_key, sb.https_url, sb.ca_file))
    assert.are.same({ 0, ("S "):rep(20) }, { rc, out })
  end)

  it("takes the PIN as the client's pkcs11_pin option, and keeps it out of options and tostring", function()
    local rc, out = token:lua(string.format([[
      local client = require("dws").client{ client_id = %q, private_key = %q, pkcs11_pin = %q,
        dws_public_key = %q, gateway = %q, ca_file = %q }
      io.write(tostring(client.private_key), " ", tostring(client.options.pkcs11_pin))
    ]], CID, token:uri("signer", "none"), softhsm.PIN, sb.dws_public_key, sb.https_url, sb.ca_file))
    assert.are.same({ 0, "dws.key(private, 2048 bits, pkcs11) nil" }, { rc, out })
  end)

  it("works from a key file holding the URI (dws call, DWS_PRIVATE_KEY_FILE)", function()
    files.write(token.dir .. "/key.uri", token:uri("signer"))
    files.write(token.dir .. "/consult.json", '{"customerId":"2162878776333","env":{"terminalType":"WEB"}}')
    local rc, out = token:run(string.format("DWS_CLIENT_ID=%s DWS_PRIVATE_KEY_FILE=%s DWS_PUBLIC_KEY=%s "
      .. "DWS_GATEWAY=%s DWS_CA_FILE=%s %s lua5.4 %s call consultAddablePaymentMethod %s",
      q(CID), q(token.dir .. "/key.uri"), q(sb.dws_public_key), q(sb.https_url), q(sb.ca_file), softhsm.LUA_ENV,
      q(ROOT .. "/bin/dws"), q(token.dir .. "/consult.json")))
    assert.are.same({ 0, true }, { rc, out:find('"resultStatus": *"S"') ~= nil })
  end)
end)

describe("dws and a PKCS#11 token #once", function()
  local function dws_run(args, env)
    return token:run((env or "") .. " " .. softhsm.LUA_ENV .. " lua5.4 " .. q(ROOT .. "/bin/dws") .. " " .. args)
  end

  local generated
  lazy_setup(function()
    local uri = "pkcs11:token=" .. softhsm.LABEL .. ";object=made-by-dws;id=%02?module-path=" .. softhsm.MODULE
      .. "&pin-source=file:" .. token.pin_file
    generated = { dws_run("keygen --out " .. q(token.dir .. "/kg") .. " --key-version 2 --pkcs11 " .. q(uri)) }
  end)

  it("keygen --pkcs11 writes the key's URI and the public half, no private key", function()
    local p = io.popen("ls " .. q(token.dir .. "/kg"))
    local list = p:read("a")
    p:close()
    assert.are.same({ 0, "merchant_v2_private.uri\nmerchant_v2_public.b64\nmerchant_v2_public.pem\n" },
      { generated[1], list })
  end)

  it("keygen --pkcs11 made the private key sensitive and never extractable", function()
    local _, out = token:tool("--list-objects --type privkey")
    assert.truthy(out:find("label:%s+made%-by%-dws\n%s+ID:%s+02\n%s+Usage:[^\n]*\n%s+Access:%s+sensitive, always "
      .. "sensitive, never extractable"), out)
  end)

  it("keygen --pkcs11's key signs what its public half verifies", function()
    local rc, out = token:lua(string.format([[
      local core = require "dws.core"
      local function read(p) local f = assert(io.open(p)); local s = f:read("a"); f:close(); return s end
      local k = assert(core.private_key((read(%q):gsub("%%s+$", ""))))
      local pub = assert(core.public_key(read(%q)))
      io.write(tostring(core.verify(pub, "POST", "/p", "C", "1", "{}",
        core.base64_decode(assert(core.sign(k, "POST", "/p", "C", "1", "{}"))))))
    ]], token.dir .. "/kg/merchant_v2_private.uri", token.dir .. "/kg/merchant_v2_public.b64"))
    assert.are.same({ 0, "true" }, { rc, out })
  end)

  it("keygen --pkcs11 refuses a label the token already holds", function()
    local uri = "pkcs11:token=" .. softhsm.LABEL .. ";object=signer?module-path=" .. softhsm.MODULE
      .. "&pin-source=file:" .. token.pin_file
    local rc, out = dws_run("keygen --out " .. q(token.dir .. "/kg-again") .. " --pkcs11 " .. q(uri))
    assert.are.same({ 1, "dws: the token already holds an object labelled signer\n" }, { rc, out })
  end)

  it("dws sign takes a pkcs11: URI as --private-key", function()
    files.write(token.dir .. "/body.json", "{}")
    local rc, out = dws_run("sign --client-id C --path /p --time 1 --private-key " .. q(token:uri("signer")) .. " "
      .. q(token.dir .. "/body.json"))
    assert.are.same({ 0, true }, { rc, out:find("\nSignature: algorithm=RSA256,keyVersion=1,signature=%S+\n") ~= nil })
  end)
end)

describe("a token that goes away mid-run #once", function()
  local gone, outcome
  lazy_setup(function()
    -- A token of its own: this one is deleted under the client.
    gone = softhsm.start()
    gone:keygen("signer", "01")
    local rc, pub = gone:lua(string.format([[
      local core = require "dws.core"
      io.write(core.base64_encode(assert(core.private_key(%q)):public_der()))
    ]], gone:uri("signer")))
    assert(rc == 0, pub)
    sb:admin("POST", "merchant-keys", { client_id = CID, keys = { ["1"] = pub } })
    local before = #sb:requests()
    local out
    rc, out = gone:lua(string.format([[
      local client = require("dws").client{ client_id = %q, private_key = %q, dws_public_key = %q,
        gateway = %q, ca_file = %q, max_retries = 2, retry_base_delay = 0 }
      local req = { customerId = "2162878776333", env = { terminalType = "WEB" } }
      local res = client:consult_addable_payment_method(req)
      os.execute("softhsm2-util --delete-token --token %s >/dev/null 2>&1")
      local _, err = client:consult_addable_payment_method(req)
      io.write(res and "S" or "-", " ", err.code, " ", err.status, " ", err.attempts, " ", tostring(err.retryable))
    ]], CID, gone:uri("signer"), sb.dws_public_key, sb.https_url, sb.ca_file, softhsm.LABEL))
    assert(rc == 0, out)
    outcome = { answer = out, sent = #sb:requests() - before }
  end)

  lazy_teardown(function()
    sb:admin("POST", "reset")
    if gone then gone:stop() end
  end)

  it("fails the call with KEY_UNAVAILABLE after the retries the one rule allows", function()
    assert.are.equal("S KEY_UNAVAILABLE U 3 true", outcome.answer)
  end)

  it("sent nothing once the token was gone", function()
    assert.are.equal(1, outcome.sent)
  end)
end)

describe("PKCS#11 errors #once", function()
  it("names a wrong PIN, without the PIN", function()
    local bad = token.dir .. "/bad_pin"
    files.write(bad, "999999\n")
    os.execute("chmod 600 " .. q(bad))
    assert.are.equal("PKCS#11: wrong PIN (the token refused the login)", load_error(token:uri("signer", bad)))
  end)

  it("refuses a pin-source file that group or others can read", function()
    local open = token.dir .. "/open_pin"
    files.write(open, softhsm.PIN .. "\n")
    os.execute("chmod 640 " .. q(open))
    assert.are.equal("PKCS#11: the pin-source file is readable by group or others: chmod 600 it",
      load_error(token:uri("signer", open)))
  end)

  it("takes a URI ending with a line break (as read from a file)", function()
    assert.are.equal("loaded", load_error(token:uri("signer") .. "\n"))
  end)

  it("names a missing object", function()
    assert.are.equal("PKCS#11: no such private key: the token or the object the URI names was not found",
      load_error(token:uri("nosuchkey")))
  end)

  it("names a missing token", function()
    local uri = token:uri("signer"):gsub("^pkcs11:token=[^;]*", "pkcs11:token=nosuchtoken")
    assert.are.equal("PKCS#11: no such private key: the token or the object the URI names was not found",
      load_error(uri))
  end)

  it("names a missing engine", function()
    assert.are.equal('PKCS#11: OpenSSL engine "pkcs11" not found (install libengine-pkcs11-openssl)',
      load_error(token:uri("signer"), nil, "OPENSSL_ENGINES=" .. q(token.dir .. "/no-engines")))
  end)

  it("names an unreadable module-path", function()
    local uri = token:uri("signer"):gsub("module%-path=[^&]*", "module-path=/nonexistent/module.so")
    assert.are.equal("PKCS#11: module-path names no readable file", load_error(uri))
  end)

  it("asks for a PIN rather than prompting", function()
    assert.are.equal("PKCS#11: no PIN: give pin-source=file:<path> in the URI, or the PIN option",
      load_error(token:uri("signer", "none")))
  end)

  it("refuses pin-value in the URI", function()
    local out = load_error(token:uri("signer", "none") .. "&pin-value=" .. softhsm.PIN)
    assert.are.same({ true, false }, { out:find("pin-value is refused", 1, true) ~= nil,
      out:find(softhsm.PIN, 1, true) ~= nil })
  end)

  it("refuses a URI naming no object or id", function()
    assert.are.equal("PKCS#11 URI: names no object= or id= (which key in the token?)",
      load_error("pkcs11:token=" .. softhsm.LABEL))
  end)

  it("refuses a pkcs11: URI as a public key", function()
    local _, err = core.public_key(token:uri("signer"))
    assert.are.equal("public key: a pkcs11: URI names a token's private key; give the public key as text", err)
  end)
end)
