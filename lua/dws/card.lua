-- Local card checks done before any card data leaves the process: Luhn, expiry, brand from
-- the BIN, masking. Reasons returned here never contain the card number or security code.
local M = {}

-- The one Luhn check of the SDK (dws.redact's digit runs use it too): csrc/redact.c.
local luhn = require("dws.core").luhn
local errors = require "dws.errors"

-- BIN ranges, most specific first: Discover's 6011/644-649/65 must win over UnionPay's 62,
-- Mir's 2200-2204 over Mastercard's 2221-2720. { brand, low, high } compare the leading
-- #low digits of the number as an integer.
local BIN_RANGES = {
  { "AMEX", "34", "34" },
  { "AMEX", "37", "37" },
  { "JCB", "3528", "3589" },
  { "DINERS", "300", "305" },
  { "DINERS", "36", "36" },
  { "DINERS", "38", "39" },
  { "DISCOVER", "6011", "6011" },
  { "DISCOVER", "644", "649" },
  { "DISCOVER", "65", "65" },
  { "UNIONPAY", "62", "62" },
  { "MIR", "2200", "2204" },
  { "MASTERCARD", "2221", "2720" },
  { "MASTERCARD", "51", "55" },
  { "MAESTRO", "6304", "6304" },
  { "MAESTRO", "6759", "6759" },
  { "MAESTRO", "50", "50" },
  { "MAESTRO", "56", "58" },
  { "VISA", "4", "4" },
}

-- Card numbers are 12 to 19 digits (ISO/IEC 7812); spaces and dashes as people type them
-- are dropped. Anything else is refused rather than guessed at.
function M.digits(number)
  if type(number) ~= "string" then return nil end
  local d = number:gsub("[ %-]", "")
  if #d < 12 or #d > 19 or d:find("%D") then return nil end
  return d
end

function M.luhn(number)
  local d = M.digits(number)
  return d ~= nil and luhn(d)
end

function M.brand(number)
  local d = M.digits(number)
  if not d then return nil end
  for _, r in ipairs(BIN_RANGES) do
    local lead = tonumber(d:sub(1, #r[2]))
    if lead >= tonumber(r[2]) and lead <= tonumber(r[3]) then return r[1] end
  end
  return nil
end

-- First six, stars, last four: the form DWS itself uses ("523945******1949").
-- Not core.mask_card (redaction's rule): that hides all of a 12-digit number, where DWS, and
-- bind_card's check of cacheCard's mask, show six and four of it here too.
function M.mask(number)
  local d = M.digits(number)
  if not d then return nil end
  return d:sub(1, 6) .. string.rep("*", #d - 10) .. d:sub(-4)
end

function M.last4(number)
  local d = M.digits(number)
  return d and d:sub(-4)
end

local function as_int(v)
  if type(v) == "number" then
    if v % 1 ~= 0 then return nil end
    return v
  end
  if type(v) == "string" and v:match("^%d%d?%d?%d?$") then return tonumber(v) end
  return nil
end

-- A CARD_INVALID error naming the field (docs/calls.md "Conventions": nil, err for what a caller handles).
local function invalid(field, reason)
  return nil, errors.new{ code = errors.CARD_INVALID, status = "F", field = field, message = reason }
end

-- Year and month as given ("2030"/"30", "07"/7) -> 4-digit year, month | nil, err (CARD_INVALID).
function M.expiry(year, month)
  local y, m = as_int(year), as_int(month)
  if y and y < 100 then y = 2000 + y end
  if not y or y < 1000 then return invalid("card.expiryYear", "expiryYear must be a 2 or 4 digit year") end
  if not m or m < 1 or m > 12 then return invalid("card.expiryMonth", "expiryMonth must be a month, 1 to 12") end
  return y, m
end

-- A card is good through the last day of its expiry month; "now" is UTC (os.date "!*t" form).
function M.expired(year, month, now)
  now = now or os.date("!*t")
  return year < now.year or (year == now.year and month < now.month)
end

-- Check a card as the caller gave it. Returns a new table with cardNo normalised to digits,
-- brand filled in from the BIN when absent, expiryYear/expiryMonth as "YYYY"/"MM"; or
-- nil, err (CARD_INVALID, err.field naming the field).
function M.check(card, now)
  if type(card) ~= "table" then return invalid("card", "card must be a table") end
  local number = M.digits(card.cardNo)
  if not number then
    return invalid("card.cardNo", "card number must be a string of 12 to 19 digits")
  end
  if not M.luhn(number) then
    return invalid("card.cardNo", "card number fails the Luhn check (mistyped?)")
  end
  local year, month = M.expiry(card.expiryYear, card.expiryMonth)
  if not year then return nil, month end
  if M.expired(year, month, now) then
    return invalid("card.expiryYear", string.format("card expired (%04d-%02d)", year, month))
  end
  local detected = M.brand(number)
  local brand = card.brand
  if brand == nil or brand == "" then
    if not detected then return invalid("card.brand", "card brand not given and not known from the BIN") end
    brand = detected
  elseif type(brand) ~= "string" then
    return invalid("card.brand", "card brand must be a string")
  else
    brand = brand:upper()
    if detected and detected ~= brand then
      return invalid("card.brand", "card brand " .. brand .. " does not match the BIN (" .. detected .. ")")
    end
  end
  local code = card.securityCode
  if code ~= nil then
    local want = brand == "AMEX" and 4 or 3
    if type(code) ~= "string" or not code:find("^%d+$") or #code ~= want then
      return invalid("card.securityCode", string.format("security code must be %d digits", want))
    end
  end
  local out = {}
  for k, v in pairs(card) do out[k] = v end
  out.cardNo = number
  out.brand = brand
  out.expiryYear = string.format("%04d", year)
  out.expiryMonth = string.format("%02d", month)
  return out
end

return M
