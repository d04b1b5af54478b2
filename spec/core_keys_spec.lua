-- dws.core keys: every accepted private and public form, and what is refused.
-- Keys are generated with the openssl command line in a temporary directory (the RSA-2048 one
-- taken from spec/helpers/keys.lua, made once per run).
local core = require "dws.core"
local files = require "helpers.files"
local keys = require "helpers.keys"

local function sh(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  assert(ok == true or ok == 0, "command failed: " .. cmd)
end

local read = files.read

local function tempdir()
  local p = assert(io.popen("mktemp -d"))
  local dir = p:read("*l")
  p:close()
  return dir
end

describe("dws.core keys", function()
  local dir, forms

  setup(function()
    dir = tempdir()
    local function o(args) sh("cd " .. dir .. " && openssl " .. args) end
    -- the RSA-2048 key (PKCS#8 PEM, as genpkey writes it) made once per run; its forms made here
    files.write(dir .. "/pkcs8.pem", (keys.pair("core_keys")))
    o("rsa -in pkcs8.pem -traditional -out pkcs1.pem")
    -- (openssl pkey -outform DER writes PKCS#1 for RSA; pkcs8 -topk8 gives real PKCS#8)
    o("pkcs8 -topk8 -nocrypt -in pkcs8.pem -outform DER -out pkcs8.der")
    o("rsa -in pkcs8.pem -traditional -outform DER -out pkcs1.der")
    o("pkey -in pkcs8.pem -pubout -out spki.pem")
    o("rsa -in pkcs8.pem -RSAPublicKey_out -out rsapub.pem")
    o("pkey -in pkcs8.pem -pubout -outform DER -out spki.der")
    o("rsa -in pkcs8.pem -RSAPublicKey_out -outform DER -out rsapub.der")
    o("genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out small.pem")
    o("pkey -in small.pem -pubout -out small_pub.pem")
    o("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.pem")
    o("pkey -in ec.pem -pubout -out ec_pub.pem")
    o("pkey -in ec.pem -outform DER -out ec.der")
    o("genpkey -algorithm ED25519 -out ed.pem")
    o("pkey -in pkcs8.pem -aes256 -passout pass:secret -out encrypted.pem")
    forms = {}
    for _, name in ipairs{ "pkcs8.pem", "pkcs1.pem", "spki.pem", "rsapub.pem", "small.pem",
                           "small_pub.pem", "ec.pem", "ec_pub.pem", "ed.pem", "encrypted.pem" } do
      forms[name] = read(dir .. "/" .. name)
    end
    for _, name in ipairs{ "pkcs8.der", "pkcs1.der", "spki.der", "rsapub.der", "ec.der" } do
      forms[name] = core.base64_encode(read(dir .. "/" .. name))
    end
  end)

  teardown(function()
    if dir then sh("rm -rf " .. dir) end
  end)

  it("has generated the forms it claims (PKCS#8 wraps an AlgorithmIdentifier, PKCS#1 does not)", function()
    -- SEQUENCE { INTEGER 0, then SEQUENCE (PKCS#8) or INTEGER n (PKCS#1) }
    assert.equal(0x30, core.base64_decode(forms["pkcs8.der"]):byte(8))
    assert.equal(0x02, core.base64_decode(forms["pkcs1.der"]):byte(8))
    assert.matches("BEGIN PRIVATE KEY", forms["pkcs8.pem"])
    assert.matches("BEGIN RSA PRIVATE KEY", forms["pkcs1.pem"])
    assert.matches("BEGIN PUBLIC KEY", forms["spki.pem"])
    assert.matches("BEGIN RSA PUBLIC KEY", forms["rsapub.pem"])
    -- SPKI: SEQUENCE { SEQUENCE { OID ... } ...}; PKCS#1 public: SEQUENCE { INTEGER n, INTEGER e }
    assert.equal(0x30, core.base64_decode(forms["spki.der"]):byte(5))
    assert.equal(0x02, core.base64_decode(forms["rsapub.der"]):byte(5))
  end)

  -- one content, signed by every private form and verified by every public form
  local content = "POST /ams/api/v1/paymentMethods/cacheCard\nID.1700000000000.{}"

  local private_forms = { "pkcs8.pem", "pkcs1.pem", "pkcs8.der", "pkcs1.der" }
  local public_forms = { "spki.pem", "rsapub.pem", "spki.der", "rsapub.der" }

  for _, name in ipairs(private_forms) do
    it("loads a private key: " .. name, function()
      local key, err = core.private_key(forms[name])
      assert.is_nil(err)
      assert.equal("private", key:kind())
      assert.equal(2048, key:bits())
      assert.equal("dws.key(private, 2048 bits)", tostring(key))
      local sig = key:sign(content)
      assert.equal(256, #sig)
      for _, pub in ipairs(public_forms) do
        assert.is_true(assert(core.public_key(forms[pub])):verify(content, sig))
      end
    end)
  end

  for _, name in ipairs(public_forms) do
    it("loads a public key: " .. name, function()
      local key, err = core.public_key(forms[name])
      assert.is_nil(err)
      assert.equal("public", key:kind())
      assert.equal(2048, key:bits())
      assert.equal("dws.key(public, 2048 bits)", tostring(key))
    end)
  end

  it("gives the same signature from every private form (PKCS#1 v1.5 is deterministic)", function()
    local first = assert(core.private_key(forms["pkcs8.pem"])):sign(content)
    for _, name in ipairs(private_forms) do
      assert.equal(first, assert(core.private_key(forms[name])):sign(content))
    end
  end)

  it("tolerates whitespace and line breaks in bare base64 and CRLF in PEM", function()
    local b64 = forms["pkcs8.der"]
    local wrapped = "  " .. b64:gsub("(" .. ("."):rep(64) .. ")", "%1\r\n") .. "\n"
    assert.truthy(core.private_key(wrapped))
    local spki = forms["spki.der"]
    assert.truthy(core.public_key(spki:sub(1, 10) .. " \t" .. spki:sub(11) .. "\n"))
    assert.truthy(core.private_key((forms["pkcs8.pem"]:gsub("\n", "\r\n"))))
    assert.truthy(core.public_key("\n\n" .. forms["spki.pem"] .. "\n\n"))
  end)

  it("takes PEM whose line breaks were lost (one line, or literal \\n from JSON or env)", function()
    for _, name in ipairs{ "pkcs8.pem", "pkcs1.pem", "spki.pem", "rsapub.pem" } do
      local load = (name == "spki.pem" or name == "rsapub.pem") and core.public_key or core.private_key
      local one_line = forms[name]:gsub("\n", "")
      local escaped = forms[name]:gsub("\n", "\\n")
      assert.is_nil(one_line:find("\n"))
      assert.truthy(escaped:find("\\n"))
      for _, text in ipairs{ one_line, escaped, (forms[name]:gsub("\n", " ")) } do
        local key, err = load(text)
        assert.is_nil(err)
        assert.equal(2048, key:bits())
      end
    end
    local sig = assert(core.private_key((forms["pkcs8.pem"]:gsub("\n", "")))):sign(content)
    assert.is_true(assert(core.public_key((forms["spki.pem"]:gsub("\n", "\\n")))):verify(content, sig))
  end)

  local function refused(fn, text, pattern)
    local key, err = fn(text)
    assert.is_nil(key)
    assert.is_string(err)
    if pattern then assert.matches(pattern, err) end
    return err
  end

  it("refuses garbage with a clear message", function()
    refused(core.private_key, "", "empty")
    refused(core.public_key, "", "empty")
    refused(core.private_key, "hello world!", "neither PEM nor base64")
    refused(core.private_key, "aGVsbG8gd29ybGQh", "could not be parsed")
    refused(core.public_key, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "could not be parsed")
    refused(core.private_key, forms["pkcs8.der"]:sub(1, 200), "could not be parsed")
    refused(core.private_key, forms["pkcs8.pem"]:sub(1, 900), "could not be parsed")
    refused(core.private_key, ("A"):rep(70000), "longer than")
  end)

  it("refuses RSA keys under 2048 bits", function()
    refused(core.private_key, forms["small.pem"], "1024 bits")
    refused(core.public_key, forms["small_pub.pem"], "1024 bits")
  end)

  describe("degenerate and damaged keys", function()
    -- PKCS#1 RSAPublicKey DER from a modulus (hex) and an exponent (small integer).
    local function der_len(n)
      if n < 128 then return string.char(n) end
      if n < 256 then return "\129" .. string.char(n) end
      return "\130" .. string.char(math.floor(n / 256), n % 256)
    end
    local function der_int(bytes)
      if bytes:byte(1) >= 128 then bytes = "\0" .. bytes end
      return "\2" .. der_len(#bytes) .. bytes
    end
    local function rsa_public_pem(modulus_hex, e)
      local n = modulus_hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
      local eb = ""
      repeat eb = string.char(e % 256) .. eb; e = math.floor(e / 256) until e == 0
      local body = der_int(n) .. der_int(eb)
      local der = "\48" .. der_len(#body) .. body
      return "-----BEGIN RSA PUBLIC KEY-----\n" .. core.base64_encode(der) .. "\n-----END RSA PUBLIC KEY-----\n"
    end
    local modulus

    setup(function()
      local p = assert(io.popen("openssl rsa -in " .. dir .. "/pkcs8.pem -noout -modulus 2>/dev/null"))
      modulus = assert(p:read("*l"):match("^Modulus=(%x+)$"))
      p:close()
      sh("cd " .. dir .. " && (openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
        .. "-pkeyopt rsa_keygen_pubexp:3 -out e3.pem && openssl pkey -in e3.pem -pubout -out e3_pub.pem)")
    end)

    it("builds public keys the way OpenSSL does (the real exponent round-trips)", function()
      assert.truthy(core.public_key(rsa_public_pem(modulus, 65537)))
    end)

    it("refuses a public key with e = 1 (a signature would be the padded digest itself)", function()
      refused(core.public_key, rsa_public_pem(modulus, 1), "exponent must be odd, at least 65537")
    end)

    it("refuses an even public exponent", function()
      refused(core.public_key, rsa_public_pem(modulus, 65538), "exponent must be odd")
    end)

    it("refuses e = 3 (below the FIPS 186-4 range the SDK requires)", function()
      refused(core.public_key, read(dir .. "/e3_pub.pem"), "at least 65537")
      refused(core.private_key, read(dir .. "/e3.pem"), "at least 65537")
    end)

    it("refuses a 2048-bit public 'modulus' that is even (OpenSSL's public key check)", function()
      local even = modulus:sub(1, -2) .. "0"
      refused(core.public_key, rsa_public_pem(even, 65537), "not a valid RSA public key")
    end)

    -- #once: OpenSSL's pair-wise check in key.c, the same C in both builds (the Lua side of a refusal
    -- is checked under both flavours by the next spec); 300 checks cost seconds of CPU.
    it("refuses a private key with any one base64 character changed (pair-wise check) #heavy #once", function()
      local pem = forms["pkcs8.pem"]
      local body_start = assert(pem:find("\n", 1, true)) + 1
      local body_end = assert(pem:find("-----END", 1, true)) - 1
      local loaded, tried = {}, 0
      -- Every 5th character of the body, skipping the DER header of the first line.
      for pos = body_start + 64, body_end - 8, 5 do
        local c = pem:sub(pos, pos)
        if c:find("[%w+/]") then
          tried = tried + 1
          local variant = pem:sub(1, pos - 1) .. (c == "A" and "B" or "A") .. pem:sub(pos + 1)
          if core.private_key(variant) then loaded[#loaded + 1] = pos end
        end
      end
      assert.is_true(tried > 250, "tried " .. tried)
      assert.same({}, loaded)
    end)

    it("names the pair-wise check when a damaged private key parses", function()
      local pem = forms["pkcs8.pem"]
      -- Inside the private exponent: the DER stays well formed, the key does not.
      local pos = math.floor(#pem * 0.6)
      while not pem:sub(pos, pos):find("[%w+/]") do pos = pos + 1 end
      local c = pem:sub(pos, pos)
      refused(core.private_key, pem:sub(1, pos - 1) .. (c == "A" and "B" or "A") .. pem:sub(pos + 1),
        "inconsistent RSA key")
    end)
    it("makes dws.client raise on a damaged private key (not DWS, later)", function()
      local dws = require "dws"
      local pem = forms["pkcs8.pem"]
      local pos = math.floor(#pem * 0.6)
      while not pem:sub(pos, pos):find("[%w+/]") do pos = pos + 1 end
      local c = pem:sub(pos, pos)
      assert.has_error(function()
        dws.client{ client_id = "SANDBOX_KEYS", gateway = "https://127.0.0.1:1",
          private_key = pem:sub(1, pos - 1) .. (c == "A" and "B" or "A") .. pem:sub(pos + 1),
          dws_public_key = forms["spki.pem"] }
      end, "dws.client: option private_key is unreadable: private key: inconsistent RSA key "
        .. "(failed OpenSSL's key-pair check)")
    end)
  end)

  it("refuses keys that are not RSA", function()
    refused(core.private_key, forms["ec.pem"], "not an RSA key %(EC%)")
    refused(core.private_key, forms["ec.der"], "not an RSA key %(EC%)")
    refused(core.public_key, forms["ec_pub.pem"], "not an RSA key %(EC%)")
    refused(core.private_key, forms["ed.pem"], "not an RSA key")
  end)

  it("refuses encrypted keys without prompting for a passphrase", function()
    refused(core.private_key, forms["encrypted.pem"], "encrypted")
  end)

  it("refuses a public key where a private one is needed, and the other way round", function()
    refused(core.private_key, forms["spki.pem"], "^private key:")
    refused(core.private_key, forms["spki.der"], "^private key:")
    refused(core.public_key, forms["pkcs8.pem"], "^public key:")
    refused(core.public_key, forms["pkcs1.der"], "^public key:")
  end)

  it("never puts key bytes in an error message", function()
    local bad = forms["pkcs8.der"]:sub(1, 600)
    local err = refused(core.private_key, bad)
    assert.is_nil(err:find(bad:sub(30, 60), 1, true))
    local pem = forms["pkcs8.pem"]:gsub("MII", "MI!")
    err = refused(core.private_key, pem)
    assert.is_nil(err:find("MI!", 1, true))
    assert.is_true(#err < 160)
  end)

  it("leaves no OpenSSL error behind to confuse a later call", function()
    refused(core.private_key, forms["ec.pem"])
    refused(core.private_key, "garbage!")
    local key = assert(core.private_key(forms["pkcs8.pem"]))
    assert.equal(256, #key:sign("x"))
  end)

  it("raises on wrong argument types (programming errors)", function()
    assert.has_error(function() core.private_key(nil) end)
    assert.has_error(function() core.public_key({}) end)
    local priv = assert(core.private_key(forms["pkcs8.pem"]))
    local pub = assert(core.public_key(forms["spki.pem"]))
    assert.has_error(function() priv:sign(nil) end)
    assert.has_error(function() pub:sign("x") end, nil)
    assert.has_error(function() priv:verify("x", "y") end)
    assert.has_error(function() priv.sign({}, "x") end)
  end)

  describe("close", function()
    it("is idempotent, and a closed key raises when used (a programming error)", function()
      local key = assert(core.private_key(forms["pkcs8.pem"]))
      key:close()
      key:close()
      assert.equal("dws.key(closed)", tostring(key))
      assert.has_error(function() key:sign("x") end)
      assert.has_error(function() key:bits() end)
      assert.has_error(function() key:kind() end)
      assert.has_error(function() core.sign(key, "POST", "/", "c", "1", "{}") end)
      local pub = assert(core.public_key(forms["spki.pem"]))
      pub:close()
      assert.has_error(function() pub:verify("x", "y") end)
    end)

    it("survives garbage collection after close", function()
      for _ = 1, 3 do
        local key = assert(core.private_key(forms["pkcs1.pem"]))
        key:close()
      end
      collectgarbage()
      collectgarbage()
      assert.truthy(core.private_key(forms["pkcs1.pem"]))
    end)

    if _VERSION == "Lua 5.4" then
      it("closes a to-be-closed key at the end of its scope", function()
        local chunk = assert(load([[
          local core, text = ...
          local outer
          do
            local key <close> = assert(core.private_key(text))
            outer = key
            assert(#key:sign("x") == 256)
          end
          return tostring(outer)
        ]]))
        assert.equal("dws.key(closed)", chunk(core, forms["pkcs8.pem"]))
      end)
    end
  end)
end)
