--- The DWS gateway inside nginx: the backend API (`/v1/...`), DWS's notifications, the outbox
-- forwarder, the sweeper and `/metrics`. nginx.conf (made by dws.gateway.config) calls these
-- functions; docs/gateway.md is the user's description.
-- @module dws.gateway.server
-- luacheck: globals ngx (ngx.status and ngx.header are assigned)
local dws = require "dws"
local core = require "dws.core"
local redact = require "dws.redact"
local dstore = require "dws.store"
local config = require "dws.gateway.config"
local outbox = require "dws.gateway.outbox"
local lock = require "dws.gateway.lock"
local metrics = require "dws.gateway.metrics"
local hmac = require "dws.gateway.hmac"

local M = {}

local cfg, client, store, backends, token_key

local NGX_LEVEL = { error = ngx.ERR, warn = ngx.WARN, info = ngx.INFO }
-- nginx's error_log level -> the client's log_level (never above warn: see init).
local CLIENT_LEVEL = { debug = "debug", info = "info", notice = "info" }

-- The SDK's events go to nginx's error log (it hands loggers redacted text only); its retries are
-- counted here, per request, for the DWS-Attempts header and the retries metric.
local function logger(level, message, fields)
  if fields and fields.event == "retry" then
    local ok, ctx = pcall(function() return ngx.ctx end)
    if ok and ctx then ctx.dws_retries = (ctx.dws_retries or 0) + 1 end
    metrics.inc("dws_gateway_retries_total", { "api", fields.api or "unknown" })
  end
  local extra = ""
  if fields and next(fields) then extra = " " .. (core.json_encode(fields) or "") end
  ngx.log(NGX_LEVEL[level] or ngx.DEBUG, "dws: ", message, extra)
end

local function store_error(op, err)
  metrics.inc("dws_gateway_store_errors_total", { "op", op })
  ngx.log(ngx.ERR, "dws gateway: store error (", op, "): ", tostring(err))
end

--- Called from init_by_lua: read the configuration, parse the keys once (the workers share them).
function M.init(config_file)
  cfg = assert(config.load(config_file))
  local transport
  if cfg.server_name then transport = require("dws.transport.ngx").new{ server_name = cfg.server_name } end
  if cfg.store then
    store = assert(dstore.open(cfg.store))
  else
    -- Node-local: every worker of this nginx sees it; it survives a reload (HUP), not a restart.
    store = require("dws.store.shared_dict").new(ngx.shared.dws_gateway)
  end
  client = dws.client{
    transport = transport,
    client_id = cfg.client_id,
    private_key = assert(config.read_file(cfg.private_key_file)),
    dws_public_key = assert(config.read_file(cfg.dws_public_key_file)),
    gateway = cfg.gateway,
    ca_file = cfg.ca_file,
    key_version = cfg.key_version,
    request_time = cfg.request_time,
    timeout = cfg.timeout,
    connect_timeout = cfg.connect_timeout,
    max_retries = cfg.max_retries,
    logger = logger,
    -- Events nginx would drop are not even built; retries (warn) are always seen, for DWS-Attempts.
    log_level = CLIENT_LEVEL[cfg.log_level] or "warn",
    notification_store = store,
    journal = store,
  }
  -- Tokens are compared as HMACs under a key of this process: equal lengths, constant time.
  token_key = core.random_bytes(32)
  backends = {}
  for name, b in pairs(cfg.backends) do
    backends[#backends + 1] = { name = name, digest = hmac.sha256(token_key, b.token), allowed = b.allowed }
    b.token = nil
  end
end

---------------------------------------------------------------------------------------------------
-- answers

local function send(status, value, headers)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  for k, v in pairs(headers or {}) do ngx.header[k] = v end
  -- No ngx.exit: the answer is complete when the handler returns (and it runs inside a pcall).
  ngx.print(core.json_encode(value) or '{"error":{"code":"INTERNAL_ERROR","message":"answer not encodable"}}')
end

-- The gateway's own refusals: a fixed code, a message, nothing from the request echoed.
local function refuse(status, code, message, headers, api)
  metrics.inc("dws_gateway_calls_total", { "api", api or "none", "status", "REFUSED", "code", code })
  return send(status, { error = { status = "F", code = code, message = message } }, headers)
end

--- error_page 413: a body over max_body.
function M.too_large()
  return refuse(413, "BODY_TOO_LARGE", "the request body is larger than " .. cfg.max_body .. " bytes")
end

---------------------------------------------------------------------------------------------------
-- backend side

local CALLS = { consultAddablePaymentMethod = true, cacheCard = true, addPaymentMethod = true }

-- method, path -> allow-list name, requestId | nil, status, code, message, headers
local function route(method, uri)
  local name = uri:match("^/v1/([%a]+)$")
  local function only(m, api, id)
    if method ~= m then
      return nil, 405, "METHOD_NOT_ALLOWED", "use " .. m, { Allow = m }
    end
    return api, id
  end
  if name and CALLS[name] then return only("POST", name) end
  if uri == "/v1/bindings" then
    if method == "GET" then return "pending_bindings" end
    return only("POST", "bind_card")
  end
  local id = uri:match("^/v1/bindings/([^/]+)/resume$")
  if id then return only("POST", "resume_binding", ngx.unescape_uri(id)) end
  id = uri:match("^/v1/bindings/([^/]+)$")
  if id then return only("GET", "binding", ngx.unescape_uri(id)) end
  return nil, 404, "UNKNOWN_API", "no such endpoint; see docs/gateway.md"
end

-- The backend this request's bearer token belongs to, or nil. Every token is compared, always.
local function authenticate()
  local h = ngx.req.get_headers()["authorization"]
  if type(h) ~= "string" then return nil, "TOKEN_MISSING" end
  local token = h:match("^[Bb]earer +(%S+)%s*$")
  if not token then return nil, "TOKEN_MISSING" end
  local digest = hmac.sha256(token_key, token)
  local found
  for _, b in ipairs(backends) do
    if hmac.equal(digest, b.digest) and not found then found = b end
  end
  if not found then return nil, "TOKEN_INVALID" end
  return found
end

local function read_json()
  local len = tonumber(ngx.var.http_content_length or "")
  if len and len > cfg.max_body then return nil, 413 end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then
    if ngx.req.get_body_file() then return nil, 413 end
    body = ""
  end
  local v = core.json_decode(body)
  if type(v) ~= "table" or getmetatable(v) == core.array_mt then return nil, 400 end
  return v
end

local STATUS_HTTP = { S = 200, F = 422, U = 503 }
local CODE_HTTP = { REQUEST_ID_REUSED = 409, BINDING_FINAL = 409, BINDING_NOT_FOUND = 404 }

local function error_value(err)
  return {
    status = err.status, code = err.code, message = redact.printable(tostring(err.message or "")),
    field = err.field, requestId = err.request_id, attempts = err.attempts, httpStatus = err.http_status,
  }
end

local function result_headers(status, code, request_id)
  local attempts = (ngx.ctx.dws_retries or 0) + 1
  return { ["DWS-Result-Status"] = status, ["DWS-Result-Code"] = code, ["DWS-Request-Id"] = request_id,
           ["DWS-Attempts"] = tostring(attempts) }
end

local function observe(api, status, code, started)
  metrics.inc("dws_gateway_calls_total", { "api", api, "status", status, "code", code or "" })
  ngx.update_time()
  metrics.observe("dws_gateway_call_duration_seconds", { "api", api }, ngx.now() - started)
end

local function answer_error(api, err, started)
  observe(api, err.status or "U", err.code, started)
  local body = { error = error_value(err), response = err.response, binding = err.binding }
  local h = result_headers(err.status or "U", err.code, err.request_id)
  -- A local refusal (validation, a journal error before sending) sent nothing: 0 attempts.
  h["DWS-Attempts"] = tostring(err.attempts or 0)
  return send(CODE_HTTP[err.code] or STATUS_HTTP[err.status] or 503, body, h)
end

local function call_api(api, request, started)
  if api == "addPaymentMethod" and request.requestId == nil then request.requestId = core.uuid4() end
  local res, err = client:call(api, request)
  if not res then return answer_error(api, err, started) end
  local result = type(res.result) == "table" and res.result or {}
  observe(api, "S", result.resultCode, started)
  return send(200, res, result_headers("S", result.resultCode, request.requestId))
end

-- An outcome (bind_card, resume_binding) -> HTTP: BOUND 200, ACCEPTED/ACTION_REQUIRED 202,
-- FAILED 422, UNKNOWN 503 (resumable: the body says which requestId).
local OUTCOME = { BOUND = { 200, "S" }, ACCEPTED = { 202, "S" }, ACTION_REQUIRED = { 202, "S" },
                  FAILED = { 422, "F" }, UNKNOWN = { 503, "U" } }

local function binding_value(b)
  local v = {}
  for k, x in pairs(b) do
    if k == "error" then v.error = error_value(x) else v[k] = x end
  end
  return v
end

local function answer_outcome(api, outcome, started)
  local http = OUTCOME[outcome.status] or { 503, "U" }
  local code = outcome.resultCode or (outcome.error and outcome.error.code) or outcome.status
  observe(api, http[2], code, started)
  local h = result_headers(http[2], code, outcome.requestId)
  h["DWS-Binding-Status"] = outcome.status
  if outcome.error and outcome.error.attempts then h["DWS-Attempts"] = tostring(outcome.error.attempts) end
  h.Location = "/v1/bindings/" .. ngx.escape_uri(outcome.requestId or "")
  return send(http[1], { binding = binding_value(outcome) }, h)
end

local dispatch

--- Every request on the backend listen address. An error raised on the way (a bug) is answered
-- as JSON like everything else, and logged.
function M.backend()
  local ok, err = pcall(dispatch)
  if not ok then
    ngx.log(ngx.ERR, "dws gateway: ", redact.printable(tostring(err))) -- masked: it may quote a request
    return refuse(500, "INTERNAL_ERROR", "the gateway failed on this request; see its error log")
  end
end

function dispatch()
  -- The path as sent: ngx.var.uri is already percent-decoded, and a requestId may hold "%2F".
  local method, uri = ngx.req.get_method(), ngx.var.request_uri:match("^[^?#]*")
  ngx.update_time()
  local started = ngx.now()
  local backend, why = authenticate()
  if not backend then
    return refuse(401, why, why == "TOKEN_MISSING" and "send Authorization: Bearer <token>"
      or "the bearer token is not one of this gateway's", { ["WWW-Authenticate"] = 'Bearer realm="dws-gateway"' })
  end
  local api, id_or_status, code, message, headers = route(method, uri)
  if not api then return refuse(id_or_status, code, message, headers) end
  if not backend.allowed[api] then
    return refuse(403, "API_NOT_ALLOWED", "this backend's token may not use " .. api, nil, api)
  end
  if api == "binding" then
    local b, err = client:binding(id_or_status)
    if err then return answer_error(api, err, started) end
    if not b then return refuse(404, "BINDING_NOT_FOUND", "no binding with this requestId", nil, api) end
    observe(api, "S", b.status, started)
    return send(200, { binding = binding_value(b) }, { ["DWS-Binding-Status"] = b.status })
  elseif api == "pending_bindings" then
    local older = tonumber(ngx.var.arg_older_than or "0")
    local state = ngx.var.arg_state
    if not older or older < 0 or (state and state ~= "pending") then
      return refuse(400, "PARAM_ILLEGAL", "use ?state=pending&older_than=<seconds>", nil, api)
    end
    local list, err = client:pending_bindings{ older_than = older }
    if not list then return answer_error(api, err, started) end
    local out = setmetatable({}, core.array_mt)
    for i, b in ipairs(list) do out[i] = binding_value(b) end
    observe(api, "S", "SUCCESS", started)
    return send(200, { bindings = out })
  elseif api == "resume_binding" then
    local outcome, err = client:resume_binding(id_or_status)
    if not outcome then return answer_error(api, err, started) end
    return answer_outcome(api, outcome, started)
  end
  local request, bad = read_json()
  if not request then
    if bad == 413 then return M.too_large() end
    return refuse(400, "MALFORMED_JSON", "the body must be a JSON object", nil, api)
  end
  if api == "bind_card" then
    local outcome, err = client:bind_card(request)
    if not outcome then return answer_error(api, err, started) end
    return answer_outcome(api, outcome, started)
  end
  return call_api(api, request, started)
end

---------------------------------------------------------------------------------------------------
-- DWS side

-- Inside handle_notification, after the journal: the outbox entry. A store failure makes the
-- handler fail, so DWS is answered U (500) and re-sends: nothing is acknowledged that is not durable.
local function on_notification(n, binding)
  if not cfg.forward_to then return true end
  ngx.update_time()
  local ok, err = outbox.put(store, outbox.entry(n, binding, math.floor(ngx.now() * 1000)))
  if not ok then
    store_error("outbox_put", err)
    return nil, "outbox: " .. tostring(err)
  end
  -- Tells this node's forwarder to look now (another node's finds it within forward_rescan).
  ngx.shared.dws_gateway_signals:incr("outbox", 1, 0)
  return true
end

--- POST <notify_path> from DWS.
function M.notify()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  local status, headers, answer = client:handle_notification({
    method = ngx.req.get_method(),
    path = ngx.var.request_uri,
    headers = ngx.req.get_headers(0, true),
    body = body,
  }, on_notification)
  local outcome = status == 200 and "acknowledged" or status >= 500 and "not_acknowledged" or "refused"
  metrics.inc("dws_gateway_notifications_total", { "outcome", outcome })
  ngx.status = status
  for k, v in pairs(headers) do ngx.header[k] = v end
  ngx.print(answer)
  return ngx.exit(status)
end

---------------------------------------------------------------------------------------------------
-- forwarder and sweeper (timers)

local owner, forward_transport

local function forward_post(e)
  ngx.update_time()
  local ts = tostring(math.floor(ngx.now()))
  local res, kind, message = forward_transport:request{
    method = "POST", url = cfg.forward_to, body = e.payload, timeout = cfg.forward_timeout,
    connect_timeout = math.min(cfg.forward_timeout, 2),
    headers = {
      ["Content-Type"] = "application/json",
      ["webhook-id"] = e.id,
      ["webhook-timestamp"] = ts,
      ["webhook-signature"] = hmac.webhook_signature(cfg.forward_key, e.id, ts, e.payload),
    },
  }
  if not res then
    metrics.inc("dws_gateway_forward_failures_total", { "reason", tostring(kind) })
    return false, tostring(kind) .. ": " .. tostring(message), true
  end
  if res.status >= 200 and res.status < 300 then
    metrics.inc("dws_gateway_forwarded_total")
    return true
  end
  metrics.inc("dws_gateway_forward_failures_total", { "reason", "http_" .. res.status })
  return false, "HTTP " .. res.status
end

-- The forwarder's lease: renewed between posts, so it must outlast the slowest post (every light
-- thread may be waiting out forward_timeout at once) with room to spare; set in init_worker.
local FORWARD_LOCK_TTL

-- This worker's view, as forwarder: the signal count at its last scan, when that was, and when an
-- entry it left behind is due. A scan reads the whole outbox, so it runs only when there is news.
local last_signal, last_scan, next_due = nil, -math.huge, nil

local function forward_tick()
  local held, err = lock.acquire(store, "forwarder", owner, FORWARD_LOCK_TTL)
  if held == nil then return store_error("lock", err) end
  if not held then
    last_scan = -math.huge -- once it is ours again, look at once
    return
  end
  ngx.update_time()
  local now = ngx.now()
  local signal = ngx.shared.dws_gateway_signals:get("outbox")
  local due = next_due and now * 1000 >= next_due
  if signal == last_signal and now - last_scan < cfg.forward_rescan and not due then return end
  last_signal, last_scan = signal, now
  local renewed_at = ngx.now()
  local stats, rerr = outbox.run(store, {
    post = forward_post,
    now = function() ngx.update_time(); return math.floor(ngx.now() * 1000) end,
    retry_base = cfg.forward_retry_base,
    retry_max = cfg.forward_retry_max,
    concurrency = cfg.forward_concurrency,
    -- `width` light threads, each taking the next function when it is done with one.
    parallel = function(fns, width)
      local next_one = 0
      local function worker()
        while next_one < #fns do
          next_one = next_one + 1
          fns[next_one]()
        end
      end
      if #fns <= 1 or width <= 1 then return worker() end
      local threads = {}
      for i = 1, math.min(width, #fns) do threads[i] = ngx.thread.spawn(worker) end
      for _, t in ipairs(threads) do ngx.thread.wait(t) end
    end,
    keep_going = function()
      if ngx.worker.exiting() then return false end
      if ngx.now() - renewed_at > FORWARD_LOCK_TTL / 3 then
        renewed_at = ngx.now()
        return lock.acquire(store, "forwarder", owner, FORWARD_LOCK_TTL) == true
      end
      return true
    end,
  })
  if not stats then
    next_due = nil
    return store_error("outbox_scan", rerr)
  end
  next_due = stats.next_at
  if stats.store_errors > 0 then store_error("outbox_update", stats.store_errors .. " failed") end
end

local function sweep_tick()
  local held, err = lock.acquire(store, "sweeper", owner, cfg.sweep_interval * 2)
  if held == nil then return store_error("lock", err) end
  if not held then return end
  local list, perr = client:pending_bindings{ older_than = cfg.resume_after }
  if not list then return store_error("pending", perr) end
  local resumable = { NEW = true, SENT = true, UNKNOWN = true }
  ngx.update_time()
  local now = ngx.now() * 1000
  for _, b in ipairs(list) do
    if ngx.worker.exiting() then return end
    if resumable[b.state] then
      local outcome, rerr = client:resume_binding(b.requestId)
      local status = outcome and outcome.status or (rerr and rerr.code) or "ERROR"
      metrics.inc("dws_gateway_resumed_total", { "status", status })
      ngx.log(ngx.WARN, "dws gateway: sweeper resumed binding ", b.requestId, ": ", status)
    end
    if b.createdAt and (now - b.createdAt) / 1000 > cfg.report_pending_after then
      ngx.log(ngx.WARN, "dws gateway: binding ", b.requestId, " pending (", b.state, ") for ",
        math.floor((now - b.createdAt) / 1000), " s")
    end
  end
end

-- A timer that runs fn every `every` seconds, never two runs at once, until the worker exits.
local function loop(name, every, fn)
  local function run(premature)
    if premature then
      lock.release(store, name, owner)
      return
    end
    local ok, err = pcall(fn)
    if not ok then ngx.log(ngx.ERR, "dws gateway: ", name, ": ", tostring(err)) end
    if not ngx.worker.exiting() then
      local ok2, terr = ngx.timer.at(every, run)
      if not ok2 then ngx.log(ngx.ERR, "dws gateway: ", name, " timer: ", tostring(terr)) end
    end
  end
  assert(ngx.timer.at(0, run))
end

--- Called from init_worker_by_lua: the forwarder and the sweeper (each guarded by a store lock,
-- so one worker of one node runs each at a time).
function M.init_worker()
  owner = string.format("%s:%d:%s", core.uuid4(), ngx.worker.pid(), tostring(ngx.worker.id()))
  FORWARD_LOCK_TTL = math.max(10, 3 * cfg.forward_timeout)
  if cfg.forward_to then
    forward_transport = require("dws.transport.ngx").new{}
    loop("forwarder", cfg.forward_interval, forward_tick)
  end
  loop("sweeper", cfg.sweep_interval, sweep_tick)
end

---------------------------------------------------------------------------------------------------
-- metrics

--- GET /metrics (Prometheus text format 0.0.4).
function M.metrics()
  ngx.update_time()
  local now = ngx.now() * 1000
  local gauges = {}
  local depth, oldest, err = outbox.depth(store, now)
  if depth then
    gauges.dws_gateway_outbox_depth, gauges.dws_gateway_outbox_oldest_age_seconds = depth, oldest
  else
    store_error("outbox_scan", err)
  end
  local list, perr = client:pending_bindings{}
  if list then
    local first = now
    for _, b in ipairs(list) do
      if b.createdAt and b.createdAt < first then first = b.createdAt end
    end
    gauges.dws_gateway_pending_bindings = #list
    gauges.dws_gateway_pending_oldest_age_seconds = (now - first) / 1000
  else
    store_error("pending", perr)
  end
  ngx.header["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
  ngx.print(metrics.render(gauges))
end

return M
