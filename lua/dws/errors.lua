-- Error objects returned (never raised) by client calls, and the SDK's own result codes.
--
-- An error is a plain table with a metatable, so callers can read err.code, err.status, ... and
-- print it. Messages never carry request values: they come from this SDK (field names only) or
-- from the gateway's resultMessage and resultCode, which are passed through the redactor.
-- tostring(err) prints every part redacted and with control characters escaped (one line, always).
local redact = require "dws.redact"

local errors = {}

-- SDK codes for failures detected locally (see HACKING.md, "Error object").
errors.PARAM_ILLEGAL = "PARAM_ILLEGAL"
errors.SIGNATURE_INVALID = "SIGNATURE_INVALID"
errors.SIGNATURE_MISSING = "SIGNATURE_MISSING"
errors.RESPONSE_MALFORMED = "RESPONSE_MALFORMED"
errors.RESPONSE_TOO_LARGE = "RESPONSE_TOO_LARGE"
errors.TIMEOUT = "TIMEOUT"
errors.CONNECTION_FAILED = "CONNECTION_FAILED"
errors.TLS_ERROR = "TLS_ERROR"
errors.HTTP_ERROR = "HTTP_ERROR"
errors.CARD_INVALID = "CARD_INVALID"
errors.PAYMENT_METHOD_NOT_ADDABLE = "PAYMENT_METHOD_NOT_ADDABLE"
errors.NOTIFICATION_EXPIRED = "NOTIFICATION_EXPIRED"
errors.RESPONSE_TIME_INVALID = "RESPONSE_TIME_INVALID"
errors.RESPONSE_MISMATCH = "RESPONSE_MISMATCH"
-- The binding journal (dws.journal) and its calls.
errors.CARD_MISMATCH = "CARD_MISMATCH"             -- cacheCard answered for another card
errors.JOURNAL_UNAVAILABLE = "JOURNAL_UNAVAILABLE" -- the journal's store could not answer
errors.BINDING_NOT_FOUND = "BINDING_NOT_FOUND"     -- resume of a requestId the journal does not know
errors.BINDING_FINAL = "BINDING_FINAL"             -- resume of a BOUND or FAILED binding
errors.RESUME_INCONSISTENT = "RESUME_INCONSISTENT" -- DWS says the resumed bytes differ: a bug
errors.REQUEST_ID_REUSED = "REQUEST_ID_REUSED"     -- bind_card with a requestId already journaled

-- Result codes from the API pages that the SDK acts on.
errors.UNKNOWN_EXCEPTION = "UNKNOWN_EXCEPTION"
errors.REQUEST_TRAFFIC_EXCEED_LIMIT = "REQUEST_TRAFFIC_EXCEED_LIMIT"
errors.REPEAT_REQ_INCONSISTENT = "REPEAT_REQ_INCONSISTENT"
errors.INVALID_PAYMENTMETHOD_TOKEN = "INVALID_PAYMENTMETHOD_TOKEN"

-- Gateway U codes worth another attempt (the pages say "call the interface again").
local RETRYABLE_RESULT = {
  UNKNOWN_EXCEPTION = true,
  REQUEST_TRAFFIC_EXCEED_LIMIT = true,
}

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
-- input errors, "U" otherwise); retryable defaults to false.
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
function errors.param(field, message, api)
  return errors.new{ code = errors.PARAM_ILLEGAL, status = "F", field = field, message = message, api = api }
end

--- The error for a gateway answer with result status F or U. `response` only when verified.
function errors.from_result(result, api, response, http_status)
  local status = result.resultStatus
  -- The gateway's code is text like its message: a card number echoed into it is masked too.
  local code = type(result.resultCode) == "string" and redact.text(result.resultCode) or "UNKNOWN"
  local message = result.resultMessage
  if type(message) ~= "string" then message = code end
  return errors.new{
    status = status,
    code = code,
    message = message,
    retryable = status == "U" and RETRYABLE_RESULT[code] == true,
    response = response,
    http_status = http_status,
    api = api,
  }
end

function errors.is(v)
  return getmetatable(v) == Error
end

errors.Error = Error

return errors
