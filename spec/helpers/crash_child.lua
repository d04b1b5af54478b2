-- The merchant script the crash spec kills: binds a card with the SQLite journal and, once the
-- request is journaled and about to go out, arms the sandbox's never_answer fault for it (from
-- the public logger hook) and writes its requestId, so the spec knows when and what to kill.
-- Usage: lua5.4 crash_child.lua <config.lua>  (a file returning the settings below)
local dws = require "dws"
local conf = dofile(arg[1])

local armed = arg[2] == "resume" -- only the first process is held and killed
local client = dws.client{
  client_id = conf.client_id, private_key = conf.private_key, dws_public_key = conf.dws_public_key,
  gateway = conf.gateway, journal = conf.journal, timeout = 120, max_retries = 0,
  logger = function(_, _, fields)
    if not armed and fields.event == "request" and fields.api == "addPaymentMethod" then
      armed = true
      assert(os.execute("curl -s -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary "
        .. "'{\"fault\":\"never_answer\",\"count\":1,\"delay\":30}' " .. conf.admin .. "/__sandbox/faults"))
      local f = assert(io.open(conf.id_file, "w"))
      f:write(fields.request_id)
      f:close()
    end
  end,
}
if arg[2] == "resume" then
  local outcome, err = client:resume_binding(arg[3])
  io.write(outcome and outcome.status or ("error " .. tostring(err and err.code)))
  return
end
client:bind_card{
  customerId = "2162878776333", env = { terminalType = "WEB" }, referenceCustomerId = "crash-customer-1",
  card = { cardNo = conf.card, securityCode = "123", expiryYear = tostring(tonumber(os.date("!%Y")) + 2),
           expiryMonth = "06" },
}
io.write("answered: the spec expected to kill this process first")
