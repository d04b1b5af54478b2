-- Bind the demo card against the DWS sandbox from plain Lua 5.4 (libcurl transport), then
-- show the binding notification as the example merchant server received and acknowledged it.
--
-- Run by examples/demo.sh (`make demo`), which starts both servers and sets:
--   DWS_GATEWAY, DWS_CLIENT_ID, DWS_PRIVATE_KEY_FILE, DWS_PUBLIC_KEY_FILE (the DWS key),
--   DWS_CA_FILE (optional), MERCHANT_URL (the example merchant server),
--   DWS_JOURNAL (the binding journal the merchant server shares, e.g. sqlite:/path/journal.db),
--   DWS_SANDBOX_ADMIN (optional: the sandbox's http URL, to show how the delivery was answered)
--   and DWS_SANDBOX_ADMIN_TOKEN (this client's admin token in the sandbox's config)
local dws = require "dws"
local core = require "dws.core"

local function env(name, optional)
  local v = os.getenv(name)
  if (v == nil or v == "") and not optional then
    io.stderr:write("bind_card.lua: set ", name, " (examples/demo.sh does)\n")
    os.exit(2)
  end
  return v ~= "" and v or nil
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function say(fmt, ...)
  io.write(string.format(fmt, ...), "\n")
  io.flush()
end

local function step(n, title)
  say("\n%d. %s", n, title)
end

local function fail(what, err)
  say("   FAILED: %s: %s", what, tostring(err))
  os.exit(1)
end

local client = dws.client{
  client_id = env("DWS_CLIENT_ID"),
  private_key = read_file(env("DWS_PRIVATE_KEY_FILE")),
  dws_public_key = read_file(env("DWS_PUBLIC_KEY_FILE")),
  gateway = env("DWS_GATEWAY"),
  ca_file = env("DWS_CA_FILE", true),
  max_retries = 2,
  journal = env("DWS_JOURNAL", true),
}
local merchant_url = env("MERCHANT_URL")
local sandbox_admin = env("DWS_SANDBOX_ADMIN", true)
local sandbox_admin_token = env("DWS_SANDBOX_ADMIN_TOKEN", true)

local function get_json(url, headers)
  local res = client.transport:request{ method = "GET", url = url, headers = headers or {}, timeout = 5,
    connect_timeout = 2 }
  return res and res.status == 200 and dws.decode_json(res.body) or nil
end

local customer = { customerId = "2162878776333", env = { terminalType = "WEB", clientIp = "127.0.0.1" } }
-- The sandbox's always-binds VISA test card; nothing below prints it.
local demo_card = {
  cardNo = "4111111111111111", securityCode = "123", expiryYear = tostring(tonumber(os.date("!%Y")) + 3),
  expiryMonth = "12", instUserName = { firstName = "Ada", lastName = "Lovelace" },
  billingAddress = { region = "PH", city = "Manila", zipCode = "1000", address1 = "1 Demo Street" },
}

say("lua-dws demo: binding a card against the DWS sandbox at %s", env("DWS_GATEWAY"))

step(1, "Addable payment methods (consultAddablePaymentMethod)")
local consult, err = client:consult_addable_payment_method(customer)
if not consult then fail("consult", err) end
for _, option in ipairs(consult.paymentOptions or {}) do
  local detail = type(option.paymentOptionDetail) == "string" and dws.decode_json(option.paymentOptionDetail)
  local brands = {}
  local card = type(detail) == "table" and detail.card
  for _, b in ipairs(type(card) == "table" and card.supportCardBrands or {}) do
    brands[#brands + 1] = type(b) == "table" and b.cardBrand or tostring(b)
  end
  say("   %-12s enabled=%-5s brands=%s", tostring(option.paymentMethodType), tostring(option.enabled),
    #brands > 0 and table.concat(brands, ",") or "-")
end

step(2, "Bind the card (checked locally, cacheCard, addPaymentMethod)")
local outcome
outcome, err = client:bind_card{
  customerId = customer.customerId, env = customer.env, card = demo_card,
  referenceCustomerId = "demo-customer-0001",
}
if not outcome then fail("bind_card", err) end
say("   cached card: %s (%s), card token expires %s", outcome.mask, outcome.brand, tostring(outcome.expiryTime))
say("   binding:     %s, requestId %s (DWS has the request; the result comes by notification)",
  outcome.status, outcome.requestId)

step(3, "The binding notification at the merchant server (" .. merchant_url .. "/notify)")
-- Poll (bounded) until fn returns a value.
local function wait_for(fn, seconds)
  local deadline = core.monotonic() + seconds
  repeat
    local v = fn()
    if v then return v end
    core.sleep(0.1)
  until core.monotonic() > deadline
  return nil
end

local found = wait_for(function()
  local list = get_json(merchant_url .. "/notifications")
  for _, n in ipairs(type(list) == "table" and list.notifications or {}) do
    if n.requestId == outcome.requestId and n.outcome == "recorded" then return n end
  end
end, 20)
if not found then fail("notification", "none received for requestId " .. outcome.requestId .. " within 20 s") end
say("   received:    requestId %s for merchant customer %s", found.requestId, found.referenceCustomerId)
say("   card:        %s (%s), token %s", tostring(found.mask), tostring(found.brand), tostring(found.cardToken))
say("   verified:    DWS signature over the raw body, request time within tolerance; recorded once")
if sandbox_admin then
  -- The sandbox's own record of the delivery: how the merchant server answered it.
  local delivery = wait_for(function()
    local list = get_json(sandbox_admin .. "/__sandbox/deliveries?client_id=" .. env("DWS_CLIENT_ID"),
      { ["X-Sandbox-Admin-Token"] = sandbox_admin_token })
    for _, d in ipairs(type(list) == "table" and list or {}) do
      if d.requestId == outcome.requestId and d.acknowledged == true then return d end
    end
  end, 10)
  if not delivery then fail("acknowledgement", "the sandbox has no acknowledged delivery") end
  say("   answered:    HTTP %s, resultStatus S (delivery attempt %s, as the sandbox recorded it)",
    tostring(delivery.status), tostring(delivery.attempt))
end

step(4, "The binding, read back from the journal (client:binding)")
local bound = wait_for(function()
  local b = client:binding(outcome.requestId)
  return b and (b.state == "BOUND" or b.state == "FAILED") and b
end, 20)
if not bound then fail("journal", "the binding did not become final within 20 s") end
say("   state:       %s (was %s), final card token %s", bound.state, outcome.status, tostring(bound.cardToken))
say("\nDone.")
