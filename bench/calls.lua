-- The three API calls as the bench makes them, against the sandbox's pinned test data.
-- Card numbers are the sandbox's published test cards; they are sent, never printed.
local M = {}

M.APIS = { "consult", "cache_card", "add_payment_method" }

local CUSTOMER = "2162878776333"
-- Answers addPaymentMethod with an sms challenge: S every time, and no notification, so the
-- bench does not make the sandbox post thousands of them to nowhere.
local CARD = "4000056655665556"

local ENV = { terminalType = "WEB", clientIp = "127.0.0.1", language = "en-PH" }

local function consult_req()
  return { customerId = CUSTOMER, env = ENV, scenes = { "TOPUP" } }
end

local function cache_req()
  return { paymentMethodDetail = { paymentMethodDetailType = "card", card = {
    cardNo = CARD, brand = "VISA", securityCode = "123", expiryYear = "2031", expiryMonth = "12",
    instUserName = { firstName = "Juan", lastName = "Dela Cruz" },
    billingAddress = { region = "PH", state = "Metro Manila", city = "Makati", zipCode = "1200",
      address1 = "1 Ayala Avenue" },
  } } }
end

local function add_req(token)
  -- requestId left out: the client generates one (uuid4) per call, as a merchant's would.
  return { customerId = CUSTOMER, env = ENV, paymentMethodDetail = {
    paymentMethodDetailType = "CARD", card = { cardToken = token } } }
end

function M.consult(client)
  return client:consult_addable_payment_method(consult_req())
end

local function token_of(res)
  local d = res and res.paymentMethodDetail
  return d and d.card and d.card.cardToken
end

function M.cache_card(client, state)
  local res, err = client:cache_card(cache_req())
  if res and state then state.token = token_of(res) or state.token end
  return res, err
end

function M.add_payment_method(client, state)
  return client:add_payment_method(add_req(state.token))
end

-- Warm-up on a new client: the connection, the card token addPaymentMethod needs.
M.PREPARE_CALLS = 2
function M.prepare(client, state)
  local res, err = M.consult(client)
  if not res then error("consult failed: " .. tostring(err), 0) end
  res, err = M.cache_card(client, state)
  if not res then error("cacheCard failed: " .. tostring(err), 0) end
  if not state.token then error("cacheCard answered without a cardToken", 0) end
end

function M.new_transport(sb, scheme)
  local curl = require "dws.transport.curl"
  return curl.new{ ca_file = scheme == "https" and sb.ca_file or nil }
end

-- A transport that records the last request and response body per path, for the JSON bench.
local function recording(inner, seen)
  return setmetatable({
    -- Bodies as Lua strings, so they can be recorded: the JSON bench needs the bytes (the
    -- sandbox's test card, never printed), which a dws.buffer body keeps out of Lua.
    body_buffers = false,
    request = function(_, req)
      local res, kind, msg = inner:request(req)
      local api = req.url:match("/([%w]+)$")
      if res and api then seen[#seen + 1] = { api = api, request = req.body, response = res.body } end
      return res, kind, msg
    end,
  }, { __index = inner })
end

-- Sample bodies from one call of each API over the sandbox (the bytes of this run), or, with no
-- sandbox, bodies built here after the API pages' samples.
function M.json_samples(core, sb, make_client)
  local out = {}
  if sb and make_client then
    local seen = {}
    local client = make_client("http", { transport = recording(M.new_transport(sb, "http"), seen) })
    local state = {}
    assert(M.consult(client, state))
    assert(M.cache_card(client, state))
    assert(M.add_payment_method(client, state))
    client:close()
    for _, s in ipairs(seen) do
      out[#out + 1] = { name = s.api .. " request", body = s.request }
    end
    for _, s in ipairs(seen) do
      out[#out + 1] = { name = s.api .. " response", body = s.response }
    end
    if #out == 6 then return out, "this run's wire bytes" end
    out = {}
  end
  local enc = function(t) return assert(core.json_encode(t, true)) end
  out[1] = { name = "consultAddablePaymentMethod request", body = enc(consult_req()) }
  out[2] = { name = "cacheCard request", body = enc(cache_req()) }
  out[3] = { name = "addPaymentMethod request",
    body = enc(add_req("PYMT1342cf7ca558402cb2d77af09066d906")) }
  out[4] = { name = "consultAddablePaymentMethod response", body = [[{"paymentOptions":[{"enabled":true,]] ..
    [["paymentMethodCategory":"MIXEDCARD","paymentMethodType":"MIXEDCARD","paymentOptionDetail":]] ..
    [["{\"card\":{\"bankInfos\":[],\"supportCardBrands\":[{\"cardBrand\":\"MASTERCARD\",]] ..
    [[\"supportedCurrencies\":[\"PHP\"]},{\"cardBrand\":\"VISA\",\"supportedCurrencies\":[\"PHP\"]}]},]] ..
    [[\"type\":\"card\"}","preferred":false,"rank":5000,"supportedCurrencies":["PHP"]},]] ..
    [[{"enabled":true,"paymentMethodCategory":"GCASH_EBANK","paymentMethodType":"GCASH_EBANK",]] ..
    [["preferred":false,"rank":4000,"supportedCurrencies":["PHP"]}],]] ..
    [["result":{"resultCode":"SUCCESS","resultMessage":"success","resultStatus":"S"}}]] }
  out[5] = { name = "cacheCard response", body = [[{"expiryTime":"2031-07-04T12:08:56+08:00",]] ..
    [["paymentMethodDetail":{"card":{"billingAddress":{"address1":"1 Ayala Avenue","city":"Makati",]] ..
    [["region":"PH","state":"Metro Manila","zipCode":"1200"},"brand":"VISA",]] ..
    [["cardToken":"PYMT1342cf7ca558402cb2d77af09066d906","expiryMonth":"12","expiryYear":"2031",]] ..
    [["instUserName":{"firstName":"Juan","lastName":"Dela Cruz"},"last4":"5556","mask":"400005******5556"},]] ..
    [["paymentMethodDetailType":"card"},]] ..
    [["result":{"resultCode":"SUCCESS","resultMessage":"success","resultStatus":"S"}}]] }
  out[6] = { name = "addPaymentMethod response", body = [[{"actionForm":{"challengeRenderValue":"+6222***508",]] ..
    [["challengeType":"sms"},"paymentMethodDetail":{"card":{},"paymentMethodDetailType":"CARD"},]] ..
    [["requestId":"c9f9dfc2-a30f-40f8-ac60-3ba32e3e1ac2",]] ..
    [["result":{"resultCode":"SUCCESS","resultMessage":"success","resultStatus":"S"}}]] }
  return out, "samples after the API pages"
end

return M
