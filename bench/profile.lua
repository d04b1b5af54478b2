-- Calls to profile under callgrind: make bench-profile counts only what runs inside
-- bench_rusage.profiled (the loop), so set-up, key loading and the first call fall out.
--
--   lua5.4 bench/profile.lua <calls> [http|https] [api]
--
-- Starts its own sandbox; nginx runs outside valgrind (it daemonizes, and children are not traced).
local calls = require "bench.calls"
local sandbox = require "helpers.sandbox"
local dws = require "dws"
local rusage = require "bench_rusage"

local n = tonumber(arg[1]) or 100
local scheme = arg[2] or "http"
local api = arg[3] or "consult"

local sb = assert(sandbox.start{})
local ok, err = pcall(function()
  local client = dws.client{
    client_id = sb.merchant.client_id,
    private_key = sb.merchant.private_key,
    dws_public_key = sb.dws_public_key,
    gateway = scheme == "https" and sb.https_url or sb.http_url,
    ca_file = sb.ca_file,
    max_retries = 0,
  }
  local state = {}
  calls.prepare(client, state)
  rusage.profiled(function()
    for i = 1, n do
      local res, e = calls[api](client, state, i)
      if not res then error(api .. " failed: " .. tostring(e), 0) end
    end
  end)
  client:close()
end)
sb:stop()
if not ok then
  io.stderr:write("profile: ", tostring(err), "\n")
  os.exit(1)
end
