local core = require "dws.core"
local api = require "dws.api"
local validate = require "dws.validate"

local CONSULT, CACHE, ADD = api.consultAddablePaymentMethod, api.cacheCard, api.addPaymentMethod

local function consult(over)
  local r = { customerId = "2162878776333", env = { terminalType = "WEB" }, scenes = { "TOPUP" } }
  for k, v in pairs(over or {}) do r[k] = v end
  return r
end

local function cache(card)
  local c = { cardNo = "4111111111111111", securityCode = "737", expiryYear = "2030", expiryMonth = "12" }
  for k, v in pairs(card or {}) do c[k] = v end
  return { paymentMethodDetail = { paymentMethodDetailType = "card", card = c } }
end

local function add(over)
  local r = { requestId = "req-1", customerId = "2162878776333",
    paymentMethodDetail = { paymentMethodDetailType = "CARD", card = { cardToken = "PYMT1" } },
    env = { terminalType = "WEB" } }
  for k, v in pairs(over or {}) do r[k] = v end
  return r
end

-- Expect PARAM_ILLEGAL naming `field`, with none of `secrets` in the message or tostring.
local function rejects(def, request, field, secrets)
  local out, err = validate.request(def, request)
  assert.is_nil(out)
  assert.are.equal("PARAM_ILLEGAL", err.code)
  assert.are.equal("F", err.status)
  assert.are.equal(field, err.field)
  assert.are.equal(def.name, err.api)
  for _, s in ipairs(secrets or {}) do
    assert.is_nil(err.message:find(s, 1, true), "value leaked into message: " .. err.message)
    assert.is_nil(tostring(err):find(s, 1, true))
  end
  return err
end

describe("validate: normalisation", function()
  it("returns a copy with every scalar as a string and arrays marked", function()
    local req = consult{ customerId = 2162878776333, extra = { n = 20, b = true, f = 1.5 } }
    local out = assert(validate.request(CONSULT, req))
    assert.are_not.equal(req, out)
    assert.are.equal(2162878776333, req.customerId) -- caller's table untouched
    assert.are.equal("2162878776333", out.customerId)
    assert.are.equal("20", out.extra.n)
    assert.are.equal("true", out.extra.b)
    assert.are.equal("1.5", out.extra.f)
    assert.are.equal(core.array_mt, getmetatable(out.scenes))
    assert.are.equal("TOPUP", out.scenes[1])
  end)

  it("leaves only strings, so encoding with or without stringify gives the same bytes", function()
    local out = assert(validate.request(ADD, add{ isTemp = false, more = { n = 20, f = 1.5, list = { 1, true } } }))
    assert.are.equal(core.json_encode(out, true), core.json_encode(out))
  end)

  it("sends scenes as an array even when empty", function()
    local out = assert(validate.request(CONSULT, consult{ scenes = {} }))
    assert.are.equal(core.array_mt, getmetatable(out.scenes))
    assert.are.equal('{"customerId":"2162878776333","env":{"terminalType":"WEB"},"scenes":[]}',
      core.json_encode(out, true))
  end)

  it("lets unknown fields through, nested and arrays included", function()
    local out = assert(validate.request(ADD, add{ isTemp = false,
      redirectUrl = "https://x.test/a?b=c", more = { list = { 1, 2 }, empty = setmetatable({}, core.array_mt) } }))
    assert.are.equal("false", out.isTemp)
    assert.are.equal("1", out.more.list[1])
    assert.are.equal(core.array_mt, getmetatable(out.more.empty))
  end)

  it("keeps dws.null, and takes it as absent in the rules", function()
    local out = assert(validate.request(ADD, add{ something = core.null, referenceCustomerId = core.null,
      referenceUserId = "u1", env = core.null }))
    assert.are.equal(core.null, out.something)
    assert.are.equal(core.null, out.env)
    rejects(CONSULT, consult{ env = core.null }, "env")
    rejects(CONSULT, consult{ customerId = core.null }, "customerId")
    rejects(CONSULT, consult{ env = { terminalType = core.null } }, "env.terminalType")
  end)

  it("fills defaults (the generated requestId) without touching the caller's table", function()
    local req = add()
    req.requestId = nil
    local out = assert(validate.request(ADD, req, { requestId = "generated" }))
    assert.are.equal("generated", out.requestId)
    assert.is_nil(req.requestId)
    out = assert(validate.request(ADD, add(), { requestId = "generated" }))
    assert.are.equal("req-1", out.requestId)
  end)

  it("passes well-formed UTF-8 untouched", function()
    local name = "J\195\188rgen \230\151\165\230\156\172 \240\159\152\128"
    local out = assert(validate.request(CACHE, cache{ instUserName = { firstName = name } }))
    assert.are.equal(name, out.paymentMethodDetail.card.instUserName.firstName)
  end)

  it("counts maximum lengths in characters, not bytes", function()
    local id = string.rep("\195\169", 64) -- 64 characters, 128 bytes
    assert.is_table(validate.request(ADD, add{ requestId = id }))
    rejects(ADD, add{ requestId = id .. "x" }, "requestId")
  end)
end)

describe("validate: consultAddablePaymentMethod", function()
  it("accepts the page's request", function()
    assert.is_table(validate.request(CONSULT, consult{ env = { terminalType = "APP", osType = "Android",
      appVersion = "6.84.2", clientIp = "175.1.1.1", language = "en-PH" } }))
  end)
  it("requires customerId", function()
    local r = consult(); r.customerId = nil
    rejects(CONSULT, r, "customerId")
  end)
  it("wants customerId digits only, but not exactly 16 of them", function()
    rejects(CONSULT, consult{ customerId = "21628a8776333" }, "customerId", { "21628a8776333" })
    assert.is_table(validate.request(CONSULT, consult{ customerId = "2162878776333" }))
    assert.is_table(validate.request(CONSULT, consult{ customerId = "2188000000000001" }))
    rejects(CONSULT, consult{ customerId = string.rep("1", 33) }, "customerId")
  end)
  it("requires env and env.terminalType", function()
    local r = consult(); r.env = nil
    rejects(CONSULT, r, "env")
    rejects(CONSULT, consult{ env = {} }, "env.terminalType")
  end)
  it("requires env.osType for APP and WAP, not for WEB", function()
    rejects(CONSULT, consult{ env = { terminalType = "APP" } }, "env.osType")
    rejects(CONSULT, consult{ env = { terminalType = "WAP" } }, "env.osType")
    assert.is_table(validate.request(CONSULT, consult{ env = { terminalType = "WEB" } }))
  end)
  it("knows the terminalType values", function()
    local err = rejects(CONSULT, consult{ env = { terminalType = "TOASTER" } }, "env.terminalType", { "TOASTER" })
    assert.truthy(err.message:find("WEB", 1, true))
  end)
  it("wants scenes as an array of strings", function()
    rejects(CONSULT, consult{ scenes = "TOPUP" }, "scenes")
    rejects(CONSULT, consult{ scenes = { kind = "TOPUP" } }, "scenes")
    rejects(CONSULT, consult{ scenes = { "TOPUP", { "nested" } } }, "scenes[2]")
    rejects(CONSULT, consult{ scenes = { [1] = "A", [3] = "C" } }, "scenes")
  end)
end)

describe("validate: cacheCard", function()
  it("accepts the page's request", function()
    assert.is_table(validate.request(CACHE, cache{ brand = "VISA",
      instUserName = { firstName = "x", lastName = "y" },
      billingAddress = { region = "China", city = "Hangzhou", zipCode = "3100000", address1 = "x" } }))
  end)
  it("requires paymentMethodDetail, its type, its card and the card number", function()
    rejects(CACHE, {}, "paymentMethodDetail")
    rejects(CACHE, { paymentMethodDetail = { card = { cardNo = "4111111111111111", expiryYear = "2030",
      expiryMonth = "12" } } },
      "paymentMethodDetail.paymentMethodDetailType")
    rejects(CACHE, { paymentMethodDetail = { paymentMethodDetailType = "card" } }, "paymentMethodDetail.card")
    local r = cache(); r.paymentMethodDetail.card.cardNo = nil
    rejects(CACHE, r, "paymentMethodDetail.card.cardNo")
  end)
  it("never echoes card data in errors", function()
    rejects(CACHE, cache{ cardNo = string.rep("4111111111111111", 3) }, "paymentMethodDetail.card.cardNo",
      { "4111111111111111" })
    rejects(CACHE, cache{ securityCode = "737373737" }, "paymentMethodDetail.card.securityCode", { "737373737" })
    rejects(CACHE, cache{ cardNo = "41111111\0" }, "paymentMethodDetail.card.cardNo", { "41111111" })
    rejects(CACHE, cache{ expiryMonth = 123 }, "paymentMethodDetail.card.expiryMonth", { "123" })
  end)
  it("wants objects where the page has objects", function()
    rejects(CACHE, { paymentMethodDetail = "card" }, "paymentMethodDetail")
    rejects(CACHE, cache{ billingAddress = true }, "paymentMethodDetail.card.billingAddress")
    rejects(CACHE, cache{ instUserName = { "a", "b" } }, "paymentMethodDetail.card.instUserName")
  end)
end)

describe("validate: addPaymentMethod", function()
  it("accepts the page's request", function()
    assert.is_table(validate.request(ADD, add{ isTemporary = false, env = { terminalType = "APP", osType = "IOS" } }))
  end)
  it("requires requestId (64 characters at most) and paymentMethodDetail", function()
    local r = add(); r.requestId = nil
    rejects(ADD, r, "requestId")
    rejects(ADD, add{ requestId = string.rep("a", 65) }, "requestId")
    assert.is_table(validate.request(ADD, add{ requestId = string.rep("a", 64) }))
    r = add(); r.paymentMethodDetail = nil
    rejects(ADD, r, "paymentMethodDetail")
  end)
  it("allows only one of referenceCustomerId and referenceUserId", function()
    assert.is_table(validate.request(ADD, add{ referenceCustomerId = "13232262878776333" }))
    assert.is_table(validate.request(ADD, add{ referenceUserId = "u1" }))
    rejects(ADD, add{ referenceCustomerId = "c1", referenceUserId = "u1" }, "referenceUserId")
    rejects(ADD, add{ referenceCustomerId = string.rep("1", 65) }, "referenceCustomerId")
  end)
  it("sends isTemporary as \"true\"/\"false\" and keeps it false with referenceUserId", function()
    local out = assert(validate.request(ADD, add{ isTemporary = true }))
    assert.are.equal("true", out.isTemporary)
    rejects(ADD, add{ isTemporary = "maybe" }, "isTemporary", { "maybe" })
    rejects(ADD, add{ isTemporary = true, referenceUserId = "u1" }, "isTemporary")
  end)
  it("takes env as optional, but with terminalType (and osType for APP/WAP) when given", function()
    local r = add(); r.env = nil
    assert.is_table(validate.request(ADD, r))
    rejects(ADD, add{ env = { clientIp = "1.2.3.4" } }, "env.terminalType")
    rejects(ADD, add{ env = { terminalType = "APP" } }, "env.osType")
  end)
  it("checks customerId as digits", function()
    rejects(ADD, add{ customerId = "abc" }, "customerId")
  end)
end)

describe("validate: bad input never raises", function()
  it("refuses a request that is not a table", function()
    for _, v in ipairs{ "x", 1, true, print } do rejects(CONSULT, v, "request") end
  end)
  it("refuses functions, userdata and threads anywhere", function()
    rejects(CONSULT, consult{ customerId = print }, "customerId")
    rejects(CONSULT, consult{ env = { terminalType = "WEB", osType = io.stdout } }, "env.osType")
    rejects(ADD, add{ extra = { deeper = { coroutine.create(print) } } }, "extra.deeper[1]")
    rejects(CONSULT, consult{ env = print }, "env")
  end)
  it("refuses booleans and strings where an object is needed", function()
    rejects(CONSULT, consult{ env = true }, "env")
    rejects(ADD, add{ paymentMethodDetail = "x" }, "paymentMethodDetail")
  end)
  it("refuses nesting deeper than 64 levels", function()
    local deep = {}
    local cur = deep
    for _ = 1, 70 do cur.next = {}; cur = cur.next end
    local out, err = validate.request(ADD, add{ extra = deep })
    assert.is_nil(out)
    assert.are.equal("PARAM_ILLEGAL", err.code)
    assert.truthy(err.field:find("^extra"))
    assert.truthy(err.message:find("deeper", 1, true))
    -- 60 levels are fine
    deep = {}
    cur = deep
    for _ = 1, 60 do cur.next = {}; cur = cur.next end
    assert.is_table(validate.request(ADD, add{ extra = deep }))
  end)
  it("refuses cyclic tables", function()
    local t = { a = {} }
    t.a.back = t
    local _, err = validate.request(ADD, add{ extra = t })
    assert.are.equal("PARAM_ILLEGAL", err.code)
    assert.are.equal("extra.a.back", err.field)
    assert.truthy(err.message:find("cycle", 1, true))
    local env = { terminalType = "WEB" }
    env.self = env
    rejects(CONSULT, consult{ env = env }, "env.self")
  end)
  it("accepts the same table twice when it is not a cycle", function()
    local shared = { x = "1" }
    assert.is_table(validate.request(ADD, add{ a = shared, b = shared }))
  end)
  it("refuses huge strings without echoing them", function()
    local huge = string.rep("9", 10 * 1024 * 1024)
    rejects(CONSULT, consult{ customerId = huge }, "customerId")
    rejects(ADD, add{ note = huge }, "note")
  end)
  it("refuses NUL bytes and invalid UTF-8", function()
    rejects(CONSULT, consult{ env = { terminalType = "WEB", language = "en\0PH" } }, "env.language")
    for _, bad in ipairs{ "\255", "\192\175", "\224\128\175", "\237\160\128", "\244\144\128\128", "abc\195",
      "\226\130" } do
      rejects(CACHE, cache{ instUserName = { firstName = bad } }, "paymentMethodDetail.card.instUserName.firstName")
    end
  end)
  it("refuses non-string keys in objects and NaN or infinite numbers", function()
    rejects(ADD, add{ extra = { [true] = "x" } }, "extra")
    rejects(ADD, add{ extra = { a = 0 / 0 } }, "extra.a")
    rejects(ADD, add{ extra = { a = math.huge } }, "extra.a")
  end)
  it("checks the keys of unknown fields like values: size, NUL, UTF-8", function()
    local err = rejects(ADD, add{ extra = { [string.rep("k", 300)] = "v" } }, "extra")
    assert.truthy(err.message:find("key", 1, true))
    rejects(ADD, add{ extra = { ["a\0b"] = "v" } }, "extra")
    rejects(ADD, add{ extra = { ["\255"] = "v" } }, "extra")
    rejects(ADD, add{ [string.rep("k", 300)] = "v" }, "request")
    assert.is_table(validate.request(ADD, add{ extra = { ["J\195\188rgen"] = "v" } }))
  end)

  it("does not echo odd keys in the field path", function()
    local err = rejects(ADD, add{ extra = { ["4111111111111111 x"] = print } }, "extra.?")
    assert.is_nil(tostring(err):find("4111111111111111", 1, true))
  end)
end)
