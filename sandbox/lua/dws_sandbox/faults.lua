-- Fault injection: POST /__sandbox/faults {"fault":NAME,"count":N,"api":API,...} arms NAME for the next
-- N API requests (of that API alone when "api" names one; requests to the others pass untouched).
-- "pre" faults answer in place of DWS (a gateway or proxy failing before the request is processed);
-- the others let the request be processed (state changes, idempotency records, notifications happen)
-- and spoil only the answer, as a network failure after the fact does.
--
-- Every faulted request is still logged in /__sandbox/requests (with "fault": NAME), so a spec can
-- check that each retry carried the same requestId and body hash.
--
--   never_answer       accept, answer nothing; close after opts.delay s (default 30, the cap)
--   drip               the normal signed answer, one byte at a time, opts.delay s apart (default 0.05;
--                      closed after 30 s)
--   reset              status line, headers, half the body, then close
--   short_body         Content-Length 64 bytes over the body sent, then close
--   slow               the normal answer after opts.delay s (default 2)
--   http_500/502/503   that status with an nginx-style HTML page, unsigned (pre)
--   http_429           429 with an HTML page, unsigned (pre)
--   non_json           200, signed, a body that is not JSON (pre)
--   no_result          200, signed JSON without "result" (pre)
--   huge_body          200, signed S padded to over 2 MiB (pre)
--   unsigned_s         the normal answer without the signature header (keeps response-time)
--   unsigned_f         F ACCESS_DENIED without signature and response-time (pre)
--   foreign_key        the normal answer signed with another key (keys/foreign_public.pem)
--   tamper             the normal answer, resultMessage changed after signing (still valid JSON)
--   no_response_time   the normal answer without response-time (signature present)
--   dup_headers        two different signature headers (DWS key, foreign key)
--   traffic_limit      signed U REQUEST_TRAFFIC_EXCEED_LIMIT (pre)
--   unknown_exception  signed U UNKNOWN_EXCEPTION (pre)
-- addPaymentMethod answers of pre faults echo the requestId.
local store = require "dws_sandbox.store"
local core = require "dws.core"

local M = {}

M.KINDS = {
  never_answer = "post", drip = "post", reset = "post", short_body = "post", slow = "post",
  unsigned_s = "post", foreign_key = "post", tamper = "post", no_response_time = "post", dup_headers = "post",
  http_500 = "pre", http_502 = "pre", http_503 = "pre", http_429 = "pre", non_json = "pre",
  no_result = "pre", huge_body = "pre", unsigned_f = "pre", traffic_limit = "pre", unknown_exception = "pre",
}

-- Upper bound of any deliberate stall, so a forgotten fault never holds a worker for long.
M.MAX_STALL = 30

-- The APIs a fault can be aimed at.
M.APIS = { consultAddablePaymentMethod = true, cacheCard = true, addPaymentMethod = true }

-- The fault names, sorted (for messages and docs).
function M.names()
  local list = {}
  for name in pairs(M.KINDS) do list[#list + 1] = name end
  table.sort(list)
  return list
end

-- opts.api: the one API the fault is for (nil: any). -> true | nil, err
function M.arm(name, count, opts)
  if not M.KINDS[name] then
    return nil, "unknown fault " .. string.format("%q", tostring(name)) .. "; the faults are: " ..
      table.concat(M.names(), ", ")
  end
  count = tonumber(count) or 1
  if count < 0 or count % 1 ~= 0 then return nil, "count must be a whole number" end
  opts = opts or {}
  local api = opts.api
  if api ~= nil and not M.APIS[api] then
    local apis = {}
    for a in pairs(M.APIS) do apis[#apis + 1] = a end
    table.sort(apis)
    return nil, "api must be one of " .. table.concat(apis, ", ")
  end
  local d = store.dict()
  d:set("fault:spec", assert(core.json_encode({ name = name, opts = opts, api = api }, false)))
  d:set("fault:left", count)
  return true
end

-- The fault for a request to `api`, consuming one count: { name =, kind =, opts =, api = } or nil.
-- A fault aimed at another API is left armed.
function M.take(api)
  local d = store.dict()
  if (d:get("fault:left") or 0) <= 0 then return nil end
  local spec = core.json_decode(d:get("fault:spec") or "null")
  if type(spec) ~= "table" then return nil end
  if type(spec.api) == "string" and spec.api ~= api then return nil end
  local left = d:incr("fault:left", -1, 0)
  if not left or left < 0 then return nil end
  spec.kind = M.KINDS[spec.name]
  return spec
end

function M.delay(opts, default)
  local s = tonumber(opts and opts.delay) or default
  if s < 0 then s = 0 end
  if s > M.MAX_STALL then s = M.MAX_STALL end
  return s
end

local HTML = {
  [500] = "Internal Server Error", [502] = "Bad Gateway", [503] = "Service Unavailable",
  [429] = "Too Many Requests",
}

-- The plain-HTTP error page a proxy in front of DWS would send.
function M.html(status)
  local title = status .. " " .. HTML[status]
  return "<html>\r\n<head><title>" .. title .. "</title></head>\r\n<body>\r\n<center><h1>" .. title ..
    "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
end

return M
