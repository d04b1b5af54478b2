--- The DWS sandbox (the dws-sandbox rock) from your own busted specs: start it on free loopback
-- ports, arm faults, read what it received and delivered, stop it. README "dws.testing".
-- @module dws.testing

-- dws.testing: the DWS sandbox (the dws-sandbox rock) from a busted spec: a private directory, free
-- loopback ports, ready when start returns; faults armed and deliveries read over its admin API.
--
--   local sb = assert(require("dws.testing").start{
--     clients = { [id] = { public_key =, notify_url = } },  -- default: one fresh test merchant
--     notify_url = "http://127.0.0.1:P/notify",             -- for the default merchant
--     notify_scale = 0.001, token_ttl = 1800, notify_delay = 0, bound_notify_delay = 0,
--     latency = 0 (or { min =, max = }),
--     http2 = false,                                       -- true: the HTTPS port offers h2 too
--   })
--   sb.http_url, sb.https_url, sb.ca_file, sb.dir, sb.pid_file
--   sb.dws_public_key (bare base64 SPKI), sb.dws_public_key_pem, sb.dws_private_key_pem
--   sb.merchant = { client_id, private_key (PEM), public_key (PEM) }   (default merchant only)
--   sb:client_options() : options for dws.client.new for the default merchant
--   sb:requests(), sb:deliveries([client_id]), sb:fault(name, count, opts), sb:reset(), sb:health()
--   each delivery is also the request as sent: { method, path, headers, body, ... } (see deliveries)
--   sb:handle_delivery(client, delivery [, handler]): client:handle_notification on it, in one call
--   sb:delivery(requestId [, client_id [, timeout]]): waits for that binding's latest delivery
--   sb:notify_url(url|false [, client_id]): where the client's notifications go from now on
--   sb:latency(min [, max]): seconds each API answer waits from now on (reset goes back to opts.latency)
--   sb.admin_tokens[client_id]: each client's admin token (made here unless the client has one);
--   sb:deliveries() reads the only client's deliveries with it (name the client when there are several)
--   sb:wait(fn, timeout) polls fn until it returns a truthy value; sb:error_log(); sb:stop()
--
-- start returns nil, err when the dws-sandbox rock is missing or nginx does not come up; stop is safe
-- to call twice. Admin calls that fail raise: in a spec they are the test's own mistake.
local core = require "dws.core"

local M = {}

-- The sandbox is its own rock (dws-sandbox): loaded when a spec starts one, so that requiring
-- dws.testing costs nothing and a missing rock is one clear error, not a failed require.
local nginx, config, control
local function load_sandbox()
  if control then return true end
  local ok, err = pcall(function()
    nginx, config, control = require "dws_sandbox.nginx", require "dws_sandbox.config", require "dws_sandbox.control"
  end)
  if ok then return true end
  nginx, config, control = nil, nil, nil
  return nil, "dws.testing needs the dws-sandbox rock (luarocks --lua-version 5.4 install dws-sandbox): " ..
    tostring(err)
end

--- The client id of the default merchant `start` makes (a `SANDBOX_` id).
M.TEST_CLIENT_ID = "SANDBOX_TEST_MERCHANT"

local Sandbox = {}
Sandbox.__index = Sandbox

-- Admin calls go over dws.curl on one kept-alive connection per sandbox: a spec makes hundreds of
-- them, and a curl process per call cost more than the calls. -> status, body | nil, message
-- The request and delivery logs can outgrow a DWS answer's size limit: the sandbox's own cap on
-- them (its 64 MiB log zone) is the limit here.
local ADMIN_MAX_BYTES = 64 * 1024 * 1024
local function http(sb, method, path, headers, body)
  sb.handle = sb.handle or require("dws.curl").new{ max_response_bytes = ADMIN_MAX_BYTES }
  local status, kind, answer = sb.handle:request(sb.http_url .. path, headers or {}, body, 10, 5, method)
  if not status then return nil, tostring(kind) .. ": " .. tostring(answer) end
  return status, answer
end

--- A running sandbox, as `start` returns it. Fields: `http_url`, `https_url`, `ca_file`, `dir`,
-- `pid_file`, `dws_public_key` (bare base64), `dws_public_key_pem`, `dws_private_key_pem`,
-- `merchant = { client_id, private_key, public_key }` (the default merchant), `admin_tokens`.
-- Admin calls that fail raise: in a spec they are the test's own mistake.
-- @type Sandbox

--- A call to the sandbox's admin API (`/__sandbox/<name>`), decoded.
-- syntax: `value = sb:admin(method, name, value?, headers?)`
-- @tparam string method `"GET"` or `"POST"`
-- @tparam string name the endpoint after `/__sandbox/`
-- @param[opt] value a body, sent as JSON
-- @tparam[opt] {string,...} headers `"Name: value"` lines
-- @return the decoded answer
-- @raise unless the answer is HTTP 200
function Sandbox:admin(method, name, value, headers)
  local h, body = {}, nil
  for _, line in ipairs(headers or {}) do h[#h + 1] = line end
  if value ~= nil then
    h[#h + 1] = "Content-Type: application/json"
    body = assert(core.json_encode(value, false))
  elseif method ~= "GET" then
    body = ""
  end
  local status, answer = http(self, method, "/__sandbox/" .. name, h, body)
  if status ~= 200 then
    error("sandbox admin " .. method .. " " .. name .. ": HTTP " .. tostring(status) .. ": " .. tostring(answer), 2)
  end
  return core.json_decode(answer or "")
end

--- The sandbox's health answer.
-- syntax: `value = sb:health()`
function Sandbox:health() return self:admin("GET", "health") end
--- Every API request the sandbox received, oldest first (with its attempts' headers and bodies).
-- syntax: `list = sb:requests()`
-- @treturn {table,...}
function Sandbox:requests() return self:admin("GET", "requests") end
-- The client named, or the only one; and its admin-token header line.
local function client_token(sb, client_id, what)
  if not client_id then
    for id in pairs(sb.admin_tokens) do
      if client_id then error("sandbox:" .. what .. ": several clients, name one", 3) end
      client_id = id
    end
  end
  local token = assert(sb.admin_tokens[client_id], "no admin token for " .. client_id)
  return client_id, { "X-Sandbox-Admin-Token: " .. token }
end

--- The notifications the sandbox delivered (or tried to) to a client's notify URL, oldest first.
-- Each attempt is the request exactly as sent, so it can be handed to `client:handle_notification`
-- as it is (or through `sb:handle_delivery`): `method` (`"POST"`), `path` (the notify URL's path and
-- query, as on the request line; the signature covers the path without the query), `headers`
-- (`Content-Type`, `Client-Id`, `Request-Time`, `Signature`, as sent), `body` (the exact bytes
-- signed); and what happened: `requestId`, `client_id`, `url`, `attempt` (1 to 8), `status` (the
-- merchant's HTTP status, nil when no answer), `acknowledged`, `answer` (its first 512 bytes),
-- `error` (when no answer), `request_time`, `time` (ms).
-- syntax: `list = sb:deliveries(client_id?)`
-- @tparam[opt] string client_id needed when the sandbox has several clients
-- @treturn {table,...}
function Sandbox:deliveries(client_id)
  local id, headers = client_token(self, client_id, "deliveries")
  return self:admin("GET", "deliveries?client_id=" .. id, nil, headers)
end

--- The latest delivery of one binding's notification, waiting for the first to be made.
-- syntax: `delivery = sb:delivery(requestId, client_id?, timeout?)`
-- @tparam string request_id the addPaymentMethod `requestId`
-- @tparam[opt] string client_id needed when the sandbox has several clients
-- @tparam[opt=10] number timeout seconds
-- @treturn table a delivery as `deliveries` lists it, or nil when none came in time
function Sandbox:delivery(request_id, client_id, timeout)
  return self:wait(function()
    local found
    for _, d in ipairs(self:deliveries(client_id)) do
      if d.requestId == request_id then found = d end
    end
    return found
  end, timeout)
end

--- Hand a delivery to `client:handle_notification`, as the merchant's endpoint would have: the same
-- method, path, headers and body bytes (so it is verified, de-duplicated and journaled).
-- syntax: `status, headers, body = sb:handle_delivery(client, delivery, handler?)`
-- @tparam dws.client.Client client the merchant's client (its `dws_public_key` is the sandbox's)
-- @tparam table delivery one of `sb:deliveries()`
-- @tparam[opt] function handler as `handle_notification` takes it (default: accepts every notification)
-- @treturn int the HTTP status the client would answer
-- @treturn table its headers
-- @treturn string its body
function Sandbox:handle_delivery(client, delivery, handler) -- luacheck: ignore 212/self
  local request = { method = delivery.method, path = delivery.path, headers = delivery.headers,
                    body = delivery.body }
  return client:handle_notification(request, handler or function() return true end)
end

--- Where a client's notifications go from now on (until the sandbox stops): the sandbox's
-- `POST /__sandbox/notify_url`.
-- syntax: `previous = sb:notify_url(url, client_id?)`
-- @tparam string|false url an http(s) URL, or false: no notifications are sent
-- @tparam[opt] string client_id needed when the sandbox has several clients
-- @treturn string the previous URL, or nil
function Sandbox:notify_url(url, client_id)
  local id, headers = client_token(self, client_id, "notify_url")
  local answer = self:admin("POST", "notify_url", { client_id = id, notify_url = url or core.null }, headers)
  return answer.previous ~= core.null and answer.previous or nil
end
--- Forget requests, deliveries, faults and bindings.
-- syntax: `sb:reset()`
function Sandbox:reset() return self:admin("POST", "reset") end

--- Arms `name` for the next `count` API requests; opts go along (e.g. { delay = 3 }), and
-- `opts.api` aims it at one API (the others pass untouched while it waits).
-- syntax: `sb:fault(name, count?, opts?)` (docs/sandbox.md "Faults" lists them)
-- @tparam string name e.g. `"tamper"`, `"never_answer"`, `"reset"`, `"http_503"`
-- @tparam[opt=1] int count
-- @tparam[opt] table opts `delay` (seconds, for the faults that wait), `api` (e.g. `"addPaymentMethod"`)
-- @raise for an unknown name (the message lists the faults) or api
function Sandbox:fault(name, count, opts)
  local spec = { fault = name, count = count or 1 }
  for k, v in pairs(opts or {}) do spec[k] = v end
  return self:admin("POST", "faults", spec)
end

--- Seconds every API answer waits (the gateway's latency): fixed, or drawn in [min, max] per request.
-- syntax: `ok, err = sb:latency(min, max?)`
-- @tparam number min seconds
-- @tparam[opt=min] number max seconds
function Sandbox:latency(min, max)
  return self:admin("POST", "latency", { min = min, max = max or min })
end

--- Poll `fn` until it returns a truthy value or `timeout` seconds pass.
-- syntax: `v = sb:wait(fn, timeout?)`
-- @tparam function fn
-- @tparam[opt=10] number timeout seconds
-- @return what `fn` returned last
function Sandbox:wait(fn, timeout) -- luacheck: ignore 212/self
  local deadline = core.monotonic() + (timeout or 10)
  repeat
    local v = fn()
    if v then return v end
    core.sleep(0.02)
  until core.monotonic() > deadline
  return fn()
end

--- Options for dws.client.new as the default merchant against this sandbox (over TLS, its CA).
-- syntax: `opts = sb:client_options()`
-- @treturn table `client_id`, `private_key`, `dws_public_key`, `gateway`, `ca_file`
-- @raise when the sandbox was started with `clients` of its own
function Sandbox:client_options()
  assert(self.merchant, "sandbox:client_options: only for the default merchant")
  return { client_id = self.merchant.client_id, private_key = self.merchant.private_key,
           dws_public_key = self.dws_public_key_pem, gateway = self.https_url, ca_file = self.ca_file }
end

--- nginx's error log of the sandbox (for a failing spec's message).
-- syntax: `text = sb:error_log()`
-- @treturn string
function Sandbox:error_log()
  return nginx.read_file(self.dir .. "/logs/error.log") or ""
end

--- Stop nginx and remove the directory; safe to call twice.
-- syntax: `sb:stop()`
function Sandbox:stop()
  if self.stopped then return end
  self.stopped = true
  if self.handle then self.handle:close() end
  control.stop(self.dir)
  nginx.rmdir(self.dir)
end

--- Starting a sandbox.
-- @section module

--- Start a sandbox in a private directory on free loopback ports; ready when it returns.
-- syntax: `sb, err = require("dws.testing").start(opts?)`
-- @tparam[opt] table opts `clients = { [client_id] = { public_key =, notify_url = } }` (default: one
-- fresh test merchant, `TEST_CLIENT_ID`), `notify_url` (for the default merchant), `notify_scale`,
-- `token_ttl`, `notify_delay`, `bound_notify_delay`, `latency`, `http2` (true: the HTTPS port offers
-- HTTP/2 besides HTTP/1.1)
-- @treturn Sandbox the sandbox
-- @treturn[2] nil
-- @treturn[2] string err when the dws-sandbox rock is missing or nginx does not start
function M.start(opts)
  opts = opts or {}
  local loaded, load_err = load_sandbox()
  if not loaded then return nil, load_err end
  local dir = nginx.tmpdir("dws-sandbox")
  local sb = setmetatable({ dir = dir }, Sandbox)
  local clients = opts.clients
  if not clients then
    local priv, pub = nginx.make_keypair(dir .. "/keys", "merchant")
    sb.merchant = { client_id = M.TEST_CLIENT_ID, private_key = nginx.read_file(priv),
                    public_key = nginx.read_file(pub) }
    clients = { [M.TEST_CLIENT_ID] = { public_key = sb.merchant.public_key, notify_url = opts.notify_url } }
  end
  -- Every client gets an admin token (deliveries are listed per client, with its token).
  sb.admin_tokens = {}
  local with_tokens = {}
  for id, c in pairs(clients) do
    local copy = {}
    for k, v in pairs(c) do copy[k] = v end
    copy.admin_token = copy.admin_token or control.random_token()
    sb.admin_tokens[id] = copy.admin_token
    with_tokens[id] = copy
  end
  clients = with_tokens
  local conf_path = dir .. "/spec_config.lua"
  local written, write_err = config.write(conf_path, {
    clients = clients,
    notify_scale = opts.notify_scale or 1.0,
    token_ttl = opts.token_ttl or 1800,
    notify_delay = opts.notify_delay or 0,
    bound_notify_delay = opts.bound_notify_delay or 0,
    latency = opts.latency,
    http2 = opts.http2,
  })
  if not written then
    nginx.rmdir(dir)
    return nil, write_err
  end
  local info, err = control.start(dir, { config = conf_path })
  if not info then
    nginx.rmdir(dir)
    return nil, err
  end
  sb.http_port, sb.https_port = info.http_port, info.https_port
  sb.http_url = "http://127.0.0.1:" .. info.http_port
  sb.https_url = "https://127.0.0.1:" .. info.https_port
  sb.ca_file = info.ca
  sb.pid_file = dir .. "/logs/nginx.pid"
  sb.dws_public_key_pem = nginx.read_file(info.dws_public_key)
  sb.dws_public_key = control.pem_body(sb.dws_public_key_pem)
  sb.dws_private_key_pem = nginx.read_file(info.dws_private_key)
  sb.dws_public_key_file = info.dws_public_key
  -- nginx listens once start returns, but the first request must also find init_by_lua done.
  local ok = sb:wait(function()
    return http(sb, "GET", "/__sandbox/health") == 200
  end, 10)
  if not ok then
    local log = sb:error_log()
    sb:stop()
    return nil, "sandbox not healthy: " .. log:sub(-2000)
  end
  return sb
end

return M
