-- Fault injection (issue "Hardening" §1): POST /__sandbox/faults {"fault":NAME,"count":N,...} arms NAME
-- for the next N API requests. "pre" faults answer in place of DWS (a gateway or proxy failing before
-- the request is processed); the others let the request be processed (state changes, idempotency
-- records, notifications happen) and spoil only the answer, as a network failure after the fact does.
local store = require "dws.sandbox.store"
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

function M.arm(name, count, opts)
  if not M.KINDS[name] then return nil, "unknown fault" end
  count = tonumber(count) or 1
  if count < 0 or count % 1 ~= 0 then return nil, "count must be a whole number" end
  local d = store.dict()
  d:set("fault:spec", assert(core.json_encode({ name = name, opts = opts or {} }, false)))
  d:set("fault:left", count)
  return true
end

-- The fault for this request, consuming one count: { name =, kind =, opts = } or nil.
function M.take()
  local d = store.dict()
  if (d:get("fault:left") or 0) <= 0 then return nil end
  local left = d:incr("fault:left", -1, 0)
  if not left or left < 0 then return nil end
  local spec = core.json_decode(d:get("fault:spec") or "null")
  if type(spec) ~= "table" then return nil end
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
