-- client:run_all(requests, opts): many calls in flight from one plain-Lua script, over libcurl's
-- multi interface (dws.curl's curl.multi).
--
-- Each request runs the client's own call pipeline, unchanged (validation, one encode, signing per
-- attempt, verification, retries with backoff, the requestId kept across retries, error objects),
-- in a coroutine whose transport yields instead of blocking: its request() hands the transfer to
-- the scheduler below and its sleep() (the retry backoff) a wake-up time. The scheduler starts each
-- transfer on a free slot of one curl.multi, waits in curl_multi_poll for whichever finishes first
-- and resumes that call's coroutine with the answer. So a result is exactly what client:call would
-- have returned, and no Lua code runs while libcurl works (the coroutines run between polls).
--
-- The curl.multi (its connection pool, `concurrency` kept-alive connections, HTTP/2 streams on one
-- connection where the gateway offers h2) is kept on the client for the next run_all and closed by
-- client:close().
local core = require "dws.core"
local curl = require "dws.curl"
local header_lines = require("dws.transport.curl").header_lines

local type, error, setmetatable, tostring = type, error, setmetatable, tostring
local co_create, co_resume, co_status, co_yield = coroutine.create, coroutine.resume, coroutine.status,
  coroutine.yield
local monotonic = core.monotonic

local M = {}

M.DEFAULT_CONCURRENCY = require("dws.defaults").concurrency
M.MAX_CONCURRENCY = 1024   -- curl.multi's slot limit
-- The longest single wait in curl_multi_poll: transfers have their own timeouts, this only bounds
-- how late a retry's backoff can notice that its time has come when nothing else finishes.
local MAX_POLL = 1

-- The transport a call sees inside run_all. request and sleep yield to the scheduler.
local Yielding = {}
Yielding.__index = Yielding
-- curl.multi copies the body when the transfer starts, so the client may pass (and wipe) a dws.buffer.
Yielding.body_buffers = true

function Yielding:request(req)
  local method = req.method
  if method ~= "POST" and not (method == "GET" and req.body == nil) then
    error("dws.multi: only POST (and GET without a body) are sent concurrently", 2)
  end
  local lines = header_lines(self.lines, req.headers)
  local status, headers, body = co_yield("request", req.url, lines, req.body, req.timeout, req.connect_timeout)
  if not status then return nil, headers, body end
  return { status = status, headers = headers, body = body }
end

function Yielding:sleep(seconds) -- luacheck: ignore 212/self
  if seconds and seconds > 0 then co_yield("sleep", seconds) end
end

function Yielding:stats()
  return self.pool:stats()
end

-- A runner: the client's pipeline and the connection pool its batches share, made (or remade for
-- another concurrency) on demand; the client closes it with itself.
local Runner = {}
Runner.__index = Runner

local function pool_of(runner, concurrency)
  local pool = runner.pool
  if pool and runner.slots == concurrency then return pool end
  if pool then pool:close() end
  local o = runner.pipeline.options
  local m, err = curl.multi{
    slots = concurrency, ca_file = o.ca_file, proxy = o.proxy, user_agent = o.user_agent,
    max_response_bytes = o.max_response_bytes,
  }
  if not m then error("dws: run_all: " .. tostring(err), 3) end
  runner.pool, runner.slots = m, concurrency
  return m
end

--- The pool's statistics (dws.curl's multi stats), nil before the first batch.
function Runner:stats()
  return self.pool and self.pool:stats()
end

--- Release the pool's connections. Idempotent.
function Runner:close()
  if self.pool then self.pool:close() end
  self.pool, self.slots = nil, nil
end

--- A runner for `pipeline` (dws.pipeline): `runner:run(requests, opts)` is client:run_all.
function M.runner(pipeline)
  return setmetatable({ pipeline = pipeline }, Runner)
end

-- requests[i] -> api name, request; raises (at run_all's caller) on a malformed entry.
local function entry(p, requests, i)
  local r = requests[i]
  if type(r) ~= "table" then error("dws: run_all: requests[" .. i .. "] must be a table { api, request }", 4) end
  local name, request = r.api or r[1], r.request
  if request == nil then request = r[2] end
  if type(name) ~= "string" or not p:knows(name) then
    error("dws: run_all: requests[" .. i .. "]: unknown API " .. tostring(name), 4)
  end
  return name, request
end

--- runner:run(requests, { concurrency = 32 }) -> results (client:run_all)
-- requests: array of { api, request } (or { api = , request = }); results[i] = { res = <decoded S
-- answer> } or { err = <error object> }, in the order of requests.
function Runner:run(requests, opts)
  local p = self.pipeline
  if type(requests) ~= "table" then error("dws: run_all: requests must be an array", 3) end
  opts = opts or {}
  if type(opts) ~= "table" then error("dws: run_all: opts must be a table", 3) end
  local concurrency = opts.concurrency or M.DEFAULT_CONCURRENCY
  if type(concurrency) ~= "number" or not (concurrency >= 1 and concurrency <= M.MAX_CONCURRENCY)
    or concurrency % 1 ~= 0 then
    error("dws: run_all: concurrency must be a whole number 1 to " .. M.MAX_CONCURRENCY, 3)
  end
  if p.in_nginx then
    error("dws: run_all is for plain Lua; inside OpenResty run calls in light threads (ngx.thread.spawn, "
      .. "see README)", 3)
  end
  local n = #requests
  local names, bodies = {}, {}
  for i = 1, n do names[i], bodies[i] = entry(p, requests, i) end
  local results = {}
  if n == 0 then return results end
  if n < concurrency then concurrency = n end

  local pool = pool_of(self, math.max(concurrency, self.slots or 0))
  local transport = setmetatable({ pool = pool, lines = {} }, Yielding)
  -- The pipeline as every call sees it: the same but for the transport.
  local view = p:with_transport(transport)

  local by_slot = {}       -- slot -> { co, i } of the call waiting on that transfer
  local sleepers = {}      -- { co, i, wake } of calls in their retry backoff
  local live, next_i = 0, 1

  local function fail(msg)
    -- A programming error inside a call (or the scheduler): nothing half-done stays in the pool.
    self:close()
    error(msg, 0)
  end

  -- Runs a call's coroutine to its next yield (or its end) and acts on what it yields.
  local function step(co, i, ...)
    local ok, what, a, b, c, d, e = co_resume(co, ...)
    if not ok then fail(what) end
    if co_status(co) == "dead" then
      results[i] = what and { res = what } or { err = a }
      live = live - 1
    elseif what == "request" then
      local slot, kind, msg = pool:start(a, b, c, d, e)
      if slot then
        by_slot[slot] = { co, i }
      else
        return step(co, i, nil, kind, msg)
      end
    elseif what == "sleep" then
      sleepers[#sleepers + 1] = { co, i, monotonic() + a }
    else
      fail("dws: run_all: a call yielded outside the transport (" .. tostring(what) .. ")")
    end
  end

  local function call(i)
    return view:call(view:entry(names[i], 1), bodies[i])
  end

  -- Called after every finished call, not once per poll: a request waiting for a slot starts
  -- before the other answers of the same poll are verified (they may be many, and slow).
  local function fill()
    while live < concurrency and next_i <= n do
      local i = next_i
      next_i, live = i + 1, live + 1
      step(co_create(call), i, i)
    end
  end

  while next_i <= n or live > 0 do
    fill()
    -- Wait for a transfer, at most until the earliest backoff ends.
    local now, wait = monotonic(), MAX_POLL
    for k = 1, #sleepers do
      local left = sleepers[k][3] - now
      if left < wait then wait = left end
    end
    if wait < 0 then wait = 0 end
    if pool:running() > 0 then
      local done = { pool:perform(wait) }
      for k = 1, #done do
        local slot = done[k]
        local w = by_slot[slot]
        by_slot[slot] = nil
        step(w[1], w[2], pool:take(slot))
        fill()
      end
    elseif #sleepers > 0 and wait > 0 then
      core.sleep(wait)
    end
    if #sleepers > 0 then
      now = monotonic()
      local keep = {}
      local due = {}
      for k = 1, #sleepers do
        local s = sleepers[k]
        if s[3] <= now then due[#due + 1] = s else keep[#keep + 1] = s end
      end
      sleepers = keep
      for k = 1, #due do step(due[k][1], due[k][2]) end
    end
  end
  return results
end

return M
