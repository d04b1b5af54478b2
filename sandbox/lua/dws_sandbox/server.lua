-- The sandbox's request handling inside nginx: routing, the merchant's signature, dispatch to the
-- APIs, signed answers, fault injection, the request log, notifications after the answer.
--
-- Nothing here logs a body or puts one in an error: request bodies carry card numbers.
-- luacheck: globals ngx (ngx.status and ngx.header are assigned)
local core = require "dws.core"
local config = require "dws_sandbox.config"
local store = require "dws_sandbox.store"
local apis = require "dws_sandbox.apis"
local faults = require "dws_sandbox.faults"
local notify = require "dws_sandbox.notify"
local testdata = require "dws_sandbox.testdata"
local challenge = require "dws_sandbox.challenge"
local latency = require "dws_sandbox.latency"
local strict = require "dws_sandbox.strict"
local dws_keys = require "dws_sandbox.keys"
local read_file = require("dws_sandbox.nginx").read_file

local M = {}

-- Set by init (in the master, inherited by the worker): { conf, clients, dws_key, foreign_key }.
local S = {}
M.state = S

local APIS = faults.APIS

-- init_by_lua: parse the config and every key once. A bad config stops nginx from starting.
function M.init(opts)
  local conf = assert(config.load(opts.config))
  S.conf = conf
  S.config_path = opts.config
  S.clients = {}
  for id, c in pairs(conf.clients) do
    local key, err = core.public_key(c.public_key)
    if not key then error("dws sandbox: client " .. id .. ": public key: " .. tostring(err), 0) end
    S.clients[id] = { key = key, notify_url = c.notify_url }
  end
  S.dws_key = assert(core.private_key(assert(read_file(opts.dws_private_key))))
  dws_keys.init(S.dws_key)
  S.foreign_key = assert(core.private_key(assert(read_file(opts.foreign_private_key))))
  -- hashCode salt: a card's hashCode is stable while the sandbox runs and says nothing about the
  -- number to anyone without this process's memory.
  S.salt = core.random_bytes(32)
end

-- SHA-256 through the libcrypto nginx is linked with (no resty.string on this system).
local ffi = require "ffi"
pcall(ffi.cdef, [[
  typedef struct evp_md_st EVP_MD;
  const EVP_MD *EVP_sha256(void);
  int EVP_Digest(const void *data, size_t count, unsigned char *md, unsigned int *size,
                 const EVP_MD *type, void *impl);
]])
local md_buf = ffi.new("unsigned char[32]")
local function sha256_hex(s)
  assert(ffi.C.EVP_Digest(s, #s, md_buf, nil, ffi.C.EVP_sha256(), nil) == 1, "EVP_Digest")
  return apis.hex(ffi.string(md_buf, 32))
end
M.sha256_hex = sha256_hex

local function hash_code(s)
  return sha256_hex(S.salt .. s)
end

-- The scheme and host the merchant reached us at, for the URLs we hand out (challenge pages).
local function base_url()
  local host = ngx.var.http_host
  if not host or not host:match("^[%w%.%-%[%]:]+$") then host = ngx.var.server_addr .. ":" .. ngx.var.server_port end
  return ngx.var.scheme .. "://" .. host
end

local function now_iso()
  return apis.iso8601(ngx.time())
end

local function sign(key, ctx, time, body)
  return core.signature_header(core.sign(key, ctx.method, ctx.path, ctx.client_id, time, body),
    dws_keys.version_of(key))
end

-- Wait up to `seconds`, giving up early when nginx shuts down (a stalled request must not hold
-- a graceful stop for 30 s). A client that hangs up ends the request (lua_check_client_abort).
local function stall(seconds)
  local deadline = ngx.now() + seconds
  while ngx.now() < deadline and not ngx.worker.exiting() do
    ngx.sleep(math.min(0.1, deadline - ngx.now()))
    ngx.update_time()
  end
end

local function put_headers(list)
  for _, h in ipairs(list) do ngx.header[h[1]] = h[2] end
end

-- The same faults over HTTP/2, where there is no raw connection to write to (ngx.req.socket raises
-- "http v2 not supported yet") and closing it would fail every stream on it: the headers and part of
-- the body go out as frames, then 444 resets this stream alone (RST_STREAM), as a proxy that dies
-- mid-answer does to one request among many multiplexed ones.
local function h2_cut_answer(list, wire, name)
  local length, sent = #wire, wire
  if name == "short_body" then
    length = #wire + 64
  else
    sent = wire:sub(1, math.floor(#wire / 2))
  end
  ngx.status = 200
  put_headers(list)
  ngx.header["Content-Length"] = length
  ngx.print(sent)
  ngx.flush(true)
  return ngx.exit(444)
end

-- Faults that need the raw connection: a status line and headers, part of a body, then close.
local function raw_answer(list, wire, name)
  if ngx.req.http_version() == 2 then return h2_cut_answer(list, wire, name) end
  local sock, err = ngx.req.socket(true)
  if not sock then
    ngx.log(ngx.ERR, "dws sandbox: raw socket: ", err)
    return ngx.exit(444)
  end
  local length, sent = #wire, wire
  if name == "short_body" then
    length = #wire + 64
  else -- reset: cut mid-body
    sent = wire:sub(1, math.floor(#wire / 2))
  end
  local head = { "HTTP/1.1 200 OK", "Content-Length: " .. length, "Connection: close" }
  for _, h in ipairs(list) do
    local v = h[2]
    if type(v) == "table" then
      for _, x in ipairs(v) do head[#head + 1] = h[1] .. ": " .. x end
    else
      head[#head + 1] = h[1] .. ": " .. v
    end
  end
  sock:send(table.concat(head, "\r\n") .. "\r\n\r\n" .. sent)
  return ngx.exit(444)
end

-- Send a JSON answer, signed with the DWS key unless `how` says otherwise; post-processing faults
-- spoil it here. how: { unsigned = bool, no_time = bool } for pre-processing faults.
local function answer(ctx, body, fault, how)
  how = how or {}
  local name = fault and fault.name
  if name == "never_answer" then
    stall(faults.delay(fault.opts, faults.MAX_STALL))
    return ngx.exit(444)
  elseif name == "slow" then
    stall(faults.delay(fault.opts, 2))
  end
  local time = now_iso()
  local wire = body
  local list = { { "Content-Type", "application/json; charset=UTF-8" } }
  if ctx.client_id ~= "" then list[#list + 1] = { "client-id", ctx.client_id } end
  if not how.unsigned and not how.no_time and name ~= "no_response_time" then
    list[#list + 1] = { "response-time", time }
  end
  if not how.unsigned then
    if name == "dup_headers" then
      list[#list + 1] = { "signature", { sign(dws_keys.signing_key(), ctx, time, body),
        sign(S.foreign_key, ctx, time, body) } }
    elseif name == "foreign_key" then
      list[#list + 1] = { "signature", sign(S.foreign_key, ctx, time, body) }
    elseif name ~= "unsigned_s" then
      list[#list + 1] = { "signature", sign(dws_keys.signing_key(), ctx, time, body) }
    end
  end
  if name == "tamper" then
    -- Still valid JSON, only the bytes differ from what was signed.
    local n
    wire, n = body:gsub('"resultMessage":"', '"resultMessage":"(tampered) ', 1)
    if n == 0 then wire = body .. " " end
  end
  if name == "reset" or name == "short_body" then return raw_answer(list, wire, name) end

  ngx.status = how.status or 200
  put_headers(list)
  ngx.header["Content-Length"] = #wire
  if name == "drip" then
    local step = faults.delay(fault.opts, 0.05)
    local deadline = ngx.now() + faults.MAX_STALL
    for i = 1, #wire do
      local ok = ngx.print(wire:sub(i, i))
      if not ok then return ngx.exit(444) end
      ngx.flush(true)
      if ngx.now() > deadline then return ngx.exit(444) end
      ngx.sleep(step)
      ngx.update_time()
    end
  else
    ngx.print(wire)
  end
  return ngx.exit(ngx.status)
end

local function result_body(status, code, message, extra)
  local t = apis.result(status, code, message)
  for k, v in pairs(extra or {}) do t[k] = v end
  return assert(core.json_encode(t, false))
end

-- Pre-processing faults: what a gateway or proxy in front of DWS answers instead.
local function pre_fault(ctx, fault, echo)
  local name = fault.name
  local status = tonumber(name:match("^http_(%d%d%d)$"))
  if status then
    ngx.status = status
    ngx.header["Content-Type"] = "text/html"
    local html = faults.html(status)
    ngx.header["Content-Length"] = #html
    ngx.print(html)
    return ngx.exit(status)
  elseif name == "non_json" then
    return answer(ctx, "<html><body>upstream says hello</body></html>", nil)
  elseif name == "no_result" then
    return answer(ctx, assert(core.json_encode({ traceId = core.uuid4() }, false)), nil)
  elseif name == "huge_body" then
    local extra = { padding = string.rep("x", 2 * 1024 * 1024) }
    return answer(ctx, result_body("S", "SUCCESS", "success", extra), nil)
  elseif name == "unsigned_f" then
    return answer(ctx, result_body("F", "ACCESS_DENIED", "Access denied.", echo), nil, { unsigned = true })
  elseif name == "traffic_limit" then
    return answer(ctx, result_body("U", "REQUEST_TRAFFIC_EXCEED_LIMIT", "Request traffic exceeds the limit.",
      echo), nil)
  end
  return answer(ctx, result_body("U", "UNKNOWN_EXCEPTION",
    "An API call failed, which is caused by unknown reasons.", echo), nil)
end

local function one(v)
  if type(v) == "table" then return nil, true end
  return v, false
end

-- The merchant's signature: nil when it verifies, else the (code, message) to answer with.
local function authenticate(ctx, headers)
  local client = ctx.client_id ~= "" and S.clients[ctx.client_id]
  if not client then return "INVALID_CLIENT", "Invalid client." end
  local sig, dup = one(headers["signature"])
  local time, tdup = one(headers["request-time"])
  if dup or tdup or not sig or not time or time == "" then
    return "INVALID_SIGNATURE", "Signature is invalid."
  end
  local _, why = strict.signature_header(sig)
  if why then return "INVALID_SIGNATURE", "Signature is invalid: " .. why .. "." end
  local parsed = core.parse_signature_header(sig)
  if not parsed or parsed.algorithm ~= "RSA256" then return "INVALID_SIGNATURE", "Signature is invalid." end
  local key = dws_keys.merchant_key(ctx.client_id, parsed.keyVersion, client.key)
  if not key then return "INVALID_SIGNATURE", "Signature is invalid." end
  if not core.verify(key, ctx.method, ctx.path, ctx.client_id, time, ctx.body, parsed.signature) then
    return "INVALID_SIGNATURE", "Signature is invalid."
  end
  return nil
end

-- The signed headers besides the signature, once it verified (a stranger learns nothing from them):
-- nil, or the header's name and what is wrong with it (answered PARAM_ILLEGAL, the pages' code for
-- a wrong header field).
local function header_problem(headers)
  local why = strict.request_time((one(headers["request-time"])), core.time_ms())
  if why then return "Request-Time", why end
  why = strict.content_type(headers["content-type"])
  if why then return "Content-Type", why end
  return nil
end

local function handle_api()
  local method = ngx.req.get_method()
  local path = ngx.var.request_uri:match("^[^?]*")
  local api = path:match("^/ams/api/v1/paymentMethods/(%w+)$") or
              path:match("^/ams/sandbox/api/v1/paymentMethods/(%w+)$")
  if api and not APIS[api] then api = nil end

  ngx.req.read_body()
  -- Arrival and the end of the latency wait (record.time) bound the time a request was in flight
  -- here, so a spec can count how many were at once from the log.
  local received = core.time_ms()
  -- The gateway's latency (config or admin setting), before anything is processed or signed.
  if api then latency.wait(S.conf) end
  local body = ngx.req.get_body_data() or ""
  local spooled = ngx.req.get_body_file() ~= nil -- cannot happen with the buffer sizes in config.lua
  local headers = ngx.req.get_headers(100)
  local client_id, cdup = one(headers["client-id"])
  local ctx = {
    method = method, path = path, api = api, client_id = (not cdup and client_id) or "", body = body,
    body_hash = sha256_hex(body), conf = S.conf, hash_code = hash_code, base_url = base_url(),
  }
  ctx.challenge = function(opts) return challenge.create(ctx, opts) end
  ctx.client = S.clients[ctx.client_id]

  local function joined(v)
    if type(v) == "table" then return table.concat(v, "\n") end
    return v
  end
  local sig_header = joined(headers["signature"])
  local record = {
    received = received, time = core.time_ms(), api = api, method = method, path = path,
    client_id = ctx.client_id, request_time = joined(headers["request-time"]),
    signature = sig_header, body_sha256 = ctx.body_hash, verified = false,
    -- nginx's serial of the connection and "HTTP/1.1" or "HTTP/2.0": a spec counts the connections a
    -- batch used, and sees h2 multiplexing, without timing anything.
    connection = tonumber(ngx.var.connection), protocol = ngx.var.server_protocol,
  }

  local req
  local reserved = testdata.CLIENTS[ctx.client_id]
  local env_code, env_message = strict.environment(ctx.client_id, path)
  if api and method == "POST" and env_code then
    ctx.failure = { env_code, env_message }
  elseif api and method == "POST" and reserved then
    ctx.failure = reserved
  elseif api and method == "POST" and not spooled then
    local code, message = authenticate(ctx, headers)
    record.verified = code == nil
    local field
    if not code then field, message = header_problem(headers) end
    if code then
      ctx.failure = { code, message }
    elseif field then
      ctx.failure = { "PARAM_ILLEGAL", "Illegal parameters: " .. message }
      record.field = field
    else
      local t = core.json_decode(body)
      if type(t) == "table" and getmetatable(t) ~= core.array_mt then
        req = t
        if type(t.requestId) == "string" then record.requestId = t.requestId end
      else
        ctx.failure = { "PARAM_ILLEGAL", "Illegal parameters: the body is not a JSON object" }
      end
    end
  elseif spooled then
    ctx.failure = { "PARAM_ILLEGAL", "Illegal parameters: the body is too large" }
  end
  if not record.requestId then
    -- Faults and auth failures still log the requestId, so specs can follow a retried call.
    local t = api and core.json_decode(body)
    if type(t) == "table" and type(t.requestId) == "string" then record.requestId = t.requestId end
  end

  local fault = api and faults.take(api) or nil
  record.fault = fault and fault.name or nil
  local echo = api == "addPaymentMethod" and record.requestId and { requestId = record.requestId } or nil

  if fault and fault.kind == "pre" then
    store.append("request", record)
    return pre_fault(ctx, fault, echo)
  end

  local out
  local effects = {}
  if not api then
    out = result_body("F", "INVALID_API", "API is invalid (or not active).")
  elseif method ~= "POST" then
    out = result_body("F", "METHOD_NOT_SUPPORTED", "The server does not implement the requested HTTP method.")
  elseif ctx.failure then
    local f = ctx.failure
    if #f == 3 then
      out = result_body(f[1], f[2], f[3], echo)
    else
      out = result_body("F", f[1], f[2], echo)
    end
  else
    local res
    res, effects = apis[api](ctx, req)
    effects = effects or {}
    out = effects.replay or effects.body or assert(core.json_encode(res, false))
    record.field = effects.field
    record.idempotent = effects.idempotent
  end
  local decoded = core.json_decode(out)
  local r = type(decoded) == "table" and decoded.result or {}
  record.resultStatus, record.resultCode = r.resultStatus, r.resultCode
  store.append("request", record)

  -- Queued before answering (a stalled answer must not hold the notification back); the timer
  -- runs once this request yields, outside it.
  if effects.notify and ctx.client then
    notify.send{
      client_id = ctx.client_id, url = ctx.client.notify_url, request_id = req.requestId, key = dws_keys.signing_key(),
      notification = effects.notify.body, delay = effects.notify.delay, scale = S.conf.notify_scale,
    }
  end
  return answer(ctx, out, fault)
end

function M.handle(admin_port)
  if admin_port and ngx.var.uri:sub(1, 11) == "/__sandbox/" then
    return require("dws_sandbox.admin").handle()
  end
  if ngx.var.uri:sub(1, 11) == "/challenge/" then return challenge.handle(S) end
  return handle_api()
end

return M
