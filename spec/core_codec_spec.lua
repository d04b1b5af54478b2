-- dws.core codecs and utilities: base64, percent coding, uuid4, random bytes, clocks, versions.
local core = require "dws.core"

local function all_bytes()
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  return table.concat(t)
end

describe("core.base64_encode / base64_decode", function()
  it("matches RFC 4648's test vectors both ways", function()
    local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==",
                      fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
    for plain, encoded in pairs(vectors) do
      assert.equal(encoded, core.base64_encode(plain))
      assert.equal(plain, core.base64_decode(encoded))
    end
  end)

  it("uses the standard alphabet with + and /", function()
    assert.equal("+/+/", core.base64_encode("\251\255\191"))
    assert.equal("\251\255\191", core.base64_decode("+/+/"))
  end)

  it("round-trips every byte and every length", function()
    local bytes = all_bytes()
    for n = 0, 40 do
      local s = bytes:sub(1, n) .. bytes:sub(256 - n)
      assert.equal(s, core.base64_decode(core.base64_encode(s)))
    end
    local big = core.random_bytes(100000)
    assert.equal(big, core.base64_decode(core.base64_encode(big)))
  end)

  local function bad(s, pattern)
    local v, err = core.base64_decode(s)
    assert.is_nil(v)
    assert.matches(pattern, err)
  end

  it("is strict: alphabet, padding, length, canonical bits", function()
    bad("Zm9v!", "invalid character")
    bad("Zm-_", "invalid character")          -- the URL-safe alphabet is not base64
    bad("Zm9", "multiple of 4")
    bad("Zg=", "multiple of 4")
    bad("Zg", "multiple of 4")
    bad("Z===", "misplaced padding")
    bad("====", "misplaced padding")
    bad("Zg=a", "after padding")
    bad("Zg==Zg==", "after padding")
    bad("Zm8=Zm9v", "after padding")
    bad("Zh==", "non%-canonical")              -- 'h' leaves non-zero unused bits
    bad("Zm9=", "non%-canonical")
    bad("Zm9v\n", "invalid character")         -- no whitespace outside key loading
    bad(" Zm9v", "invalid character")
    bad("Zm9v\0", "invalid character")
  end)

  it("is as strict in every quad of a long input as in the last one", function()
    -- The decoder takes whole quads before the last by a faster path (csrc/encoding.c).
    local good = core.base64_encode(core.random_bytes(36)) -- 48 characters, no padding
    for pos = 1, #good do
      for _, c in ipairs{ "!", "-", "_", "\0", " ", "\n", "=", "\255" } do
        -- "=" in the last place is padding, valid whenever the random bits before it are canonical
        -- (one run in four); misplaced and non-canonical padding are checked above.
        if not (c == "=" and pos == #good) then
          local s = good:sub(1, pos - 1) .. c .. good:sub(pos + 1)
          assert.is_nil(core.base64_decode(s), "accepted " .. string.format("%q", s))
        end
      end
    end
    bad(good:sub(1, 20) .. "!" .. good:sub(22), "invalid character")
    bad("Zg==" .. good, "after padding")
  end)

  it("raises on a non-string argument", function()
    assert.has_error(function() core.base64_decode(nil) end)
    assert.has_error(function() core.base64_encode({}) end)
  end)
end)

describe("core.url_encode / url_decode", function()
  it("keeps only unreserved characters and upper-cases the hex", function()
    assert.equal("AZaz09-_.~", core.url_encode("AZaz09-_.~"))
    assert.equal("%2B%2F%3D%20%25%2C%00%FF", core.url_encode("+/= %,\0\255"))
    assert.equal("caf%C3%A9", core.url_encode("café"))
    assert.equal("", core.url_encode(""))
  end)

  it("round-trips every byte", function()
    local bytes = all_bytes()
    assert.equal(bytes, core.url_decode(core.url_encode(bytes)))
    local big = core.random_bytes(20000)
    assert.equal(big, core.url_decode(core.url_encode(big)))
  end)

  it("decodes either case of hex and leaves + alone", function()
    assert.equal("+/=", core.url_decode("%2b%2f%3d"))
    assert.equal("+/=", core.url_decode("%2B%2F%3D"))
    assert.equal("a+b", core.url_decode("a+b"))
    assert.equal("plain", core.url_decode("plain"))
  end)

  it("refuses bad escapes", function()
    for _, s in ipairs{ "%", "%2", "a%zz", "%g0", "%%", "abc%2" } do
      local v, err = core.url_decode(s)
      assert.is_nil(v)
      assert.matches("bad %%XX escape", err)
    end
  end)
end)

describe("core.uuid4", function()
  it("has the RFC 4122 version 4 format", function()
    for _ = 1, 200 do
      local id = core.uuid4()
      assert.equal(36, #id)
      assert.truthy(id:match("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"), id)
      assert.equal(id:lower(), id)
    end
  end)

  it("does not repeat", function()
    local seen = {}
    for _ = 1, 10000 do
      local id = core.uuid4()
      assert.is_nil(seen[id])
      seen[id] = true
    end
  end)
end)

describe("core.random_bytes", function()
  it("gives n bytes that differ from call to call", function()
    assert.equal("", core.random_bytes(0))
    assert.equal(32, #core.random_bytes(32))
    assert.equal(100000, #core.random_bytes(100000))
    assert.not_equal(core.random_bytes(32), core.random_bytes(32))
  end)

  it("raises on a bad count", function()
    assert.has_error(function() core.random_bytes(-1) end)
    assert.has_error(function() core.random_bytes(1.5) end)
    assert.has_error(function() core.random_bytes(2 * 1024 * 1024) end)
    assert.has_error(function() core.random_bytes("x") end)
  end)
end)

describe("clocks", function()
  it("time_ms is integer milliseconds since the epoch, near os.time()", function()
    local ms = core.time_ms()
    assert.equal(ms, math.floor(ms))
    if math.type then assert.equal("integer", math.type(ms)) end
    assert.is_true(math.abs(ms / 1000 - os.time()) < 5)
    assert.is_true(core.time_ms() >= ms)
  end)

  it("monotonic never goes back, and sleep waits at least as long as asked", function()
    local t0 = core.monotonic()
    assert.is_number(t0)
    core.sleep(0.02)
    assert.is_true(core.monotonic() - t0 >= 0.02)
    core.sleep(0)
  end)

  it("sleep raises on a bad duration", function()
    assert.has_error(function() core.sleep(-1) end)
    assert.has_error(function() core.sleep(0/0) end)
    assert.has_error(function() core.sleep("soon") end)
  end)
end)

describe("core.versions", function()
  it("names OpenSSL, cJSON and Lua", function()
    local v = core.versions()
    assert.matches("^OpenSSL %d+%.%d+%.%d+", v.openssl)
    assert.matches("^%d+%.%d+%.%d+$", v.cjson)
    assert.equal(_VERSION, v.lua)
  end)
end)

describe("module", function()
  it("has the array marker and the null sentinel", function()
    assert.is_table(core.array_mt)
    assert.equal("userdata", type(core.null))
    assert.equal(core.null, core.json_decode("null"))
  end)

  it("exports every function of the contract", function()
    for _, name in ipairs{ "private_key", "public_key", "sign", "verify", "signature_header",
                           "parse_signature_header", "base64_encode", "base64_decode", "url_encode",
                           "url_decode", "json_encode", "json_decode", "uuid4", "random_bytes",
                           "time_ms", "monotonic", "sleep", "versions" } do
      assert.is_function(core[name], name)
    end
  end)
end)
