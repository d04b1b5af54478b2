--- The call pipeline: validate -> encode (once) -> [sign -> send -> verify -> classify -> retry?].
-- `dws.client` makes one per client from its options and keys; `dws.bind_card` encodes and sends
-- through it, `dws.multi` runs it over another transport. Not a public API (HACKING.md).
-- @module dws.pipeline

-- A call costs one validation walk, one JSON encode, one RSA signature and one verification per
-- attempt: everything that can be done once (keys, paths, URLs, static headers) is done when the
-- pipeline is made.
--
-- Logger events (logger(level, message, fields), fields.event): "request" (debug; api,
-- request_id, attempt, body), "response" (debug; + http_status, elapsed, body), "result" (info;
-- result_code, result_status), "retry" (warn; code, http_status, delay, reason), "error" (error;
-- code, status, attempts, field, message, reason: why it was not retried). Every string handed
-- over (message and fields, bodies included) is redacted and has its control characters escaped
-- (dws.redact.printable).
local core = require "dws.core"
local validate = require "dws.validate"
local errors = require "dws.errors"
local signature = require "dws.signature"
local redact = require "dws.redact"
local should_retry = require("dws.retry").should_retry
local dtime = require "dws.time"
local defaults = require "dws.defaults"

local type, pairs, pcall, tostring, setmetatable, error = type, pairs, pcall, tostring, setmetatable, error
local min, random = math.min, math.random

local M = {}

--- Logger levels, lowest first. Events under the client's log_level are dropped before their
-- fields are built or redacted (redaction of a requestId alone costs microseconds).
M.LOG_RANK = { debug = 1, info = 2, warn = 3, error = 4 }
local LOG_RANK = M.LOG_RANK
local MAX_RETRY_DELAY = defaults.max_retry_delay

-- nginx phases in which cosockets cannot be used.
local NO_COSOCKET_PHASES = {
  init = true, init_worker = true, set = true, header_filter = true, body_filter = true, log = true,
}

-- What the logger gets: the message and every string field redacted and escaped (text from the
-- gateway or the caller, a body or a requestId, can neither leak card data nor forge a log line).
local printable = redact.printable

-- Whether an event of this level reaches the logger: callers skip building its fields otherwise.
local function wants(self, level)
  return LOG_RANK[level] >= self.log_min
end

local function log(self, level, message, fields)
  local logger = self.logger
  if not logger or (LOG_RANK[level] or LOG_RANK.error) < self.log_min then return end
  local safe = {}
  if type(fields) == "table" then
    for k, v in pairs(fields) do
      local tv = type(v)
      if tv == "string" then
        safe[k] = printable(v)
      elseif tv == "table" then
        safe[k] = redact.table(v)
      else
        safe[k] = v
      end
    end
  end
  -- A failing logger must never break a payment call.
  pcall(logger, level, printable(message), safe)
end

-- Transport kind -> error code (whether it is retried is dws.retry's to say).
local TRANSPORT_ERRORS = require("dws.codes").by_transport

-- An attempt's failure: err.retryable and the reason logged both come from dws.retry.
local function failure(what, detail, fields)
  local again, reason = should_retry(what, detail)
  fields.retryable = again
  return nil, errors.new(fields), reason
end

-- OpenSSL's words (through libcurl or nginx) for a chain that ends at a CA we do not trust.
local MISSING_CA_WORDS = { "unable to get local issuer certificate", "unable to get issuer certificate",
  "self-signed certificate", "self signed certificate" }
local CA_HINT = " (the gateway's certificate chain does not end at a CA in the system store: "
  .. "pass its CA bundle as the ca_file option)"
local CA_HINT_NGX = " (the gateway's certificate chain does not end at a CA nginx trusts: "
  .. "add its CA bundle to lua_ssl_trusted_certificate; the ca_file option does not apply to cosockets)"

local function missing_ca(message)
  local lower = message:lower()
  for i = 1, #MISSING_CA_WORDS do
    if lower:find(MISSING_CA_WORDS[i], 1, true) then return true end
  end
  return false
end

-- One signed request and its classification. Returns the decoded S response, or nil, err, and
-- why it is (or is not) worth another attempt.
local function attempt(self, entry, body, request_id, n, log_body)
  local o = self.options
  local time = self.time()
  local b64, serr, skind = core.sign(self.private_key, "POST", entry.path, self.client_id, time, body)
  if not b64 then
    -- OpenSSL could not sign (out of memory, a provider failure, a PKCS#11 token gone): not a caller's
    -- bug, so nil, err. F when nothing has been sent yet; after an earlier attempt went out, U.
    local token = skind == "pkcs11"
    return failure("signing", token and "token" or serr, { code = token and errors.KEY_UNAVAILABLE
      or errors.SIGNING_FAILED, status = n == 1 and "F" or "U",
      message = "the request could not be signed: " .. tostring(serr) })
  end
  local headers = {
    ["Content-Type"] = entry.content_type,
    ["Client-Id"] = self.client_id,
    ["Request-Time"] = time,
    ["Signature"] = core.signature_header(b64, o.key_version),
    ["User-Agent"] = o.user_agent,
  }
  local debug = wants(self, "debug")
  local started
  if debug then
    started = core.monotonic()
    log(self, "debug", "dws request", { event = "request", api = entry.def.name, request_id = request_id,
      attempt = n, body = log_body })
  end

  -- Not pcalled: a transport that raises has a bug (or was handed one), and that is a programming
  -- error to surface as it is, not a connection failure to retry.
  local transport = self.transport
  local res, kind, message = transport:request{
    method = "POST", url = entry.url, headers = headers, body = body,
    timeout = o.timeout, connect_timeout = o.connect_timeout,
  }
  if not res then
    if not TRANSPORT_ERRORS[kind] then kind = "error" end
    message = tostring(kind) .. ": " .. tostring(message)
    if kind == "tls" and missing_ca(message) then message = message .. (self.in_nginx and CA_HINT_NGX or CA_HINT) end
    return failure("transport", kind, { code = TRANSPORT_ERRORS[kind], message = message })
  end

  local status = res.status
  local rbody = res.body
  if type(rbody) ~= "string" then rbody = "" end
  if debug then
    log(self, "debug", "dws response", { event = "response", api = entry.def.name, request_id = request_id,
      attempt = n, http_status = status, elapsed = core.monotonic() - started, body = rbody })
  end
  if #rbody > o.max_response_bytes then
    return failure("response", "body over max_response_bytes", { code = errors.RESPONSE_TOO_LARGE,
      http_status = status, message = "response body is over max_response_bytes" })
  end
  if status ~= 200 then
    return failure("http", status, { code = errors.HTTP_ERROR, http_status = status,
      message = "HTTP status " .. tostring(status) })
  end

  local verdict, why, vcode = signature.check_response(self.dws_key, "POST", entry.path, self.client_id, res.headers,
    rbody)
  if not verdict then
    return failure("verification", "signature", { code = vcode or errors.SIGNATURE_INVALID, http_status = status,
      message = "response rejected: " .. tostring(why) })
  end
  if verdict == "verified" then
    -- A genuine answer replayed from another time (or a gateway clock far off) is refused: the
    -- signed response-time must be within response_time_tolerance of the local clock.
    local sent = dtime.parse(why)
    if not sent then
      return failure("verification", "response-time", { code = errors.RESPONSE_TIME_INVALID, http_status = status,
        message = "response-time is neither milliseconds nor ISO 8601" })
    end
    local tolerance = o.response_time_tolerance
    local skew = dtime.outside(sent, core.time_ms(), tolerance)
    if skew then
      return failure("verification", "response-time", { code = errors.RESPONSE_TIME_INVALID, http_status = status,
        message = "response-time is " .. dtime.describe(skew, tolerance) })
    end
  end

  local decoded = core.json_decode(rbody)
  local result = type(decoded) == "table" and decoded.result
  if type(result) ~= "table" or type(result.resultStatus) ~= "string" then
    return failure("response", "no result.resultStatus", { code = errors.RESPONSE_MALFORMED, http_status = status,
      message = "response is not JSON with result.resultStatus" })
  end
  if result.resultMessage == nil and result.resultMsg ~= nil then result.resultMessage = result.resultMsg end
  local result_status = result.resultStatus
  if verdict == "unsigned" and result_status ~= "F" and result_status ~= "U" then
    return failure("verification", "unsigned", { code = errors.SIGNATURE_MISSING, http_status = status,
      message = "response with result status " .. (result_status == "S" and "S" or "other than F or U")
        .. " arrived without signature or response-time" })
  end
  if request_id then
    -- An answer to an idempotent call must name the request it answers: a verified answer carrying
    -- another requestId (or, for S, none: the page makes it a required field) could be another
    -- customer's result. Unsigned F and U answers may lack it (gateway errors).
    local rid = decoded.requestId
    if rid ~= request_id and (rid ~= nil or result_status == "S") then
      return failure("verification", "requestId", { code = errors.RESPONSE_MISMATCH, http_status = status,
        message = rid == nil and "answer carries no requestId" or "answer carries another requestId" })
    end
  end
  if wants(self, "info") then
    log(self, "info", "dws result", { event = "result", api = entry.def.name, request_id = request_id, attempt = n,
      http_status = status, result_code = result.resultCode, result_status = result_status })
  end
  if result_status == "S" then
    return decoded
  end
  if result_status == "F" or result_status == "U" then
    local err, reason = errors.from_result(result, nil, verdict == "verified" and decoded or nil, status)
    return nil, err, reason
  end
  return failure("response", "unknown result.resultStatus", { code = errors.RESPONSE_MALFORMED, http_status = status,
    message = "unknown result.resultStatus" })
end

local function check_phase(level)
  local ok, phase = pcall(ngx.get_phase)
  if ok and NO_COSOCKET_PHASES[phase] then
    error("dws: API calls need cosockets, which nginx does not offer in the " .. phase .. " phase "
      .. "(call from a content, access or rewrite handler, or from ngx.timer.at)", level + 1)
  end
end

local function log_error(self, def, request_id, n, err, reason)
  log(self, "error", "dws error", { event = "error", api = def.name, request_id = request_id, attempts = n,
    code = err.code, status = err.status, field = err.field, http_status = err.http_status, message = err.message,
    reason = reason })
end

-- A request refused before any attempt: logged once, here, and returned.
local function refuse(self, def, request_id, err)
  err.attempts, err.request_id = 0, request_id
  log_error(self, def, request_id, 0, err)
  return nil, err
end

-- Validate and encode a request once. -> body, request_id | nil, err
local function prepare(self, entry, request, as_buffer)
  local def = entry.def
  local id_field = def.request_id_field
  local generated
  if id_field and type(request) == "table" and request[id_field] == nil then
    generated = { [id_field] = core.uuid4() }
  end

  local req, err, unknown = validate.request(def, request, generated)
  if unknown then
    -- Policy: fields the API pages do not define are sent (DWS adds fields before we know them),
    -- but never silently: a misspelt field would otherwise just go missing.
    log(self, "warn", "dws unknown request fields", { event = "unknown_fields", api = def.name,
      fields = unknown })
  end
  local request_id
  if id_field then
    if req then
      request_id = req[id_field]
    elseif generated then
      request_id = generated[id_field]
    else
      -- The caller's own id, only when it is plainly one (validation may have stopped before it).
      request_id = validate.plain_id(type(request) == "table" and request[id_field] or nil)
    end
  end
  if not req then return refuse(self, def, request_id, err) end

  -- Encoded once: the same bytes are signed and sent on every attempt. A transport that takes a
  -- dws.buffer gets one (as_buffer), so the body (card data) is never a Lua string and is wiped
  -- after the last attempt; the logger then sees the request redacted before encoding instead.
  local encode = as_buffer and core.json_encode_buffer or core.json_encode
  -- No stringify flag: validate.request has made every scalar a string already. The request's
  -- rules (UTF-8, NUL, lengths, depth, cycles) are validate.lua's; the encoder's own checks only
  -- keep core.json_encode safe for its other callers, and cannot fire here.
  local body, jerr = encode(req)
  if not body then
    return refuse(self, def, request_id,
      errors.param("request", "request cannot be encoded as JSON: " .. tostring(jerr), def.name))
  end
  local log_body
  if wants(self, "debug") then
    log_body = redact.text(type(body) == "string" and body or core.json_encode(redact.table(req)))
  end
  return body, request_id, log_body
end

-- The attempt loop: the same bytes signed afresh and sent on every attempt; a dws.buffer body is
-- wiped once no attempt is left. -> decoded S response, attempts | nil, err (err.attempts)
local function send(self, entry, body, request_id, log_body)
  local def = entry.def
  if log_body == nil and wants(self, "debug") then log_body = redact.text(body) end
  local o = self.options
  local max_attempts = o.max_retries + 1
  local n = 0
  while true do
    n = n + 1
    local res, err, reason = attempt(self, entry, body, request_id, n, log_body)
    if (res or not err.retryable or n >= max_attempts) and type(body) ~= "string" then body:wipe() end
    if res then return res, n end
    err.api, err.attempts, err.request_id = def.name, n, request_id
    if not err.retryable or n >= max_attempts then
      if err.retryable then reason = "no attempt left (max_retries = " .. o.max_retries .. "); " .. reason end
      log_error(self, def, request_id, n, err, reason)
      return nil, err
    end
    -- Exponential backoff with full jitter: a random delay up to base * 2^(n-1), capped.
    local delay = random() * min(MAX_RETRY_DELAY, o.retry_base_delay * 2 ^ (n - 1))
    log(self, "warn", "dws retry", { event = "retry", api = def.name, request_id = request_id, attempt = n,
      code = err.code, http_status = err.http_status, delay = delay, reason = reason })
    local transport = self.transport
    if type(transport.sleep) == "function" then
      transport:sleep(delay)
    else
      core.sleep(delay)
    end
  end
end



local Pipeline = {}
Pipeline.__index = Pipeline

--- A pipeline from the client's parts: `client_id`, `private_key`, `dws_key`, `options` (with
-- defaults applied), `time` (the Request-Time source), `apis` (name -> { def, path, url,
-- content_type }), `transport`, `logger`, `log_min` (the lowest LOG_RANK passed on), `in_nginx`.
function M.new(parts)
  return setmetatable(parts, Pipeline)
end

--- The same pipeline over another transport (dws.multi's).
function Pipeline:with_transport(transport)
  local copy = {}
  for k, v in pairs(self) do copy[k] = v end
  copy.transport = transport
  return setmetatable(copy, Pipeline)
end

--- Whether `api_name` is one of the APIs.
function Pipeline:knows(api_name)
  return self.apis[api_name] ~= nil
end

--- The API's entry; raises at `level` above the caller (1: the caller itself) for an unknown API
-- or, inside nginx, a phase without cosockets.
function Pipeline:entry(api_name, level)
  local entry = self.apis[api_name]
  if not entry then error("dws: unknown API " .. tostring(api_name), level + 1) end
  if self.in_nginx then check_phase(level + 1) end
  return entry
end

--- Validate, encode once, sign, send, verify, classify, retry. -> decoded S answer | nil, err
function Pipeline:call(entry, request)
  local body, request_id, log_body = prepare(self, entry, request, self.transport.body_buffers)
  if not body then return nil, request_id end
  local res, err = send(self, entry, body, request_id, log_body)
  if not res then return nil, err end
  return res
end

--- Validate and encode once, for a caller that must keep the exact bytes (the binding journal).
-- -> body, request_id | nil, err
function Pipeline:encode(entry, request)
  return prepare(self, entry, request)
end

--- Send encoded bytes as they are (re-signed with a fresh Request-Time per attempt).
-- -> decoded S answer, attempts | nil, err
function Pipeline:send(entry, body, request_id)
  return send(self, entry, body, request_id)
end

--- The logger, shielded from its failures; message and string fields redacted and escaped.
function Pipeline:log(level, message, fields)
  log(self, level, message, fields)
end

--- Whether an event of `level` reaches the logger.
function Pipeline:wants(level)
  return wants(self, level)
end

return M
