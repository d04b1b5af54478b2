--- Time as DWS messages carry it: Request-Time and response-time parsing, and the one rule for
-- "is this signed time close enough to our clock" that answers and notifications share.
-- @module dws.time
local type, tonumber, floor, format = type, tonumber, math.floor, string.format

local M = {}

--- The largest tolerance either window accepts (seconds). A window must stay shorter than the
-- notification de-dup memory (2 days), or a replay could outlive the memory that refuses it.
M.MAX_TOLERANCE = 86400

-- Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's days_from_civil), so no
-- local time zone or os.time() is involved.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

--- Request-Time as the SDKs send it: milliseconds since the epoch, or ISO 8601 with a zone
-- (Z, +hh:mm or +hhmm; optional fraction). Returns milliseconds, or nil.
-- syntax: `ms = dws.time.parse(s)`
-- @tparam string s a Request-Time or response-time header value
-- @treturn int milliseconds since the epoch, or nil when `s` is neither form
function M.parse(s)
  if type(s) ~= "string" then return nil end
  if s:match("^%d+$") and #s <= 15 then return tonumber(s) end
  local y, mo, d, h, mi, sec, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[T ](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  y, mo, d, h, mi, sec = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(sec)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or sec > 60 then return nil end
  local frac = 0
  local digits, zone = rest:match("^%.(%d+)(.*)$")
  if digits then
    frac = tonumber("0." .. digits)
    rest = zone
  end
  local offset
  if rest == "Z" then
    offset = 0
  else
    local sign, oh, om = rest:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(oh) * 60 + tonumber(om)) * 60
    if sign == "-" then offset = -offset end
  end
  local seconds = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset
  return floor((seconds + frac) * 1000)
end

--- Whether `v` is a usable tolerance: a finite number of seconds from `low` to MAX_TOLERANCE.
-- Written so that NaN fails (every comparison with NaN is false): a NaN window would accept a
-- notification from any year.
-- syntax: `ok = dws.time.valid_tolerance(v, low)`
function M.valid_tolerance(v, low)
  return type(v) == "number" and v >= (low or 0) and v <= M.MAX_TOLERANCE
end

--- The signed time `sent_ms` against the clock `now_ms`: nil when within `tolerance` seconds
-- either way, else the skew in seconds (positive: `sent_ms` is in the past).
-- syntax: `skew = dws.time.outside(sent_ms, now_ms, tolerance)`
function M.outside(sent_ms, now_ms, tolerance)
  local skew = (now_ms - sent_ms) / 1000
  if skew <= tolerance and -skew <= tolerance then return nil end
  return skew
end

--- How `outside`'s skew reads in a message.
function M.describe(skew, tolerance)
  return format("%.0f s %s the local clock, outside the %g s tolerance", math.abs(skew),
    skew >= 0 and "behind" or "ahead of", tolerance)
end

return M
