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

-- The codes: constants made from dws.codes, the one table of every code (docs/calls.md "Errors" is
-- generated from it too), so `errors.TIMEOUT == "TIMEOUT"` and a code named nowhere else cannot be
-- misspelt into a silent nil.
local codes = require "dws.codes"
for i = 1, #codes.LIST do
  local code = codes.LIST[i].code
  errors[code] = code
end

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

-- An error's status unless the caller says otherwise: the table's, else U (not known locally).
local function default_status(code)
  local c = codes.by_code[code]
  return c and c.status or "U"
end

--- Make an error object. `fields.code` is required; status defaults by code (dws.codes; "U" for a
-- code it does not list); retryable defaults to false. The message is redacted.
-- syntax: `err = dws.errors.new{ code =, message =, status =, retryable =, ... }`
-- @tparam table fields `code` and any of the error's fields
-- @treturn Error the error
-- @raise when `fields.code` is not a string
function errors.new(fields)
  assert(type(fields) == "table" and type(fields.code) == "string", "errors.new: code required")
  local e = {
    status = fields.status or default_status(fields.code),
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
