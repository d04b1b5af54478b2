-- What the sandbox requires of a request's headers and of a notification's acknowledgement: exactly
-- what SIGNING.md and the API pages state, never less, so that a merchant's bug shows here and not
-- at DWS. docs/sandbox.md "How strict it is" lists each rule with the code it answers and says which
-- codes are the sandbox's own choice (the pages name no code for them).
--
-- Plain functions of strings, no ngx: the same rules are read by the launcher's specs. A message
-- names the header and the rule, never the value (a header may carry anything a merchant sent).
local core = require "dws.core"

local M = {}

-- Seconds either way of the sandbox's clock a Request-Time may be (our choice: the pages give no
-- window; the SDK allows the same for DWS's response-time and notifications).
M.REQUEST_TIME_TOLERANCE = 300

M.SANDBOX_PREFIX = "/ams/sandbox/api/"

-- A SANDBOX_ Client-Id exists in the sandbox environment only and any other id in the live one:
-- each path serves its own environment's clients. -> nil | code, message
function M.environment(client_id, path)
  local sandbox_client = client_id:sub(1, 8) == "SANDBOX_"
  local sandbox_path = path:sub(1, #M.SANDBOX_PREFIX) == M.SANDBOX_PREFIX
  if sandbox_client and not sandbox_path then
    return "INVALID_CLIENT", "Invalid client: a SANDBOX_ Client-Id is served on /ams/sandbox/api only " ..
      "(every SDK rewrites /ams/api for it, in the path sent and in the path signed)"
  elseif sandbox_path and not sandbox_client then
    return "INVALID_CLIENT", "Invalid client: /ams/sandbox/api serves SANDBOX_ Client-Ids only"
  end
  return nil
end

-- The Signature header as SIGNING.md gives it: algorithm=RSA256,keyVersion=<n>,signature=<the
-- base64 signature URL-encoded once>. Each item once, no others (any order). -> items | nil, message
function M.signature_header(value)
  if type(value) ~= "string" or value == "" then return nil, "the Signature header is missing" end
  local items = {}
  for item in (value .. ","):gmatch("([^,]*),") do
    local name, v = item:match("^([%a]+)=(.*)$")
    if not name then return nil, "the Signature header is not algorithm=,keyVersion=,signature=" end
    if name ~= "algorithm" and name ~= "keyVersion" and name ~= "signature" then
      return nil, "the Signature header has an item SIGNING.md does not define"
    end
    if items[name] then return nil, "the Signature header repeats " .. name end
    items[name] = v
  end
  if items.algorithm ~= "RSA256" then return nil, "the Signature header's algorithm must be RSA256" end
  if not items.keyVersion then return nil, "the Signature header has no keyVersion" end
  if not items.keyVersion:match("^%d+$") then return nil, "the Signature header's keyVersion must be a number" end
  local sig = items.signature
  if not sig or sig == "" then return nil, "the Signature header has no signature" end
  -- URL-encoded once: '+', '/' and '=' appear only as %2B, %2F, %3D (either case, as the .NET SDK
  -- sends lower case); nothing else but the base64 letters and digits.
  if sig:find("[^%w%%]") then return nil, "the signature is not URL-encoded (base64 '+', '/', '=' must be %XX)" end
  for hex in sig:gmatch("%%(..)") do
    local c = hex:upper()
    if c ~= "2B" and c ~= "2F" and c ~= "3D" then
      return nil, "the signature is not base64 URL-encoded once (only %2B, %2F and %3D may appear)"
    end
  end
  if sig:gsub("%%..", ""):find("%%") then return nil, "the signature has a broken %XX escape" end
  return items
end

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil): no time zone
-- or os.time() involved.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local DAYS_IN_MONTH = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

-- Request-Time in the forms SIGNING.md lists: milliseconds since the epoch (Java, Go), or ISO 8601
-- with seconds and a zone: +00:00 (Python), +0000 (PHP), a fraction and Z (.NET).
-- -> milliseconds | nil
function M.parse_time(s)
  if type(s) ~= "string" then return nil end
  if s:match("^%d+$") then
    if #s > 15 then return nil end
    return tonumber(s)
  end
  local y, mo, d, h, mi, sec, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  y, mo, d, h, mi, sec = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(sec)
  if mo < 1 or mo > 12 or d < 1 or d > DAYS_IN_MONTH[mo] or h > 23 or mi > 59 or sec > 59 then return nil end
  local frac = 0
  local digits, zone = rest:match("^%.(%d+)(.*)$")
  if digits then
    if #digits > 9 then return nil end
    frac = tonumber("0." .. digits)
    rest = zone
  end
  local offset
  if rest == "Z" then
    offset = 0
  else
    local sign, oh, om = rest:match("^([+-])(%d%d):?(%d%d)$")
    if not sign or tonumber(oh) > 23 or tonumber(om) > 59 then return nil end
    offset = (tonumber(oh) * 60 + tonumber(om)) * 60
    if sign == "-" then offset = -offset end
  end
  local seconds = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset
  return math.floor((seconds + frac) * 1000)
end

-- -> nil | message (answered PARAM_ILLEGAL: the pages' code for a header field that is wrong)
function M.request_time(value, now_ms)
  if type(value) ~= "string" or value == "" then return "the Request-Time header is missing" end
  local t = M.parse_time(value)
  if not t then
    return "Request-Time is neither milliseconds since the epoch nor ISO 8601 with a zone"
  end
  if math.abs(t - now_ms) > M.REQUEST_TIME_TOLERANCE * 1000 then
    return "Request-Time is more than " .. M.REQUEST_TIME_TOLERANCE .. " s from the gateway's clock"
  end
  return nil
end

-- application/json, with at most a charset parameter, UTF-8 (case-insensitive, as RFC 9110 compares
-- media types and charsets). JSON has no other encoding (RFC 8259), so the charset may be left out.
local function is_json_type(value)
  if type(value) ~= "string" then return false end
  local v = value:lower()
  local rest = v:match("^%s*application/json%s*(.*)$")
  if not rest then return false end
  if rest == "" then return true end
  local charset = rest:match('^;%s*charset%s*=%s*"?([%w%-]+)"?%s*$')
  return charset == "utf-8"
end
M.is_json_type = is_json_type

-- -> nil | message (answered PARAM_ILLEGAL)
function M.content_type(value)
  if type(value) == "table" then return "Content-Type is given more than once" end
  if not is_json_type(value) then return "Content-Type must be application/json; charset=UTF-8" end
  return nil
end

-- The acknowledgement SIGNING.md gives: HTTP 200, Content-Type application/json, and the body
--   {"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}
-- compared as JSON (key order and whitespace carry no meaning there), with nothing added. The notify
-- page's sample answer spells resultMessage "resultMsg"; its own table and SIGNING.md say
-- resultMessage, so resultMsg is not an acknowledgement (our choice). -> true | false, why
local ACK = { resultCode = "SUCCESS", resultStatus = "S", resultMessage = "success" }

local function keys(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

function M.acknowledgement(status, content_type, body)
  if status ~= 200 then return false, "HTTP status " .. tostring(status) .. ", not 200" end
  if type(content_type) == "table" then return false, "Content-Type given more than once" end
  if not is_json_type(content_type) then return false, "Content-Type is not application/json" end
  local t = core.json_decode(body or "")
  if type(t) ~= "table" or getmetatable(t) == core.array_mt or keys(t) ~= 1 or type(t.result) ~= "table" then
    return false, "the body is not {\"result\":{...}}"
  end
  local r = t.result
  if r.resultStatus ~= "S" then return false, "result.resultStatus is not S" end
  for k, v in pairs(ACK) do
    if r[k] ~= v then return false, "result." .. k .. " is not " .. v end
  end
  if keys(r) ~= keys(ACK) then return false, "result has fields besides resultCode, resultStatus, resultMessage" end
  return true
end

return M
