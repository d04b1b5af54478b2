-- Admin endpoints, served on the HTTP port only (nginx listens on 127.0.0.1 alone):
--   GET  /__sandbox/health       {"status":"ok"}
--   GET  /__sandbox/requests     every API request: api, path, client id, request-time, requestId,
--                                sha256 of the body, signature header, verified, fault, result (no bodies)
--   GET  /__sandbox/deliveries   every notification attempt: requestId, attempt, status, acknowledged, ...
--   POST /__sandbox/faults       {"fault":NAME,"count":N,"delay":S} arms a fault for the next N requests
--   POST /__sandbox/reset        clears faults, logs, idempotency records, tokens, pending re-deliveries,
--                                challenges and the notifications kept for re-sending
--   POST /__sandbox/notifications/resend  {"requestId":ID} sends that binding's last notification again
-- luacheck: globals ngx (ngx.status and ngx.header are assigned)
local core = require "dws.core"
local store = require "dws.sandbox.store"
local faults = require "dws.sandbox.faults"
local notify = require "dws.sandbox.notify"
local server = require "dws.sandbox.server"

local M = {}

local function reply(status, value)
  local body = assert(core.json_encode(value, false))
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = #body
  ngx.print(body)
  return ngx.exit(status)
end

local routes = {}

routes["GET /__sandbox/health"] = function()
  return reply(200, { status = "ok" })
end

routes["GET /__sandbox/requests"] = function()
  return reply(200, store.list("request"))
end

routes["GET /__sandbox/deliveries"] = function()
  return reply(200, store.list("delivery"))
end

routes["POST /__sandbox/faults"] = function()
  ngx.req.read_body()
  local t = core.json_decode(ngx.req.get_body_data() or "")
  if type(t) ~= "table" or type(t.fault) ~= "string" then
    return reply(400, { error = "expected {\"fault\":NAME,\"count\":N}" })
  end
  local opts = {}
  for k, v in pairs(t) do
    if k ~= "fault" and k ~= "count" then opts[k] = v end
  end
  local ok, err = faults.arm(t.fault, t.count or 1, opts)
  if not ok then return reply(400, { error = err, fault = t.fault }) end
  return reply(200, { fault = t.fault, count = tonumber(t.count) or 1 })
end

routes["POST /__sandbox/notifications/resend"] = function()
  ngx.req.read_body()
  local t = core.json_decode(ngx.req.get_body_data() or "")
  if type(t) ~= "table" or type(t.requestId) ~= "string" then
    return reply(400, { error = "expected {\"requestId\":ID}" })
  end
  if not notify.resend(t.requestId, server.state.dws_key) then
    return reply(404, { error = "no notification was sent for this requestId", requestId = t.requestId })
  end
  return reply(200, { requestId = t.requestId, queued = true })
end

routes["POST /__sandbox/reset"] = function()
  store.flush()
  notify.reset()
  return reply(200, { status = "ok" })
end

function M.handle()
  if ngx.var.remote_addr ~= "127.0.0.1" then return reply(403, { error = "loopback only" }) end
  local route = routes[ngx.req.get_method() .. " " .. ngx.var.uri]
  if not route then return reply(404, { error = "no such admin endpoint" }) end
  return route()
end

return M
