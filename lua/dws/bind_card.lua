-- The bind-card workflow: check the card locally, consult the addable payment methods, cache
-- the card, add it. The card number and security code go to cacheCard and nowhere else: not
-- into the outcome, an error or a log line.
local core = require "dws.core"
local card = require "dws.card"
local errors = require "dws.errors"

local M = {}

-- paymentMethodType values that mean "a card may be added here".
M.CARD_OPTION_TYPES = { MIXEDCARD = true, CARD = true, DEBITCARD = true, CREDITCARD = true }

-- Through the client, which shields the flow from a logger that raises: a card already bound
-- at DWS must come back as an outcome, not as an exception from logging.
local function log(client, level, message, fields)
  client:log(level, message, fields or {})
end

local function card_invalid(message, field)
  return nil, errors.new{ api = "bindCard", status = "F", code = errors.CARD_INVALID, message = message,
                          field = field }
end

local function not_addable(message)
  return nil, errors.new{ api = "bindCard", status = "F", code = errors.PAYMENT_METHOD_NOT_ADDABLE,
                          message = message }
end

local function truthy(v)
  return v == true or v == "true"
end

local function is_object(v)
  return type(v) == "table" and getmetatable(v) ~= core.array_mt
end

-- The brands a card option supports, from its paymentOptionDetail (JSON in a string), as a
-- set and as a readable list; or nil, reason.
local function supported_brands(option)
  local raw = option.paymentOptionDetail
  if type(raw) ~= "string" then return nil, "it has no paymentOptionDetail" end
  local detail = core.json_decode(raw)
  if not is_object(detail) then return nil, "its paymentOptionDetail is not valid JSON" end
  if detail.type ~= nil and tostring(detail.type):lower() ~= "card" then
    return nil, "its paymentOptionDetail is not of type card"
  end
  local set, list = {}, {}
  local brands = is_object(detail.card) and detail.card.supportCardBrands
  if type(brands) == "table" then
    for _, b in ipairs(brands) do
      local name = type(b) == "table" and b.cardBrand or b
      if type(name) == "string" and not set[name:upper()] then
        set[name:upper()] = true
        list[#list + 1] = name:upper()
      end
    end
  end
  return set, list
end

-- Pick the card option that can take this brand, or explain exactly why none can.
function M.choose_option(options, brand)
  local seen, reasons = {}, {}
  for _, option in ipairs(type(options) == "table" and options or {}) do
    local kind = type(option) == "table" and (option.paymentMethodType or option.paymentMethodCategory)
    if type(kind) == "string" and M.CARD_OPTION_TYPES[kind:upper()] then
      seen[#seen + 1] = kind
      if not truthy(option.enabled) then
        reasons[#reasons + 1] = "the " .. kind .. " option is not enabled for this customer"
      else
        local set, list = supported_brands(option)
        if not set then
          reasons[#reasons + 1] = "the " .. kind .. " option cannot be used: " .. list
        elseif set[brand] then
          return option, list
        else
          reasons[#reasons + 1] = string.format("%s is not supported by the %s option (it supports %s)",
            brand, kind, #list > 0 and table.concat(list, ", ") or "no brands")
        end
      end
    end
  end
  if #seen == 0 then
    local others = {}
    for _, option in ipairs(type(options) == "table" and options or {}) do
      others[#others + 1] = tostring(type(option) == "table" and option.paymentMethodType or "?")
    end
    return nil, "no card option among the addable payment methods" ..
      (#others > 0 and " (" .. table.concat(others, ", ") .. ")" or "")
  end
  return nil, table.concat(reasons, "; ")
end

local function nonempty(t)
  return type(t) == "table" and next(t) ~= nil
end

local function string_or_nil(v)
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

-- Outcome status from addPaymentMethod's S answer (rules in HACKING.md).
function M.status_of(res)
  local detail = is_object(res.paymentMethodDetail) and res.paymentMethodDetail or {}
  local token = is_object(detail.card) and string_or_nil(detail.card.cardToken)
  if token then return "BOUND", token end
  if nonempty(res.actionForm) then return "ACTION_REQUIRED" end
  return "PENDING"
end

-- bind(client, params) -> outcome | nil, err
function M.bind(client, params)
  if type(params) ~= "table" then error("dws bind_card: params must be a table", 2) end
  if type(params.card) ~= "table" then return card_invalid("card is required (a table)", "card") end

  local c, why, field = card.check(params.card)
  if not c then return card_invalid(why, field) end
  local mask, last4, brand = card.mask(c.cardNo), card.last4(c.cardNo), c.brand
  log(client, "info", "bind_card: card checked locally", { mask = mask, brand = brand })

  local consult = { customerId = params.customerId, env = params.env, scenes = params.scenes }
  local options, err = client:call("consultAddablePaymentMethod", consult)
  if not options then return nil, err end
  local option, detail = M.choose_option(options.paymentOptions, brand)
  if not option then return not_addable(detail) end
  log(client, "info", "bind_card: addable card option found",
    { paymentMethodType = option.paymentMethodType, brands = table.concat(detail, ",") })

  local cached
  cached, err = client:call("cacheCard", {
    paymentMethodDetail = {
      paymentMethodDetailType = "card",
      card = c,
    },
  })
  -- Our copy of the clear card is done with (the caller's table is theirs to clear).
  c.cardNo, c.securityCode = nil, nil
  if not cached then return nil, err end
  local cached_card = is_object(cached.paymentMethodDetail) and is_object(cached.paymentMethodDetail.card)
    and cached.paymentMethodDetail.card or {}
  local temp_token = string_or_nil(cached_card.cardToken)
  if not temp_token then
    return nil, errors.new{ api = "cacheCard", code = errors.RESPONSE_MALFORMED, status = "U",
                            message = "cacheCard answered S without a cardToken" }
  end
  -- DWS's own mask and last4 are preferred, but only in the shape expected: never pass on
  -- something that could be a full number.
  local their_mask = string_or_nil(cached_card.mask)
  if their_mask and their_mask:find("*", 1, true) and not their_mask:find("%d%d%d%d%d%d%d") then
    mask = their_mask
  end
  local their_last4 = string_or_nil(cached_card.last4)
  if their_last4 and their_last4:find("^%d%d%d%d$") then last4 = their_last4 end
  brand = string_or_nil(cached_card.brand) or brand
  log(client, "info", "bind_card: card cached", { mask = mask, expiryTime = cached.expiryTime })

  local add = {
    requestId = params.requestId or core.uuid4(),
    customerId = params.customerId,
    referenceCustomerId = params.referenceCustomerId,
    env = params.env,
    redirectUrl = params.redirectUrl,
    paymentMethodDetail = { paymentMethodDetailType = "CARD", card = { cardToken = temp_token } },
  }
  local added
  added, err = client:call("addPaymentMethod", add)
  if not added then return nil, err end

  local status, token = M.status_of(added)
  local outcome = {
    status = status,
    requestId = added.requestId or add.requestId,
    cardToken = token,
    mask = mask,
    last4 = last4,
    brand = brand,
    expiryTime = string_or_nil(added.expiryTime) or string_or_nil(cached.expiryTime),
    actionForm = nonempty(added.actionForm) and added.actionForm or nil,
    redirectUrl = string_or_nil(added.redirectUrl)
      or (is_object(added.actionForm) and string_or_nil(added.actionForm.redirectUrl)) or nil,
    paymentMethodType = option.paymentMethodType,
  }
  log(client, "info", "bind_card: " .. status, { requestId = outcome.requestId, mask = mask })
  return outcome
end

return M
