--- Error objects returned (never raised) by client calls, and the SDK's own result codes.
-- `err.code` is the API's `resultCode`, or one of the codes below for a failure found locally;
-- compare with the constants (`err.code == dws.errors.TIMEOUT`). Fields of an error: `status`
-- (`"F"` or `"U"`), `code`, `message`, `retryable`, `http_status`, `request_id`, `attempts`,
-- `response` (the decoded body, only when one arrived and verified), `field` (`PARAM_ILLEGAL`), `api`.
-- @module dws.errors

-- Error objects returned (never raised) by client calls, and the SDK's own result codes.
--
-- An error is a plain table with a metatable, so callers can read err.code, err.status, ... and
-- print it. Messages never carry request values: they come from this SDK (field names only) or
-- from the gateway's resultMessage and resultCode, which are passed through the redactor.
-- tostring(err) prints every part redacted and with control characters escaped (one line, always).
local redact = require "dws.redact"
local should_retry = require("dws.retry").should_retry

local errors = {}

-- SDK codes for failures detected locally (see HACKING.md, "Error object").

--- F, not retried: the request failed local validation (`err.field` names the field path).
errors.PARAM_ILLEGAL = "PARAM_ILLEGAL"
--- U, not retried: an answer's signature does not verify, or its signature headers are duplicated
-- or malformed; no data. Also a notification refusal (401).
errors.SIGNATURE_INVALID = "SIGNATURE_INVALID"
--- U, not retried: an `S` answer without signature or response-time; no data. Also a notification
-- without its signature headers (401).
errors.SIGNATURE_MISSING = "SIGNATURE_MISSING"
--- U, not retried: an answer's (or notification's, 401) Signature header names a keyVersion for
-- which no DWS key is held (`dws_public_key` as a table keyVersion -> key); the message names the
-- version; no data.
errors.KEY_VERSION_UNKNOWN = "KEY_VERSION_UNKNOWN"
--- U, not retried: the body is not JSON, or has no `result.resultStatus`.
errors.RESPONSE_MALFORMED = "RESPONSE_MALFORMED"
--- U, not retried: the body is over `max_response_bytes`.
errors.RESPONSE_TOO_LARGE = "RESPONSE_TOO_LARGE"
--- U, retried: connect or transfer timed out.
errors.TIMEOUT = "TIMEOUT"
--- U, retried: refused, reset, short body, protocol error.
errors.CONNECTION_FAILED = "CONNECTION_FAILED"
--- U, not retried: certificate or handshake failure (an unknown CA: the message names `ca_file`).
errors.TLS_ERROR = "TLS_ERROR"
--- U, retried for 429 and 5xx: any HTTP status but 200 (`err.http_status`).
errors.HTTP_ERROR = "HTTP_ERROR"
--- F: `bind_card`: Luhn, expiry or brand check failed locally.
errors.CARD_INVALID = "CARD_INVALID"
--- F: `bind_card`: no enabled card option, or the brand is not supported.
errors.PAYMENT_METHOD_NOT_ADDABLE = "PAYMENT_METHOD_NOT_ADDABLE"
--- F: a notification's Request-Time is outside `notification_tolerance` (a replay).
errors.NOTIFICATION_EXPIRED = "NOTIFICATION_EXPIRED"
--- U, not retried: a signed answer's response-time is more than `response_time_tolerance` from the
-- local clock, or unparseable; no data.
errors.RESPONSE_TIME_INVALID = "RESPONSE_TIME_INVALID"
--- U, not retried: an addPaymentMethod answer naming another `requestId`, or an `S` naming none; no
-- data.
errors.RESPONSE_MISMATCH = "RESPONSE_MISMATCH"
--- F (U after an earlier attempt went out), not retried: OpenSSL could not sign the request
-- (out of memory, a provider failure); nothing was sent on this attempt.
errors.SIGNING_FAILED = "SIGNING_FAILED"
--- F (U after an earlier attempt went out), retried: the PKCS#11 token holding `private_key` failed
-- to sign (removed, session lost); nothing was sent on this attempt, and the next one logs in again.
errors.KEY_UNAVAILABLE = "KEY_UNAVAILABLE"
-- The binding journal (dws.journal) and its calls.

--- F: `bind_card`: cacheCard answered (signed) for another card's mask, last4 or brand; nothing
-- added.
errors.CARD_MISMATCH = "CARD_MISMATCH"             -- cacheCard answered for another card

--- U: the journal's store could not answer; nothing was sent.
errors.JOURNAL_UNAVAILABLE = "JOURNAL_UNAVAILABLE" -- the journal's store could not answer

--- F: `resume_binding` of a requestId the journal does not know.
errors.BINDING_NOT_FOUND = "BINDING_NOT_FOUND"     -- resume of a requestId the journal does not know

--- F: `resume_binding` of a BOUND or FAILED binding (`err.binding`).
errors.BINDING_FINAL = "BINDING_FINAL"             -- resume of a BOUND or FAILED binding

--- F: DWS answered REPEAT_REQ_INCONSISTENT to the journaled bytes: a bug (logged at error level).
errors.RESUME_INCONSISTENT = "RESUME_INCONSISTENT" -- DWS says the resumed bytes differ: a bug

--- F: `bind_card` with a requestId already journaled (use `resume_binding`).
errors.REQUEST_ID_REUSED = "REQUEST_ID_REUSED"     -- bind_card with a requestId already journaled

-- Result codes from the API pages that the SDK acts on.

--- An API result code (U): retried.
errors.UNKNOWN_EXCEPTION = "UNKNOWN_EXCEPTION"
--- An API result code (U): retried.
errors.REQUEST_TRAFFIC_EXCEED_LIMIT = "REQUEST_TRAFFIC_EXCEED_LIMIT"
--- An API result code (F): an addPaymentMethod `requestId` re-used with other bytes.
errors.REPEAT_REQ_INCONSISTENT = "REPEAT_REQ_INCONSISTENT"
--- An API result code (F): the temporary card token expired or is unknown (`resume_binding` sets
-- `err.reenter_card`).
errors.INVALID_PAYMENTMETHOD_TOKEN = "INVALID_PAYMENTMETHOD_TOKEN"

local Error = {}
Error.__index = Error

-- Every part may hold caller or gateway text (a requestId, a resultCode): each is printed redacted
-- and escaped, so no part can carry card data or start a forged log line.
local printable = redact.printable

function Error.__tostring(e)
  local parts = { "dws: " }
  if e.api then parts[#parts + 1] = printable(e.api) .. " " end
  parts[#parts + 1] = printable(e.code) .. " (" .. printable(e.status) .. "): " .. printable(e.message)
  if e.field then parts[#parts + 1] = " field=" .. printable(e.field) end
  if e.http_status then parts[#parts + 1] = " http=" .. printable(e.http_status) end
  if e.request_id then parts[#parts + 1] = " requestId=" .. printable(e.request_id) end
  return table.concat(parts)
end

local DEFAULT_STATUS = {
  PARAM_ILLEGAL = "F",
  CARD_INVALID = "F",
  PAYMENT_METHOD_NOT_ADDABLE = "F",
  CARD_MISMATCH = "F",
  BINDING_NOT_FOUND = "F",
  BINDING_FINAL = "F",
  RESUME_INCONSISTENT = "F",
  REQUEST_ID_REUSED = "F",
}

--- Make an error object. `fields.code` is required; status defaults by code ("F" for local
-- input errors, "U" otherwise); retryable defaults to false. The message is redacted.
-- syntax: `err = dws.errors.new{ code =, message =, status =, retryable =, ... }`
-- @tparam table fields `code` and any of the error's fields
-- @treturn Error the error
-- @raise when `fields.code` is not a string
function errors.new(fields)
  assert(type(fields) == "table" and type(fields.code) == "string", "errors.new: code required")
  local e = {
    status = fields.status or DEFAULT_STATUS[fields.code] or "U",
    code = fields.code,
    message = redact.text(tostring(fields.message or fields.code)),
    retryable = fields.retryable == true,
    http_status = fields.http_status,
    request_id = fields.request_id,
    attempts = fields.attempts,
    response = fields.response,
    field = fields.field,
    api = fields.api,
  }
  return setmetatable(e, Error)
end

--- A PARAM_ILLEGAL error for `field` (a path such as "env.terminalType").
-- syntax: `err = dws.errors.param(field, message, api?)`
-- @tparam string field the field path
-- @tparam string message
-- @tparam[opt] string api the API's name
-- @treturn Error the error
function errors.param(field, message, api)
  return errors.new{ code = errors.PARAM_ILLEGAL, status = "F", field = field, message = message, api = api }
end

--- The error for a gateway answer with result status F or U. `response` only when verified.
-- syntax: `err, reason = dws.errors.from_result(result, api, response?, http_status?)`
-- @tparam table result the answer's `result` (`resultStatus`, `resultCode`, `resultMessage`)
-- @tparam[opt] string api the API's name
-- @tparam[opt] table response the decoded answer, only when it verified
-- @tparam[opt] int http_status
-- @treturn Error the error (`retryable` as dws.retry.should_retry decides)
-- @treturn string dws.retry's reason for retrying it or not
function errors.from_result(result, api, response, http_status)
  local status = result.resultStatus
  -- The gateway's code is text like its message: a card number echoed into it is masked too.
  local code = type(result.resultCode) == "string" and redact.text(result.resultCode) or "UNKNOWN"
  local message = result.resultMessage
  if type(message) ~= "string" then message = code end
  local again, reason = should_retry("result", status, code)
  return errors.new{
    status = status,
    code = code,
    message = message,
    retryable = again,
    response = response,
    http_status = http_status,
    api = api,
  }, reason
end

--- Whether `v` is an error object made here (a predicate: `true`, or `false` and the reason).
-- syntax: `yes, why = dws.errors.is(v)`
-- @param v any value
-- @treturn bool
-- @treturn[2] string why not
function errors.is(v)
  if getmetatable(v) == Error then return true end
  return false, "not a dws error object (a " .. type(v) .. ")"
end

--- The metatable of error objects: `tostring(err)` gives
-- `dws: <api> <code> (<status>): <message>[ field=<f>][ http=<n>][ requestId=<id>]`, every part
-- redacted and with control characters escaped (one line, always).
-- @table Error
errors.Error = Error

return errors
