-- The C floor client (bench/floor_client.c) under a command prefix (callgrind, perf), against a
-- sandbox of its own, on this run's consult bytes as lua-dws sends them:
--
--   lua5.4 bench/profile_floor_client.lua <calls> <out dir> <floor_client> [prefix ...]
--
-- bench/profile_floor_client runs it under callgrind counting only the measured rounds.
local calls = require "bench.calls"
local sandbox = require "helpers.sandbox"
local util = require "bench.util"
local dws = require "dws"
local core = require "dws.core"
local q = require("dws_sandbox.nginx").sh_quote

local n, out, bin = tonumber(arg[1]) or 50, arg[2], arg[3]
local prefix = {}
for i = 4, #arg do prefix[#prefix + 1] = q(arg[i]) end

local sb = assert(sandbox.start{})
local ok, err = pcall(function()
  local function new_client(scheme, extra)
    local opts = { client_id = sb.merchant.client_id, private_key = sb.merchant.private_key,
      dws_public_key = sb.dws_public_key, gateway = scheme == "https" and sb.https_url or sb.http_url,
      ca_file = sb.ca_file, max_retries = 0 }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return dws.client(opts)
  end
  local body
  for _, s in ipairs((calls.json_samples(core, sb, new_client))) do
    if s.name == "consultAddablePaymentMethod request" then body = s.body end
  end
  assert(body, "no consult request recorded")
  util.write_file(out .. "/fc_merchant.pem", sb.merchant.private_key, "600")
  util.write_file(out .. "/fc_dws_public.pem", sb.dws_public_key_pem)
  util.write_file(out .. "/fc_consult.json", body)
  local host, port = sb.https_url:match("^https://([^:/]+):(%d+)")
  local cmd = table.concat(prefix, " ") .. " " .. table.concat({ q(bin), q(host), q(port), q(sb.ca_file),
    q(sb.merchant.client_id), q(out .. "/fc_merchant.pem"), q(out .. "/fc_dws_public.pem"),
    q(out .. "/fc_consult.json"), tostring(n), "1" }, " ")
  local r = os.execute(cmd)
  assert(r == true or r == 0, "failed: " .. cmd)
end)
sb:stop()
if not ok then
  io.stderr:write("profile_floor_client: ", tostring(err), "\n")
  os.exit(1)
end
