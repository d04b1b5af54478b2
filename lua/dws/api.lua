-- The DWS API definitions, read off the API pages in ../shared/dws-api/: paths, request fields,
-- required fields, maximum lengths, enums and which fields are arrays. validate.lua walks these;
-- client.lua precomputes paths and headers from them.
--
-- Field types: string (numbers and booleans accepted and sent as strings, as the pages ask),
-- boolean (sent as "true"/"false"), object (known fields plus any extra ones), array (of items).
-- Fields not listed here pass through, checked only for type, size and encoding; the client logs
-- a warning naming them (event "unknown_fields").
local api = {}

-- A cap for strings whose page gives no maximum: keeps huge inputs from being signed and sent.
api.DEFAULT_MAX_LENGTH = 4096
-- Deeper nesting is refused (the JSON encoder and decoder have the same limit).
api.MAX_DEPTH = 64

local function string_t(spec)
  spec = spec or {}
  spec.kind = "string"
  if spec.enum then
    local set = {}
    for i = 1, #spec.enum do set[spec.enum[i]] = true end
    spec.enum_set = set
  end
  return spec
end

local function boolean_t(spec)
  spec = spec or {}
  spec.kind = "boolean"
  return spec
end

local function object_t(fields, spec)
  spec = spec or {}
  spec.kind = "object"
  spec.fields = fields
  -- Required fields in a fixed order, so the first missing one reported is always the same.
  local required = {}
  for name, field in pairs(fields) do
    if field.required then required[#required + 1] = name end
  end
  table.sort(required)
  spec.required_fields = required
  return spec
end

local function array_t(items, spec)
  spec = spec or {}
  spec.kind = "array"
  spec.items = items
  return spec
end

-- Env (consultAddablePaymentMethod, addPaymentMethod). terminalType values as Antom documents
-- them; the pages name APP, WEB and WAP.
local TERMINAL_TYPES = { "WEB", "WAP", "APP", "MINI_APP" }

local function env_t(spec)
  return object_t({
    terminalType = string_t{ max = 32, enum = TERMINAL_TYPES },
    osType = string_t{ max = 32 },
    osVersion = string_t{ max = 32 },
    appVersion = string_t{ max = 32 },
    clientIp = string_t{ max = 64 },
    deviceModel = string_t{ max = 128 },
    deviceTokenId = string_t{ max = 256 },
    umidTokenId = string_t{ max = 256 },
    language = string_t{ max = 32 },
    operateEntrance = string_t{ max = 32 },
    sessionId = string_t{ max = 256 },
    userAgent = string_t{ max = 1024 },
  }, spec)
end

local function user_name_t()
  return object_t{
    firstName = string_t{ max = 64 },
    middleName = string_t{ max = 64 },
    lastName = string_t{ max = 64 },
    fullName = string_t{ max = 128 },
  }
end

local function address_t()
  return object_t{
    region = string_t{ max = 64 },
    state = string_t{ max = 64 },
    city = string_t{ max = 64 },
    zipCode = string_t{ max = 32 },
    address1 = string_t{ max = 256 },
    address2 = string_t{ max = 256 },
  }
end

-- Maximum lengths where the pages give none are one decision shared with the sandbox (docs/sandbox.md
-- "Field limits"); the sandbox keeps its own copy and spec/sandbox_spec.lua checks both agree.
local METADATA_MAX = 2048

-- cacheCard's card: the number, 12 to 19 digits, and an expiry a card cannot be cached without.
local function card_t(spec)
  return object_t({
    cardNo = string_t{ max = 19, required = true },
    brand = string_t{ max = 32 },
    securityCode = string_t{ max = 4 },
    expiryYear = string_t{ max = 4, required = true },
    expiryMonth = string_t{ max = 2, required = true },
    instUserName = user_name_t(),
    billingAddress = address_t(),
    paymentMethodDetailMetadata = string_t{ max = METADATA_MAX },
  }, spec)
end

-- addPaymentMethod's card: the temporary token instead of the card data.
local function token_card_t()
  return object_t{
    cardToken = string_t{ max = 128 },
    paymentMethodDetailMetadata = string_t{ max = METADATA_MAX },
  }
end

-- Cross-field rules from the pages' notes, run on the normalised request (where every given
-- scalar is a string and dws.null may stand for an absent value). Each returns nil or field, message.
local function given(v)
  return type(v) == "string"
end

local function env_rules(env, required)
  if type(env) ~= "table" then
    if required then return "env", "is required" end
    return nil
  end
  if not given(env.terminalType) then return "env.terminalType", "is required" end
  local terminal = env.terminalType
  if (terminal == "APP" or terminal == "WAP") and not given(env.osType) then
    return "env.osType", "is required when env.terminalType is APP or WAP"
  end
  return nil
end

local function customer_id_rule(req)
  local id = req.customerId
  if given(id) and not id:find("^%d+$") then
    return "customerId", "must contain digits only"
  end
  return nil
end

api.consultAddablePaymentMethod = {
  name = "consultAddablePaymentMethod",
  method = "consult_addable_payment_method",
  path = "/ams/api/v1/paymentMethods/consultAddablePaymentMethod",
  request = object_t{
    customerId = string_t{ required = true, max = 32 },
    scenes = array_t(string_t{ max = 64 }),
    env = env_t{ required = true },
  },
  rules = {
    customer_id_rule,
    function(req) return env_rules(req.env, true) end,
  },
}

api.cacheCard = {
  name = "cacheCard",
  method = "cache_card",
  path = "/ams/api/v1/paymentMethods/cacheCard",
  request = object_t{
    paymentMethodDetail = object_t({
      paymentMethodDetailType = string_t{ required = true, max = 32 },
      card = card_t{ required = true },
    }, { required = true }),
  },
  rules = {
    function(req)
      -- The page caches cards only (its sample says "card"; addPaymentMethod's says "CARD"), and
      -- the sandbox refuses anything else: any letter case, as there.
      local t = req.paymentMethodDetail.paymentMethodDetailType
      if type(t) == "string" and t:lower() ~= "card" then
        return "paymentMethodDetail.paymentMethodDetailType", "must be card"
      end
      return nil
    end,
  },
}

api.addPaymentMethod = {
  name = "addPaymentMethod",
  method = "add_payment_method",
  path = "/ams/api/v1/paymentMethods/addPaymentMethod",
  -- Generated by the client (uuid4) when absent, kept across retries.
  request_id_field = "requestId",
  request = object_t{
    requestId = string_t{ required = true, max = 64 },
    customerId = string_t{ max = 32 },
    referenceCustomerId = string_t{ max = 64 },
    referenceUserId = string_t{ max = 64 },
    isTemporary = boolean_t(),
    paymentMethodDetail = object_t({
      paymentMethodDetailType = string_t{ required = true, max = 32 },
      card = token_card_t(),
    }, { required = true }),
    env = env_t(),
    redirectUrl = string_t{ max = 2048 },
  },
  rules = {
    customer_id_rule,
    function(req)
      if given(req.referenceCustomerId) and given(req.referenceUserId) then
        return "referenceUserId", "cannot be given together with referenceCustomerId"
      end
      if given(req.referenceUserId) and req.isTemporary == "true" then
        return "isTemporary", "must be false when referenceUserId is given"
      end
      return nil
    end,
    function(req) return env_rules(req.env, false) end,
    -- The page marks customerId, referenceCustomerId and referenceUserId all optional, so a request
    -- with none of them is sent: DWS, not the SDK, decides whether it knows whose wallet it is.
    function(req)
      -- A card is added by its temporary token; other methods (GCASH_EBANK) by redirect, without one.
      local pmd = req.paymentMethodDetail
      if type(pmd.paymentMethodDetailType) ~= "string" or pmd.paymentMethodDetailType:upper() ~= "CARD" then
        return nil
      end
      if type(pmd.card) ~= "table" then return "paymentMethodDetail.card", "is required for CARD" end
      if not given(pmd.card.cardToken) then return "paymentMethodDetail.card.cardToken", "is required for CARD" end
      if given(pmd.card.cardNo) then
        return "paymentMethodDetail.card.cardNo", "must not be sent to addPaymentMethod (cache the card first)"
      end
      if given(pmd.card.securityCode) then
        return "paymentMethodDetail.card.securityCode", "must not be sent to addPaymentMethod (cache the card first)"
      end
      return nil
    end,
  },
}

-- Lookup by API name and by client method name.
api.ALL = { api.consultAddablePaymentMethod, api.cacheCard, api.addPaymentMethod }
api.by_name = {}
api.by_method = {}
for i = 1, #api.ALL do
  local def = api.ALL[i]
  api.by_name[def.name] = def
  api.by_method[def.method] = def
end

return api
