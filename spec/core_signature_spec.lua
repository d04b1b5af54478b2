-- dws.core signing: the worked example byte for byte, cross-checks with the openssl command line
-- as an independent implementation, and the Signature header both ways.
local core = require "dws.core"
local files = require "helpers.files"

local example = files.EXAMPLE .. "/"

local read = files.read

local write = files.write

local function run(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  return ok == true or ok == 0
end

local function trim(s) return (s:gsub("%s+$", "")) end

describe("dws.core signatures", function()
  local priv, pub, dir

  setup(function()
    priv = assert(core.private_key(read(example .. "merchant_private.pem")))
    pub = assert(core.public_key(read(example .. "merchant_public.pem")))
    local p = assert(io.popen("mktemp -d"))
    dir = p:read("*l")
    p:close()
  end)

  teardown(function()
    if dir then run("rm -rf " .. dir) end
  end)

  describe("the worked example", function()
    local method, path = "POST", "/ams/api/v1/paymentMethods/consultAddablePaymentMethod"
    local client_id, time = "EXAMPLE0000000001", "1700000000000"
    local body = '{"customerId":"2162878776333","env":{"terminalType":"WEB"},"scenes":["TOPUP"]}'

    it("has the content the example folder holds", function()
      assert.equal(read(example .. "content.txt"),
                   method .. " " .. path .. "\n" .. client_id .. "." .. time .. "." .. body)
    end)

    it("signs to signature.b64 byte for byte", function()
      assert.equal(trim(read(example .. "signature.b64")),
                   core.sign(priv, method, path, client_id, time, body))
      assert.equal(trim(read(example .. "signature.b64")),
                   core.base64_encode(priv:sign(read(example .. "content.txt"))))
    end)

    it("builds signature_header.txt byte for byte", function()
      local sig = core.sign(priv, method, path, client_id, time, body)
      assert.equal(trim(read(example .. "signature_header.txt")), core.signature_header(sig, "1"))
      assert.equal(trim(read(example .. "signature_header.txt")), core.signature_header(sig, 1))
    end)

    it("verifies, and fails on any change", function()
      local raw = core.base64_decode(trim(read(example .. "signature.b64")))
      assert.is_true(core.verify(pub, method, path, client_id, time, body, raw))
      assert.is_true(pub:verify(read(example .. "content.txt"), raw))
      local ok, why = core.verify(pub, method, path, client_id, time, body .. " ", raw)
      assert.is_false(ok)
      assert.equal("signature does not match", why)
      ok = core.verify(pub, "GET", path, client_id, time, body, raw)
      assert.is_false(ok)
      ok = core.verify(pub, method, path, client_id, "1700000000001", body, raw)
      assert.is_false(ok)
      local flipped = raw:sub(1, 10) .. string.char((raw:byte(11) + 1) % 256) .. raw:sub(12)
      assert.is_false((core.verify(pub, method, path, client_id, time, body, flipped)))
      ok, why = core.verify(pub, method, path, client_id, time, body, raw:sub(2))
      assert.is_false(ok)
      assert.matches("length", why)
      assert.is_false((core.verify(pub, method, path, client_id, time, body, "")))
    end)

    it("parses the header back to the raw signature", function()
      local h = assert(core.parse_signature_header(trim(read(example .. "signature_header.txt"))))
      assert.equal("RSA256", h.algorithm)
      assert.equal("1", h.keyVersion)
      assert.equal(core.base64_decode(trim(read(example .. "signature.b64"))), h.signature)
    end)
  end)

  describe("against the openssl command line", function()
    local function random_content(i)
      -- printable and binary bytes, UTF-8, and the odd NUL: the signer must not care
      local body = core.random_bytes(i * 37 % 500) .. "é€" .. string.char(0) .. tostring(i)
      return "POST", "/ams/api/v1/paymentMethods/cacheCard", "CLIENT" .. i, tostring(1.7e12 + i), body
    end

    it("accepts our signatures over random contents (openssl dgst -verify)", function()
      for i = 1, 8 do
        local m, p, c, t, b = random_content(i)
        local sig = core.sign(priv, m, p, c, t, b)
        write(dir .. "/content", m .. " " .. p .. "\n" .. c .. "." .. t .. "." .. b)
        write(dir .. "/sig", core.base64_decode(sig))
        assert.is_true(run("openssl dgst -sha256 -verify " .. example .. "merchant_public.pem" ..
                           " -signature " .. dir .. "/sig " .. dir .. "/content"))
      end
    end)

    it("and openssl rejects a signature over other content (the check can fail)", function()
      local m, p, c, t, b = random_content(1)
      write(dir .. "/content", m .. " " .. p .. "\n" .. c .. "." .. t .. "." .. b .. "x")
      write(dir .. "/sig", core.base64_decode(core.sign(priv, m, p, c, t, b)))
      assert.is_false(run("openssl dgst -sha256 -verify " .. example .. "merchant_public.pem" ..
                          " -signature " .. dir .. "/sig " .. dir .. "/content"))
    end)

    it("verifies signatures openssl made", function()
      for i = 1, 8 do
        local m, p, c, t, b = random_content(i + 100)
        write(dir .. "/content", m .. " " .. p .. "\n" .. c .. "." .. t .. "." .. b)
        assert.is_true(run("openssl dgst -sha256 -sign " .. example .. "merchant_private.pem" ..
                           " -out " .. dir .. "/sig " .. dir .. "/content"))
        local raw = read(dir .. "/sig")
        assert.is_true(core.verify(pub, m, p, c, t, b, raw))
        assert.is_true(pub:verify(read(dir .. "/content"), raw))
        assert.equal(raw, priv:sign(read(dir .. "/content")))
      end
    end)
  end)

  describe("core.sign arguments", function()
    it("takes the time as a string or an integer", function()
      assert.equal(core.sign(priv, "POST", "/p", "c", "1700000000000", "{}"),
                   core.sign(priv, "POST", "/p", "c", 1700000000000, "{}"))
    end)

    it("signs an empty body", function()
      local sig = core.sign(priv, "POST", "/p", "c", "1", "")
      assert.is_true(pub:verify("POST /p\nc.1.", core.base64_decode(sig)))
    end)

    it("raises on wrong argument types and wrong key kinds", function()
      assert.has_error(function() core.sign(priv, "POST", "/p", "c", "1", nil) end)
      assert.has_error(function() core.sign(priv, "POST", nil, "c", "1", "{}") end)
      assert.has_error(function() core.sign("key", "POST", "/p", "c", "1", "{}") end)
      assert.has_error(function() core.sign(pub, "POST", "/p", "c", "1", "{}") end)
      assert.has_error(function() core.verify(priv, "POST", "/p", "c", "1", "{}", "x") end)
      assert.has_error(function() core.verify(pub, "POST", "/p", "c", "1", "{}", nil) end)
    end)
  end)

  describe("core.signature_header", function()
    it("url-encodes + / = with upper-case hex", function()
      assert.equal("algorithm=RSA256,keyVersion=2,signature=ab%2Bc%2Fd%3D%3D",
                   core.signature_header("ab+c/d==", "2"))
    end)

    it("raises on a key version that would break the header", function()
      assert.has_error(function() core.signature_header("abc", "1,signature=x") end)
      assert.has_error(function() core.signature_header("abc", "") end)
      assert.has_error(function() core.signature_header(nil, "1") end)
    end)
  end)

  describe("core.parse_signature_header", function()
    local raw = "\251\255\191hello"
    local b64 = core.base64_encode(raw)   -- "+/+/aGVsbG8=" has all three special characters

    it("decodes upper- and lower-case percent escapes", function()
      local upper = core.url_encode(b64)
      assert.matches("%%2B", upper)
      local lower = upper:gsub("%%(%x%x)", function(h) return "%" .. h:lower() end)
      assert.matches("%%2b", lower)
      local prefix = "algorithm=RSA256,keyVersion=1,signature="
      assert.equal(raw, assert(core.parse_signature_header(prefix .. upper)).signature)
      assert.equal(raw, assert(core.parse_signature_header(prefix .. lower)).signature)
    end)

    it("takes the signature up to the next comma, in any item order, names in any case", function()
      local h = assert(core.parse_signature_header("signature=" .. core.url_encode(b64) ..
                                                   ",keyVersion=7,algorithm=RSA256,extra=1"))
      assert.equal(raw, h.signature)
      assert.equal("7", h.keyVersion)
      assert.equal("RSA256", h.algorithm)
      h = assert(core.parse_signature_header(" Algorithm = RSA256 , KEYVERSION=1, Signature=" ..
                                             core.url_encode(b64) .. " "))
      assert.equal(raw, h.signature)
      assert.equal("1", h.keyVersion)
    end)

    it("accepts an unencoded base64 value", function()
      assert.equal(raw, assert(core.parse_signature_header("signature=" .. b64)).signature)
    end)

    it("leaves absent items absent", function()
      local h = assert(core.parse_signature_header("signature=" .. b64))
      assert.is_nil(h.algorithm)
      assert.is_nil(h.keyVersion)
    end)

    local function bad(s, pattern)
      local h, err = core.parse_signature_header(s)
      assert.is_nil(h)
      assert.matches(pattern, err)
      return err
    end

    it("reports a missing or empty signature item", function()
      bad("algorithm=RSA256,keyVersion=1", "no signature= item")
      bad("", "no signature= item")
      bad("algorithm=RSA256,keyVersion=1,signature=", "empty signature")
      bad("algorithm=RSA256,keyVersion=1,signatures=abcd", "no signature= item")
    end)

    it("reports bad percent escapes and bad base64 without echoing them", function()
      local err = bad("signature=abc%2", "percent")
      assert.is_nil(err:find("abc", 1, true))
      bad("signature=%zzabcd", "percent")
      err = bad("signature=SECRETx!", "base64")
      assert.is_nil(err:find("SECRET", 1, true))
      bad("signature=abc", "base64")
      bad("signature=ab%3D%3D%3D", "base64")
    end)

    it("refuses malformed and ambiguous headers", function()
      bad("signature=" .. b64 .. ",signature=" .. b64, "duplicated")
      bad("algorithm,signature=" .. b64, "without '='")
      bad("signature=" .. ("A"):rep(9000), "too long")
    end)

    it("raises on a non-string argument", function()
      assert.has_error(function() core.parse_signature_header(nil) end)
    end)
  end)
end)
