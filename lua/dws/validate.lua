-- Validation and normalisation of a request table against its api.lua definition.
--
-- Runs before anything is signed or sent. Returns a new table (the caller's is never modified)
-- in which every scalar is already a string, as the API pages require, and every array carries
-- the core array marker, so the encoder's output follows the definition and not the accident of
-- an empty Lua table. Failures return nil, err (PARAM_ILLEGAL, err.field = "env.terminalType");
-- messages name fields and rules, never values.
--
-- This is the home of the request rules: UTF-8 (lengths are counted in characters, so it must
-- know), NUL bytes, lengths, depth and cycles (its own walk needs them to end). json.c checks
-- UTF-8, depth and cycles again for every other caller of core.json_encode; on the client path
-- it only ever sees this module's output, all strings, so dws.client encodes without stringify.
local core = require "dws.core"
local api = require "dws.api"
local errors = require "dws.errors"

local type, pairs, tostring, getmetatable, setmetatable = type, pairs, tostring, getmetatable, setmetatable
local byte, find, format = string.byte, string.find, string.format
local math_type = math.type -- nil on LuaJIT

local ARRAY_MT = core.array_mt
local NULL = core.null
local MAX_DEPTH = api.MAX_DEPTH
local DEFAULT_MAX = api.DEFAULT_MAX_LENGTH
local HUGE = math.huge

local validate = {}

--- True when `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
local function utf8_valid(s)
  local i = find(s, "[\128-\255]")
  local n = #s
  while i do
    local c = byte(s, i)
    if c < 0x80 then
      i = i + 1
    elseif c >= 0xC2 and c <= 0xDF then
      local c2 = byte(s, i + 1)
      if not c2 or c2 < 0x80 or c2 > 0xBF then return false end
      i = i + 2
    elseif c >= 0xE0 and c <= 0xEF then
      local c2, c3 = byte(s, i + 1, i + 2)
      if not c3 then return false end
      local lo, hi = 0x80, 0xBF
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
      if c2 < lo or c2 > hi or c3 < 0x80 or c3 > 0xBF then return false end
      i = i + 3
    elseif c >= 0xF0 and c <= 0xF4 then
      local c2, c3, c4 = byte(s, i + 1, i + 3)
      if not c4 then return false end
      local lo, hi = 0x80, 0xBF
      if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
      if c2 < lo or c2 > hi or c3 < 0x80 or c3 > 0xBF or c4 < 0x80 or c4 > 0xBF then return false end
      i = i + 4
    else
      return false
    end
    if i > n then return true end
    i = find(s, "[\128-\255]", i)
  end
  return true
end
validate.utf8_valid = utf8_valid

-- Every maximum length on the pages is in characters, and so is every limit of ours: this is the
-- one way lua-dws counts a length (UTF-8 code points; bytes only decide when counting is needed).
local function char_length(s)
  local _, continuation = s:gsub("[\128-\191]", "")
  return #s - continuation
end

--- The length of `s` as every limit counts it: characters (UTF-8 code points), not bytes.
-- syntax: `n = validate.length(s)`
function validate.length(s)
  if not find(s, "[\128-\255]") then return #s end
  return char_length(s)
end

--- Whether `v` is a JSON object as dws.core decodes one (a table without the array marker).
-- syntax: `yes = validate.is_object(v)`
function validate.is_object(v)
  return type(v) == "table" and getmetatable(v) ~= ARRAY_MT
end

--- A caller's requestId as an error or log line may show it: only when it is plainly an id (at
-- most the page's 64 characters, of letters, digits and `-_.:`), else nil, so that no arbitrary
-- input (part of a card number) is ever echoed.
-- syntax: `id = validate.plain_id(v)`
function validate.plain_id(v)
  if type(v) == "string" and #v <= api.addPaymentMethod.request.fields.requestId.max
    and find(v, "^[%w%-_.:]+$") then
    return v
  end
  return nil
end

-- Numbers as the encoder writes them: integers exactly, other floats with 17 significant digits.
local function number_string(v)
  if v ~= v or v == HUGE or v == -HUGE then return nil end
  if math_type then
    if math_type(v) == "integer" then return format("%d", v) end
  end
  if v == math.floor(v) and v > -2^63 and v < 2^63 then return format("%.0f", v) end
  return format("%.17g", v)
end

-- A key is caller data too: only a plain name is echoed in err.field, never anything that could
-- be (part of) a card number or security code. Field names on the API pages have no more than
-- MAX_KEY_DIGITS digits; a key with more (a card number used as a key, "4242.4242...") shows as "?".
local MAX_KEY_DIGITS = 2

local function plain_name(key)
  if #key > 64 or not find(key, "^[%a_][%w_%-]*$") then return false end
  local _, digits = key:gsub("%d", "")
  return digits <= MAX_KEY_DIGITS
end

-- Path of a child field, for err.field.
local function child_path(path, key)
  if type(key) == "number" then return path .. "[" .. format("%d", key) .. "]" end
  if not plain_name(key) then key = "?" end
  if path == "" then return key end
  return path .. "." .. key
end

--- A scalar as the string that goes on the wire; nil, message when it cannot be one.
local function scalar(v, max)
  local tv = type(v)
  if tv == "string" then
    local n = #v
    if n > max then
      -- Bytes >= characters: only count characters when the byte length is over the limit,
      -- and never scan a string that cannot fit even as 4-byte characters.
      if n > max * 4 or char_length(v) > max then
        return nil, "is longer than " .. max .. " characters"
      end
    end
    -- One scan settles the common case: printable ASCII without NUL needs no further checks.
    if find(v, "[^\1-\127]") then
      if find(v, "\0", 1, true) then return nil, "contains a NUL byte" end
      if not utf8_valid(v) then return nil, "is not valid UTF-8" end
    end
    return v
  elseif tv == "number" then
    local s = number_string(v)
    if not s then return nil, "must be a finite number" end
    if #s > max then return nil, "is longer than " .. max .. " characters" end
    return s
  elseif tv == "boolean" then
    return v and "true" or "false"
  end
  return nil, "must be a string, not a " .. tv
end

-- Keys of fields the definition does not know: names, so short, and encodable like values.
local MAX_KEY_LENGTH = 256

local function bad_key(k)
  if type(k) ~= "string" then return "must have string keys only" end
  local _, why = scalar(k, MAX_KEY_LENGTH)
  if why then return "has a key that " .. why end
  return nil
end

local check_generic

local function is_sequence(t)
  local n = #t
  if n == 0 then return false end
  local count = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k > n or k ~= math.floor(k) then return false end
    count = count + 1
  end
  return count == n
end

-- Entered a table: cycle and depth checks. Returns message on failure.
local function enter(t, depth, seen)
  if seen[t] then return "contains a cycle" end
  if depth > MAX_DEPTH then return "is nested deeper than " .. MAX_DEPTH .. " levels" end
  seen[t] = true
  return nil
end

local function check_array_items(items_check, items_spec, v, path, depth, seen)
  local why = enter(v, depth, seen)
  if why then return nil, path, why end
  local n = #v
  local count = 0
  for k in pairs(v) do
    if type(k) ~= "number" or k < 1 or k > n or k ~= math.floor(k) then
      seen[v] = nil
      return nil, path, "must be an array (a sequence table or dws.array)"
    end
    count = count + 1
  end
  if count ~= n then
    seen[v] = nil
    return nil, path, "must be an array without holes"
  end
  local out = setmetatable({}, ARRAY_MT)
  for i = 1, n do
    local item, f, m = items_check(items_spec, v[i], path, i, depth + 1, seen)
    if item == nil then
      seen[v] = nil
      return nil, f, m
    end
    out[i] = item
  end
  seen[v] = nil
  return out
end

-- Field checkers take the parent's path and the key, and build the field's own path only for
-- a table or an error: a valid request costs no string building per scalar.

-- Anything not described by the definition: any JSON-able value, checked for type, size,
-- encoding, depth and cycles.
check_generic = function(_, v, parent, key, depth, seen)
  local tv = type(v)
  if tv == "table" then
    local path = child_path(parent, key)
    if getmetatable(v) == ARRAY_MT or is_sequence(v) then
      return check_array_items(check_generic, nil, v, path, depth, seen)
    end
    local why = enter(v, depth, seen)
    if why then return nil, path, why end
    local out = {}
    for k, item in pairs(v) do
      local kwhy = bad_key(k)
      if kwhy then
        seen[v] = nil
        return nil, path, kwhy
      end
      local value, f, m = check_generic(nil, item, path, k, depth + 1, seen)
      if value == nil then
        seen[v] = nil
        return nil, f, m
      end
      out[k] = value
    end
    seen[v] = nil
    return out
  end
  if v == NULL then return v end
  local s, why = scalar(v, DEFAULT_MAX)
  if s == nil then return nil, child_path(parent, key), why end
  return s
end

local check_field

-- Key in the `seen` table under which check_object lists the paths of fields the definition does
-- not know (a private table, so it can never be one of the caller's tables).
local UNKNOWN = {}

local function check_object(spec, v, path, depth, seen)
  if type(v) ~= "table" or getmetatable(v) == ARRAY_MT then
    return nil, path, "must be an object (a table with string keys)"
  end
  local why = enter(v, depth, seen)
  if why then return nil, path, why end
  local fields = spec.fields
  local out = {}
  for k, item in pairs(v) do
    local field_spec = fields[k]
    local value, f, m
    if field_spec then
      value, f, m = check_field(field_spec, item, path, k, depth + 1, seen)
    else
      local kwhy = bad_key(k)
      if kwhy then
        seen[v] = nil
        return nil, path, kwhy
      end
      value, f, m = check_generic(nil, item, path, k, depth + 1, seen)
      local unknown = seen[UNKNOWN]
      unknown[#unknown + 1] = child_path(path, k)
    end
    if value == nil then
      seen[v] = nil
      return nil, f, m
    end
    out[k] = value
  end
  seen[v] = nil
  local required = spec.required_fields
  for i = 1, #required do
    local name = required[i]
    if out[name] == nil or out[name] == NULL then
      return nil, child_path(path, name), "is required"
    end
  end
  return out
end

check_field = function(spec, v, parent, key, depth, seen)
  if v == NULL then return v end
  local kind = spec.kind
  if kind == "string" then
    local s, why = scalar(v, spec.max or DEFAULT_MAX)
    if s == nil then return nil, child_path(parent, key), why end
    if spec.enum_set and not spec.enum_set[s] then
      return nil, child_path(parent, key), "must be one of " .. table.concat(spec.enum, ", ")
    end
    return s
  elseif kind == "boolean" then
    if v == true or v == "true" then return "true" end
    if v == false or v == "false" then return "false" end
    return nil, child_path(parent, key), "must be true or false"
  elseif kind == "object" then
    return check_object(spec, v, child_path(parent, key), depth, seen)
  elseif kind == "array" then
    local path = child_path(parent, key)
    if type(v) ~= "table" then return nil, path, "must be an array (a sequence table or dws.array)" end
    return check_array_items(check_field, spec.items, v, path, depth, seen)
  end
  error("dws.validate: unknown field kind " .. tostring(kind))
end

--- Validate and normalise `request` for the API `def` (an api.lua entry). `defaults` (optional)
-- supplies values for fields the caller left out (the generated requestId).
-- Returns the normalised request, or nil, err (PARAM_ILLEGAL naming the field). Fields the
-- definition does not know pass; their paths come third (sorted), for the caller to warn about.
function validate.request(def, request, defaults)
  if type(request) ~= "table" then
    return nil, errors.param("request", "request must be a table", def.name)
  end
  if defaults then
    local merged
    for k, val in pairs(defaults) do
      if request[k] == nil then
        if not merged then
          merged = {}
          for k2, v2 in pairs(request) do merged[k2] = v2 end
        end
        merged[k] = val
      end
    end
    request = merged or request
  end
  local seen = { [UNKNOWN] = {} }
  local out, field, message = check_object(def.request, request, "", 1, seen)
  if out == nil then
    if field == "" then field = "request" end
    return nil, errors.param(field, field .. " " .. message, def.name)
  end
  local rules = def.rules
  if rules then
    for i = 1, #rules do
      local f, m = rules[i](out)
      if f then return nil, errors.param(f, f .. " " .. m, def.name) end
    end
  end
  local unknown = seen[UNKNOWN]
  if #unknown > 0 then
    table.sort(unknown)
    return out, nil, unknown
  end
  return out
end

return validate
