-- The three DWS APIs as the pages in shared/dws-api describe them: field validation, test-data
-- behaviour, card tokens, requestId idempotency. Runs inside nginx (content phase).
--
-- A card number or security code is only ever looked at here, in cacheCard: it is checked, reduced to
-- brand / mask / last4 / expiry / behaviour class, and dropped. Error messages name the field only.
local core = require "dws.core"
local store = require "dws.sandbox.store"
local testdata = require "dws.sandbox.testdata"

local M = {}

local function result(status, code, message)
  return { result = { resultStatus = status, resultCode = code, resultMessage = message } }
end
M.result = result

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
  if opts.max and #v > opts.max then invalid(field, "exceeds " .. opts.max .. " characters") end
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

local TERMINAL_TYPES = { WEB = true, WAP = true, APP = true, MINI_APP = true }

local function check_env(req, required)
  local env = obj(req, "env", "", required)
  if not env then return end
  local tt = str(env, "terminalType", "env.", { required = true, enum = TERMINAL_TYPES })
  str(env, "osType", "env.", { required = tt == "APP" or tt == "WAP", max = 32 })
  for _, k in ipairs{ "appVersion", "clientIp", "deviceModel", "deviceTokenId", "language",
                      "operateEntrance", "osVersion", "sessionId", "umidTokenId" } do
    str(env, k, "env.", { max = 256 })
  end
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
      for i, s in ipairs(scenes) do
        if type(s) ~= "string" then invalid("scenes[" .. i .. "]", "must be a string") end
      end
    end
  end)
  if bad then return bad, { field = field } end

  local behaviour = testdata.CUSTOMERS[req.customerId]
  if not behaviour then
    return result("F", "USER_NOT_EXIST", "The user does not exist.")
  elseif behaviour == "abnormal" then
    return result("F", "USER_STATUS_ABNORMAL", "The user status is abnormal.")
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
  if not no:match("^%d+$") or #no < 12 or #no > 19 then invalid(p .. "cardNo", "must be 12 to 19 digits") end
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
  str(card, "brand", p, { max = 32 })
  obj(card, "instUserName", p, false)
  obj(card, "billingAddress", p, false)
  return no
end

function M.cacheCard(ctx, req)
  local number
  local bad, field = validated(req, function(r)
    local pmd = obj(r, "paymentMethodDetail", "", true)
    local t = str(pmd, "paymentMethodDetailType", "paymentMethodDetail.", { required = true, max = 32 })
    if t:lower() ~= "card" then invalid("paymentMethodDetail.paymentMethodDetailType", "must be card") end
    local card = obj(pmd, "card", "paymentMethodDetail.", true)
    number = check_card(card, os.date("!*t"))
  end)
  if bad then return bad, { field = field } end

  local card = req.paymentMethodDetail.card
  local brand = card.brand or testdata.brand(number)
  local expiry_month = card.expiryMonth
  if #expiry_month == 1 then expiry_month = "0" .. expiry_month end
  local token = "PYMT" .. hex(core.random_bytes(16))
  local ttl = ctx.conf.token_ttl
  local record = {
    client_id = ctx.client_id, brand = brand, mask = testdata.mask(number), last4 = number:sub(-4),
    expiryYear = card.expiryYear, expiryMonth = expiry_month, class = testdata.card_class(number),
    expires = ngx.now() + ttl,
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

-- Returns the response table, plus an "effects" table the server acts on after answering:
-- { notify = { delay =, body = <notification table> } }, or { replay = <stored body> }.
function M.addPaymentMethod(ctx, req)
  local bad, field = validated(req, function(r)
    str(r, "requestId", "", { required = true, max = 64 })
    str(r, "customerId", "", { max = 32, digits = true })
    local rc = str(r, "referenceCustomerId", "", { max = 64 })
    local ru = str(r, "referenceUserId", "", { max = 64 })
    if rc and ru then invalid("referenceUserId", "must not be given together with referenceCustomerId") end
    local temp = str(r, "isTemporary", "", {})
    if temp and temp ~= "true" and temp ~= "false" then invalid("isTemporary", "must be \"true\" or \"false\"") end
    str(r, "redirectUrl", "", { max = 2048 })
    local pmd = obj(r, "paymentMethodDetail", "", true)
    str(pmd, "paymentMethodDetailType", "paymentMethodDetail.", { required = true, max = 32 })
    local card = obj(pmd, "card", "paymentMethodDetail.", true)
    str(card, "cardToken", "paymentMethodDetail.card.", { required = true, max = 256 })
    str(card, "paymentMethodDetailMetadata", "paymentMethodDetail.card.", { max = 2048 })
    check_env(r, false)
  end)
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
    return nil, { replay = seen.body, idempotent = "replay" }
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
  elseif who == "abnormal" then
    return final(result("F", "USER_STATUS_ABNORMAL", "The user status is abnormal."))
  end

  local token = req.paymentMethodDetail.card.cardToken
  local card = store.get_json("token:" .. token)
  if not card or card.client_id ~= ctx.client_id or card.expires <= ngx.now() then
    return final(result("F", "INVALID_PAYMENTMETHOD_TOKEN", "The payment method token is invalid."))
  end

  local class = card.class
  if class == "unknown_once" and store.dict():add("add_once:" .. ctx.client_id .. "\n" .. request_id, true) then
    -- Not final: nothing stored, so the retry with the same requestId gets the real answer.
    local r = result("U", "UNKNOWN_EXCEPTION", "An API call failed, which is caused by unknown reasons.")
    r.requestId = request_id
    return r, {}
  end
  if class == "risk_reject" then
    return final(result("F", "RISK_REJECT", "Risk reject"))
  end

  local pmd_type = req.paymentMethodDetail.paymentMethodDetailType
  local notification = {
    referenceCustomerId = req.referenceCustomerId or req.customerId or req.referenceUserId,
    requestId = request_id,
    operateSource = "MERCHANT",
    paymentMethodDetail = {
      paymentMethodDetailType = "CARD",
      card = { brand = card.brand, cardToken = token, mask = card.mask, expiryMonth = "**", expiryYear = "**" },
    },
  }
  if class == "challenge" then
    return final(success{
      paymentMethodDetail = { paymentMethodDetailType = pmd_type, card = {} },
      actionForm = { challengeType = testdata.CHALLENGE.challengeType,
                     challengeRenderValue = testdata.CHALLENGE.challengeRenderValue },
    })
  elseif class == "pending" then
    -- The page's own sample answer: S, no token, an empty actionForm; the result comes by notification.
    return final(success{
      paymentMethodDetail = { paymentMethodDetailType = pmd_type, card = {} },
      actionForm = {},
    }, { notify = { delay = ctx.conf.notify_delay, body = notification } })
  end
  return final(success{
    expiryTime = M.iso8601(math.floor(card.expires)),
    paymentMethodDetail = {
      paymentMethodDetailType = pmd_type,
      card = { cardToken = token, brand = card.brand, mask = card.mask, last4 = card.last4,
               paymentMethodDetailMetadata = req.paymentMethodDetail.card.paymentMethodDetailMetadata },
    },
  }, { notify = { delay = 0, body = notification } })
end

return M
