-- The three DWS APIs as the pages in shared/dws-api describe them: field validation, test-data
-- behaviour, card tokens, requestId idempotency. Runs inside nginx (content phase).
--
-- A card number or security code is only ever looked at here, in cacheCard: it is checked, reduced to
-- brand / mask / last4 / expiry / behaviour class, and dropped. Error messages name the field only.
local core = require "dws.core"
local store = require "dws_sandbox.store"
local testdata = require "dws_sandbox.testdata"

local M = {}

local function result(status, code, message)
  return { result = { resultStatus = status, resultCode = code, resultMessage = message } }
end
M.result = result

-- A canned { status, code, message } from the test data.
local function canned_result(t)
  return result(t[1], t[2], t[3])
end

local SUCCESS = { "S", "SUCCESS", "success" }

local function success(t)
  t.result = { resultStatus = SUCCESS[1], resultCode = SUCCESS[2], resultMessage = SUCCESS[3] }
  return t
end

function M.iso8601(t)
  return os.date("!%Y-%m-%dT%H:%M:%S+00:00", t)
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end
M.hex = hex

-- Validation. Each check returns nothing when fine, or (field, reason); reasons never quote values.
local Invalid = {}

local function invalid(field, reason)
  error(setmetatable({ field = field, reason = reason }, Invalid), 0)
end

-- Characters, not bytes, as the SDK counts them (a non-ASCII name must meet the same limit).
local function char_length(v)
  local _, continuation = v:gsub("[\128-\191]", "")
  return #v - continuation
end

local function str(t, key, path, opts)
  local v = t[key]
  local field = path .. key
  if v == nil or v == core.null then
    if opts.required then invalid(field, "is required") end
    return nil
  end
  -- The pages: every scalar is sent as a JSON string.
  if type(v) ~= "string" then invalid(field, "must be a string") end
  if opts.required and v == "" then invalid(field, "must not be empty") end
  if opts.max and #v > opts.max and char_length(v) > opts.max then
    invalid(field, "exceeds " .. opts.max .. " characters")
  end
  if opts.digits and not v:match("^%d+$") then invalid(field, "must be digits only") end
  if opts.enum and not opts.enum[v] then invalid(field, "has an unsupported value") end
  return v
end

local function obj(t, key, path, required)
  local v = t[key]
  if v == nil or v == core.null then
    if required then invalid(path .. key, "is required") end
    return nil
  end
  if type(v) ~= "table" or getmetatable(v) == core.array_mt then invalid(path .. key, "must be an object") end
  return v
end

-- Maximum lengths (characters) of the fields whose page gives none: docs/sandbox.md "Field limits". The
-- SDK has its own copy (lua/dws/api.lua): the sandbox judges the SDK, so it shares none of its code,
-- and spec/sandbox_spec.lua ("field limits") checks that both sides agree at max and max + 1.
local LIMITS = {
  env = { terminalType = 32, osType = 32, osVersion = 32, appVersion = 32, clientIp = 64, deviceModel = 128,
          deviceTokenId = 256, umidTokenId = 256, language = 32, operateEntrance = 32, sessionId = 256,
          userAgent = 1024 },
  instUserName = { firstName = 64, middleName = 64, lastName = 64, fullName = 128 },
  billingAddress = { region = 64, state = 64, city = 64, zipCode = 32, address1 = 256, address2 = 256 },
  card = { cardNo = 19, brand = 32, securityCode = 4, expiryYear = 4, expiryMonth = 2, cardToken = 128,
           paymentMethodDetailMetadata = 2048 },
  paymentMethodDetailType = 32, scene = 64, redirectUrl = 2048,
}
M.LIMITS = LIMITS

local TERMINAL_TYPES = { WEB = true, WAP = true, APP = true, MINI_APP = true }

local function check_env(req, required)
  local env = obj(req, "env", "", required)
  if not env then return end
  local tt = str(env, "terminalType", "env.", { required = true, enum = TERMINAL_TYPES })
  str(env, "osType", "env.", { required = tt == "APP" or tt == "WAP", max = LIMITS.env.osType })
  for k, max in pairs(LIMITS.env) do
    if k ~= "terminalType" and k ~= "osType" then str(env, k, "env.", { max = max }) end
  end
end

local function check_group(t, key, path)
  local g = obj(t, key, path, false)
  if not g then return end
  for k, max in pairs(LIMITS[key]) do str(g, k, path .. key .. ".", { max = max }) end
end

-- Runs fn(req); turns a validation failure into the PARAM_ILLEGAL answer.
local function validated(req, fn)
  local ok, err = pcall(fn, req)
  if ok then return nil end
  if getmetatable(err) ~= Invalid then error(err, 0) end
  local r = result("F", "PARAM_ILLEGAL", "Illegal parameters: " .. err.field .. " " .. err.reason)
  return r, err.field
end

-- consultAddablePaymentMethod --------------------------------------------------------------------

function M.consultAddablePaymentMethod(_, req)
  local bad, field = validated(req, function(r)
    str(r, "customerId", "", { required = true, max = 32, digits = true })
    check_env(r, true)
    local scenes = r.scenes
    if scenes ~= nil and scenes ~= core.null then
      if type(scenes) ~= "table" or (next(scenes) ~= nil and getmetatable(scenes) ~= core.array_mt) then
        invalid("scenes", "must be an array")
      end
      for i = 1, #scenes do str(scenes, i, "scenes", { max = LIMITS.scene }) end
    end
  end)
  if bad then return bad, { field = field } end

  local behaviour = testdata.CUSTOMERS[req.customerId]
  if not behaviour then
    return result("F", "USER_NOT_EXIST", "The user does not exist.")
  elseif testdata.CUSTOMER_ANSWERS[behaviour] then
    return canned_result(testdata.CUSTOMER_ANSWERS[behaviour])
  elseif behaviour == "no_options" then
    return result("F", "NO_PAY_OPTIONS", "No addable payment options found.")
  elseif behaviour == "unknown_once" and store.dict():add("consult_once:" .. req.customerId, true) then
    return result("U", "UNKNOWN_EXCEPTION", "An API call failed, which is caused by unknown reasons.")
  end
  return success{ paymentOptions = testdata.payment_options(behaviour, core.json_encode, core.array_mt) }
end

-- cacheCard --------------------------------------------------------------------------------------

local function check_card(card, now)
  local p = "paymentMethodDetail.card."
  local no = str(card, "cardNo", p, { required = true })
  if not no:match("^%d+$") or #no < 12 or #no > LIMITS.card.cardNo then
    invalid(p .. "cardNo", "must be 12 to " .. LIMITS.card.cardNo .. " digits")
  end
  if not testdata.luhn(no) then invalid(p .. "cardNo", "failed the Luhn check") end
  local y = str(card, "expiryYear", p, { required = true })
  local m = str(card, "expiryMonth", p, { required = true })
  if not (y:match("^%d%d$") or y:match("^%d%d%d%d$")) then invalid(p .. "expiryYear", "must be 2 or 4 digits") end
  local year, month = tonumber(y), tonumber(m:match("^%d%d?$") or "")
  if year < 100 then year = year + 2000 end
  if not month or month < 1 or month > 12 then invalid(p .. "expiryMonth", "must be a month, 01 to 12") end
  if year < now.year or (year == now.year and month < now.month) then
    invalid(p .. "expiryYear", "card has expired")
  end
  local cvv = str(card, "securityCode", p, {})
  if cvv and not cvv:match("^%d%d%d%d?$") then invalid(p .. "securityCode", "must be 3 or 4 digits") end
  str(card, "brand", p, { max = LIMITS.card.brand })
  str(card, "paymentMethodDetailMetadata", p, { max = LIMITS.card.paymentMethodDetailMetadata })
  check_group(card, "instUserName", p)
  check_group(card, "billingAddress", p)
  return no
end

function M.cacheCard(ctx, req)
  local number
  local bad, field = validated(req, function(r)
    local pmd = obj(r, "paymentMethodDetail", "", true)
    local t = str(pmd, "paymentMethodDetailType", "paymentMethodDetail.",
      { required = true, max = LIMITS.paymentMethodDetailType })
    if t:lower() ~= "card" then invalid("paymentMethodDetail.paymentMethodDetailType", "must be card") end
    local card = obj(pmd, "card", "paymentMethodDetail.", true)
    number = check_card(card, os.date("!*t"))
  end)
  if bad then return bad, { field = field } end
  local canned = testdata.CACHE_CARDS[number]
  if canned then return canned_result(canned) end

  local card = req.paymentMethodDetail.card
  local brand = card.brand or testdata.brand(number)
  local expiry_month = card.expiryMonth
  if #expiry_month == 1 then expiry_month = "0" .. expiry_month end
  local token = "PYMT" .. hex(core.random_bytes(16))
  local ttl = ctx.conf.token_ttl
  local record = {
    client_id = ctx.client_id, brand = brand, mask = testdata.mask(number), last4 = number:sub(-4),
    expiryYear = card.expiryYear, expiryMonth = expiry_month, class = testdata.card_class(number),
    expires = ngx.now() + ttl, hashCode = ctx.hash_code(number),
    -- As the notify page's sample shows the holder: first name masked, last name as given.
    instUserName = type(card.instUserName) == "table" and {
      firstName = card.instUserName.firstName and "****" or nil, lastName = card.instUserName.lastName,
    } or nil,
  }
  if not store.set_json("token:" .. token, record, ttl) then
    return result("U", "UNKNOWN_EXCEPTION", "An API call failed, which is caused by unknown reasons.")
  end
  return success{
    expiryTime = M.iso8601(math.floor(record.expires)),
    paymentMethodDetail = {
      paymentMethodDetailType = req.paymentMethodDetail.paymentMethodDetailType,
      card = {
        cardToken = token, mask = record.mask, last4 = record.last4, brand = brand,
        expiryYear = record.expiryYear, expiryMonth = record.expiryMonth,
        instUserName = card.instUserName, billingAddress = card.billingAddress,
      },
    },
  }
end

-- addPaymentMethod -------------------------------------------------------------------------------

local IDEMPOTENCY_TTL = 86400
local UNKNOWN = { "U", "UNKNOWN_EXCEPTION", "An API call failed, which is caused by unknown reasons." }

-- A final card token, as the notify page's sample shows one ("ALIPAY" and base64): never the
-- temporary PYMT token cacheCard issued, so a merchant who keeps the temporary one finds out here.
local function final_token()
  return "ALIPAY" .. core.base64_encode(core.random_bytes(70))
end
M.final_token = final_token

-- The reference id a notification carries: the request's own, else the customerId (DWS's id of
-- the buyer, and the shape of the page's sample value "216610000006358131449").
local function reference(req)
  if req.referenceUserId then return "referenceUserId", req.referenceUserId end
  return "referenceCustomerId", req.referenceCustomerId or req.customerId
end

-- The sample's metadata: is this the customer's first bound asset; is the same card (hashCode)
-- bound under another reference id of this client. Recorded as the binding is decided.
local function binding_metadata(client_id, ref, hash)
  local d = store.dict()
  local first = d:add("asset:" .. client_id .. "\n" .. ref, true)
  local holder_key = "holder:" .. client_id .. "\n" .. hash
  d:add(holder_key, ref)
  local holder = d:get(holder_key)
  return assert(core.json_encode({
    isFirstBoundAssetForPayOrTopUp = first and "true" or "false",
    isBoundByOthers = holder ~= ref and "true" or "false",
  }, false))
end

-- The two notification kinds (docs/sandbox.md "Notifications the sandbox sends"). BOUND: the page's
-- sample, with a final token and operateSource (the page's table marks it required, its sample lacks
-- it). FAILED: no cardToken, no hashCode, and a result object saying why (no page has one: the
-- sandbox's invention).
function M.notifications(ctx, req, card)
  local ref_field, ref = reference(req)
  local pmd_type = req.paymentMethodDetail.paymentMethodDetailType
  local hash = card and card.hashCode or ctx.hash_code(pmd_type .. "\n" .. ref)
  local function base(detail)
    return { requestId = req.requestId, [ref_field] = ref, operateSource = "MERCHANT",
             paymentMethodDetail = { paymentMethodDetailType = pmd_type, card = detail } }
  end
  local bound_card, failed_card = {
    cardToken = final_token(), hashCode = hash,
    paymentMethodDetailMetadata = binding_metadata(ctx.client_id, ref, hash),
  }, {}
  if card then
    for _, t in ipairs{ bound_card, failed_card } do
      t.brand, t.mask, t.expiryMonth, t.expiryYear, t.instUserName = card.brand, card.mask, "**", "**",
        card.instUserName
    end
  end
  local failed = base(failed_card)
  failed.result = { resultStatus = "F", resultCode = "PROCESS_FAIL",
                    resultMessage = "The binding was not completed: the verification failed or was cancelled." }
  return base(bound_card), failed
end

local function check_add(r)
  str(r, "requestId", "", { required = true, max = 64 })
  -- The page marks customerId, referenceCustomerId and referenceUserId all optional: a request with
  -- none of them is accepted.
  str(r, "customerId", "", { max = 32, digits = true })
  local rc = str(r, "referenceCustomerId", "", { max = 64 })
  local ru = str(r, "referenceUserId", "", { max = 64 })
  if rc and ru then invalid("referenceUserId", "must not be given together with referenceCustomerId") end
  local temp = str(r, "isTemporary", "", {})
  if temp and temp ~= "true" and temp ~= "false" then invalid("isTemporary", "must be \"true\" or \"false\"") end
  if ru and temp == "true" then invalid("isTemporary", "must be false when referenceUserId is given") end
  str(r, "redirectUrl", "", { max = LIMITS.redirectUrl })
  local pmd = obj(r, "paymentMethodDetail", "", true)
  local t = str(pmd, "paymentMethodDetailType", "paymentMethodDetail.",
    { required = true, max = LIMITS.paymentMethodDetailType })
  local is_card = t:upper() == "CARD"
  local card = obj(pmd, "card", "paymentMethodDetail.", is_card)
  if card then
    local p = "paymentMethodDetail.card."
    str(card, "cardToken", p, { required = is_card, max = LIMITS.card.cardToken })
    str(card, "paymentMethodDetailMetadata", p, { max = LIMITS.card.paymentMethodDetailMetadata })
    -- Card data goes to cacheCard only; here it would be a leak, not a request.
    for _, k in ipairs{ "cardNo", "securityCode" } do
      if card[k] ~= nil and is_card then invalid(p .. k, "must not be sent to addPaymentMethod") end
    end
  end
  check_env(r, false)
end

-- Returns the response table, plus an "effects" table the server acts on after answering:
-- { notify = { delay =, body = <notification table> } }, or { replay = <stored body> }.
function M.addPaymentMethod(ctx, req)
  local bad, field = validated(req, check_add)
  if bad then
    bad.requestId = type(req.requestId) == "string" and req.requestId or nil
    return bad, { field = field }
  end

  local request_id = req.requestId
  local idem_key = "idem:" .. ctx.client_id .. "\n" .. request_id
  local seen = store.get_json(idem_key)
  if seen then
    if seen.hash ~= ctx.body_hash then
      local r = result("F", "REPEAT_REQ_INCONSISTENT", "Repeat request inconsistent.")
      r.requestId = request_id
      return r, { idempotent = "inconsistent" }
    end
    -- A U recorded only the bytes: the identical re-send is processed now and gets the final answer.
    if seen.body then return nil, { replay = seen.body, idempotent = "replay" } end
  end

  local function final(r, effects)
    r.requestId = request_id
    local body = assert(core.json_encode(r, false))
    store.set_json(idem_key, { hash = ctx.body_hash, body = body }, IDEMPOTENCY_TTL)
    effects = effects or {}
    effects.body = body
    return r, effects
  end

  local who = req.customerId and testdata.CUSTOMERS[req.customerId]
  if req.customerId and not who then
    return final(result("F", "USER_NOT_EXIST", "The user does not exist."))
  end
  local canned = testdata.CUSTOMER_ANSWERS[who]
  if canned and canned[1] == "U" then
    store.set_json(idem_key, { hash = ctx.body_hash }, IDEMPOTENCY_TTL)
    local r = canned_result(canned)
    r.requestId = request_id
    return r, {}
  elseif canned then
    return final(canned_result(canned))
  end

  local pmd = req.paymentMethodDetail
  local pmd_type = pmd.paymentMethodDetailType
  if pmd_type:upper() ~= "CARD" then
    if not testdata.REDIRECT_METHODS[pmd_type] then
      return final(result("F", "PROCESS_FAIL", "The payment method type cannot be added."))
    end
    -- A wallet or bank added by redirect: the user confirms on the provider's page (ours).
    local bound, failed = M.notifications(ctx, req, nil)
    local url = ctx.challenge{ kind = "redirect", request = req, bound = bound, failed = failed }
    return final(success{
      paymentMethodDetail = { paymentMethodDetailType = pmd_type },
      actionForm = { redirectUrl = url },
    })
  end

  local token = pmd.card.cardToken
  local card = store.get_json("token:" .. token)
  -- Not on the addPaymentMethod page's list, but the code DWS defines for a bad token (cacheCard
  -- page): a temporary token expires, and the merchant must learn that the card must be entered again.
  if not card or card.client_id ~= ctx.client_id or card.expires <= ngx.now() then
    return final(result("F", "INVALID_PAYMENTMETHOD_TOKEN", "The payment method token is invalid."))
  end

  local class = card.class
  if class == "unknown_once" and not seen then
    -- Recorded: a re-send of this requestId with other bytes is REPEAT_REQ_INCONSISTENT, the same
    -- bytes get the final answer.
    store.set_json(idem_key, { hash = ctx.body_hash }, IDEMPOTENCY_TTL)
    local r = canned_result(UNKNOWN)
    r.requestId = request_id
    return r, {}
  end
  if class == "risk_reject" then
    return final(result("F", "RISK_REJECT", "Risk reject"))
  end

  local bound, failed = M.notifications(ctx, req, card)
  -- The page's own sample answer: S, "card":{}; the final token comes only by notification.
  local answer = {
    paymentMethodDetail = { paymentMethodDetailType = pmd_type, card = {} },
    actionForm = {},
  }
  if class == "challenge" then
    answer.actionForm = {
      challengeType = testdata.CHALLENGE.challengeType,
      challengeRenderValue = testdata.CHALLENGE.challengeRenderValue,
      redirectUrl = ctx.challenge{ kind = "otp", request = req, bound = bound, failed = failed },
    }
    return final(success(answer))
  end
  return final(success(answer), {
    notify = { delay = class == "pending" and ctx.conf.notify_delay or ctx.conf.bound_notify_delay or 0,
               body = bound },
  })
end

return M
