-- Gateway latency: every API request waits before it is processed, as a real DWS answer takes tens
-- of milliseconds, so that clients (and `make bench`) can be measured against real waits.
--
-- The config file's `latency` (seconds: a number, or { min = a, max = b } for a uniform draw per
-- request) is the default; POST /__sandbox/latency {"min":a,"max":b} (or {"latency":s}) changes it
-- while the sandbox runs, and POST /__sandbox/reset goes back to the config's value.
local store = require "dws_sandbox.store"

local M = {}

-- A forgotten setting must never hold a worker for long (the same bound as the stalling faults).
M.MAX = 30

-- number | { min =, max = } -> min, max | nil, err
function M.bounds(v)
  local lo, hi
  if type(v) == "number" then
    lo, hi = v, v
  elseif type(v) == "table" then
    lo, hi = v.min, v.max
    if hi == nil then hi = lo end
  end
  -- written so that NaN fails
  if type(lo) ~= "number" or type(hi) ~= "number" or not (lo >= 0 and hi >= lo and hi <= M.MAX) then
    return nil, "latency must be seconds (a number, or {min, max} with 0 <= min <= max <= " .. M.MAX .. ")"
  end
  return lo, hi
end

-- Set from the admin endpoint (lives in the shared dict, so reset clears it).
function M.set(lo, hi)
  local d = store.dict()
  d:set("latency:min", lo)
  d:set("latency:max", hi)
end

-- -> min, max in force (the admin setting, else the config's)
function M.current(conf)
  local d = store.dict()
  local lo = d:get("latency:min")
  if lo then return lo, d:get("latency:max") or lo end
  return M.bounds(conf.latency or 0)
end

-- Wait the configured latency (nothing when it is 0).
function M.wait(conf)
  local lo, hi = M.current(conf)
  if not lo or hi <= 0 then return end
  ngx.sleep(lo + math.random() * (hi - lo))
end

return M
