-- The challenge card end to end in a real browser: bind_card gets ACTION_REQUIRED, headless
-- Chromium (driven over WebDriver by Debian's chromedriver) opens the sandbox's challenge page,
-- types the one-time code into the form and submits it; the sandbox notifies the merchant's notify
-- URL and sends the browser back to the merchant's redirectUrl.
local dws = require "dws"
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local control = require "dws_sandbox.control"
local sandbox = require "helpers.sandbox"

local ELEMENT = "element-6066-11e4-a52e-4f735466cecf" -- the W3C WebDriver element key

local dir, sb, client, merchant_port, driver_port, driver_pid

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

-- One JSON request to chromedriver. -> decoded "value"
local function wd(method, path, body)
  local args = "curl -s --max-time 60 -X " .. method .. " -H 'Content-Type: application/json'"
  if body then args = args .. " --data-binary " .. nginx.sh_quote(assert(core.json_encode(body, false))) end
  local out = sh(args .. " " .. nginx.sh_quote("http://127.0.0.1:" .. driver_port .. path))
  local t = core.json_decode(out)
  assert(type(t) == "table", "chromedriver: " .. out)
  return t.value
end

-- The merchant: /notify keeps every delivery (headers and raw body) and acknowledges it;
-- /return is the page the customer comes back to.
local function start_merchant()
  local conf = nginx.preamble(dir .. "/merchant") .. [[
events { worker_connections 64; }
http {
]] .. nginx.lua_paths() .. [[
  access_log off;
  lua_shared_dict recv 4m;
  server {
    listen 127.0.0.1:]] .. merchant_port .. [[;
    location = /notify {
      content_by_lua_block {
        local core = require "dws.core"
        ngx.req.read_body()
        local h = ngx.req.get_headers()
        local d = ngx.shared.recv
        local n = d:incr("n", 1, 0)
        d:set("r" .. n, core.json_encode({ client_id = h["client-id"], time = h["request-time"],
          signature = h["signature"], body = ngx.req.get_body_data() or "" }, false))
        ngx.header["Content-Type"] = "application/json"
        ngx.print('{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}')
      }
    }
    location = /return { default_type text/html; return 200 "<h1>Back at the shop</h1>"; }
    location = /log {
      content_by_lua_block {
        local d = ngx.shared.recv
        local out = {}
        for i = 1, d:get("n") or 0 do out[#out + 1] = d:get("r" .. i) end
        ngx.print("[" .. table.concat(out, ",") .. "]")
      }
    }
  }
}
]]
  return nginx.start(dir .. "/merchant", conf, { merchant_port }, 10)
end

-- Notifications the merchant received for request_id, each checked against the DWS key.
local function received(request_id)
  local list = core.json_decode(sh("curl -s http://127.0.0.1:" .. merchant_port .. "/log")) or {}
  local key = assert(core.public_key(sb.dws_public_key))
  local out = {}
  for _, rec in ipairs(list) do
    local n = core.json_decode(rec.body)
    local parsed = core.parse_signature_header(rec.signature or "")
    if n and n.requestId == request_id and parsed and
       core.verify(key, "POST", "/notify", rec.client_id, rec.time, rec.body, parsed.signature) then
      out[#out + 1] = n
    end
  end
  return out
end

-- Open url in a fresh headless Chromium, type otp into #otp, press #verify, wait until the page
-- is the merchant's. -> the URL the browser ended on
local function browse_and_type(url, otp, expect_prefix)
  local session = wd("POST", "/session", { capabilities = { alwaysMatch = {
    browserName = "chrome",
    ["goog:chromeOptions"] = { binary = "/usr/bin/chromium",
      args = { "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--user-data-dir=" .. dir .. "/chrome-" .. core.uuid4() } },
  } } })
  local id = assert(session.sessionId, "no WebDriver session")
  local ok, result = pcall(function()
    wd("POST", "/session/" .. id .. "/url", { url = url })
    local input = wd("POST", "/session/" .. id .. "/element", { using = "css selector", value = "#otp" })[ELEMENT]
    wd("POST", "/session/" .. id .. "/element/" .. input .. "/value", { text = otp })
    local button = wd("POST", "/session/" .. id .. "/element", { using = "css selector", value = "#verify" })[ELEMENT]
    wd("POST", "/session/" .. id .. "/element/" .. button .. "/click", {})
    return sb:wait(function()
      local now = wd("GET", "/session/" .. id .. "/url")
      return type(now) == "string" and now:sub(1, #expect_prefix) == expect_prefix and now
    end, 30)
  end)
  wd("DELETE", "/session/" .. id)
  assert(ok, result)
  return result
end

describe("the challenge card in headless Chromium", function()
  setup(function()
    dir = nginx.tmpdir("dws-browser")
    local ports = nginx.free_ports(2)
    merchant_port, driver_port = ports[1], ports[2]
    assert(start_merchant())
    sb = assert(sandbox.start{ notify_scale = 0.001, notify_url = "http://127.0.0.1:" .. merchant_port .. "/notify" })
    client = dws.client{ client_id = sb.merchant.client_id, private_key = sb.merchant.private_key,
                         dws_public_key = sb.dws_public_key, gateway = sb.http_url }
    driver_pid = tonumber(sh("chromedriver --port=" .. driver_port .. " >" .. nginx.sh_quote(dir .. "/driver.log") ..
      " 2>&1 & echo $!"))
    assert(sb:wait(function()
      local out = sh("curl -s http://127.0.0.1:" .. driver_port .. "/status")
      local t = core.json_decode(out)
      return t and t.value and t.value.ready
    end, 20), "chromedriver did not start")
  end)

  teardown(function()
    if driver_pid then nginx.run("kill " .. driver_pid .. " 2>/dev/null") end
    if sb then sb:stop() end
    if dir then control.stop(dir .. "/merchant") end
    nginx.rmdir(dir)
  end)

  local function bind(request_id)
    local return_url = "http://127.0.0.1:" .. merchant_port .. "/return?binding=" .. request_id
    local outcome = assert(client:bind_card{
      requestId = request_id, customerId = "2162878776333", referenceCustomerId = "shop-42",
      env = { terminalType = "WEB" }, redirectUrl = return_url,
      card = { cardNo = "4000056655665556", securityCode = "123", expiryYear = "2099", expiryMonth = "07",
               instUserName = { firstName = "Ada", lastName = "Lovelace" } },
    })
    assert.are.equal("ACTION_REQUIRED", outcome.status)
    return outcome, return_url
  end

  it("binds with the right OTP: BOUND notification with a final token, browser back at redirectUrl", function()
    local outcome, return_url = bind("browser-ok")
    local landed = browse_and_type(outcome.redirectUrl, "123456", return_url)
    local n = sb:wait(function() return received("browser-ok")[1] end)
    assert.are.same({ return_url, "shop-42", true, true },
      { landed, n.referenceCustomerId, n.result == nil, n.paymentMethodDetail.card.cardToken:find("^ALIPAY") == 1 })
  end)

  it("fails with a wrong OTP: FAILED notification without a token, browser back at redirectUrl", function()
    local outcome, return_url = bind("browser-bad")
    local landed = browse_and_type(outcome.redirectUrl, "999999", return_url)
    local n = sb:wait(function() return received("browser-bad")[1] end)
    assert.are.same({ return_url, "F", "PROCESS_FAIL", nil },
      { landed, n.result.resultStatus, n.result.resultCode, n.paymentMethodDetail.card.cardToken })
  end)
end)
