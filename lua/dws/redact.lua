--- Card-data redaction for anything that may reach a log line or an error message (the rule:
-- docs/security.md "Hardening"). Every error message, `tostring(err)` and log line goes through it.
-- @module dws.redact

-- Card-data redaction for anything that may reach a log line or an error message.
--
-- cardNo keeps its first six and last four characters (what PCI DSS allows to be shown);
-- securityCode is replaced entirely. Works on Lua tables (a redacted copy; the original is left
-- alone), on JSON text (also JSON carried inside JSON strings, where quotes are escaped), and on
-- free text (any Luhn-valid run of 12 to 19 digits, also grouped with separators, is masked as a
-- card number; a 3-4 digit value after cvv, cvc or security code is masked as a security code).
local redact = {}

local core = require "dws.core"

local find = string.find

-- The byte-level rules (card-like digit runs, the mask, escaping) are dws.core's: csrc/redact.c.
local mask_card, mask_card_digits, code_hint, escape_text =
  core.mask_card, core.mask_card_digits, core.code_hint, core.escape_text

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
  return mask_card(as_string(s))
end

--- A security code as stars, one per character.
-- syntax: `stars = dws.redact.security_code(s)`
-- @tparam string s
-- @treturn string
function redact.security_code(s)
  return stars(#as_string(s))
end

--- The secret fields: every name a card number or security code goes by, as JSON spells it, and
-- what it holds (`"card"` or `"code"`). Every list the redactor uses is made from this one: field
-- names in tables (any letter case), keys in JSON text, the words that name a security code in
-- free text, and the cheap gate dws.core checks before those patterns run.
-- @table SECRET_FIELDS
redact.SECRET_FIELDS = {
  { "cardNo", "card" }, { "card_no", "card" },
  { "securityCode", "code" }, { "security_code", "code" }, { "cvv", "code" }, { "cvc", "code" },
}

local function any_case(word)
  return (word:gsub("%a", function(c) return "[" .. c:lower() .. c:upper() .. "]" end))
end

-- A name's words: "securityCode" and "security_code" -> { "security", "code" }.
local function words_of(name)
  local out = {}
  for w in name:gsub("(%l)(%u)", "%1_%2"):gmatch("[^_]+") do out[#out + 1] = w:lower() end
  return out
end

local MASKERS = {}      -- lower-cased field name -> masker
local JSON_KEYS = {}    -- { name as JSON spells it, masker }
local CODE_PATTERNS = {} -- security codes named in free text
local CODE_WORDS = {}   -- first words of those names, for dws.core's gate
do
  local seen_pattern, seen_word = {}, {}
  for _, f in ipairs(redact.SECRET_FIELDS) do
    local name, kind = f[1], f[2]
    local mask = kind == "card" and redact.card_number or redact.security_code
    MASKERS[name:lower()] = mask
    JSON_KEYS[#JSON_KEYS + 1] = { name, mask }
    if kind == "code" then
      -- "cvv=739", "CVC2: 1234", "security code 739", "securityCode\":\"739": the name's words in any
      -- case, joined by nothing, a space, _ or -, an optional 2, then =, : or spaces (quotes and
      -- JSON escapes allowed around them), then 3 or 4 digits.
      local words = words_of(name)
      local parts = {}
      for i, w in ipairs(words) do parts[i] = any_case(w) end
      local pattern = "(" .. table.concat(parts, "[%s_%-]?") .. "2?[\\\"'%s]*[=:]?[\\\"'%s]*)(%d%d%d%d?)%f[%D]"
      if not seen_pattern[pattern] then
        seen_pattern[pattern] = true
        CODE_PATTERNS[#CODE_PATTERNS + 1] = pattern
      end
      if not seen_word[words[1]] then
        seen_word[words[1]] = true
        CODE_WORDS[#CODE_WORDS + 1] = words[1]
      end
    end
  end
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
    if find(s, key, 1, true) then
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
  -- The gate and the digit runs are C (dws.core, csrc/redact.c): one pass each instead of a dozen
  -- patterns, since every log line and error message comes through here.
  if code_hint(s, CODE_WORDS) then
    for i = 1, #CODE_PATTERNS do s = s:gsub(CODE_PATTERNS[i], mask_codes) end
  end
  -- Card numbers left: any run of 12 to 19 digits that could be a card (Luhn-valid; a 13-digit
  -- run starting with 1 is a millisecond timestamp), also grouped with separators.
  return mask_card_digits(s)
end

--- Control characters escaped (`\n`, `\r`, `\t`, `\xHH`; NEL, U+2028, U+2029 as `\uXXXX`), so
-- text cannot start a forged log line. Nothing is redacted.
-- syntax: `one_line = dws.redact.escape(s)`
-- @tparam string s (other values are returned as they are)
-- @treturn string
function redact.escape(s)
  if type(s) ~= "string" then return s end
  return escape_text(s)
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
    elseif tv == "number" and mask_card_digits(as_string(v)) ~= as_string(v) then
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
