-- Whether a failed attempt is worth another one: the one place that decides (the attempt loop in
-- client.lua asks, err.retryable is its answer, and the retry log line carries its reason).
--
--   should_retry(what, detail, code) -> retry (boolean), reason (string)
--     "transport", kind                 kind as dws.curl / the transport interface names it
--     "http", status                    a status other than 200
--     "result", resultStatus, resultCode  a well-formed answer with status F or U
--     "verification", why               the answer failed signature, time or requestId checks
--     "response", why                   the answer is malformed or too large
--     "signing", why                    OpenSSL could not sign the request (nothing was sent)
-- Raises on any other `what`: the caller has a bug.
local type, tostring, error = type, tostring, error

local M = {}

-- Transport failures where the request may never have reached DWS, or its answer was lost on the
-- way: the same bytes may be sent again (every API here is idempotent or read-only).
local TRANSPORT = {
  timeout = true,
  connect = true,
  protocol = true,
  error = true,
}

-- Gateway U codes the pages answer with "call the interface again".
local RESULT_CODES = {
  UNKNOWN_EXCEPTION = true,
  REQUEST_TRAFFIC_EXCEED_LIMIT = true,
}

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
    return false, "signing failed: another attempt would fail alike"
  end
  error("dws.retry.should_retry: unknown failure kind " .. tostring(what), 2)
end

return M
