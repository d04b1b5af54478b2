--- Card-data redaction for anything that may reach a log line or an error message (the rule:
-- README "Hardening"). Every error message, `tostring(err)` and log line goes through it.
-- @module dws.redact

-- Card-data redaction for anything that may reach a log line or an error message.
--
-- cardNo keeps its first six and last four characters (what PCI DSS allows to be shown);
-- securityCode is replaced entirely. Works on Lua tables (a redacted copy; the original is left
-- alone), on JSON text (also JSON carried inside JSON strings, where quotes are escaped), and on
-- free text (any Luhn-valid run of 12 to 19 digits, also grouped with separators, is masked as a
-- card number; a 3-4 digit value after cvv, cvc or security code is masked as a security code).
local redact = {}

local byte, find, format = string.byte, string.find, string.format

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
-- syntax: `masked = dws.redact.card_number(s)`
-- @tparam string s a card number (a number is read as its digits)
-- @treturn string
function redact.card_number(s)
  s = as_string(s)
  local n = #s
  if n < 13 then return stars(n) end
  return s:sub(1, 6) .. stars(n - 10) .. s:sub(-4)
end

--- A security code as stars, one per character.
-- syntax: `stars = dws.redact.security_code(s)`
-- @tparam string s
-- @treturn string
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

-- Whether a run of digits (separators removed) could be a card number: 12 to 19 digits, Luhn-valid.
-- Millisecond timestamps from 2001 to 2286 are 13 digits starting with 1, and no card number is
-- (13-digit cards are Visa's, starting with 4; issuer 1 numbers are 15 digits), so they stay readable.
local function could_be_card(d)
  local n = #d
  if n < 12 or n > 19 then return false end
  if n == 13 and byte(d) == 49 then return false end
  return luhn_valid(d)
end

local function mask_digit_run(run)
  if could_be_card(run) then return redact.card_number(run) end
  return run
end

-- A card number as people type or print it: groups of 3 or more digits split by up to three
-- separator characters (space, tab, newline, dash, dot, slash, underscore, comma):
-- "4111 1111 1111 1111", "4242.4242.4242.4242", "3782 - 822463 - 10005". Any run of consecutive
-- groups holding 13 to 19 digits that could be a card is masked, separators kept; dates and times
-- (2-digit groups) are left alone.
local SEP = "[%s%-%./_,]"
local MAX_SEP = 3
local GROUPED_HINT = "%d%d%d" .. SEP .. "+%d%d%d"
local GROUPED_RUN = "%d[%d%s%-%./_,]*%d"

local function mask_grouped(run)
  -- Under 13 digits in the whole run no card fits: most runs (dates, ids) end here, tableless.
  local _, ndigits = run:gsub("%d", "")
  if ndigits < 13 then return run end
  local groups = {}
  for digits, sep in run:gmatch("(%d+)(%D*)") do groups[#groups + 1] = { digits, sep } end
  local count = #groups
  -- group g can be followed by group g + 1 in one number
  local function continues(g)
    local sep = groups[g][2]
    return g < count and #sep >= 1 and #sep <= MAX_SEP and #groups[g + 1][1] >= 3
  end
  local i = 1
  while i <= count do
    local digits, j = groups[i][1], i
    if #digits >= 3 then
      while #digits < 13 and continues(j) do
        j = j + 1
        digits = digits .. groups[j][1]
      end
      -- extend up to 19 digits while the number is not (yet) a possible card
      while not could_be_card(digits) and continues(j) and #digits + #groups[j + 1][1] <= 19 do
        j = j + 1
        digits = digits .. groups[j][1]
      end
    end
    if #digits >= 13 and could_be_card(digits) then
      local masked = redact.card_number(digits)
      local pos = 1
      for g = i, j do
        local n = #groups[g][1]
        groups[g][1] = masked:sub(pos, pos + n - 1)
        pos = pos + n
      end
      i = j + 1
    else
      i = i + 1
    end
  end
  local out = {}
  for g = 1, count do out[g] = groups[g][1] .. groups[g][2] end
  return table.concat(out)
end

-- Security codes in free text: cvv, cvv2, cvc, cvc2, securityCode, security_code, "security code"
-- (any letter case), then =, : or spaces (quotes and JSON escapes allowed around them), then 3 or 4
-- digits: "cvv=739", "CVC2: 1234", "security code 739", "securityCode\":\"739".
local function any_case(word)
  return (word:gsub("%a", function(c) return "[" .. c:lower() .. c:upper() .. "]" end))
end
local CODE_PATTERNS = {}
for _, name in ipairs{ any_case("security") .. "[%s_%-]?" .. any_case("code"), any_case("cvv") .. "2?",
                       any_case("cvc") .. "2?" } do
  CODE_PATTERNS[#CODE_PATTERNS + 1] = "(" .. name .. "[\\\"'%s]*[=:]?[\\\"'%s]*)(%d%d%d%d?)%f[%D]"
end

local function mask_codes(prefix, code)
  return prefix .. stars(#code)
end

--- Redact JSON or free text: secret fields by name (quoted, escaped-quoted or bare values),
-- security codes named in free text, then any card-number-like digit run left over.
-- syntax: `safe = dws.redact.text(s)`
-- @tparam string s JSON or free text (other values are returned as they are)
-- @treturn string
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
  if s:find("%d%d%d") then
    -- Every pattern needs "security", "cvv" or "cvc" in some letter case: two plain finds in a
    -- lower-cased copy rule them out for almost every text (a requestId, a message) before three
    -- case-blind gsubs, 7 us per log field under LuaJIT (issue 13, notifications).
    local lower = s:lower()
    if lower:find("security", 1, true) or lower:find("cv", 1, true) then
      for i = 1, #CODE_PATTERNS do s = s:gsub(CODE_PATTERNS[i], mask_codes) end
    end
  end
  if s:find("%d%d%d%d%d%d%d%d%d%d%d%d") then
    s = s:gsub("%d+", mask_digit_run)
  end
  if s:find(GROUPED_HINT) then
    s = s:gsub(GROUPED_RUN, mask_grouped)
  end
  return s
end

-- Control characters as escapes, so that text from a gateway or a caller cannot start a new log
-- line or rewrite one: \n, \r, \t, other C0 bytes and DEL as \xHH, and the Unicode line breaks
-- NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR as \u0085, \u2028, \u2029.
local ESCAPES = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local UNICODE_BREAKS = { ["\194\133"] = "\\u0085", ["\226\128\168"] = "\\u2028", ["\226\128\169"] = "\\u2029" }

local function escape_control(c)
  return ESCAPES[c] or format("\\x%02X", byte(c))
end

--- Control characters escaped (`\n`, `\r`, `\t`, `\xHH`; NEL, U+2028, U+2029 as `\uXXXX`), so
-- text cannot start a forged log line. Nothing is redacted.
-- syntax: `one_line = dws.redact.escape(s)`
-- @tparam string s (other values are returned as they are)
-- @treturn string
function redact.escape(s)
  if type(s) ~= "string" then return s end
  if find(s, "%c") then s = s:gsub("%c", escape_control) end
  if find(s, "[\194\226]") then
    s = s:gsub("\194\133", UNICODE_BREAKS):gsub("\226\128[\168\169]", UNICODE_BREAKS)
  end
  return s
end

--- What may be printed on a log line or in tostring(err): card data redacted, control characters
-- escaped. Non-strings go through tostring first.
-- syntax: `safe = dws.redact.printable(v)`
-- @param v any value
-- @treturn string
function redact.printable(v)
  if type(v) ~= "string" then v = tostring(v) end
  return redact.escape(redact.text(v))
end

--- The same as `text` (an older name).
-- @function json
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
-- syntax: `copy = dws.redact.table(t)`
-- @tparam table t (other values go to `value`)
-- @treturn table the copy; `t` is left alone
function redact.table(t)
  if type(t) ~= "table" then return redact.value(t) end
  return copy(t, 1, {})
end

--- Redact any value: tables are copied, strings treated as JSON or free text.
-- syntax: `safe = dws.redact.value(v)`
-- @param v any value
-- @return the redacted value
function redact.value(v)
  local tv = type(v)
  if tv == "table" then return copy(v, 1, {}) end
  if tv == "string" then return redact.text(v) end
  return v
end

return redact
