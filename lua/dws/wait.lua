-- client:wait_binding: poll the binding journal until a binding is final or the time is up, for
-- scripts that bound a card and must learn how it ended (the notification reaches whatever
-- shares the journal: an nginx endpoint, `dws listen`). Polling, because a journal is any
-- dws.store and stores have no way to wake a reader; each poll is one store read.
--
-- Inside nginx the wait is ngx.sleep (the worker serves others meanwhile); elsewhere
-- dws.core.sleep (dws.runtime decides). It ends at any state a notification sets: BOUND and FAILED
-- (final), and UNCONFIRMED (DWS has spoken, unclearly: a person must look, not a script wait).
local core = require "dws.core"
local runtime = require "dws.runtime"
local errors = require "dws.errors"
local journal = require "dws.journal"
local defaults = require "dws.defaults"

local M = {}

local function check_seconds(v, name, default)
  if v == nil then return default end
  -- written so that NaN fails
  if type(v) ~= "number" or not (v >= 0 and v <= defaults.wait_binding_max) then
    error(string.format("dws: wait_binding: %s must be seconds from 0 to %d", name, defaults.wait_binding_max), 3)
  end
  return v
end

-- wait(client, requestId, opts) -> binding view | nil, err (see Client:wait_binding)
function M.wait(client, request_id, opts)
  if opts ~= nil and type(opts) ~= "table" then error("dws: wait_binding: opts must be a table", 2) end
  opts = opts or {}
  local timeout = check_seconds(opts.timeout, "timeout", defaults.wait_binding_timeout)
  local interval = check_seconds(opts.interval, "interval", defaults.wait_binding_interval)
  if interval <= 0 then error("dws: wait_binding: interval must be more than 0", 2) end
  local deadline = core.monotonic() + timeout
  while true do
    local b, err = client:binding(request_id) -- raises on a bad requestId, as binding does
    if not b then
      if err then return nil, err end
      return nil, errors.new{ api = "bindCard", code = errors.BINDING_NOT_FOUND, request_id = request_id,
        message = "no binding with this requestId in the journal (wait_binding reads the journal bind_card wrote)" }
    end
    if journal.NOTIFIED[b.state] then return b end
    local left = deadline - core.monotonic()
    if left <= 0 then
      local e = errors.new{ api = "bindCard", code = errors.WAIT_TIMEOUT, request_id = request_id,
        message = string.format("the binding is still %s after %g s: no notification has reached the journal "
          .. "(is the notify URL served, e.g. by dws listen, with this journal?)", b.state, timeout) }
      e.binding = b
      return nil, e
    end
    runtime.sleep(math.min(interval, left))
  end
end

return M
