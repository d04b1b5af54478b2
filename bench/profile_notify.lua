-- Set-up for make bench-profile-notify: the example merchant server's config in a private prefix
-- (started once by its launcher, then stopped), rewritten to run in the foreground as a single
-- process so valgrind can follow it, and a pool of notifications signed for it.
--
--   lua5.4 bench/profile_notify.lua DIR COUNT   -> prints "<prefix> <port> <conf> <notifications>"
local nginx = require "dws_sandbox.nginx"
local core = require "dws.core"
local server_mod = require "merchant_server"

local dir, count = assert(arg[1], "usage: profile_notify.lua DIR COUNT"), tonumber(arg[2]) or 500
local CLIENT_ID = "SANDBOX_BENCH000000001"

nginx.mkdir(dir)
local dws_priv, dws_pub = nginx.make_keypair(dir, "dws")
local merchant_priv = nginx.make_keypair(dir, "merchant")
local server = assert(server_mod.start{
  dir = dir .. "/nginx", gateway = "http://127.0.0.1:9", client_id = CLIENT_ID,
  private_key_file = merchant_priv, dws_public_key_file = dws_pub,
})
server:stop()

local conf = assert(nginx.read_file(server.prefix .. "/conf/nginx.conf"))
conf = conf:gsub("daemon on;", "daemon off;"):gsub("master_process on;", "master_process off;")
local conf_file = server.prefix .. "/conf/callgrind.conf"
nginx.write_file(conf_file, conf)

local key = assert(core.private_key(assert(nginx.read_file(dws_priv))))
local time = tostring(core.time_ms())
local lines = {}
for i = 1, count do
  local body = assert(core.json_encode({
    requestId = string.format("bench-%08d-%s", i, core.uuid4()),
    referenceCustomerId = "300005538591",
    operateSource = "MERCHANT",
    paymentMethodDetail = { paymentMethodDetailType = "CARD", card = {
      brand = "VISA", cardToken = "PYMT" .. core.uuid4():gsub("-", ""), mask = "400005******5556", last4 = "5556",
    } },
  }))
  local sig = assert(core.sign(key, "POST", "/notify", CLIENT_ID, time, body))
  lines[i] = table.concat({ time, CLIENT_ID, core.signature_header(sig, "1"), body }, "\t")
end
key:close()
local file = dir .. "/notifications.tsv"
nginx.write_file(file, table.concat(lines, "\n") .. "\n")
print(server.prefix, server.port, conf_file, file)
