-- docs/calls.md "Many calls in flight": the light-thread snippet for OpenResty, read from the docs when
-- the spec runs (so the README cannot drift from what is tested), run in a real nginx content
-- handler with the cosocket transport against the sandbox over HTTPS, the sandbox answering after
-- a random latency so that calls finish out of order. Its results are compared with single
-- client:call's made by the same client in the same handler.
local httpd = require "helpers.httpd"
local sandbox = require "helpers.sandbox"
local curl = require "dws.curl"
local core = require "dws.core"
local defaults = require "dws.defaults"

-- The one fenced lua block of the docs that spawns light threads.
local function readme_snippet()
  local text = require("helpers.docs").text() -- README.md and docs/*.md
  local found
  for block in text:gmatch("\n```lua\n(.-)\n```") do
    if block:find("ngx.thread.spawn", 1, true) then
      assert(not found, "README.md: more than one lua block spawns light threads")
      found = block
    end
  end
  return assert(found, "README.md: no lua block with ngx.thread.spawn")
end

-- Runs inside nginx (LuaJIT). POST /t?mode=threads|single with a JSON array of { api, request }
-- answers { results = [...] } (each { res = } or { err = <the error's fields> }) or { raised = msg }.
local HANDLER = [==[
local dws = require "dws"
local core = require "dws.core"
local conf = require "threadconf"
local snippet = require "readme_snippet"

local M = {}

-- One client per worker, made on first use, as a merchant makes it in init_worker.
local client

-- An error object's fields, as JSON can carry them (request_id differs from call to call).
local function plain(r)
  if r == nil then return { missing = true } end
  if r.res then return { res = r.res } end
  local e = r.err
  if type(e) ~= "table" then return { err = { raised = tostring(e) } } end
  return { err = { status = e.status, code = e.code, message = e.message, retryable = e.retryable,
    http_status = e.http_status, attempts = e.attempts, field = e.field, api = e.api,
    response = e.response } }
end

local modes = {}

-- The README's block as it stands; it leaves its answer in the local `results`.
function modes.threads(reqs)
  local env = setmetatable({ client = client, reqs = reqs }, { __index = _G })
  local chunk = assert(load(snippet .. "\nreturn results", "=README.md", "t", env))
  return chunk()
end

function modes.single(reqs)
  local results = {}
  for i, r in ipairs(reqs) do
    local res, err = client:call(r[1], r[2])
    results[i] = res and { res = res } or { err = err }
  end
  return results
end

function M.run()
  client = client or dws.client{ client_id = conf.client_id, private_key = conf.private_key,
    dws_public_key = conf.dws_public_key, gateway = conf.gateway, server_name = "localhost",
    retry_base_delay = 0.05 }
  ngx.req.read_body()
  local reqs = assert(core.json_decode(ngx.req.get_body_data()))
  local ok, results = pcall(modes[ngx.var.arg_mode], reqs)
  if not ok then
    ngx.print(assert(core.json_encode({ raised = tostring(results) }, false)))
    return
  end
  local out = setmetatable({}, core.array_mt)
  for i = 1, #reqs do out[i] = plain(results[i]) end
  ngx.print(assert(core.json_encode({ results = out }, false)))
end

return M
]==]

local ACTIVE = "2162878776333"
local WEB = { terminalType = "WEB" }

local function consult(customer, env)
  return { "consultAddablePaymentMethod", { customerId = customer, env = env or WEB, scenes = { "TOPUP" } } }
end

-- Every kind of answer the sandbox's test data gives consult (HACKING.md "Sandbox test data"),
-- the active customer most often; repeated past the pool size so that workers take several each.
local KINDS = {
  consult(ACTIVE),
  consult("2188000000000002"),            -- S, MIXEDCARD listed disabled
  consult(ACTIVE),
  consult("2188000000000004"),            -- F NO_PAY_OPTIONS
  consult("2188000000000001"),            -- F USER_STATUS_ABNORMAL
  consult(ACTIVE),
  consult("2100000000000099"),            -- F USER_NOT_EXIST
  consult("not-digits"),                  -- PARAM_ILLEGAL customerId, never sent
  consult(ACTIVE, { terminalType = "DESKTOP" }), -- PARAM_ILLEGAL env.terminalType, never sent
  consult("2188000000000007"),            -- U REQUEST_TRAFFIC_EXCEED_LIMIT, retried, then given up
}

local REQS = {}
for i = 1, 72 do REQS[i] = KINDS[(i - 1) % #KINDS + 1] end

-- How many of the logged API requests were at the sandbox at once: spans [received, time] that
-- overlap. An equal end and start count as one after the other (the log is in milliseconds, and a
-- worker's next request cannot arrive before its previous answer was logged).
local function most_at_once(log)
  local events = {}
  for _, r in ipairs(log) do
    if r.api then
      events[#events + 1] = { r.received, 1 }
      events[#events + 1] = { r.time, -1 }
    end
  end
  table.sort(events, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  local now, most = 0, 0
  for _, e in ipairs(events) do
    now = now + e[2]
    if now > most then most = now end
  end
  return most
end

describe("the README's light-thread snippet", function()
  it("keeps as many calls in flight as the cosocket transport's pool keeps connections", function()
    assert.truthy(readme_snippet():find("math.min(#reqs, " .. defaults.pool_size .. ")", 1, true))
  end)
end)

describe("the README's light threads in OpenResty #nginx", function()
  local sb, srv, h
  local threads, singles, at_once

  local function run(mode, reqs)
    local status, _, body = h:request(srv:url("/t?mode=" .. mode), { "Content-Type: application/json" },
      assert(core.json_encode(reqs, false)), 120, 5)
    assert(status == 200, mode .. ": " .. tostring(status) .. " " .. tostring(body) .. "\n" ..
      srv:error_log():sub(-2000))
    return assert(core.json_decode(body))
  end

  lazy_setup(function()
    -- Answers take 20 to 200 ms, drawn per request, so calls finish in another order than sent.
    sb = assert(sandbox.start{ latency = { min = 0.02, max = 0.2 } })
    local o = sb:client_options()
    local conf = string.format("return { client_id = %q, private_key = %q, dws_public_key = %q, gateway = %q }",
      o.client_id, o.private_key, o.dws_public_key, o.gateway)
    srv = assert(httpd.start{
      trust = sb.ca_file,
      lua_files = { threadcase = HANDLER, threadconf = conf,
                    readme_snippet = "return " .. string.format("%q", readme_snippet()) },
      locations = "location = /t { content_by_lua_block { require('threadcase').run() } }",
    })
    h = curl.new{ max_response_bytes = 64 * 1024 * 1024 }

    threads = run("threads", REQS)
    at_once = most_at_once(sb:requests())
    sb:latency(0)
    singles = run("single", REQS)
    sb:reset()
  end)

  lazy_teardown(function()
    if h then h:close() end
    if srv then srv:stop() end
    if sb then sb:stop() end
  end)

  it("returns, in request order, what a single client:call returns for each request", function()
    assert.same(singles, threads)
  end)

  it("meets every kind of answer: S, F from the sandbox, F from validation, U after retries", function()
    local seen = {}
    for _, r in ipairs(singles.results) do
      seen[r.res and "S" or r.err.code .. (r.err.field and ":" .. r.err.field or "")] = true
    end
    assert.same({ S = true, NO_PAY_OPTIONS = true, USER_STATUS_ABNORMAL = true, USER_NOT_EXIST = true,
                  ["PARAM_ILLEGAL:customerId"] = true, ["PARAM_ILLEGAL:env.terminalType"] = true,
                  REQUEST_TRAFFIC_EXCEED_LIMIT = true }, seen)
  end)

  it("had several calls at the sandbox at once", function()
    assert.is_true(at_once >= 2, "at most " .. at_once .. " at once")
  end)

  it("never had more calls at the sandbox at once than the transport's pool keeps", function()
    assert.is_true(at_once <= defaults.pool_size, at_once .. " at once")
  end)

  it("returns no data from an answer that fails verification", function()
    local reqs = {}
    for i = 1, 48 do reqs[i] = consult(ACTIVE) end
    sb:reset()
    sb:fault("tamper", 20)
    local got = run("threads", reqs)
    local tally = {}
    for _, r in ipairs(got.results) do
      local k = r.res and "S" or r.err.code .. (r.err.response and " with data" or "")
      tally[k] = (tally[k] or 0) + 1
    end
    sb:reset()
    assert.same({ S = 28, SIGNATURE_INVALID = 20 }, tally)
  end)

  it("raises what a call raised, as client:call does", function()
    local reqs = { consult(ACTIVE), { "noSuchApi", {} }, consult(ACTIVE) }
    assert.matches("unknown API noSuchApi", run("threads", reqs).raised, 1, true)
  end)
end)
