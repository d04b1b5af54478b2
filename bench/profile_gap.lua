-- A call after a wait, under callgrind --cache-sim=yes (make bench-profile-gap). Valgrind's cache
-- model does not cool while a process sleeps, so the wait is stood in for by what happens to the
-- caches during it on a shared machine: other work evicts them. Before each counted operation this
-- script reads a buffer twice the simulated last-level cache (outside the counted region), so every
-- line the operation touches is fetched again, as after a real 50 ms gap; the LL misses per
-- operation are then its working set, the part of a call that costs time after a wait.
--
--   lua5.4 bench/profile_gap.lua <n> call|crypto [https|http] [evict|hot]
local calls = require "bench.calls"
local sandbox = require "helpers.sandbox"
local dws = require "dws"
local core = require "dws.core"
local rusage = require "bench_rusage"

local n = tonumber(arg[1]) or 20
local what = arg[2] or "call"
local scheme = arg[3] or "https"
local evict = (arg[4] or "evict") == "evict"
local EVICT_BYTES = tonumber(os.getenv("DWS_PROFILE_EVICT_BYTES")) or 16 * 1024 * 1024

local big = string.rep("\0", EVICT_BYTES)
local function cool()
  -- memchr over the whole buffer: every line of it passes through the simulated caches.
  if evict then assert(not big:find("\1", 1, true)) end
end

local sb = assert(sandbox.start{})
local ok, err = pcall(function()
  local op
  if what == "crypto" then
    local priv = assert(core.private_key(sb.merchant.private_key))
    local pub = assert(core.public_key(sb.merchant.public_key))
    local body = '{"customerId":"2162878776333","env":{"terminalType":"WEB"},"scenes":["TOPUP"]}'
    local path, cid = "/ams/sandbox/api/v1/paymentMethods/consultAddablePaymentMethod", sb.merchant.client_id
    op = function()
      local b64 = core.sign(priv, "POST", path, cid, "1700000000000", body)
      assert(core.verify(pub, "POST", path, cid, "1700000000000", body, core.base64_decode(b64)))
    end
  else
    local client = dws.client{
      client_id = sb.merchant.client_id, private_key = sb.merchant.private_key,
      dws_public_key = sb.dws_public_key, gateway = scheme == "https" and sb.https_url or sb.http_url,
      ca_file = sb.ca_file, max_retries = 0,
    }
    local state = {}
    calls.prepare(client, state)
    op = function()
      local res, e = calls.consult(client, state)
      if not res then error("consult failed: " .. tostring(e), 0) end
    end
  end
  for _ = 1, 3 do op() end
  for _ = 1, n do
    cool()
    rusage.profiled(op)
  end
end)
sb:stop()
if not ok then
  io.stderr:write("profile_gap: ", tostring(err), "\n")
  os.exit(1)
end
