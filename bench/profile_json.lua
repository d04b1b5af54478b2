-- One JSON operation n times inside bench_rusage.profiled, for callgrind (make bench-profile):
--   lua5.4 bench/profile_json.lua core|cjson encode|decode <sample index> <n>
-- Samples are bench/calls.lua's built-in bodies of the three requests and responses.
local core = require "dws.core"
local cjson = require "cjson"
local rusage = require "bench_rusage"
local calls = require "bench.calls"

local which, op, idx, n = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4]) or 1000
local sample = calls.json_samples(core)[idx]
local t = assert(core.json_decode(sample.body))
local body = sample.body

local f
if op == "encode" then
  if which == "core" then
    f = function() return core.json_encode(t, true) end
  else
    f = function() return cjson.encode(t) end
  end
else
  if which == "core" then
    f = function() return core.json_decode(body) end
  else
    f = function() return cjson.decode(body) end
  end
end
f()
rusage.profiled(function()
  for _ = 1, n do f() end
end)
print(sample.name)
