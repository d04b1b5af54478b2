--- Whether a failed attempt is worth another one: the one place that decides.
-- The attempt loop in dws.client asks, `err.retryable` is its answer, and the logger's `retry` and
-- `error` events carry its reason.
-- @module dws.retry
local type, tostring, error = type, tostring, error

local M = {}

-- Transport failures where the request may never have reached DWS, or its answer was lost on the
-- way: the same bytes may be sent again (every API here is idempotent or read-only). Gateway U
-- codes the pages answer with "call the interface again". Both sets are read off dws.codes.
local TRANSPORT, RESULT_CODES = {}, {}
for _, c in ipairs(require("dws.codes").LIST) do
  if c.retried == "yes" then
    for _, kind in ipairs(c.transport or {}) do TRANSPORT[kind] = true end
    if c.api then RESULT_CODES[c.code] = true end
  end
end

--- Decide whether a failure is retried, and say why.
-- syntax: `retry, reason = require("dws.retry").should_retry(what, detail, code?)`
-- @tparam string what `"transport"` (detail: the kind, as dws.curl names it), `"http"` (the status,
-- not 200), `"result"` (detail: resultStatus F or U, code: resultCode), `"verification"` (the answer
-- failed its signature, time or requestId check), `"response"` (malformed or too large), `"signing"`
-- (OpenSSL could not sign; nothing was sent; detail `"token"` when a PKCS#11 token failed)
-- @param detail what failed (see `what`)
-- @tparam[opt] string code the resultCode, for `"result"`
-- @treturn bool retry
-- @treturn string reason
-- @raise on any other `what`: the caller has a bug
function M.should_retry(what, detail, code)
  if what == "transport" then
    if TRANSPORT[detail] then return true, "transport " .. tostring(detail) .. ": the request may not have arrived" end
    if detail == "tls" then return false, "TLS failure: another attempt meets the same certificate" end
    if detail == "too_large" then return false, "response over max_response_bytes: it would be again" end
    -- A kind this table does not know is handled as "error" (client.lua maps it the same way).
    return true, "transport " .. tostring(detail) .. ": the request may not have arrived"
  elseif what == "http" then
    if detail == 429 then return true, "HTTP 429: the gateway asks to slow down" end
    if type(detail) == "number" and detail >= 500 then
      return true, "HTTP " .. tostring(detail) .. ": the gateway failed"
    end
    return false, "HTTP " .. tostring(detail) .. ": another attempt gets the same answer"
  elseif what == "result" then
    if detail == "U" and RESULT_CODES[code] then
      return true, "result U " .. tostring(code) .. ": the page says call again"
    end
    if detail == "F" then return false, "result F: DWS refused the request" end
    return false, "result " .. tostring(detail) .. " " .. tostring(code) .. ": not a code the pages say to retry"
  elseif what == "verification" then
    -- Nothing from an answer that fails verification is trusted, its status included.
    return false, "answer failed verification: " .. tostring(detail)
  elseif what == "response" then
    return false, "answer unusable: " .. tostring(detail)
  elseif what == "signing" then
    if detail == "token" then
      return true, "the PKCS#11 token failed to sign (nothing was sent): the next attempt logs in again"
    end
    return false, "signing failed: another attempt would fail alike"
  end
  error("dws.retry.should_retry: unknown failure kind " .. tostring(what), 2)
end

return M
