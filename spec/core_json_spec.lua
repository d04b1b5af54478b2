-- dws.core JSON: the encoder writes the exact bytes we sign; the decoder sits on libcjson.
local core = require "dws.core"
local files = require "helpers.files"

local encode, decode = core.json_encode, core.json_decode
local is54 = _VERSION == "Lua 5.4"

local function array(t) return setmetatable(t or {}, core.array_mt) end

local function nested(depth, leaf)
  local t = leaf
  for _ = 1, depth do t = { a = t } end
  return t
end

local read = files.read

-- The JSON object that starts at the first "{" after `from` in s (strings respected).
local function object_after(s, from)
  local start = assert(s:find("{", assert(s:find(from, 1, true)), true))
  local depth, i, in_string = 0, start, false
  while i <= #s do
    local c = s:sub(i, i)
    if in_string then
      if c == "\\" then i = i + 1 elseif c == '"' then in_string = false end
    elseif c == '"' then
      in_string = true
    elseif c == "{" then
      depth = depth + 1
    elseif c == "}" then
      depth = depth - 1
      if depth == 0 then return s:sub(start, i) end
    end
    i = i + 1
  end
  error("unbalanced")
end

describe("core.json_encode", function()
  it("writes objects with sorted keys, arrays in order, nothing else", function()
    assert.equal('{"customerId":"2162878776333","env":{"terminalType":"WEB"},"scenes":["TOPUP"]}',
                 encode{ scenes = { "TOPUP" }, env = { terminalType = "WEB" }, customerId = "2162878776333" })
    assert.equal('{"B":1,"a":2,"aa":3,"b":4}', encode{ b = 4, aa = 3, a = 2, B = 1 })
    assert.equal('[1,"two",true,false,null]', encode{ 1, "two", true, false, core.null })
  end)

  it("gives the same bytes for the same table however it was built", function()
    local a, b = {}, {}
    for i = 1, 300 do a["k" .. i] = i end
    for i = 300, 1, -1 do b["k" .. i] = i end
    local s = encode(a)
    assert.equal(s, encode(b))
    local keys = {}
    for k in s:gmatch('"(k%d+)"') do keys[#keys + 1] = k end
    assert.equal(300, #keys)
    for i = 2, #keys do assert.is_true(keys[i - 1] < keys[i]) end
  end)

  it("sorts objects too big to keep on the Lua stack (LuaJIT allows some 8000 slots)", function()
    local t, keys = {}, {}
    for i = 1, 6000 do
      local k = string.format("key%05d", (i * 7919) % 6000)
      t[k] = i
      keys[#keys + 1] = k
    end
    table.sort(keys)
    local s = assert(encode(t))
    local i = 0
    for k in s:gmatch('"(key%d+)"') do
      i = i + 1
      assert.equal(keys[i], k)
    end
    assert.equal(6000, i)
    assert.same(t, decode(s))
  end)

  it("stringify: numbers and booleans become JSON strings, nested too", function()
    assert.equal('{"amount":"20","card":{"expiryYear":"2030","ok":"true"},"list":["1.5","false"]}',
                 encode({ amount = 20, card = { expiryYear = 2030, ok = true }, list = { 1.5, false } }, true))
    assert.equal('"-7"', encode(-7, true))
    assert.equal('{"n":null}', encode({ n = core.null }, true))
  end)

  it("prints integral floats without .0 and other floats with %.17g", function()
    assert.equal("20", encode(20.0))
    assert.equal("-3", encode(-3.0))
    assert.equal("0", encode(-0.0))
    assert.equal("0.10000000000000001", encode(0.1))
    assert.equal("1.5", encode(1.5))
    assert.equal("1.0000000000000001e+300", encode(1e300))
    assert.equal(0.1, decode(encode(0.1)))
  end)

  it("keeps integers exact", function()
    if is54 then
      assert.equal("9007199254740993", encode(9007199254740993))
      assert.equal("9223372036854775807", encode(math.maxinteger))
      assert.equal("-9223372036854775808", encode(math.mininteger))
      assert.equal('"9223372036854775807"', encode(math.maxinteger, true))
    else
      assert.equal("9007199254740992", encode(2^53))
    end
    assert.equal("1700000000000", encode(1700000000000))
  end)

  it("refuses NaN and infinity, naming the field", function()
    local s, err = encode({ order = { amount = 0/0 } })
    assert.is_nil(s)
    assert.equal("order.amount: NaN or infinity cannot be encoded", err)
    assert.equal("value: NaN or infinity cannot be encoded", select(2, encode(math.huge)))
    assert.equal("[2]: NaN or infinity cannot be encoded", select(2, encode({ 1, -math.huge })))
    assert.is_nil((encode({ x = 0/0 }, true)))
  end)

  it("passes UTF-8 through untouched and escapes only what JSON needs", function()
    assert.equal('"café € 😀 日本"', encode("café € 😀 日本"))
    assert.equal('"a/b"', encode("a/b"))
    assert.equal('"q\\"b\\\\"', encode('q"b\\'))
    assert.equal('"\\u0000\\u0001\\u000a\\u000d\\u0009\\u001f\127"', encode("\0\1\n\r\t\31\127"))
  end)

  it("refuses invalid UTF-8 without echoing the value", function()
    local card = "4111111111111111"
    for _, bad in ipairs{ card .. "\255", card .. "\192\175", card .. "\237\160\128",
                          card .. "\226\130", card .. "\244\144\128\128", "\128" } do
      local s, err = encode({ paymentMethodDetail = { card = { cardNo = bad } } })
      assert.is_nil(s)
      assert.equal("paymentMethodDetail.card.cardNo: invalid UTF-8 in string", err)
    end
    local _, err = encode({ ["k\255"] = 1 })
    assert.equal("value: object key is not valid UTF-8", err)
  end)

  it("tells empty tables by the marker: {} or []", function()
    assert.equal("{}", encode({}))
    assert.equal("[]", encode(array()))
    assert.equal('{"scenes":[],"x":{}}', encode({ scenes = array(), x = {} }))
    assert.equal('["a","b"]', encode(array{ "a", "b" }))
  end)

  it("encodes a marked array up to its largest index, holes as null", function()
    local t = array{ 1, 2, 3 }
    t[2] = nil
    assert.equal("[1,null,3]", encode(t))
    t[6] = "x"
    assert.equal('[1,null,3,null,null,"x"]', encode(t))
    assert.equal("[1,null,3]", encode(array{ 1, core.null, 3 }))
    assert.equal("a: array (core.array_mt) has string keys", select(2, encode({ a = array{ 1, k = 2 } })))
    t[1e9] = 1
    assert.equal("value: array (core.array_mt) is too sparse", select(2, encode(t)))
  end)

  it("refuses tables that are neither arrays nor objects, naming the path", function()
    assert.equal("env.x: array has holes (mark it with core.array_mt and use null)",
                 select(2, encode({ env = { x = { [1] = 1, [3] = 3 } } })))
    assert.equal("value: table mixes array items and string keys", select(2, encode({ 1, a = 2 })))
    assert.equal("a: table has a key that is neither a string nor an array index",
                 select(2, encode({ a = { [true] = 1 } })))
    assert.equal("a: table has a key that is neither a string nor an array index",
                 select(2, encode({ a = { [1.5] = 1 } })))
    assert.equal("value: table has a key that is neither a string nor an array index",
                 select(2, encode({ [0] = "x" })))
  end)

  it("refuses functions, userdata and coroutines, naming the path", function()
    assert.equal("a[1].f: cannot encode a function", select(2, encode({ a = { { f = print } } })))
    assert.equal("u: cannot encode a userdata", select(2, encode({ u = io.stdout })))
    assert.equal("value: cannot encode a thread", select(2, encode(coroutine.create(print))))
  end)

  it("nests 64 tables deep, and refuses 65", function()
    local s = assert(encode(nested(64, 1)))
    assert.equal(("{\"a\":"):rep(64) .. "1" .. ("}"):rep(64), s)
    local out, err = encode(nested(65, 1))
    assert.is_nil(out)
    assert.matches("nested deeper than 64 levels$", err)
    assert.equal(("a."):rep(63) .. "a: nested deeper than 64 levels", err)
  end)

  it("refuses cycles, naming where the cycle closes", function()
    local t = { env = {} }
    t.env.back = t
    assert.equal("env.back: cycle (a table contains itself)", select(2, encode(t)))
    local a = array{}
    a[1] = a
    assert.equal("[1]: cycle (a table contains itself)", select(2, encode(a)))
  end)

  it("allows the same table twice when it is not a cycle", function()
    local shared = { x = 1 }
    assert.equal('{"a":{"x":1},"b":{"x":1}}', encode({ a = shared, b = shared }))
  end)

  it("encodes big and small in turn (the buffer is reused and shrunk)", function()
    local big = ("x"):rep(1024 * 1024)
    assert.equal(#big + 2, #encode(big))
    assert.equal('"y"', encode("y"))
    assert.is_nil((encode({ a = big, b = 0/0 })))
    assert.equal('{"a":"z"}', encode({ a = "z" }))
  end)

  it("escapes long runs correctly (the buffer grows as escapes come)", function()
    local quotes = ('"'):rep(100000)
    assert.equal('"' .. ('\\"'):rep(100000) .. '"', encode(quotes))
    local ctl = ("a\1é"):rep(30000)
    local s = encode({ k = ctl })
    assert.equal(ctl, decode(s).k)
    assert.equal(#ctl + 5 * 30000 + 8, #s)
  end)

  it("encodes an empty object from a fresh module state (fuzz: NULL + 0 in the key sort)", function()
    local saved = package.loaded["dws.core"]
    package.loaded["dws.core"] = nil
    local fresh = require "dws.core"
    package.loaded["dws.core"] = saved
    assert.not_equal(core.array_mt, fresh.array_mt)
    assert.equal("{}", fresh.json_encode(assert(fresh.json_decode("{\n}\r\r\r\r\r\r\r\r\r"))))
    assert.equal('{"a":{}}', fresh.json_encode({ a = {} }))
  end)

  it("does not look at metamethods", function()
    local t = setmetatable({}, { __index = function() return "boo" end, __pairs = error })
    t.a = 1
    assert.equal('{"a":1}', encode(t))
  end)

  it("raises only when called without a value", function()
    assert.has_error(function() encode() end)
    assert.equal("null", encode(nil))
  end)
end)

describe("core.json_decode", function()
  it("decodes objects, arrays, scalars and null", function()
    local t = assert(decode('{"a":[1,"two",true,false,null],"b":{"c":"d"},"e":{}}'))
    assert.same({ 1, "two", true, false, core.null }, t.a)
    assert.equal(core.array_mt, getmetatable(t.a))
    assert.equal("d", t.b.c)
    assert.is_nil(getmetatable(t.b))
    assert.same({}, t.e)
    assert.equal(core.null, decode("null"))
    assert.equal("x", decode('"x"'))
    assert.equal(false, decode(" false "))
  end)

  it("gives arrays the marker so they re-encode as arrays, empty ones too", function()
    local t = assert(decode('{"scenes":[],"x":{},"y":[[]]}'))
    assert.equal('{"scenes":[],"x":{},"y":[[]]}', encode(t))
  end)

  it("gives integers as integers on Lua 5.3+ and floats as floats", function()
    local t = assert(decode('[20,-3,1700000000000,1.5,1e3,9007199254740992,1e300]'))
    assert.equal(20, t[1])
    assert.equal(1700000000000, t[3])
    assert.equal(1.5, t[4])
    assert.equal(1000, t[5])
    assert.equal(1e300, t[7])
    if is54 then
      assert.equal("integer", math.type(t[1]))
      assert.equal("integer", math.type(t[2]))
      assert.equal("integer", math.type(t[3]))
      assert.equal("float", math.type(t[4]))
      assert.equal("integer", math.type(t[5]))
      assert.equal("integer", math.type(t[6]))
      assert.equal("float", math.type(t[7]))
    end
  end)

  it("passes UTF-8 through and decodes escapes, surrogate pairs included", function()
    assert.equal("café € 😀", decode('"café € 😀"'))
    assert.equal("é€😀/\"\\\n", decode('"\\u00e9\\u20AC\\ud83d\\ude00\\/\\"\\\\\\n"'))
  end)

  local function bad(s, pattern)
    local v, err = decode(s)
    assert.is_nil(v)
    assert.is_string(err)
    if pattern then assert.matches(pattern, err) end
    return err
  end

  it("returns nil, err for malformed input without echoing it", function()
    local err = bad('{"cardNo":"4111111111111111",}')
    assert.is_nil(err:find("4111", 1, true))
    assert.matches("invalid JSON near byte %d+", err)
    bad("", "invalid JSON")
    bad("   ", "invalid JSON")
    bad("{", "invalid JSON")
    bad('{"a":1} {"b":2}', "trailing data")
    bad("[1,2]x", "trailing data")
    bad("nul", "invalid JSON")
    bad("'single'", "invalid JSON")
  end)

  it("refuses invalid UTF-8, raw control characters and NUL", function()
    bad('"\255"', "invalid UTF%-8")
    bad('"\237\160\128"', "invalid UTF%-8")
    bad('"a\0b"', "control character")
    bad('"a\1b"', "control character")
    bad('"a\\u0000b"', "u0000")
    bad('"\\ud800"')
    assert.equal("\\u0000", decode('"\\\\u0000"'))
  end)

  it("nests 64 deep and refuses 65", function()
    assert.truthy(decode(("["):rep(64) .. ("]"):rep(64)))
    assert.truthy(decode(("{\"a\":"):rep(63) .. "[]" .. ("}"):rep(63)))
    bad(("["):rep(65) .. ("]"):rep(65), "nested deeper than 64")
    bad(("{\"a\":"):rep(65) .. "1" .. ("}"):rep(65), "nested deeper than 64")
    bad(("["):rep(5000) .. ("]"):rep(5000))
  end)

  it("round-trips through encode", function()
    local v = { a = array{ 1, 2.5, "x", core.null, true }, b = { c = { d = "é" } }, e = array() }
    assert.same(v, decode(encode(v)))
    assert.equal(encode(v), encode(decode(encode(v))))
  end)

  describe("the consult page's sample response", function()
    local page = require("helpers.files").PAGES .. "/consultAddablePaymentMethod.txt"
    local body

    setup(function()
      body = object_after(read(page), "DWS returns the request result.")
    end)

    it("decodes, and its JSON-in-a-string paymentOptionDetail is malformed: nil, err", function()
      local res = assert(decode(body))
      assert.equal("S", res.result.resultStatus)
      assert.equal(2, #res.paymentOptions)
      for _, option in ipairs(res.paymentOptions) do
        assert.is_string(option.paymentOptionDetail)
        local detail, err = decode(option.paymentOptionDetail)
        assert.is_nil(detail)
        assert.matches("^invalid JSON", err)
      end
    end)

    it("re-encodes what it decoded to the same value", function()
      local res = assert(decode(body))
      assert.same(res, decode(assert(encode(res))))
    end)
  end)
end)

-- A finalizer may run in the middle of a decode or encode (the walk allocates, the collector steps)
-- and may itself use JSON; the outer call must not notice. Lua 5.4 runs __gc on tables; LuaJIT
-- on userdata from newproxy, so both flavours can stage it.
describe("json re-entrancy from finalizers #heavy", function()
  local big_doc, big_value

  setup(function()
    local items = {}
    for i = 1, 3000 do items[i] = string.format('{"k%d":"value number %d","n":%d}', i, i, i) end
    big_doc = "[" .. table.concat(items, ",") .. "]"
    big_value = {}
    for i = 1, 3000 do big_value["key" .. i] = "value " .. i end
  end)

  -- Garbage whose finalizers decode and encode, and a collector that steps all the time.
  local function finalizers_that_use_json(n)
    local mt = { __gc = function()
      core.json_decode('{"inner":["finalizer",1,2,3],"x":{"y":"z"}}')
      core.json_encode({ inner = "finalizer", list = { 1, 2, 3 } })
    end }
    for _ = 1, n do
      if newproxy then -- luacheck: ignore 113 (LuaJIT's)
        local p = newproxy(true) -- luacheck: ignore 113
        getmetatable(p).__gc = mt.__gc
      else
        setmetatable({}, mt)
      end
    end
  end

  -- The garbage is made while the collector is stopped, so that its finalizers are still pending
  -- when the call starts; then the collector steps at (nearly) every allocation of the walk.
  local function with_busy_collector(n, fn)
    collectgarbage(); collectgarbage()
    collectgarbage("stop")
    finalizers_that_use_json(n)
    if _VERSION == "Lua 5.4" then
      collectgarbage("incremental", 0, 1000, 0)
    else
      collectgarbage("setpause", 0); collectgarbage("setstepmul", 1000)
    end
    collectgarbage("restart")
    local ok, res = pcall(fn)
    if _VERSION == "Lua 5.4" then
      collectgarbage("incremental", 200, 100, 13)
    else
      collectgarbage("setpause", 200); collectgarbage("setstepmul", 200)
    end
    -- Every finalizer runs now, not at lua_close: LuaJIT may unload dws.core before it runs the
    -- remaining finalizers there, and a finalizer that calls into it would then crash.
    collectgarbage(); collectgarbage()
    assert(ok, res)
    return res
  end

  it("a decode finishes with the right value while finalizers decode", function()
    local expected = assert(core.json_decode(big_doc))
    local got = with_busy_collector(2000, function() return core.json_decode(big_doc) end)
    assert.same(expected, got)
  end)

  it("an encode finishes with the right bytes while finalizers encode", function()
    local expected = assert(core.json_encode(big_value))
    local got = with_busy_collector(2000, function() return core.json_encode(big_value) end)
    assert.equal(expected, got)
  end)
end)

describe("dws.core json_encode_buffer (a body that never becomes a Lua string)", function()
  local value = { card = { cardNo = "4111111111111111", securityCode = "739" }, n = 5 }

  it("holds the same bytes json_encode gives, and tells only its length", function()
    local b = core.json_encode_buffer(value, true)
    local s = core.json_encode(value, true)
    assert.equal(#s, b:len())
    assert.equal("dws.buffer(" .. #s .. " bytes)", tostring(b))
  end)

  it("is signed exactly as the string would be", function()
    local key = assert(core.private_key((require("helpers.keys").pair("dws"))))
    local b = core.json_encode_buffer(value, true)
    assert.equal(core.sign(key, "POST", "/p", "c", "1", core.json_encode(value, true)),
      core.sign(key, "POST", "/p", "c", "1", b))
  end)

  it("wipes idempotently; a wiped buffer is empty", function()
    local b = core.json_encode_buffer(value, true)
    b:wipe()
    b:wipe()
    assert.equal(0, b:len())
    assert.equal("dws.buffer(0 bytes)", tostring(b))
  end)

  it("answers nil, err naming the path for what cannot be encoded", function()
    local b, err = core.json_encode_buffer({ a = { f = print } })
    assert.is_nil(b)
    assert.equal("a.f: cannot encode a function", err)
  end)
end)
