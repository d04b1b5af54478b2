--- Every result code lua-dws acts on, in one table: the SDK's own codes for failures found
-- locally, and the API codes whose handling the pages fix. `dws.errors` makes its constants and
-- default statuses from it, `dws.retry` its sets of retried transport failures and result codes,
-- `dws.client` its transport-failure codes, and `scripts/errors_table.lua` the README's table.
-- Data only: it requires nothing, so every module can.
-- @module dws.codes
local M = {}

--- The codes, in the order the README lists them. Fields: `code`; `status` (`"F"` or `"U"`: the
-- status an error of this code has unless it says otherwise); `retried` (`"yes"`, `"no"` or the
-- condition, as the README says it); `when`; `transport` (the dws.curl failure kinds that map to
-- this code); `api` (true for a code of the API pages rather than the SDK's own); `status_note`
-- (a status that depends, as the README says it).
-- @table LIST
M.LIST = {
  { code = "PARAM_ILLEGAL", status = "F", retried = "no",
    when = "the request failed local validation (`err.field`)" },
  { code = "SIGNATURE_INVALID", status = "U", retried = "no",
    when = "a signature that does not verify, a duplicated or malformed signature header" },
  { code = "SIGNATURE_MISSING", status = "U", retried = "no",
    when = "an `S` answer without signature or response-time" },
  { code = "KEY_VERSION_UNKNOWN", status = "U", retried = "no",
    when = "an answer's (or a notification's: 401) Signature header names a keyVersion for which no DWS key "
      .. "is held (`dws_public_key` as a table keyVersion -> key); the message names the version; no data" },
  { code = "RESPONSE_MALFORMED", status = "U", retried = "no",
    when = "the body is not JSON, or has no `result.resultStatus`" },
  { code = "RESPONSE_TOO_LARGE", status = "U", retried = "no", transport = { "too_large" },
    when = "the body is over `max_response_bytes`" },
  { code = "TIMEOUT", status = "U", retried = "yes", transport = { "timeout" },
    when = "connect or transfer timed out" },
  { code = "CONNECTION_FAILED", status = "U", retried = "yes", transport = { "connect", "protocol", "error" },
    when = "refused, reset, short body, protocol error" },
  { code = "TLS_ERROR", status = "U", retried = "no", transport = { "tls" },
    when = "certificate or handshake failure; a chain that ends at an unknown CA says to set `ca_file` "
      .. "(or `lua_ssl_trusted_certificate` in OpenResty)" },
  { code = "HTTP_ERROR", status = "U", retried = "429 and 5xx", when = "any HTTP status but 200" },
  { code = "CARD_INVALID", status = "F", retried = "no",
    when = "`bind_card`: Luhn, expiry or brand check failed locally" },
  { code = "PAYMENT_METHOD_NOT_ADDABLE", status = "F", retried = "no",
    when = "`bind_card`: no enabled card option, or the brand is not supported" },
  { code = "NOTIFICATION_EXPIRED", status = "F", retried = "no",
    when = "a notification's Request-Time is outside `notification_tolerance` and the journal does not hold "
      .. "its requestId (a replay)" },
  { code = "RESPONSE_TIME_INVALID", status = "U", retried = "no",
    when = "a signed answer whose response-time is more than `response_time_tolerance` from the local clock, "
      .. "or neither milliseconds nor ISO 8601 (a replayed answer); no data" },
  { code = "SIGNING_FAILED", status = "F", status_note = "F (U after an earlier attempt went out)", retried = "no",
    when = "OpenSSL could not sign the request (out of memory, provider failure); nothing was sent on this "
      .. "attempt" },
  { code = "KEY_UNAVAILABLE", status = "F", status_note = "F (U after an earlier attempt went out)",
    retried = "yes",
    when = "the PKCS#11 token holding `private_key` failed to sign (removed, session lost); nothing was sent "
      .. "on this attempt, and the next one logs in again" },
  { code = "RESPONSE_MISMATCH", status = "U", retried = "no",
    when = "an addPaymentMethod answer naming another `requestId`, or an `S` naming none (the page makes it "
      .. "required); no data" },
  { code = "CARD_MISMATCH", status = "F", retried = "no",
    when = "`bind_card`: cacheCard answered (signed) for another card's mask/last4/brand; nothing added" },
  { code = "REQUEST_ID_REUSED", status = "F", retried = "no",
    when = "`bind_card`: the requestId is already journaled (use `resume_binding`)" },
  { code = "JOURNAL_UNAVAILABLE", status = "U", retried = "no",
    when = "the journal's store could not answer; nothing was sent" },
  { code = "BINDING_NOT_FOUND", status = "F", retried = "no",
    when = "`resume_binding` of a requestId the journal does not know" },
  { code = "BINDING_FINAL", status = "F", retried = "no",
    when = "`resume_binding` of a BOUND or FAILED binding (`err.binding`)" },
  { code = "BINDING_DAMAGED", status = "F", retried = "no",
    when = "the journal's record under this requestId is not its own (another binding's record, a body that "
      .. "is another request's, not JSON): nothing is sent" },
  { code = "WAIT_TIMEOUT", status = "U", retried = "no",
    when = "`wait_binding`: the binding was not final in time (`err.binding`: the record as it was)" },
  { code = "RESUME_INCONSISTENT", status = "F", retried = "no",
    when = "DWS answered REPEAT_REQ_INCONSISTENT to the journaled bytes: a bug (logged at error level)" },
  { code = "UNKNOWN_EXCEPTION", status = "U", retried = "yes", api = true,
    when = "the pages: API failed for unknown reasons; call again" },
  { code = "REQUEST_TRAFFIC_EXCEED_LIMIT", status = "U", retried = "yes", api = true,
    when = "the pages: too many requests; call again later" },
  { code = "REPEAT_REQ_INCONSISTENT", status = "F", retried = "no", api = true,
    when = "addPaymentMethod: an earlier request owns this `requestId` with other fields (the binding is "
      .. "`CONFLICT` until its notification)" },
  { code = "INVALID_PAYMENTMETHOD_TOKEN", status = "F", retried = "no", api = true,
    when = "the temporary card token expired or is unknown (a cacheCard page code; `err.reenter_card`)" },
}

--- code -> its entry of LIST.
-- @table by_code
M.by_code = {}
--- dws.curl failure kind -> code.
-- @table by_transport
M.by_transport = {}
for i = 1, #M.LIST do
  local c = M.LIST[i]
  M.by_code[c.code] = c
  for _, kind in ipairs(c.transport or {}) do M.by_transport[kind] = c.code end
end

return M
