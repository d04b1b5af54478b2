-- The cosocket transport (dws.transport.ngx) against the hostile gateway of
-- spec/run_all_hostile_spec.lua (spec/helpers/hostile_gateway.lua), over plain HTTP and TLS. The
-- client runs inside a merchant nginx of its own (another process, as in production): its /call
-- location makes the calls it is given, one after another or in light threads that take the next
-- request in turn (docs/calls.md "Many calls in flight"), and answers what they returned. Every case runs
-- the same hostile answer through a libcurl call made here and through the client in nginx, and
-- asserts the same outcome: code, status, attempts, the requests the gateway saw, no data from an
-- answer that failed; and that a stray answer is never read as the next call's answer on a pooled
-- (setkeepalive) connection.
local hostile = require "helpers.hostile_gateway"
local timeouts = require "helpers.timeouts"
local httpd = require "helpers.httpd"
local curl = require "dws.curl"
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local dws = require "dws"

local MAX_RESPONSE = 65536
-- The clients' timeout where none is meant to fire; a case whose fault is a timeout firing (the
-- gateway holds the request timeouts.HOLD) waits it out at timeouts.FIRE instead.
local TIMEOUT = 1.5
local TIMED = { hang = timeouts.FIRE }

-- Runs inside the merchant nginx (LuaJIT). POST /call with JSON { gateway =, max_retries =, timeout =, reqs =
-- [ [api, request], ... ], threads = <n> (light threads; absent: one call after another) } ->
-- { results = [ { res = } | { err = <every field>, text = tostring(err) } ], logged = [...],
-- connects = <connections the client's transport opened for these calls>, cosockets = <bool> }.
local CLIENT = [==[
local dws = require "dws"
local core = require "dws.core"
local conf = require "hostile_client_conf"

local M = {}

-- One client per gateway, max_retries and timeout in the worker, made on first use; its logger's
-- lines since the current /call began.
local clients = {}

local function client_for(p)
  local timeout = p.timeout or conf.timeout
  local k = p.gateway .. " " .. p.max_retries .. " " .. timeout
  if not clients[k] then
    local logged = {}
    clients[k] = { logged = logged, client = dws.client{ client_id = "SANDBOX_HOSTILE", gateway = p.gateway,
      server_name = "localhost", private_key = conf.private_key, dws_public_key = conf.dws_public_key,
      max_retries = p.max_retries, retry_base_delay = 0.01, timeout = timeout,
      connect_timeout = conf.timeout, max_response_bytes = conf.max_response, log_level = "debug",
      logger = function(level, message, fields) logged[#logged + 1] = { level, message, fields } end } }
  end
  return clients[k]
end

-- v as JSON can carry it, every key and value kept (as a string when JSON has no such value), so
-- the spec sees all an err or a log line holds.
local function plain(v, seen)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" then return v end
  if t ~= "table" then return tostring(v) end
  seen = seen or {}
  if seen[v] then return "(cycle)" end
  seen[v] = true
  local out = {}
  for k, x in pairs(v) do out[tostring(k)] = plain(x, seen) end
  seen[v] = nil
  return out
end

function M.call()
  ngx.req.read_body()
  local p = assert(core.json_decode(ngx.req.get_body_data()))
  local entry = client_for(p)
  local client, logged = entry.client, entry.logged
  for k in pairs(logged) do logged[k] = nil end
  local before = client.transport:stats().connects
  local reqs, results = p.reqs, {}
  if p.threads then
    local taken = 0
    local function worker()
      while taken < #reqs do
        taken = taken + 1
        local i = taken
        local res, err = client:call(reqs[i][1], reqs[i][2])
        results[i] = res and { res = res } or { err = err }
      end
    end
    local threads = {}
    for w = 1, math.min(#reqs, p.threads) do threads[w] = ngx.thread.spawn(worker) end
    for _, t in ipairs(threads) do assert(ngx.thread.wait(t)) end
  else
    for i, r in ipairs(reqs) do
      local res, err = client:call(r[1], r[2])
      results[i] = res and { res = res } or { err = err }
    end
  end
  local out = setmetatable({}, core.array_mt)
  for i = 1, #reqs do
    local r = results[i]
    out[i] = r.res and { res = plain(r.res) } or { err = plain(r.err), text = tostring(r.err) }
  end
  ngx.print(assert(core.json_encode({ results = out, logged = plain(logged),
    connects = client.transport:stats().connects - before,
    cosockets = getmetatable(client.transport) == require("dws.transport.ngx").Transport }, false)))
end

return M
]==]

local consult, leaks = hostile.consult, hostile.leaks

describe("the cosocket transport inside nginx against a hostile gateway on raw sockets #nginx", function()
  local gw, merchant, h, merchant_key, dws_key

  setup(function()
    gw = assert(hostile.start{ max_response = MAX_RESPONSE, hang = timeouts.HOLD, extra_ports = 2,
      extra_tls_ports = 2 })
    -- parsed once for the libcurl clients of every case (a private key's pair-wise check costs ~40 ms)
    merchant_key = assert(core.private_key(nginx.read_file(gw.keys.merchant)))
    dws_key = assert(core.public_key(nginx.read_file(gw.keys.dws_pub)))
    local conf = string.format("return { private_key = %q, dws_public_key = %q, timeout = %s, max_response = %d }",
      nginx.read_file(gw.keys.merchant), nginx.read_file(gw.keys.dws_pub), TIMEOUT, MAX_RESPONSE)
    merchant = assert(httpd.start{ trust = gw.ca, lua_files = { hostile_client = CLIENT, hostile_client_conf = conf },
      locations = "location = /call { content_by_lua_block { require('hostile_client').call() } }" })
    h = curl.new{ max_response_bytes = 16 * 1048576 }
  end)

  teardown(function()
    if h then h:close() end
    if merchant then merchant:stop() end
    if gw then gw:stop() end
  end)

  for _, scheme in ipairs{ "http", "https" } do
    describe("(" .. scheme .. ")", function()
      local libcurl

      -- The gateway's URL: its main port, or extra port i (a pool no other test uses).
      local function url(i)
        if not i then return scheme == "http" and gw:url("") or gw:surl("") end
        local port = scheme == "http" and gw.srv.extra_ports[i] or gw.srv.extra_tls_ports[i]
        return scheme .. "://127.0.0.1:" .. port
      end

      -- Runs reqs in the merchant nginx; o.threads, o.max_retries (1), o.port (an extra port's index),
      -- o.timeout (TIMEOUT).
      local function in_nginx(reqs, o)
        o = o or {}
        local status, _, body = h:request(merchant:url("/call"), { "Content-Type: application/json" },
          assert(core.json_encode({ gateway = url(o.port), max_retries = o.max_retries or 1, threads = o.threads,
            timeout = o.timeout, reqs = setmetatable(reqs, core.array_mt) }, false)), 60, 5)
        assert(status == 200, "merchant nginx /call: " .. tostring(status) .. "; error.log ends: " ..
          merchant:error_log():sub(-2000))
        local out = assert(core.json_decode(body))
        assert(out.cosockets == true, "the client in nginx did not pick the cosocket transport")
        return out
      end

      -- The same client, here over libcurl.
      local function libcurl_client(o)
        local opts = { client_id = "SANDBOX_HOSTILE", gateway = url(), ca_file = gw.ca,
          private_key = merchant_key, dws_public_key = dws_key,
          max_retries = 1, retry_base_delay = 0.01, timeout = TIMEOUT, connect_timeout = TIMEOUT,
          max_response_bytes = MAX_RESPONSE }
        for k, v in pairs(o or {}) do opts[k] = v end
        return dws.client(opts)
      end

      after_each(function()
        if libcurl then libcurl:close() end
        libcurl = nil
      end)

      -- What a call came to: an answer's echo, or the failure's code, status, attempts, the requests
      -- the gateway saw for `id` (a customerId, or "cacheCard" with `base` seen before), and whether
      -- any of the answer's data came with it.
      local function outcome(r, id, base)
        if r.res then return { echo = r.res.echo } end
        return { code = r.err.code, status = r.err.status, attempts = r.err.attempts,
          seen = gw:count(id) - (base or 0), data = r.err.response ~= nil }
      end

      local function libcurl_outcome(c, id, base)
        local res, err = libcurl:call(c[1], c[2])
        return outcome(res and { res = res } or { err = err }, id, base)
      end

      -- Whether each answer is the one to its own request (else what it was).
      local function own(out, ids)
        local got = {}
        for i = 1, #ids do
          local r = out.results[i]
          got[i] = r.res and (r.res.echo == ids[i] or "answered with " .. tostring(r.res.echo)) or r.err.code
        end
        return got
      end

      local function batch_of(n, mode)
        local ids, reqs = {}, {}
        for i = 1, n do
          ids[i] = gw:cid(mode)
          reqs[i] = consult(ids[i])
        end
        return ids, reqs
      end

      -- Whether each result is an answer (cacheCard answers carry no echo).
      local function answered(out)
        local got = {}
        for i, r in ipairs(out.results) do got[i] = r.res ~= nil or r.err.code end
        return got
      end

      local function all_true(n)
        local t = {}
        for i = 1, n do t[i] = true end
        return t
      end

      -- Until the gateway has sent the extra response after each of ids (on the wire before the next).
      local function extras_sent(ids)
        for _, id in ipairs(ids) do
          local deadline = core.monotonic() + 10
          while gw:count(id .. ":extra") < 1 and core.monotonic() < deadline do core.sleep(0.01) end
        end
      end

      it("never reads an extra response in the same write as the next request's answer", function()
        local ids, reqs = batch_of(3, "extra_same")
        local single = own(in_nginx(reqs), ids)
        -- 12 in 4 light threads: every connection carries three in turn
        local bids, breqs = batch_of(12, "extra_same")
        local batch = own(in_nginx(breqs, { threads = 4 }), bids)
        assert.same({ single = all_true(3), batch = all_true(12) }, { single = single, batch = batch })
      end)

      it("never reads an extra response that came later as the next request's answer", function()
        local first, freqs = batch_of(1, "extra_late")
        local got = { own(in_nginx(freqs), first)[1] }
        extras_sent(first)
        local gid, greq = batch_of(1, "good")
        got[2] = own(in_nginx(greq), gid)[1]
        local ids, reqs = batch_of(4, "extra_late")
        got[3] = own(in_nginx(reqs, { threads = 4 }), ids)
        extras_sent(ids)
        local gids, greqs = batch_of(4, "good")
        got[4] = own(in_nginx(greqs, { threads = 4 }), gids)
        assert.same({ true, true, all_true(4), all_true(4) }, got)
      end)

      it("drops the connection an extra response came on", function()
        -- Port 1's pool is this test's alone. The good call after an extra opens a connection;
        -- of 4 in threads after that, one takes the good call's (clean) connection and 3 open
        -- their own; all 4 come back with an extra, so the last 4 open 4 more.
        local first, freqs = batch_of(1, "extra_late")
        local connects = { in_nginx(freqs, { port = 1 }).connects }
        extras_sent(first)
        local _, greq = batch_of(1, "good")
        connects[2] = in_nginx(greq, { port = 1 }).connects
        local ids, reqs = batch_of(4, "extra_late")
        connects[3] = in_nginx(reqs, { port = 1, threads = 4 }).connects
        extras_sent(ids)
        local _, greqs = batch_of(4, "good")
        connects[4] = in_nginx(greqs, { port = 1, threads = 4 }).connects
        assert.same({ 1, 1, 3, 4 }, connects)
      end)

      it("does not resend a cacheCard whose reused connection closed after it was sent", function()
        local card = hostile.cache_card()
        libcurl = libcurl_client{ max_retries = 0 }
        gw:control("/plan?api=cacheCard&m=good")
        assert(libcurl:call(card[1], card[2]))
        gw:control("/plan?api=cacheCard&m=close_reused")
        local want = libcurl_outcome(card, "cacheCard", gw:count("cacheCard"))
        -- Port 2's pool is this test's alone: 4 answered in threads leave 4 connections in it,
        -- which the next 4 take.
        gw:control("/plan?api=cacheCard&m=good")
        local ok = in_nginx({ card, card, card, card }, { port = 2, threads = 4, max_retries = 0 })
        gw:control("/plan?api=cacheCard&m=close_reused")
        local before = gw:count("cacheCard")
        local one = in_nginx({ card }, { port = 2, max_retries = 0 }).results[1]
        local single = outcome(one, "cacheCard", before)
        local says = one.err and one.err.message:match("not resent")
        before = gw:count("cacheCard")
        local out = in_nginx({ card, card, card }, { port = 2, threads = 3, max_retries = 0 })
        local seen = gw:count("cacheCard") - before
        local batch = {}
        for i = 1, 3 do
          batch[i] = outcome(out.results[i], "cacheCard", before)
          batch[i].seen = seen / 3 -- the three requests the gateway saw, one each
        end
        assert.same({ libcurl = { code = "CONNECTION_FAILED", status = "U", attempts = 1, seen = 1, data = false },
          primed = { connects = 4, answered = all_true(4) }, says = "not resent", single = want,
          batch = { want, want, want } },
          { libcurl = want, primed = { connects = ok.connects, answered = answered(ok) },
            says = says, single = single, batch = batch })
      end)

      it("keeps card data out of every err, tostring(err), log line and error.log line", function()
        local card = hostile.cache_card()
        local found = { single = {}, batch = {}, error_log = {} }
        for _, mode in ipairs(hostile.LEAK_MODES) do
          gw:control("/plan?api=cacheCard&m=" .. mode)
          local single = in_nginx({ card })
          leaks({ single.results, single.logged }, found.single)
          local batch = in_nginx({ consult(gw:cid("good")), card, consult(gw:cid("good")) }, { threads = 4 })
          leaks({ batch.results, batch.logged }, found.batch)
        end
        leaks(merchant:error_log(), found.error_log)
        assert.same({ single = {}, batch = {}, error_log = {} }, found)
      end)

      for _, case in ipairs(hostile.CASES) do
        local mode, code, attempts = case[1], case[2], case[3]
        it(mode .. ": the single libcurl call's " .. code .. ", in nginx alone and in light threads", function()
          local timeout = TIMED[mode]
          libcurl = libcurl_client{ timeout = timeout }
          local lid = gw:cid(mode)
          local lib = libcurl_outcome(consult(lid), lid)
          local id = gw:cid(mode)
          local single = outcome(in_nginx({ consult(id) }, { timeout = timeout }).results[1], id)
          -- The hostile request in the middle of 7 in 4 light threads.
          local reqs, ids = {}, {}
          for i = 1, 7 do
            ids[i] = i == 4 and gw:cid(mode) or gw:cid("good")
            reqs[i] = consult(ids[i])
          end
          local out = in_nginx(reqs, { threads = 4, timeout = timeout })
          local others = 0
          for i = 1, 7 do
            local r = out.results[i]
            if i ~= 4 and r.res and r.res.echo == ids[i] then others = others + 1 end
          end
          local batch = outcome(out.results[4], ids[4])
          local want = { code = code, status = "U", attempts = attempts, seen = attempts, data = false }
          assert.same({ libcurl = want, single = want, batch = want, others = 6 },
            { libcurl = lib, single = single, batch = batch, others = others })
        end)
      end
    end)
  end
end)
