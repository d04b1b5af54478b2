-- The challenge card end to end in a real browser: bind_card gets ACTION_REQUIRED, headless
-- Chromium (driven over WebDriver by Debian's chromedriver) opens the sandbox's challenge page,
-- types the one-time code into the form and submits it; the sandbox notifies the example merchant
-- server (examples/openresty: handle_notification over a SQLite journal shared with this spec's
-- client), and sends the browser back to the shop's redirectUrl. The binding then reads BOUND (or
-- FAILED) through client:binding, as a merchant would read it.
-- Tagged #nginx (run under one busted flavour): what is under test runs outside the busted process
-- (the challenge page and its notification in the sandbox, the browser, the merchant server);
-- bind_card and the journal's reads run under both flavours in their own specs.
local dws = require "dws"
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local control = require "dws_sandbox.control"
local sandbox = require "helpers.sandbox"
package.path = os.getenv("DWS_ROOT") .. "/examples/?.lua;" .. package.path
local merchant_server = require "merchant_server"

local ELEMENT = "element-6066-11e4-a52e-4f735466cecf" -- the W3C WebDriver element key

local dir, sb, client, shop_port, driver_port, driver_pid, server, session

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

-- The shop's page the customer comes back to (redirectUrl).
local function start_shop()
  local conf = nginx.preamble(dir .. "/shop") .. [[
events { worker_connections 64; }
http {
  access_log off;
  server {
    listen 127.0.0.1:]] .. shop_port .. [[;
    location = /return { default_type text/html; return 200 "<h1>Back at the shop</h1>"; }
  }
}
]]
  return nginx.start(dir .. "/shop", conf, { shop_port }, 10)
end

-- The binding as the journal has it once the notification has been handled (final), or nil.
local function final_binding(request_id)
  return sb:wait(function()
    local b = client:binding(request_id)
    return b and (b.state == "BOUND" or b.state == "FAILED") and b
  end, 30)
end

-- One headless Chromium for the file (starting one costs seconds of CPU), its own profile
-- directory; each case starts without cookies.
local function new_session()
  local created = wd("POST", "/session", { capabilities = { alwaysMatch = {
    browserName = "chrome",
    ["goog:chromeOptions"] = { binary = "/usr/bin/chromium",
      args = { "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--user-data-dir=" .. dir .. "/chrome-" .. core.uuid4() } },
  } } })
  return assert(created.sessionId, "no WebDriver session")
end

-- Open url in the headless Chromium, type otp into #otp, press #verify, wait until the page is
-- the merchant's. -> the URL the browser ended on
local function browse_and_type(id, url, otp, expect_prefix)
  wd("DELETE", "/session/" .. id .. "/cookie")
  wd("POST", "/session/" .. id .. "/url", { url = url })
  local input = wd("POST", "/session/" .. id .. "/element", { using = "css selector", value = "#otp" })[ELEMENT]
  wd("POST", "/session/" .. id .. "/element/" .. input .. "/value", { text = otp })
  local button = wd("POST", "/session/" .. id .. "/element", { using = "css selector", value = "#verify" })[ELEMENT]
  wd("POST", "/session/" .. id .. "/element/" .. button .. "/click", {})
  return sb:wait(function()
    local now = wd("GET", "/session/" .. id .. "/url")
    return type(now) == "string" and now:sub(1, #expect_prefix) == expect_prefix and now
  end, 30)
end

describe("the challenge card in headless Chromium #nginx", function()
  setup(function()
    dir = nginx.tmpdir("dws-browser")
    local ports = nginx.free_ports(3)
    local merchant_port
    shop_port, driver_port, merchant_port = ports[1], ports[2], ports[3]
    assert(start_shop())
    local journal = "sqlite:" .. dir .. "/journal.db"
    sb = assert(sandbox.start{ notify_scale = 0.001, notify_url = "http://127.0.0.1:" .. merchant_port .. "/notify" })
    nginx.write_file(dir .. "/merchant_private.pem", sb.merchant.private_key, "600")
    server = assert(merchant_server.start{
      dir = dir .. "/merchant", port = merchant_port, gateway = sb.http_url, client_id = sb.merchant.client_id,
      private_key_file = dir .. "/merchant_private.pem", dws_public_key_file = sb.dws_public_key_file,
      journal = journal,
    })
    client = dws.client{ client_id = sb.merchant.client_id, private_key = sb.merchant.private_key,
                         dws_public_key = sb.dws_public_key, gateway = sb.http_url, journal = journal }
    driver_pid = tonumber(sh("chromedriver --port=" .. driver_port .. " >" .. nginx.sh_quote(dir .. "/driver.log") ..
      " 2>&1 & echo $!"))
    assert(sb:wait(function()
      local out = sh("curl -s http://127.0.0.1:" .. driver_port .. "/status")
      local t = core.json_decode(out)
      return t and t.value and t.value.ready
    end, 20), "chromedriver did not start")
    session = new_session()
  end)

  teardown(function()
    if session then pcall(wd, "DELETE", "/session/" .. session) end
    if driver_pid then nginx.run("kill " .. driver_pid .. " 2>/dev/null") end
    if server then server:stop() end
    if sb then sb:stop() end
    if dir then control.stop(dir .. "/shop") end
    nginx.rmdir(dir)
  end)

  local function bind(request_id)
    local return_url = "http://127.0.0.1:" .. shop_port .. "/return?binding=" .. request_id
    local outcome = assert(client:bind_card{
      requestId = request_id, customerId = "2162878776333", referenceCustomerId = "shop-42",
      env = { terminalType = "WEB" }, redirectUrl = return_url,
      card = { cardNo = "4000056655665556", securityCode = "123", expiryYear = "2099", expiryMonth = "07",
               instUserName = { firstName = "Ada", lastName = "Lovelace" } },
    })
    assert.are.equal("ACTION_REQUIRED", outcome.status)
    return outcome, return_url
  end

  it("binds with the right OTP: the journal reads BOUND with a final token, browser back at redirectUrl", function()
    local outcome, return_url = bind("browser-ok")
    local landed = browse_and_type(session, outcome.redirectUrl, "123456", return_url)
    local b = final_binding("browser-ok")
    assert.are.same({ return_url, "BOUND", true },
      { landed, b and b.state, type(b and b.cardToken) == "string" and b.cardToken:find("^ALIPAY") == 1 })
  end)

  it("fails with a wrong OTP: the journal reads FAILED without a token, browser back at redirectUrl", function()
    local outcome, return_url = bind("browser-bad")
    local landed = browse_and_type(session, outcome.redirectUrl, "999999", return_url)
    local b = final_binding("browser-bad")
    assert.are.same({ return_url, "FAILED", "PROCESS_FAIL", nil },
      { landed, b and b.state, b and b.resultCode, b and b.cardToken })
  end)
end)
