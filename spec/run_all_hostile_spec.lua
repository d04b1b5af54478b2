-- client:run_all against a hostile gateway on raw sockets (spec/helpers/hostile_gateway.lua), over
-- plain HTTP and TLS. run_all promises each result exactly as client:call gives it, so every case
-- runs the same hostile answer through both and asserts the same outcome: the error code, the
-- attempts the client counted, the requests the gateway saw, no data from an answer that failed,
-- and the rest of the batch unharmed.
local hostile = require "helpers.hostile_gateway"
local timeouts = require "helpers.timeouts"
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local dws = require "dws"

local MAX_RESPONSE = 65536

-- The client's timeout where none is meant to fire; a case whose fault is a timeout firing (the
-- gateway holds the request timeouts.HOLD) waits it out at timeouts.FIRE instead.
local TIMEOUT = 1.5
local TIMED = { hang = { timeout = timeouts.FIRE } }

local CARD = hostile.CARD
local consult = hostile.consult
local leaks = hostile.leaks

describe("client:run_all against a hostile gateway on raw sockets", function()
  local gw, srv, merchant_key, dws_key

  -- The keys parsed once for the clients of every case (a private key's pair-wise check costs ~40 ms).
  setup(function()
    gw = assert(hostile.start{ max_response = MAX_RESPONSE, hang = timeouts.HOLD })
    srv = gw.srv
    merchant_key = assert(core.private_key(nginx.read_file(gw.keys.merchant)))
    dws_key = assert(core.public_key(nginx.read_file(gw.keys.dws_pub)))
  end)

  teardown(function()
    if gw then gw:stop() end
  end)

  local function control(path) return gw:control(path) end
  local function count(k) return gw:count(k) end
  local function cid(mode) return gw:cid(mode) end

  local function client_for(scheme, o)
    local logged = {}
    local opts = { client_id = "SANDBOX_HOSTILE", gateway = scheme == "http" and srv:url("") or srv:surl(""),
      ca_file = srv.ca, private_key = merchant_key, dws_public_key = dws_key,
      max_retries = 1, retry_base_delay = 0.01, timeout = TIMEOUT, connect_timeout = TIMEOUT,
      max_response_bytes = MAX_RESPONSE, log_level = "debug",
      logger = function(level, message, fields) logged[#logged + 1] = { level, message, fields } end }
    for k, v in pairs(o or {}) do opts[k] = v end
    return dws.client(opts), logged
  end

  -- What a failed call comes to: its code, its attempts, the requests the gateway saw for it, and
  -- whether any of the answer's data came with it.
  local function outcome(res, err, id)
    if res then return { echo = res.echo } end
    -- the message without its numbers (a timeout names the milliseconds it waited)
    return { code = err.code, attempts = err.attempts, seen = count(id), data = err.response ~= nil,
      message = (err.message:gsub("%d+", "#")) }
  end

  for _, scheme in ipairs{ "http", "https" } do
    describe("(" .. scheme .. ")", function()
      local client

      after_each(function()
        if client then client:close() end
        client = nil
      end)

      -- consult requests in `mode` -> their ids and the batch
      local function batch_of(n, mode)
        local ids, reqs = {}, {}
        for i = 1, n do
          ids[i] = cid(mode)
          reqs[i] = consult(ids[i])
        end
        return ids, reqs
      end

      -- Whether each answer is the one to its own request (else the error code).
      local function own(out, ids)
        local got = {}
        for i = 1, #ids do
          local r = out[i]
          got[i] = r.res and (r.res.echo == ids[i] or "answered with " .. tostring(r.res.echo)) or r.err.code
        end
        return got
      end

      local function call(c)
        return client:call(c[1], c[2])
      end

      -- Until the gateway has sent the extra response after each of ids (on the wire before the next).
      local function extras_sent(ids)
        for _, id in ipairs(ids) do
          local deadline = core.monotonic() + 10
          while count(id .. ":extra") < 1 and core.monotonic() < deadline do core.sleep(0.01) end
        end
      end

      it("never reads an extra response in the same write as the next request's answer", function()
        client = client_for(scheme)
        local ids, single = batch_of(3, "extra_same"), {}
        for i = 1, 3 do
          local res, err = call(consult(ids[i]))
          single[i] = res and res.echo == ids[i] or err.code
        end
        -- 12 at concurrency 4: every connection carries three in turn
        local bids, reqs = batch_of(12, "extra_same")
        local batch = own(client:run_all(reqs, { concurrency = 4 }), bids)
        local twelve = {}
        for i = 1, 12 do twelve[i] = true end
        assert.same({ single = { true, true, true }, batch = twelve }, { single = single, batch = batch })
      end)

      it("never reads an extra response that came later as the next request's answer", function()
        client = client_for(scheme)
        local first = batch_of(1, "extra_late")
        assert(call(consult(first[1])))
        extras_sent(first)
        local res = call(consult(cid("good")))
        local single = res and res.echo
        local ids, reqs = batch_of(4, "extra_late")
        client:run_all(reqs, { concurrency = 4 })
        extras_sent(ids)
        local gids, greqs = batch_of(4, "good")
        local batch = own(client:run_all(greqs, { concurrency = 4 }), gids)
        assert.same({ single = true, batch = { true, true, true, true } },
          { single = single ~= nil and single ~= "extra", batch = batch })
      end)

      it("drops the connection an extra response came on", function()
        client = client_for(scheme)
        local first = batch_of(1, "extra_late")
        assert(call(consult(first[1])))
        extras_sent(first)
        assert(call(consult(cid("good"))))
        local ids, reqs = batch_of(4, "extra_late")
        client:run_all(reqs, { concurrency = 4 })
        extras_sent(ids)
        local _, greqs = batch_of(4, "good")
        client:run_all(greqs, { concurrency = 4 })
        assert.same({ single = 2, batch = 8 }, { single = client.transport:stats().connects,
          batch = client.runner:stats().connects })
      end)

      it("does not resend a cacheCard whose reused connection closed after it was sent", function()
        client = client_for(scheme, { max_retries = 0 })
        local card = { "cacheCard", { paymentMethodDetail = { paymentMethodDetailType = "card", card = CARD } } }
        control("/plan?api=cacheCard&m=good")
        assert(call(card))
        control("/plan?api=cacheCard&m=close_reused")
        local before = count("cacheCard")
        local _, err = call(card)
        local single = { code = err.code, attempts = err.attempts, seen = count("cacheCard") - before,
          message = err.message }
        -- 4 answered leave 4 kept-alive connections; the next 4 go out on them
        control("/plan?api=cacheCard&m=good")
        client:run_all({ card, card, card, card }, { concurrency = 4 })
        control("/plan?api=cacheCard&m=close_reused")
        before = count("cacheCard")
        local out = client:run_all({ card, card, card, card }, { concurrency = 4 })
        local seen = count("cacheCard") - before
        local batch = {}
        for i = 1, 4 do
          local e = out[i].err or {}
          batch[i] = { code = e.code, attempts = e.attempts, seen = seen / 4, message = e.message }
        end
        local want = { code = "CONNECTION_FAILED", attempts = 1, seen = 1, message = single.message }
        assert.same({ single = want, batch = { want, want, want, want } }, { single = single, batch = batch })
        -- (seen: the gateway saw 4 requests for the 4 attempts, none resent by libcurl)
      end)

      it("keeps card data out of every err, tostring(err) and log line when the gateway misbehaves", function()
        local logged
        client, logged = client_for(scheme)
        local card = { "cacheCard", { paymentMethodDetail = { paymentMethodDetailType = "card", card = CARD } } }
        local found = { single = {}, batch = {} }
        for _, mode in ipairs(hostile.LEAK_MODES) do
          control("/plan?api=cacheCard&m=" .. mode)
          local _, err = call(card)
          leaks({ err, tostring(err), logged }, found.single)
          for k in pairs(logged) do logged[k] = nil end
          local out = client:run_all({ consult(cid("good")), card, consult(cid("good")) }, { concurrency = 4 })
          leaks({ out, tostring(out[2].err), logged }, found.batch)
          for k in pairs(logged) do logged[k] = nil end
        end
        assert.same({ single = {}, batch = {} }, found)
      end)

      for _, case in ipairs(hostile.CASES) do
        local mode, code, attempts = case[1], case[2], case[3]
        it(mode .. ": run_all gives the single call's " .. code .. " to that request alone", function()
          client = client_for(scheme, TIMED[mode])
          local id = cid(mode)
          local c = consult(id)
          local res, err = client:call(c[1], c[2])
          local single = outcome(res, err, id)
          -- The hostile request in the middle of a batch of 7 at concurrency 4.
          local reqs, ids = {}, {}
          for i = 1, 7 do
            ids[i] = i == 4 and cid(mode) or cid("good")
            reqs[i] = consult(ids[i])
          end
          local out = client:run_all(reqs, { concurrency = 4 })
          local others = 0
          for i = 1, 7 do
            if i ~= 4 and out[i].res and out[i].res.echo == ids[i] then others = others + 1 end
          end
          local batch = outcome(out[4].res, out[4].err, ids[4])
          local want = { code = code, attempts = attempts, seen = attempts, data = false, message = single.message }
          assert.same({ single = want, batch = want, others = 6 }, { single = single, batch = batch, others = others })
        end)
      end
    end)
  end
end)
