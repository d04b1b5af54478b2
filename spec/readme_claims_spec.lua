-- The docs' promises that no other spec holds, grouped by section, and their Lua blocks run as
-- written: each is read from README.md or docs/*.md when the spec runs (so the two cannot drift)
-- and run against the real sandbox. Where a block must differ to run here (a real gateway's URL, a
-- placeholder key), the spec substitutes that exact text and fails if it is no longer there.
local dws = require "dws"
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local sandbox = require "helpers.sandbox"
local files = require "helpers.files"

local ROOT = os.getenv("DWS_ROOT")
local README = require("helpers.docs").text() -- README.md and docs/*.md
local q = nginx.sh_quote

-- Quick start's client id; the sandbox knows it, so the block runs with its own client id.
local CLIENT_ID = "SANDBOX_5YBX2N2ZPJ8B05030"
local CUSTOMER = "2162878776333"

-- The one fenced block of README.md of `lang` that contains `marker` (plain text).
local function block(lang, marker)
  local found
  for body in README:gmatch("\n *```" .. lang .. "\n(.-)\n *```") do
    if body:find(marker, 1, true) then
      assert(not found, "README.md: more than one " .. lang .. " block holds " .. marker)
      found = body
    end
  end
  return assert(found, "README.md: no " .. lang .. " block holds " .. marker)
end

-- `text` with `old` (plain, exactly once) replaced by `new`.
local function substitute(text, old, new)
  local i, j = text:find(old, 1, true)
  assert(i, "README block no longer holds: " .. old)
  assert(not text:find(old, j + 1, true), "README block holds more than once: " .. old)
  return text:sub(1, i - 1) .. new .. text:sub(j + 1)
end

-- Runs a block with `vars` as its upvalues-to-be (client, request, ...) and print captured.
-- Returns the lines printed and what the chunk returned (`tail` is appended to the block).
local function run(code, vars, tail)
  local printed = {}
  local env = setmetatable({ print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    printed[#printed + 1] = table.concat(parts, "\t")
  end }, { __index = function(_, k)
    if vars and vars[k] ~= nil then return vars[k] end
    return _G[k]
  end })
  local chunk = assert(load(code .. "\n" .. (tail or ""), "=README.md", "t", env))
  return printed, chunk()
end

-- Runs a shell command -> exit status, stdout (os.execute's results differ between 5.4 and LuaJIT).
local function sh(cmd)
  local dir = nginx.tmpdir("dws-readme-sh")
  os.execute("(" .. cmd .. ") >" .. dir .. "/out 2>&1 </dev/null; echo $? >" .. dir .. "/rc")
  local status, out = tonumber(files.read(dir .. "/rc")), files.read(dir .. "/out")
  nginx.rmdir(dir)
  return status, out
end

-- private_key: the merchant key parsed once for the clients the cases make (a private key's
-- pair-wise check costs ~40 ms); the README's blocks take the text, private_pem.
local dir, sb, private_pem, public_pem, dws_private, private_key

local function new_client(extra)
  local opts = { client_id = CLIENT_ID, private_key = private_key, dws_public_key = sb.dws_public_key,
                 gateway = sb.https_url, ca_file = sb.ca_file }
  for k, v in pairs(extra or {}) do opts[k] = v end
  local client = dws.client(opts) -- not a tail call: an option error names this line
  return client
end

local function card(number)
  return { cardNo = number, securityCode = "123", expiryMonth = "12",
           expiryYear = tostring(tonumber(os.date("!%Y")) + 2),
           instUserName = { firstName = "Ada", lastName = "Lovelace" } }
end

-- A notification as DWS sends it, signed with the sandbox's DWS key.
local function notification(request_id, time)
  local body = assert(core.json_encode{ requestId = request_id, referenceCustomerId = "shop-customer-17",
    paymentMethodDetail = { paymentMethodDetailType = "CARD",
      card = { cardToken = "ALIPAYfinal", brand = "VISA", mask = "411111******1111" } } })
  time = time or tostring(core.time_ms())
  local header = assert(dws.signature.sign{ private_key = dws_private, method = "POST", path = "/notify",
    client_id = CLIENT_ID, time = time, body = body })
  return { method = "POST", path = "/notify", body = body,
           headers = { ["Client-Id"] = CLIENT_ID, ["Request-Time"] = time, ["Signature"] = header } }
end

setup(function()
  dir = nginx.tmpdir("dws-readme")
  local priv = nginx.make_keypair(dir, "merchant")
  private_pem, public_pem = nginx.read_file(priv), nginx.read_file(dir .. "/merchant_public.pem")
  private_key = assert(core.private_key(private_pem))
  sb = assert(sandbox.start{ clients = { [CLIENT_ID] = { public_key = public_pem } } })
  dws_private = assert(dws.signature.load_key(sb.dws_private_key_pem, "private"))
end)

teardown(function()
  if sb then sb:stop() end
  if dir then nginx.rmdir(dir) end
end)

describe("README Client options", function()
  it("journal_retention out of its range raises as an option error at the caller", function()
    local messages = {}
    for i, v in ipairs{ 0, -1, 0 / 0, math.huge, 10 * 365 * 86400 + 1, true } do
      local ok, err = pcall(new_client, { journal_retention = v })
      messages[i] = not ok and
        tostring(err):match("readme_claims_spec%.lua:%d+: (dws%.client: option journal_retention)")
    end
    local expected = "dws.client: option journal_retention"
    assert.are.same({ expected, expected, expected, expected, expected, expected }, messages)
  end)

  it("journal_retention may be false or a number of seconds up to 10 years", function()
    local oks = {}
    for i, v in ipairs{ false, 1, 10 * 365 * 86400 } do oks[i] = (pcall(new_client, { journal_retention = v })) end
    assert.are.same({ true, true, true }, oks)
  end)
end)

describe("README Quick start", function()
  -- The block as written, but for the gateway (a real one, here the sandbox with its CA) and the
  -- DWS key (elided in the README).
  local function quick_start(customer)
    local code = block("lua", "client:consult_addable_payment_method{\n")
    code = substitute(code, 'io.open("merchant_private.pem")', "io.open(" .. string.format("%q", dir ..
      "/merchant_private.pem") .. ")")
    code = substitute(code, '"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA..."', string.format("%q", sb.dws_public_key))
    code = substitute(code, 'gateway        = "https://open-sea-global.alipay.com",',
      "gateway = " .. string.format("%q", sb.https_url) .. ", ca_file = " .. string.format("%q", sb.ca_file) .. ",")
    if customer then code = substitute(code, '"2162878776333"', string.format("%q", customer)) end
    return (run(code))
  end

  it("prints each payment option and whether it is enabled", function()
    assert.are.same({ "MIXEDCARD\ttrue", "GCASH_EBANK\ttrue" }, quick_start())
  end)

  it("prints an F as the comment shows", function()
    local printed = quick_start("2100000000000009")
    assert.matches("^dws: consultAddablePaymentMethod USER_NOT_EXIST %(F%): ", printed[1])
  end)
end)

describe("README Calls", function()
  it("runs the run_all block: one line per customer, in request order", function()
    local printed = run(block("lua", "client:run_all(reqs"), { client = new_client(),
      customer_ids = { CUSTOMER, "2188000000000004", "2188000000000001" } })
    -- each line: the customer, then "S" or tostring(err) (its code and status; the message is DWS's)
    for i, line in ipairs(printed) do printed[i] = line:match("^[^:]*: %S+ %S+ %(.%)") or line end
    assert.are.same({ CUSTOMER .. "\tS", "2188000000000004\tdws: consultAddablePaymentMethod NO_PAY_OPTIONS (F)",
      "2188000000000001\tdws: consultAddablePaymentMethod USER_STATUS_ABNORMAL (F)" }, printed)
  end)

  it("generates a UUID v4 requestId for an addPaymentMethod without one and reports it", function()
    local client = new_client()
    local cached = assert(client:cache_card{ paymentMethodDetail = { paymentMethodDetailType = "card",
      card = card("4111111111111111") } })
    local res = assert(client:add_payment_method{ customerId = CUSTOMER, env = { terminalType = "WEB" },
      referenceCustomerId = "shop-customer-17", paymentMethodDetail = { paymentMethodDetailType = "CARD",
        card = { cardToken = cached.paymentMethodDetail.card.cardToken } } })
    assert.matches("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$", res.requestId)
  end)
end)

describe("README Errors", function()
  it("has a dws.errors constant for every code of the table", function()
    local section = README:match("\n## Errors\n(.-)\n## ")
    local missing = {}
    for cell in section:gmatch("\n| ([^|]-) | [FU]") do
      for code in cell:gmatch("`([A-Z_]+)`") do
        if dws.errors[code] ~= code then missing[#missing + 1] = code end
      end
    end
    assert.are.same({}, missing)
  end)

  local function risk_reject()
    local _, err = new_client():bind_card{ customerId = CUSTOMER, env = { terminalType = "WEB" },
      referenceCustomerId = "shop-customer-17", card = card("4000000000000101") }
    return err
  end

  it("tostring(err) reads as the example", function()
    local example = README:match("`tostring%(err%)` reads\n`([^`]+)`")
    assert.are.equal(example, (tostring(risk_reject()):gsub("requestId=%S+$", "requestId=...")))
  end)

  it("an F answer's error has the documented fields, with the verified body", function()
    local err = risk_reject()
    assert.are.same({ "F", "RISK_REJECT", "Risk reject", false, 200, "string", 1, "RISK_REJECT", "addPaymentMethod" },
      { err.status, err.code, err.message, err.retryable, err.http_status, type(err.request_id), err.attempts,
        err.response.result.resultCode, err.api })
  end)

  it("errors.is is a predicate: false and the reason for anything else", function()
    assert.are.same({ false, "not a dws error object (a table)" }, { dws.errors.is({ code = "TIMEOUT" }) })
  end)

  it("NOTIFICATION_EXPIRED is F, as the table says", function()
    local client = new_client()
    local _, err = client:verify_notification(notification("expired-1", tostring(core.time_ms() - 301 * 1000)))
    assert.are.same({ "NOTIFICATION_EXPIRED", "F" }, { err.code, err.status })
  end)
end)

describe("README Signatures and verification", function()
  local function args(over)
    local a = { private_key = private_pem, public_key = public_pem, method = "POST",
      path = "/ams/api/v1/paymentMethods/cacheCard", client_id = CLIENT_ID, time = "1700000000000", body = "{}" }
    for k, v in pairs(over or {}) do a[k] = v end
    return a
  end

  it("sign raises on an unreadable key", function()
    assert.has_error(function() dws.signature.sign(args{ private_key = "not a key" }) end,
      "dws.signature.sign: private_key is unreadable: private key: neither PEM nor base64 DER")
  end)

  it("verify raises on a missing argument", function()
    assert.has_error(function() dws.signature.verify(args{ body = false }) end,
      "dws.signature.verify: body must be a string")
  end)

  it("verify answers false and the reason for other bytes", function()
    local a = args()
    a.signature = assert(dws.signature.sign(a))
    a.body = "{ }"
    assert.are.same({ false, "signature does not match" }, { dws.signature.verify(a) })
  end)
end)

describe("README Binding a card", function()
  local client, outcome

  setup(function()
    -- max_retries = 0: the sandbox's "unknown once" card then leaves an UNKNOWN binding to sweep.
    client = new_client{ max_retries = 0 }
    local err
    outcome, err = select(2, run(block("lua", "local outcome, err = client:bind_card{"), { client = client },
      "return outcome, err"))
    assert(outcome, tostring(err))
  end)

  it("the bind_card block binds the test card: ACCEPTED", function()
    assert.are.equal("ACCEPTED", outcome.status)
  end)

  it("the outcome has the documented fields", function()
    assert.are.same({ "411111******1111", "1111", "VISA", "string", "string" },
      { outcome.mask, outcome.last4, outcome.brand, type(outcome.requestId), type(outcome.expiryTime) })
  end)

  it("the binding block reads the record back with its status and state", function()
    local _, b = run(block("lua", "local b, err = client:binding(requestId)"),
      { client = client, requestId = outcome.requestId }, "return b, err")
    assert.are.same({ "ACCEPTED", "ACCEPTED", outcome.requestId }, { b.status, b.state, b.requestId })
  end)

  it("the binding has the record's documented fields, never the request bytes", function()
    local b = client:binding(outcome.requestId)
    local kinds = {}
    for k, v in pairs(b) do kinds[k] = type(v) end
    assert.are.same({ status = "string", state = "string", requestId = "string", mask = "string", last4 = "string",
      brand = "string", expiryTime = "string", paymentMethodType = "string", resultCode = "string",
      customerId = "string", referenceCustomerId = "string", sends = "number", attempts = "number",
      createdAt = "number", updatedAt = "number", resultStatus = "string", resultMessage = "string" }, kinds)
  end)

  it("client:binding of an unknown requestId is nil without an error", function()
    assert.are.same({ n = 1 }, table.pack(client:binding("never-journaled")))
  end)

  it("the resume_binding block returns an ACCEPTED record as it is", function()
    local _, resumed = run(block("lua", "local outcome, err = client:resume_binding(requestId)"),
      { client = client, requestId = outcome.requestId }, "return outcome, err")
    assert.are.equal("ACCEPTED", resumed.status)
  end)

  it("the sweeper block resumes an UNKNOWN binding", function()
    local unknown = assert(client:bind_card{ customerId = CUSTOMER, env = { terminalType = "WEB" },
      referenceCustomerId = "shop-customer-17", card = card("4000000000000119") })
    assert.are.equal("UNKNOWN", unknown.status)
    -- older_than = 0: the record was made a moment ago, not ten minutes.
    run(substitute(block("lua", "client:pending_bindings{"), "older_than = 600", "older_than = 0"),
      { client = client })
    assert.are.equal("ACCEPTED", client:binding(unknown.requestId).status)
  end)
end)

describe("README Notifications", function()
  local client, outcome

  setup(function()
    client = new_client()
    outcome = assert(client:bind_card{ customerId = CUSTOMER, env = { terminalType = "WEB" },
      referenceCustomerId = "shop-customer-17", card = card("4111111111111111") })
  end)

  local function notification_block(request)
    return select(2, run(block("lua", "client:handle_notification(request, function(notification, binding)"),
      { client = client, request = request, h = request.headers, raw = request.body },
      "return n, err, status, headers, body"))
  end

  it("the block verifies, then acknowledges with the page's exact answer", function()
    local n, err, status, headers, body = notification_block(notification(outcome.requestId))
    assert(n, tostring(err))
    assert.are.same({ 200, "application/json",
      '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}' },
      { status, headers["Content-Type"], body })
  end)

  it("after the block, the binding is BOUND with the notification's token", function()
    local b = client:binding(outcome.requestId)
    assert.are.same({ "BOUND", "ALIPAYfinal" }, { b.status, b.cardToken })
  end)

  it("a repeat within seen_ttl is acknowledged without the handler, after it runs it again", function()
    local runs = 0
    local function handler() runs = runs + 1 return true end
    local store = dws.store.memory()
    local opts = { store = store, seen_ttl = 1 }
    client:handle_notification(notification("seen-ttl-1"), handler, opts)
    client:handle_notification(notification("seen-ttl-1"), handler, opts)
    local before = runs
    core.sleep(1.2)
    client:handle_notification(notification("seen-ttl-1"), handler, opts)
    assert.are.same({ 1, 2 }, { before, runs })
  end)
end)

describe("README Stores", function()
  -- A store of one's own, checking its arguments with dws.store's checks as the README says.
  local Mine = {}
  Mine.__index = Mine
  function Mine.get(_, key) dws.store.check_key(key, "mystore", "get", "lock:") end
  function Mine.set(_, key, value, ttl)
    dws.store.check_key(key, "mystore", "set")
    dws.store.check_value(value, "mystore", "set")
    dws.store.check_ttl(ttl, "mystore", "set")
  end
  function Mine.scan(_, prefix) dws.store.check_prefix(prefix, "mystore") end
  local mine = setmetatable({}, Mine)

  -- The error a call raises (not in tail position, so the caller's line is there to name).
  local function raised(fn)
    local ok, err = pcall(function() local r = fn() return r end)
    assert(not ok, "did not raise")
    return err
  end

  it("require('dws').store is dws.store", function()
    assert.are.equal(require("dws.store"), dws.store)
  end)

  it("a store's bad key raises at the caller's line", function()
    local store = dws.store.memory()
    assert.matches("readme_claims_spec%.lua:%d+: dws%.store: get: key must be a non%-empty string$",
      raised(function() return store:get("") end))
  end)

  it("check_key raises at the line that called the store", function()
    assert.matches("readme_claims_spec%.lua:%d+: mystore: get: key must be a non%-empty string$",
      raised(function() return mine:get(7) end))
  end)

  it("check_key refuses a key in the reserved prefix", function()
    assert.matches("mystore: get: key must not start with \"lock:\"$", raised(function() return mine:get("lock:a") end))
  end)

  it("check_value refuses a value that is not a string", function()
    assert.matches("readme_claims_spec%.lua:%d+: mystore: set: value must be a string$",
      raised(function() return mine:set("k", 1) end))
  end)

  it("check_ttl refuses a ttl that is not a positive finite number", function()
    local msgs = {}
    for i, ttl in ipairs{ 0, -1, 0 / 0, math.huge, "5" } do
      msgs[i] = raised(function() return mine:set("k", "v", ttl) end):match("mystore: set: .*$")
    end
    local expected = "mystore: set: ttl must be a positive number of seconds, or nil"
    assert.are.same({ expected, expected, expected, expected, expected }, msgs)
  end)

  it("check_prefix refuses a prefix that is not a string", function()
    assert.matches("readme_claims_spec%.lua:%d+: mystore: scan: prefix must be a string$",
      raised(function() return mine:scan(nil) end))
  end)

  it("register adds a kind that open finds by its scheme", function()
    dws.store.register("readmekind", function(rest) return dws.store.memory{ max_entries = tonumber(rest) } end)
    assert.are.equal("dws.store.memory(0/7)", tostring(dws.store.open("readmekind:7")))
  end)

  it("register's opener may answer nil, err, which open passes on", function()
    dws.store.register("readmedown", function() return nil, "down for the spec" end)
    assert.are.same({ nil, "down for the spec" }, { dws.store.open("readmedown:x") })
  end)

  it("the SQLite store waits busy_timeout 5000 ms for a lock by default", function()
    local store = require("dws.store.sqlite").open(dir .. "/busy.db")
    assert(store:set("k", "v"))
    local cur = store.conn:execute("PRAGMA busy_timeout")
    local ms = cur:fetch(); cur:close(); store:close()
    assert.are.equal(5000, tonumber(ms))
  end)

  it("the SQLite store takes busy_timeout from open's options", function()
    local store = require("dws.store.sqlite").open(dir .. "/busy2.db", { busy_timeout = 1234 })
    assert(store:set("k", "v"))
    local cur = store.conn:execute("PRAGMA busy_timeout")
    local ms = cur:fetch(); cur:close(); store:close()
    assert.are.equal(1234, tonumber(ms))
  end)

  it("the Redis store's defaults are the README's", function()
    assert.are.same({ host = "127.0.0.1", port = 6379, db = 0, prefix = "", timeout = 1, pool_size = 32,
      keepalive = 60 }, require("dws.store.redis").DEFAULTS)
  end)

  it("register raises on a scheme open could never read", function()
    assert.matches("dws%.store%.register: scheme must be a URL scheme",
      raised(function() return dws.store.register("my store", function() end) end))
  end)

  it("register raises on an opener that is not a function", function()
    assert.matches("dws%.store%.register: opener must be a function",
      raised(function() return dws.store.register("readmenone", "memory") end))
  end)

  it("open raises on a spec no kind is registered for", function()
    assert.matches("unknown store", raised(function() return dws.store.open("no-such-kind:x") end))
  end)
end)

describe("README OpenResty: inside nginx #nginx", function()
  local srv

  -- In a content handler: what dws.client with a proxy, and client:run_all, do there.
  local HANDLER = [==[
local dws = require "dws"
local conf = require "readmeconf"
local M = {}
function M.run()
  local opts = { client_id = conf.client_id, private_key = conf.private_key, dws_public_key = conf.dws_public_key,
                 gateway = conf.gateway, server_name = "localhost" }
  local client = dws.client(opts)
  local ok, err = pcall(client.run_all, client, { { "consultAddablePaymentMethod",
    { customerId = "2162878776333", env = { terminalType = "WEB" } } } })
  ngx.say(ok and "run_all: no raise" or "run_all: " .. tostring(err))
  opts.proxy = "http://127.0.0.1:3128"
  ok, err = pcall(dws.client, opts)
  ngx.say(ok and "proxy: no raise" or "proxy: " .. tostring(err))
end
return M
]==]

  setup(function()
    srv = assert(require("helpers.httpd").start{
      trust = sb.ca_file,
      lua_files = { readmecase = HANDLER, readmeconf = string.format(
        "return { client_id = %q, private_key = %q, dws_public_key = %q, gateway = %q }",
        CLIENT_ID, private_pem, sb.dws_public_key, sb.https_url) },
      locations = "location = /t { content_by_lua_block { require('readmecase').run() } }",
    })
  end)

  teardown(function()
    if srv then srv:stop() end
  end)

  local function answer()
    return select(2, sh("curl -s " .. q(srv:url("/t"))))
  end

  it("run_all raises, pointing at light threads", function()
    assert.matches("run_all: [^\n]*dws: run_all is for plain Lua; inside OpenResty run calls in light threads",
      answer())
  end)

  it("a proxy raises rather than going direct", function()
    assert.matches("proxy: [^\n]*proxy is not supported inside nginx", answer())
  end)
end)

-- Tagged #nginx (run under one busted flavour): the command runs as a lua5.4 child process.
describe("README The DWS sandbox #nginx", function()
  it("dws sandbox status exits 3 when no sandbox runs in DIR", function()
    local d = nginx.tmpdir("dws-readme-none")
    local status = sh("lua5.4 " .. q(ROOT .. "/bin/dws") .. " sandbox status --dir " .. q(d))
    nginx.rmdir(d)
    assert.are.equal(3, status)
  end)
end)

-- README "dws.testing": the merchant's spec block, registered here as a describe of this file.
do
  local code = block("lua", "-- merchant_spec.lua")
  local env = setmetatable({ describe = describe, it = it, lazy_setup = lazy_setup,
    lazy_teardown = lazy_teardown, assert = assert }, { __index = _G })
  assert(load(code, "=README.md", "t", env))()
end
