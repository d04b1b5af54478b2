-- Card-data redaction for anything that may reach a log line or an error message.
--
-- cardNo keeps its first six and last four characters (what PCI DSS allows to be shown);
-- securityCode is replaced entirely. Works on Lua tables (a redacted copy; the original is left
-- alone), on JSON text (also JSON carried inside JSON strings, where quotes are escaped), and on
-- free text (any Luhn-valid run of 12 to 19 digits is masked as a card number).
local redact = {}

local MAX_DEPTH = 64

local function stars(n)
  return string.rep("*", n)
end

-- Numbers as digits (LuaJIT's tostring would give 4.1111111111111e+15 for a card number).
local function as_string(v)
  if type(v) == "number" and v == math.floor(v) and v > -2^63 and v < 2^63 then
    return string.format("%.0f", v)
  end
  return tostring(v)
end

--- "4111111111111111" -> "411111******1111"; anything too short to keep ten characters is all stars.
function redact.card_number(s)
  s = as_string(s)
  local n = #s
  if n < 13 then return stars(n) end
  return s:sub(1, 6) .. stars(n - 10) .. s:sub(-4)
end

function redact.security_code(s)
  return stars(#as_string(s))
end

-- Field names (lower-cased) whose values are secret, and how each is masked.
local MASKERS = {
  cardno = redact.card_number,
  card_no = redact.card_number,
  securitycode = redact.security_code,
  security_code = redact.security_code,
  cvv = redact.security_code,
  cvc = redact.security_code,
}
-- The same names as spelled in JSON text (patterns are case-sensitive).
local JSON_KEYS = {
  { "cardNo", redact.card_number },
  { "card_no", redact.card_number },
  { "securityCode", redact.security_code },
  { "security_code", redact.security_code },
  { "cvv", redact.security_code },
  { "cvc", redact.security_code },
}

-- One Luhn check for the whole SDK (card.lua): a digit run is masked only when it could be a card.
local luhn_valid = require("dws.card").luhn

local function mask_digit_run(run)
  local n = #run
  if n >= 12 and n <= 19 and luhn_valid(run) then return redact.card_number(run) end
  return run
end

-- A card number as people type it: groups of 3+ digits split by single spaces or dashes
-- ("4111 1111 1111 1111", "3782-822463-10005"). Any run of consecutive groups holding 13 to 19
-- Luhn-valid digits is masked, separators kept; dates and times (2-digit groups) are left alone.
local function mask_grouped(run)
  local groups = {}
  for digits, sep in run:gmatch("(%d+)([ %-]?)") do groups[#groups + 1] = { digits, sep } end
  local i = 1
  while i <= #groups do
    local digits, j = "", i
    while j <= #groups and #groups[j][1] >= 3 and #digits < 13 do
      digits = digits .. groups[j][1]
      j = j + 1
    end
    -- extend up to 19 digits while the number is not (yet) Luhn-valid
    while #digits < 13 or not luhn_valid(digits) do
      if j > #groups or #groups[j][1] < 3 or #digits + #groups[j][1] > 19 then break end
      digits = digits .. groups[j][1]
      j = j + 1
    end
    if #digits >= 13 and #digits <= 19 and luhn_valid(digits) then
      local masked = redact.card_number(digits)
      local pos = 1
      for g = i, j - 1 do
        local n = #groups[g][1]
        groups[g][1] = masked:sub(pos, pos + n - 1)
        pos = pos + n
      end
      i = j
    else
      i = i + 1
    end
  end
  local out = {}
  for g = 1, #groups do out[g] = groups[g][1] .. groups[g][2] end
  return table.concat(out)
end

--- Redact JSON or free text: secret fields by name (quoted, escaped-quoted or bare values), then
-- any card-number-like digit run left over.
function redact.text(s)
  if type(s) ~= "string" then return s end
  for i = 1, #JSON_KEYS do
    local key, mask = JSON_KEYS[i][1], JSON_KEYS[i][2]
    if s:find(key, 1, true) then
      -- "key":"value" and \"key\":\"value\" (JSON inside a JSON string)
      s = s:gsub('(\\*"' .. key .. '\\*"%s*:%s*\\*")([^"\\]*)', function(prefix, value)
        return prefix .. mask(value)
      end)
      -- "key": 4111... (a bare number)
      s = s:gsub('(\\*"' .. key .. '\\*"%s*:%s*)(%d+)', function(prefix, value)
        return prefix .. '"' .. mask(value) .. '"'
      end)
    end
  end
  if s:find("%d%d%d%d%d%d%d%d%d%d%d%d") then
    s = s:gsub("%d+", mask_digit_run)
  end
  if s:find("%d%d%d[ %-]%d%d%d") then
    s = s:gsub("%d+[ %-][%d %-]*%d", mask_grouped)
  end
  return s
end

redact.json = redact.text

local function copy(t, depth, seen)
  if seen[t] then return "<cycle>" end
  if depth > MAX_DEPTH then return "<too deep>" end
  seen[t] = true
  local out = {}
  for k, v in pairs(t) do
    local mask = type(k) == "string" and MASKERS[k:lower()]
    local tv = type(v)
    if mask and (tv == "string" or tv == "number") then
      out[k] = mask(v)
    elseif tv == "table" then
      out[k] = copy(v, depth + 1, seen)
    elseif tv == "string" then
      out[k] = redact.text(v)
    elseif tv == "number" and mask_digit_run(as_string(v)) ~= as_string(v) then
      out[k] = redact.card_number(v)
    else
      out[k] = v
    end
  end
  seen[t] = nil
  local mt = getmetatable(t)
  if type(mt) == "table" then setmetatable(out, mt) end -- keeps dws.array marks
  return out
end

--- A redacted deep copy of `t` (cycles and over-deep nesting are cut, never followed).
function redact.table(t)
  if type(t) ~= "table" then return redact.value(t) end
  return copy(t, 1, {})
end

--- Redact any value: tables are copied, strings treated as JSON or free text.
function redact.value(v)
  local tv = type(v)
  if tv == "table" then return copy(v, 1, {}) end
  if tv == "string" then return redact.text(v) end
  return v
end

return redact
