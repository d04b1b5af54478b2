-- Admin endpoints, served on the HTTP port only (nginx listens on 127.0.0.1 alone):
--   GET  /__sandbox/health       {"status":"ok"}
--   GET  /__sandbox/requests     every API request: api, path, client id, request-time, requestId,
--                                sha256 of the body, signature header, verified, fault, result, received
--                                and time (ms: arrival, end of the latency wait), connection (nginx's
--                                serial of the connection) and protocol ("HTTP/1.1", "HTTP/2.0") (no bodies)
--   GET  /__sandbox/deliveries?client_id=ID   with header X-Sandbox-Admin-Token: <that client's
--                                admin_token from the config>: that client's notification attempts
--                                (requestId, attempt, status, acknowledged, body with its card token)
--   POST /__sandbox/faults       {"fault":NAME,"count":N,"delay":S,"api":API} arms a fault for the next N
--                                requests (to API only, when given); an unknown NAME: 400 listing the faults
--   POST /__sandbox/latency      {"min":A,"max":B} (seconds; or {"latency":S}) before each API answer
--   POST /__sandbox/reset        clears faults, logs, idempotency records, tokens, pending re-deliveries,
--                                challenges and the notifications kept for re-sending
--   POST /__sandbox/notifications/resend  {"requestId":ID} sends that binding's last notification again,
--                                to the client's notify_url as it is now (404 with the reason when none can go)
--   GET  /__sandbox/notify_url?client_id=ID       with the client's admin token: {"client_id","notify_url"}
--   POST /__sandbox/notify_url   {"client_id":ID,"notify_url":URL|null} with the client's admin token:
--                                where that client's notifications go from now on, until the sandbox
--                                stops (dws listen points them at itself); answers the previous URL
--   GET  /__sandbox/dws-key      {"keyVersion":current,"previous":V during an overlap,"overlap_left":S}
--   POST /__sandbox/dws-key/rotate  {"keyVersion":V,"overlap":S,"private_key":PEM?} the DWS key rotates:
--                                both versions sign (alternately) for S seconds, then V alone; answers
--                                {"keyVersion","public_key" (bare base64 SPKI),"previous","overlap"}
--   POST /__sandbox/dws-key/retire   ends the overlap now (only the current version signs)
--   POST /__sandbox/merchant-keys    {"client_id":ID,"keys":{"1":PUB,"2":PUB}} registers the merchant's
--                                set: a request naming a keyVersion not in it is INVALID_SIGNATURE
--   GET  /__sandbox/merchant-keys?client_id=ID  {"client_id","versions":[...]} (absent: none registered)
-- luacheck: globals ngx (ngx.status and ngx.header are assigned)
local core = require "dws.core"
local store = require "dws_sandbox.store"
local faults = require "dws_sandbox.faults"
local notify = require "dws_sandbox.notify"
local server = require "dws_sandbox.server"
local latency = require "dws_sandbox.latency"
local dws_keys = require "dws_sandbox.keys"

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

-- The config file's path: `dws listen` reads the clients' admin tokens from it (the file, 0600,
-- is the secret; its path is not).
routes["GET /__sandbox/health"] = function()
  return reply(200, { status = "ok", config = server.state.config_path })
end

routes["GET /__sandbox/requests"] = function()
  return reply(200, store.list("request"))
end

-- Equal strings, compared in time that does not depend on where they differ.
local function same_secret(a, b)
  if type(a) ~= "string" or type(b) ~= "string" or #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do
    if a:byte(i) ~= b:byte(i) then diff = diff + 1 end
  end
  return diff == 0
end

-- The client named, when the request carries its admin token; else nil and the answer already sent.
local function authorised(client_id)
  if type(client_id) ~= "string" or client_id == "" then
    return nil, reply(400, { error = "client_id required" })
  end
  local c = server.state.conf.clients[client_id]
  if not c or not c.admin_token or not same_secret(ngx.var.http_x_sandbox_admin_token, c.admin_token) then
    return nil, reply(403, { error = "this client's admin token is required (X-Sandbox-Admin-Token)" })
  end
  return server.state.clients[client_id]
end

-- Deliveries carry card tokens: each client sees its own, and only with its admin token (a client
-- without one in the config cannot list any).
routes["GET /__sandbox/deliveries"] = function()
  local client_id = ngx.unescape_uri(ngx.var.arg_client_id or "")
  if not authorised(client_id) then return end
  local out = setmetatable({}, core.array_mt)
  for _, d in ipairs(store.list("delivery")) do
    if d.client_id == client_id then out[#out + 1] = d end
  end
  return reply(200, out)
end

-- Where a client's notifications go is as secret as the deliveries (they carry card tokens): the
-- same admin token guards it.
routes["GET /__sandbox/notify_url"] = function()
  local client_id = ngx.unescape_uri(ngx.var.arg_client_id or "")
  local c = authorised(client_id)
  if not c then return end
  return reply(200, { client_id = client_id, notify_url = c.notify_url or core.null })
end

routes["POST /__sandbox/notify_url"] = function()
  ngx.req.read_body()
  local t = core.json_decode(ngx.req.get_body_data() or "")
  if type(t) ~= "table" then return reply(400, { error = "expected {\"client_id\":ID,\"notify_url\":URL}" }) end
  local c = authorised(t.client_id)
  if not c then return end
  local url = t.notify_url
  if url == core.null then url = nil end
  if url ~= nil and not (type(url) == "string" and url:match("^https?://") and notify.parse_url(url)) then
    return reply(400, { error = "notify_url must be an http(s) URL or null" })
  end
  local previous = c.notify_url
  c.notify_url = url
  return reply(200, { client_id = t.client_id, notify_url = url or core.null, previous = previous or core.null })
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
  if not ok then return reply(400, { error = err, fault = t.fault, faults = faults.names() }) end
  return reply(200, { fault = t.fault, count = tonumber(t.count) or 1, api = opts.api })
end

routes["POST /__sandbox/latency"] = function()
  ngx.req.read_body()
  local t = core.json_decode(ngx.req.get_body_data() or "")
  local lo, hi = nil, "expected {\"min\":A,\"max\":B} or {\"latency\":S}"
  if type(t) == "table" then lo, hi = latency.bounds(t.latency ~= nil and t.latency or t) end
  if not lo then return reply(400, { error = hi }) end
  latency.set(lo, hi)
  return reply(200, { min = lo, max = hi })
end

routes["POST /__sandbox/notifications/resend"] = function()
  ngx.req.read_body()
  local t = core.json_decode(ngx.req.get_body_data() or "")
  if type(t) ~= "table" or type(t.requestId) ~= "string" then
    return reply(400, { error = "expected {\"requestId\":ID}" })
  end
  local ok, why, client_id = notify.resend(t.requestId, dws_keys.signing_key(), function(id)
    local c = server.state.clients[id]
    return c and c.notify_url
  end)
  if not ok and why == "no_url" then
    return reply(404, { error = "no notification was sent: client " .. client_id .. " has no notify_url (set "
      .. "clients[id].notify_url in the config, or run `dws listen`, which points it at itself; then re-send)",
      reason = "no_notify_url", client_id = client_id, requestId = t.requestId })
  elseif not ok then
    return reply(404, { error = "no notification was sent: no binding with this requestId has a result here "
      .. "(no addPaymentMethod with it was answered S, its challenge is not completed yet, or the sandbox "
      .. "was reset or restarted since)", reason = "unknown_request_id", requestId = t.requestId })
  end
  return reply(200, { requestId = t.requestId, queued = true })
end

routes["POST /__sandbox/reset"] = function()
  store.flush()
  notify.reset()
  dws_keys.reset()
  return reply(200, { status = "ok" })
end

routes["GET /__sandbox/dws-key"] = function()
  return reply(200, dws_keys.state())
end

routes["POST /__sandbox/dws-key/rotate"] = function()
  ngx.req.read_body()
  local t = core.json_decode(ngx.req.get_body_data() or "")
  if type(t) ~= "table" then return reply(400, { error = "expected {\"keyVersion\":V,\"overlap\":S}" }) end
  local info, err = dws_keys.rotate(t)
  if not info then return reply(400, { error = err }) end
  return reply(200, info)
end

routes["POST /__sandbox/dws-key/retire"] = function()
  return reply(200, dws_keys.retire())
end

routes["POST /__sandbox/merchant-keys"] = function()
  ngx.req.read_body()
  local t = core.json_decode(ngx.req.get_body_data() or "")
  if type(t) ~= "table" then return reply(400, { error = "expected {\"client_id\":ID,\"keys\":{...}}" }) end
  if not server.state.clients[t.client_id] then return reply(404, { error = "no such client" }) end
  local versions, err = dws_keys.register(t.client_id, t.keys)
  if not versions then return reply(400, { error = err }) end
  return reply(200, { client_id = t.client_id, versions = setmetatable(versions, core.array_mt) })
end

routes["GET /__sandbox/merchant-keys"] = function()
  local client_id = ngx.unescape_uri(ngx.var.arg_client_id or "")
  local versions = dws_keys.registered(client_id)
  return reply(200, { client_id = client_id, versions = versions and setmetatable(versions, core.array_mt) })
end

function M.handle()
  if ngx.var.remote_addr ~= "127.0.0.1" then return reply(403, { error = "loopback only" }) end
  local route = routes[ngx.req.get_method() .. " " .. ngx.var.uri]
  if not route then return reply(404, { error = "no such admin endpoint" }) end
  return route()
end

return M
