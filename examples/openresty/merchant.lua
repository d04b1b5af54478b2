-- An example merchant server inside OpenResty (nginx + the Lua module): receives DWS binding
-- notifications on POST /notify and binds cards through the SDK on POST /bind.
--
-- Configuration comes from a JSON file named in nginx.conf (see examples/merchant_server.lua):
--   { "client_id": ..., "private_key_file": ..., "dws_public_key_file": ..., "gateway": ...,
--     "ca_file": ..., "journal": "sqlite:/path/file.db",
--     "store": "redis://10.0.0.5:6379/0?prefix=shop:", "test_hooks": false,
--     "log_level": "warn" (default: the level of nginx's error_log) }
-- With a journal shared with the scripts that call bind_card, a notification received here
-- moves their binding to BOUND or FAILED, and client:binding(requestId) anywhere reads it.
-- Without "store", de-duplication lives in this node's lua_shared_dict (all its workers); with a
-- Redis URL, every node behind the load balancer shares it, and the journal too unless "journal"
-- names another (see "Several nodes" in the README).
-- Keys are read and parsed once, in init_by_lua (the master), and shared by the forked workers.
-- luacheck: globals ngx (ngx.status and ngx.header are assigned)
local dws = require "dws"
local core = require "dws.core"

local M = {}

local client
local config

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- The SDK's log lines go to nginx's error log; they never carry card numbers (the SDK only
-- hands loggers masked data).
local NGX_LEVEL = { error = ngx.ERR, warn = ngx.WARN, info = ngx.INFO }

local function logger(level, message, fields)
  local lvl = NGX_LEVEL[level] or ngx.DEBUG
  local extra = ""
  if fields and next(fields) then extra = " " .. (core.json_encode(fields) or "") end
  ngx.log(lvl, "dws: ", message, extra)
end

-- The level nginx's error_log keeps, as the SDK's log_level: events nginx would drop are not
-- even built (their redaction costs microseconds per notification). "log_level" in the config
-- overrides it.
local function error_log_level()
  local ok, errlog = pcall(require, "ngx.errlog")
  local got, level = pcall(function() return ok and errlog.get_sys_filter_level() end)
  if not (got and type(level) == "number") then return "debug" end
  if level >= ngx.DEBUG then return "debug" end
  if level >= ngx.INFO then return "info" end
  if level >= ngx.WARN then return "warn" end
  return "error"
end

-- Called from init_by_lua_block.
function M.init(config_file)
  config = assert(dws.decode_json(read_file(config_file)))
  local transport
  if config.server_name then
    -- nginx verifies certificates by DNS name only: a gateway addressed by IP (the local sandbox
    -- at https://127.0.0.1:port) needs the name its certificate carries.
    transport = require("dws.transport.ngx").new{ server_name = config.server_name }
  end
  client = dws.client{
    transport = transport,
    client_id = config.client_id,
    private_key = read_file(config.private_key_file),
    dws_public_key = read_file(config.dws_public_key_file),
    gateway = config.gateway,
    ca_file = config.ca_file,
    logger = logger,
    log_level = config.log_level or error_log_level(),
    -- One de-dup store for all workers (and, with Redis, all nodes): a notification re-sent to
    -- another worker or node is still a repeat. Both connect lazily, from the request handlers.
    notification_store = config.store and assert(require("dws.store").open(config.store))
      or require("dws.store.shared_dict").new(ngx.shared.dws_notifications_seen),
    -- The binding journal (memory when not configured). SQLite connects lazily, in each worker.
    journal = config.journal or config.store,
  }
end

local function reply(status, value)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.say(core.json_encode(value))
  return ngx.exit(status)
end

local function read_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body and ngx.req.get_body_file() then
    -- client_body_buffer_size = client_max_body_size in nginx.conf keeps bodies in memory;
    -- a body on disk would mean that setting was changed.
    return nil, "request body was buffered to a file; raise client_body_buffer_size"
  end
  return body or ""
end

-- The merchant's own processing of a binding result: here, recording it in a shared dict so
-- GET /notifications can show it. Test hooks (off unless configured) make it fail on purpose.
local records = function() return ngx.shared.merchant_notifications end

local function record(n, outcome, reason, binding)
  local dict = records()
  local i = assert(dict:incr("count", 1, 0))
  local card = type(n.paymentMethodDetail) == "table" and n.paymentMethodDetail.card or {}
  dict:set("n:" .. i, core.json_encode{
    requestId = n.requestId,
    referenceCustomerId = n.referenceCustomerId,
    referenceUserId = n.referenceUserId,
    outcome = outcome,
    -- The journal's state after this notification (nil: a requestId this journal does not know).
    binding = binding and binding.state or nil,
    reason = reason,
    cardToken = type(card) == "table" and card.cardToken or nil,
    mask = type(card) == "table" and card.mask or nil,
    brand = type(card) == "table" and card.brand or nil,
    receivedAt = ngx.now(),
  })
end

local function planned_failure()
  if not config.test_hooks then return nil end
  local dict = records()
  local mode = dict:get("fail_mode")
  if not mode then return nil end
  local left = dict:incr("fail_count", -1, 0)
  if not left or left < 0 then
    dict:delete("fail_mode")
    return nil
  end
  if left == 0 then dict:delete("fail_mode") end
  return mode
end

local function on_notification(n, binding)
  local mode = planned_failure()
  if mode == "raise" then
    record(n, "system_failure", "handler raised")
    error("database unavailable")
  elseif mode == "system_failure" then
    record(n, "system_failure", "could not store")
    return nil, "could not store the binding"
  elseif mode == "business_failure" then
    record(n, "business_failure", "customer unknown to the merchant")
    return false, "customer unknown to the merchant"
  end
  record(n, "recorded", nil, binding)
  return true
end

-- POST /notify
function M.notify()
  local body, why = read_body()
  if not body then
    ngx.log(ngx.ERR, why)
    return reply(500, { result = { resultStatus = "U", resultCode = "UNKNOWN_EXCEPTION", resultMessage = why } })
  end
  -- Every header, not ngx_lua's default first 100: a delivery (or a proxy in front of us) may put
  -- any number before the signature headers. nginx's own header buffers bound the count.
  -- Raw names: the SDK matches them case-insensitively.
  local request_headers = ngx.req.get_headers(0, true)
  local status, headers, answer = client:handle_notification({
    method = ngx.req.get_method(),
    path = ngx.var.request_uri, -- as sent (not normalised); the SDK drops the query
    headers = request_headers,
    body = body,
  }, on_notification)
  ngx.status = status
  for k, v in pairs(headers) do ngx.header[k] = v end
  ngx.print(answer)
  return ngx.exit(status)
end

-- GET /notifications: what the handler has seen, oldest first.
function M.notifications()
  local dict = records()
  local list = setmetatable({}, core.array_mt)
  for i = 1, dict:get("count") or 0 do
    local item = dict:get("n:" .. i)
    if item then list[#list + 1] = dws.decode_json(item) end
  end
  return reply(200, { notifications = list })
end

-- POST /__merchant/handler {"mode": "raise"|"system_failure"|"business_failure", "count": n}
-- (only with test_hooks): the next n notifications fail that way.
function M.plan_failure()
  local body = read_body()
  local plan = body and dws.decode_json(body)
  if not config.test_hooks or type(plan) ~= "table" then return reply(404, { error = "no such endpoint" }) end
  records():set("fail_mode", plan.mode)
  records():set("fail_count", tonumber(plan.count) or 1)
  return reply(200, { ok = true })
end

-- POST /bind {"customerId":..., "env":{...}, "card":{...}, "referenceCustomerId":...}
-- -> 200 with the outcome, or 4xx/5xx with the error (never the card: the SDK keeps it out).
function M.bind()
  if ngx.req.get_method() ~= "POST" then return reply(405, { error = { message = "POST only" } }) end
  local body = read_body()
  local params = body and dws.decode_json(body)
  if type(params) ~= "table" then return reply(400, { error = { message = "body must be a JSON object" } }) end
  local outcome, err = client:bind_card(params)
  if not outcome then
    return reply(err.status == "F" and 422 or 502, { error = {
      code = err.code, status = err.status, message = err.message, field = err.field,
      requestId = err.request_id,
    } })
  end
  return reply(200, { outcome = outcome })
end

return M
