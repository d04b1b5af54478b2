local core = require "dws.core"
local dws = require "dws"
local signature = require "dws.signature"
local files = require "helpers.files"

local EXAMPLE = files.EXAMPLE

local read = files.read

local write = files.write

local function sh(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and c == 0
end

local PRIVATE = read(EXAMPLE .. "/merchant_private.pem")
local PUBLIC = read(EXAMPLE .. "/merchant_public.pem")

-- The worked example's content: "POST <path>\n<client>.<time>.<body>".
local CONTENT = read(EXAMPLE .. "/content.txt")
local METHOD, PATH, CLIENT, TIME, BODY = CONTENT:match("^(%u+) ([^\n]+)\n([^.]+)%.([^.]+)%.(.*)$")

local function message(over)
  local m = { method = METHOD, path = PATH, client_id = CLIENT, time = TIME, body = BODY }
  for k, v in pairs(over or {}) do m[k] = v end
  return m
end

-- Bare one-line base64 of a PEM's DER.
local function bare(pem)
  return (pem:gsub("%-%-%-%-%-[^\n]*%-%-%-%-%-", ""):gsub("%s", ""))
end

describe("dws.signature", function()
  local tmp

  setup(function()
    tmp = os.tmpname()
    os.remove(tmp)
    assert(sh("mkdir -p " .. tmp))
    -- another key pair, made once per run (spec/run's key cache)
    local priv, pub = require("dws_sandbox.nginx").make_keypair(tmp, "other")
    assert(os.rename(priv, tmp .. "/other.pem") and os.rename(pub, tmp .. "/other_pub.pem"))
    assert(sh("openssl rsa -in " .. EXAMPLE .. "/merchant_private.pem -traditional -out " .. tmp
      .. "/pkcs1.pem 2>/dev/null"))
  end)

  teardown(function()
    if tmp then os.execute("rm -rf " .. tmp) end
  end)

  it("parsed the worked example's content", function()
    assert.are.equal("POST", METHOD)
    assert.are.equal("/ams/api/v1/paymentMethods/consultAddablePaymentMethod", PATH)
    assert.are.equal("EXAMPLE0000000001", CLIENT)
    assert.are.equal("1700000000000", TIME)
  end)

  it("reproduces the worked example's Signature header byte for byte", function()
    local expected = read(EXAMPLE .. "/signature_header.txt"):gsub("%s+$", "")
    local m = message{ private_key = PRIVATE }
    assert.are.equal(expected, signature.sign(m))
    assert.are.equal(expected, dws.signature.sign(m))
  end)

  it("signs the same with every private key form", function()
    local expected = signature.sign(message{ private_key = PRIVATE })
    assert.are.equal(expected, signature.sign(message{ private_key = bare(PRIVATE) }))
    local pkcs1 = read(tmp .. "/pkcs1.pem")
    assert.truthy(pkcs1:find("BEGIN RSA PRIVATE KEY", 1, true))
    assert.are.equal(expected, signature.sign(message{ private_key = pkcs1 }))
    assert.are.equal(expected, signature.sign(message{ private_key = bare(pkcs1) }))
    assert.are.equal(expected, signature.sign(message{ private_key = core.private_key(PRIVATE) }))
  end)

  it("puts key_version into the header and accepts a numeric time", function()
    local h = signature.sign(message{ private_key = PRIVATE, key_version = 7, time = 1700000000000 })
    assert.truthy(h:find("^algorithm=RSA256,keyVersion=7,signature=[%w%%]+$"))
    assert.are.equal(signature.sign(message{ private_key = PRIVATE }):match("signature=(.*)"),
      h:match("signature=(.*)"))
  end)

  it("makes signatures the openssl command line verifies", function()
    local m = message{ private_key = PRIVATE, path = "/ams/sandbox/api/v1/paymentMethods/cacheCard",
      time = "2026-01-02T03:04:05+00:00", body = '{"x":"J\195\188rgen","y":"a\\nb"}' }
    local header = signature.sign(m)
    local raw = core.parse_signature_header(header).signature
    write(tmp .. "/content", m.method .. " " .. m.path .. "\n" .. m.client_id .. "." .. m.time .. "." .. m.body)
    write(tmp .. "/sig", raw)
    assert.is_true(sh("openssl dgst -sha256 -verify " .. EXAMPLE .. "/merchant_public.pem -signature " .. tmp
      .. "/sig " .. tmp .. "/content >/dev/null 2>&1"))
    -- and the same check fails for other content, so it is a real check
    write(tmp .. "/content", "POST /other\n" .. m.client_id .. "." .. m.time .. "." .. m.body)
    assert.is_false(sh("openssl dgst -sha256 -verify " .. EXAMPLE .. "/merchant_public.pem -signature " .. tmp
      .. "/sig " .. tmp .. "/content >/dev/null 2>&1"))
  end)

  it("verifies signatures made by the openssl command line", function()
    write(tmp .. "/content", CONTENT)
    assert(sh("openssl dgst -sha256 -sign " .. tmp .. "/other.pem -out " .. tmp .. "/sig " .. tmp .. "/content"))
    local header = core.signature_header(core.base64_encode(read(tmp .. "/sig")), "1")
    assert.is_true(signature.verify(message{ public_key = read(tmp .. "/other_pub.pem"), signature = header }))
    assert.is_false(signature.verify(message{ public_key = PUBLIC, signature = header }))
  end)

  describe("verify", function()
    local header
    before_each(function() header = signature.sign(message{ private_key = PRIVATE }) end)

    it("accepts a good signature with key text or a parsed key", function()
      assert.is_true(signature.verify(message{ public_key = PUBLIC, signature = header }))
      assert.is_true(signature.verify(message{ public_key = bare(PUBLIC), signature = header }))
      assert.is_true(signature.verify(message{ public_key = core.public_key(PUBLIC), signature = header }))
    end)

    it("rejects any tampering", function()
      for _, over in ipairs{ { body = BODY .. " " }, { time = "1700000000001" }, { client_id = "EXAMPLE0000000002" },
        { path = PATH:gsub("consult", "Consult") }, { method = "GET" } } do
        over.public_key, over.signature = PUBLIC, header
        local ok, why = signature.verify(message(over))
        assert.is_false(ok)
        assert.is_string(why)
      end
    end)

    it("rejects another key's signature", function()
      local other = signature.sign(message{ private_key = read(tmp .. "/other.pem") })
      assert.is_false(signature.verify(message{ public_key = PUBLIC, signature = other }))
    end)

    it("accepts lower-case percent escapes, as the .NET SDK sends them", function()
      local lower = header:gsub("%%(%x%x)", function(h) return "%" .. h:lower() end)
      assert.are_not.equal(header, lower)
      assert.is_true(signature.verify(message{ public_key = PUBLIC, signature = lower }))
    end)

    it("rejects malformed headers without raising", function()
      for _, bad in ipairs{ "", "algorithm=RSA256,keyVersion=1", "signature=%%%", "signature=not*base64",
        "algorithm=RSA256,keyVersion=1,signature=" .. header:match("signature=(.*)"):sub(1, -10) } do
        local ok, why = signature.verify(message{ public_key = PUBLIC, signature = bad })
        assert.is_false(ok)
        assert.is_string(why)
      end
      assert.is_false(signature.verify(message{ public_key = PUBLIC }))
    end)

    it("verify_message takes a parsed key and answers true or false, reason (a predicate)", function()
      local key = core.public_key(PUBLIC)
      assert.is_true(signature.verify_message(message{ key = key, signature = header }))
      local ok, why = signature.verify_message(message{ key = key, signature = header, body = "{}" })
      assert.is_false(ok)
      assert.is_string(why)
    end)
  end)

  it("raises on programming errors", function()
    assert.has_error(function() signature.sign(message{ private_key = "not a key" }) end)
    assert.has_error(function() signature.sign(message{ private_key = 42 }) end)
    assert.has_error(function() signature.sign(message{ private_key = PRIVATE, body = false }) end)
    assert.has_error(function() signature.verify(message{ public_key = "garbage", signature = "x" }) end)
    assert.has_error(function() signature.sign() end)
  end)

  it("never puts key material into an error", function()
    local ok, err = pcall(signature.sign, message{ private_key = PRIVATE:sub(1, 200) })
    assert.is_false(ok)
    assert.is_nil(tostring(err):find(bare(PRIVATE):sub(1, 40), 1, true))
  end)

  describe("response policy", function()
    local key = core.public_key(PUBLIC)
    local path = "/ams/api/v1/paymentMethods/cacheCard"
    local body = '{"result":{"resultStatus":"S"}}'
    local function signed(time)
      return signature.sign{ private_key = PRIVATE, method = "POST", path = path, client_id = "C1",
        time = time, body = body }
    end

    it("verifies signed responses, header names in any letter case", function()
      local h = { ["Signature"] = signed("123"), ["RESPONSE-TIME"] = "123", ["Client-Id"] = "C1" }
      assert.are.equal("verified", signature.check_response(key, "POST", path, "C1", h, body))
      h = { signature = signed("123"), ["response-time"] = "123" }
      assert.are.equal("verified", signature.check_response(key, "POST", path, "C1", h, body))
    end)

    it("calls a response without signature or response-time unsigned", function()
      assert.are.equal("unsigned", signature.check_response(key, "POST", path, "C1", {}, body))
      assert.are.equal("unsigned", signature.check_response(key, "POST", path, "C1",
        { signature = signed("123") }, body))
      assert.are.equal("unsigned", signature.check_response(key, "POST", path, "C1",
        { ["response-time"] = "123", signature = "" }, body))
    end)

    it("rejects a bad signature, another client's id, and duplicated headers", function()
      local sig = signed("123")
      assert.is_nil(signature.check_response(key, "POST", path, "C1",
        { signature = sig, ["response-time"] = "124" }, body))
      assert.is_nil(signature.check_response(key, "POST", path, "C1",
        { signature = sig, ["response-time"] = "123" }, body .. " "))
      assert.is_nil(signature.check_response(key, "POST", path, "C1",
        { signature = sig, ["response-time"] = "123", ["client-id"] = "C2" }, body))
      local ok, why = signature.check_response(key, "POST", path, "C1",
        { signature = { sig, sig }, ["response-time"] = "123" }, body)
      assert.is_nil(ok)
      assert.truthy(why:find("more than once", 1, true))
      assert.is_nil(signature.check_response(key, "POST", path, "C1",
        { signature = sig, Signature = sig, ["response-time"] = "123" }, body))
    end)
  end)

  describe("pick_headers (the one header rule, answers and notifications)", function()
    local WANT = { ["signature"] = true, ["request-time"] = true }

    it("reads wanted names in any letter case, an array of one as its value", function()
      assert.are.same({ signature = "s", ["request-time"] = "1" },
        signature.pick_headers({ SIGNATURE = "s", ["Request-Time"] = { "1" } }, WANT))
    end)

    it("refuses a wanted name given twice in two spellings", function()
      assert.are.same({ nil, "signature header given more than once" },
        { signature.pick_headers({ Signature = "s", signature = "s" }, WANT) })
    end)

    it("refuses a wanted name given as an array of two", function()
      assert.are.same({ nil, "request-time header given more than once" },
        { signature.pick_headers({ ["Request-Time"] = { "1", "1" } }, WANT) })
    end)

    it("refuses a wanted value that is not a string, rather than converting it", function()
      assert.are.same({ nil, "request-time header is not text" },
        { signature.pick_headers({ ["Request-Time"] = 1700000000000 }, WANT) })
    end)

    it("does not look at names it was not asked for, whatever their shape", function()
      assert.are.same({ signature = "s" },
        signature.pick_headers({ Signature = "s", Accept = { "a", "b" }, ["X-N"] = 5 }, WANT))
    end)
  end)

  describe("load_key (the one key loader, dws.client's options too)", function()
    it("parses key text of the kind asked for", function()
      assert.are.equal("private", signature.load_key(PRIVATE, "private"):kind())
    end)

    it("refuses a parsed key of the other kind", function()
      assert.are.same({ nil, "must be a public key" },
        { signature.load_key(core.private_key(PRIVATE), "public") })
    end)

    it("says unreadable without quoting the text", function()
      local key, err = signature.load_key("not a key at all", "public")
      assert.are.same({ nil, false }, { key, err:find("not a key at all", 1, true) ~= nil })
    end)
  end)
end)
