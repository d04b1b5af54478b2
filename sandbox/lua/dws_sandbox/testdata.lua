-- The sandbox's published test data (HACKING.md "Sandbox test data"; specs, examples and the README
-- rely on it) and the card arithmetic it needs. Kept apart from dws.card on purpose: the sandbox is
-- an independent check of the SDK, so it must not share the SDK's code.
local M = {}

-- customerId -> behaviour. Anything else made of digits is USER_NOT_EXIST.
M.CUSTOMERS = {
  ["2162878776333"] = "active",
  ["2188000000000001"] = "abnormal",        -- USER_STATUS_ABNORMAL on consult and addPaymentMethod
  ["2188000000000002"] = "card_disabled",   -- MIXEDCARD listed with enabled = false
  ["2188000000000003"] = "unknown_once",    -- consult: U UNKNOWN_EXCEPTION on the first call
  ["2188000000000004"] = "no_options",      -- consult: F NO_PAY_OPTIONS
  ["2188000000000005"] = "process_fail",    -- PROCESS_FAIL on consult and addPaymentMethod
  ["2188000000000006"] = "send_times",      -- SEND_TIMES_EXCEED_LIMIT on consult and addPaymentMethod
  ["2188000000000007"] = "traffic",         -- U REQUEST_TRAFFIC_EXCEED_LIMIT on consult and addPaymentMethod
}

-- Customer behaviours that are a plain answer on consult and addPaymentMethod alike.
M.CUSTOMER_ANSWERS = {
  abnormal = { "F", "USER_STATUS_ABNORMAL", "The user status is abnormal." },
  process_fail = { "F", "PROCESS_FAIL", "A general business failure occurred. Don't retry." },
  send_times = { "F", "SEND_TIMES_EXCEED_LIMIT", "The send times exceeds the limit" },
  traffic = { "U", "REQUEST_TRAFFIC_EXCEED_LIMIT", "Request traffic exceeds the limit." },
}

-- Client-Ids that need no configuration and answer every API at once, before the signature is
-- checked (DWS cannot check a signature without a key, nor serve a client it refuses).
M.CLIENTS = {
  SANDBOX_KEY_NOT_FOUND = { "F", "KEY_NOT_FOUND", "Key is not found." },
  SANDBOX_ACCESS_DENIED = { "F", "ACCESS_DENIED", "Access denied." },
}

-- cacheCard has no customer: its answers are chosen by card number (all Luhn-valid, so they get
-- past validation). cacheCard has no requestId either; REPEAT_REQ_INCONSISTENT is there only so
-- that every code the page lists can be met.
M.CACHE_CARDS = {
  ["4000000000000200"] = { "F", "USER_NOT_EXIST", "The user does not exist." },
  ["4000000000000218"] = { "F", "USER_STATUS_ABNORMAL", "The user status is abnormal." },
  ["4000000000000226"] = { "F", "PROCESS_FAIL", "A general business failure occurred. Don't retry." },
  ["4000000000000234"] = { "F", "INVALID_PAYMENTMETHOD_TOKEN", "The payment method token is invalid." },
  ["4000000000000242"] = { "F", "REPEAT_REQ_INCONSISTENT", "Repeat request inconsistent." },
  ["4000000000000259"] = { "U", "UNKNOWN_EXCEPTION", "An API call failed, which is caused by unknown reasons." },
  ["4000000000000267"] = { "U", "REQUEST_TRAFFIC_EXCEED_LIMIT", "Request traffic exceeds the limit." },
}

-- cardNo -> behaviour class of addPaymentMethod. Any other Luhn-valid card binds.
M.CARDS = {
  ["4111111111111111"] = "bound",
  ["5555555555554444"] = "bound",
  ["4000056655665556"] = "challenge",
  ["4000000000000077"] = "pending",
  ["4000000000000101"] = "risk_reject",
  ["4000000000000119"] = "unknown_once",
  ["378282246310005"] = "bound",
}

M.CHALLENGE = { challengeType = "sms", challengeRenderValue = "+6222***508" }
-- The one-time code the sandbox's challenge page accepts; any other code fails the binding.
M.OTP = "123456"

-- Non-card payment methods consult lists and addPaymentMethod adds by redirect (no card).
M.REDIRECT_METHODS = { GCASH_EBANK = true }

-- paymentOption.brandName, which the consult page says DWS returns on S.
M.BRAND_NAMES = { MIXEDCARD = "Credit/Debit Card", GCASH_EBANK = "GCash" }

function M.card_class(number)
  return M.CARDS[number] or "bound"
end

-- Most specific ranges first; { brand, low, high } over the leading #low digits.
local BINS = {
  { "AMEX", "34", "34" }, { "AMEX", "37", "37" },
  { "JCB", "3528", "3589" },
  { "DINERS", "300", "305" }, { "DINERS", "36", "36" }, { "DINERS", "38", "39" },
  { "DISCOVER", "6011", "6011" }, { "DISCOVER", "644", "649" }, { "DISCOVER", "65", "65" },
  { "UNIONPAY", "62", "62" },
  { "MASTERCARD", "2221", "2720" }, { "MASTERCARD", "51", "55" },
  { "VISA", "4", "4" },
}

function M.brand(number)
  for _, r in ipairs(BINS) do
    local lead = tonumber(number:sub(1, #r[2]))
    if lead and lead >= tonumber(r[2]) and lead <= tonumber(r[3]) then return r[1] end
  end
  return "UNKNOWN"
end

-- number: a string of 12 to 19 digits (checked by the caller).
-- Deliberately not dws.card.luhn: the sandbox judges the SDK's requests, so it shares none of the
-- SDK's card logic (a bug there must not be mirrored here).
function M.luhn(number)
  local sum, double = 0, false
  for i = #number, 1, -1 do
    local n = number:byte(i) - 48
    if double then
      n = n * 2
      if n > 9 then n = n - 9 end
    end
    sum = sum + n
    double = not double
  end
  return sum % 10 == 0
end

-- "first6******last4", as DWS masks ("523945******1949").
function M.mask(number)
  return number:sub(1, 6) .. string.rep("*", #number - 10) .. number:sub(-4)
end

-- The consult answer for a customer behaviour: (status, code, message) or the paymentOptions list.
-- json_encode/array_mt come from dws.core; paymentOptionDetail is JSON carried in a string, as the
-- page shows it (but well-formed here).
function M.payment_options(behaviour, json_encode, array_mt)
  local function array(t) return setmetatable(t, array_mt) end
  local card_detail = json_encode({
    type = "card",
    businessScenes = json_encode(array{ "BINDCARD", "TOPUP" }),
    card = {
      bankInfos = array{},
      supportCardBrands = array{
        { cardBrand = "MASTERCARD", supportedCurrencies = array{ "PHP" } },
        { cardBrand = "VISA", supportedCurrencies = array{ "PHP" } },
      },
    },
  }, false)
  local ebank_detail = json_encode({
    type = "card",
    businessScenes = json_encode(array{ "BINDCARD", "TOPUP" }),
    card = {
      bankInfos = array{ { bankShortName = "GNGCASH", cardIssuedCode = "GNGCASH", enabled = false } },
      paymentOptionMetadata = json_encode({ isSupportPaySimulate = "true" }),
      supportCardBrands = array{},
    },
  }, false)
  return array{
    {
      brandName = M.BRAND_NAMES.MIXEDCARD,
      enabled = behaviour ~= "card_disabled",
      paymentMethodCategory = "MIXEDCARD",
      paymentMethodType = "MIXEDCARD",
      paymentOptionDetail = card_detail,
      preferred = false,
      rank = 5000,
      supportedCurrencies = array{ "PHP" },
    },
    {
      brandName = M.BRAND_NAMES.GCASH_EBANK,
      enabled = true,
      paymentMethodCategory = "GCASH_EBANK",
      paymentMethodType = "GCASH_EBANK",
      paymentOptionDetail = ebank_detail,
      preferred = false,
      rank = 4800,
      supportedCurrencies = array{ "PHP" },
    },
  }
end

return M
