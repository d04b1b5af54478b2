-- For bench/gateway.lua, inside the gateway's nginx: the same consult call made by lua-dws directly
-- (what a merchant's own OpenResty code costs), to hold the gateway's overhead against.
-- luacheck: globals ngx
local M = {}

local client

function M.run(config_file)
  if not client then
    local config = require "dws.gateway.config"
    local c = assert(config.load(config_file))
    client = require("dws").client{
      transport = require("dws.transport.ngx").new{ server_name = c.server_name },
      client_id = c.client_id, private_key = assert(config.read_file(c.private_key_file)),
      dws_public_key = assert(config.read_file(c.dws_public_key_file)), gateway = c.gateway, ca_file = c.ca_file,
    }
  end
  local res, err = client:call("consultAddablePaymentMethod",
    { customerId = "2162878776333", env = { terminalType = "WEB" } })
  if not res then
    ngx.status = 503
    return ngx.say(tostring(err))
  end
  ngx.say("ok")
end

return M
