-- #nginx (the sandbox, `dws listen` and the script are child processes) A plain Lua 5.4 script
-- binds the test card and learns how the binding ended: `dws listen --journal sqlite:...` receives
-- the sandbox's notification, verifies and journals it, forwards it as it came to the merchant's
-- endpoint, and the script's client:wait_binding on the same journal returns BOUND with the token.
local dws = require "dws"
local nginx = require "dws_sandbox.nginx"
local files = require "helpers.files"
local sandbox = require "helpers.sandbox"
local httpd = require "helpers.httpd"
local cli = require "helpers.cli"

local ROOT = os.getenv("DWS_ROOT")
local q = nginx.sh_quote

local SCRIPT = [[
local dws = require "dws"
local function read(path) local f = assert(io.open(path)); local s = f:read("a"); f:close(); return s end
local client = dws.client{ client_id = arg[1], private_key = read(arg[2]), dws_public_key = read(arg[3]),
  gateway = arg[4], ca_file = arg[5], journal = "sqlite:" .. arg[6] }
local outcome = assert(client:bind_card{ customerId = "2162878776333", env = { terminalType = "WEB" },
  card = { cardNo = "4111111111111111", securityCode = "123", expiryMonth = "12",
           expiryYear = tostring(tonumber(os.date("!%Y")) + 1),
           instUserName = { firstName = "Ada", lastName = "Lovelace" } } })
local b, err = client:wait_binding(outcome.requestId, { timeout = 20 })
print(outcome.requestId, b and b.status or tostring(err), b and b.cardToken)
]]

describe("dws listen #nginx", function()
  local sb, srv, dir, pid
  local script_out, listen_out, listen_rc, url_after
  setup(function()
    sb = assert(sandbox.start{ notify_scale = 0.001 })
    srv = assert(httpd.start{ locations = cli.endpoint_location("/shop/notify", sb.merchant.client_id,
      sb.merchant.private_key, sb.dws_public_key) })
    dir = nginx.tmpdir("dws-listen")
    files.write(dir .. "/bind.lua", SCRIPT)
    files.write(dir .. "/dws_public.pem", sb.dws_public_key_pem)
    files.write(dir .. "/merchant.pem", sb.merchant.private_key)
    local journal = dir .. "/journal.db"
    -- The listener in the background: its pid, then its exit status, in files.
    os.execute("(lua5.4 " .. q(ROOT .. "/bin/dws") .. " listen --sandbox " .. q(sb.dir) .. " --journal "
      .. q("sqlite:" .. journal) .. " --forward-to " .. q(srv:url("/shop/notify")) .. " --count 2 >"
      .. q(dir .. "/listen.out") .. " 2>" .. q(dir .. "/listen.err") .. " </dev/null & echo $! >" .. q(dir .. "/pid")
      .. "; wait $!; echo $? >" .. q(dir .. "/rc") .. ") &")
    local ready = sb:wait(function()
      local text = nginx.read_file(dir .. "/listen.out")
      return text and text:find("ready", 1, true)
    end, 20)
    pid = tonumber(nginx.read_file(dir .. "/pid"))
    assert(ready, "dws listen did not start: " .. tostring(nginx.read_file(dir .. "/listen.err")))
    local p = io.popen("LUA_PATH=" .. q(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;") .. " LUA_CPATH="
      .. q(ROOT .. "/build/5.4/?.so;;") .. " lua5.4 " .. q(dir .. "/bind.lua") .. " " .. table.concat({
        q(sb.merchant.client_id), q(dir .. "/merchant.pem"), q(dir .. "/dws_public.pem"), q(sb.https_url),
        q(sb.ca_file), q(journal) }, " ") .. " 2>&1")
    script_out = p:read("a")
    p:close()
    -- The same notification again: the second delivery, which --count waits for.
    local id = script_out:match("^(%S+)\t")
    if id then sb:admin("POST", "notifications/resend", { requestId = id }) end
    -- The shell creates the file before it writes the status: wait for the digits.
    listen_rc = tonumber(sb:wait(function() return (nginx.read_file(dir .. "/rc") or ""):match("^%d+\n") end, 10))
    listen_out = nginx.read_file(dir .. "/listen.out") or ""
    url_after = sb:admin("GET", "notify_url?client_id=" .. sb.merchant.client_id, nil,
      { "X-Sandbox-Admin-Token: " .. sb.admin_tokens[sb.merchant.client_id] }).notify_url
  end)
  teardown(function()
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    if srv then srv:stop() end
    if sb then sb:stop() end
    if dir then nginx.rmdir(dir) end
  end)

  it("wait_binding in a plain Lua 5.4 script returns BOUND with the final token of the notification", function()
    local id, status, token = script_out:match("^(%S+)\t(%S+)\t(%S+)\n$")
    assert.truthy(id, script_out)
    local d = assert(sb:delivery(id))
    assert.are.same({ "BOUND", dws.decode_json(d.body).paymentMethodDetail.card.cardToken }, { status, token })
  end)

  it("acknowledged the sandbox's delivery with the exact acknowledgement", function()
    local id = script_out:match("^(%S+)")
    local d = assert(sb:delivery(id))
    assert.are.same({ 200, require("dws.notification").ACK_BODY }, { d.status, d.answer })
  end)

  it("forwarded the request as it came: the merchant's endpoint verified and acknowledged it", function()
    assert.truthy(listen_out:find("forwarded: HTTP 200 acknowledged", 1, true), listen_out)
  end)

  it("printed the delivery masked: no card number, the mask", function()
    assert.are.same({ nil, true }, { listen_out:find("4111111111111111", 1, true),
      listen_out:find("411111******1111", 1, true) ~= nil })
  end)

  it("acknowledged the repeat without handling it again (the de-dup store on the journal's SQLite)", function()
    assert.truthy(listen_out:find("-> 200 acknowledged (a repeat: already processed", 1, true), listen_out)
  end)

  it("stopped after --count deliveries with status 0 and pointed the client back", function()
    assert.are.same({ 0, dws.null }, { listen_rc, url_after })
  end)

  describe("running without --count", function()
    local idir, ipid, before, during
    setup(function()
      idir = nginx.tmpdir("dws-listen-int")
      before = sb:notify_url("http://127.0.0.1:9/before")
      os.execute("(lua5.4 " .. q(ROOT .. "/bin/dws") .. " listen --sandbox " .. q(sb.dir) .. " >"
        .. q(idir .. "/out") .. " 2>&1 </dev/null & echo $! >" .. q(idir .. "/pid") .. "; wait $!; echo $? >"
        .. q(idir .. "/rc") .. ") &")
      assert(sb:wait(function() return (nginx.read_file(idir .. "/out") or ""):find("ready", 1, true) end, 20))
      ipid = tonumber(nginx.read_file(idir .. "/pid"))
      during = sb:notify_url("http://127.0.0.1:9/ignored") -- what listen set, put back at once
      sb:notify_url(during)
    end)
    teardown(function()
      if ipid then os.execute("kill " .. ipid .. " 2>/dev/null") end
      nginx.rmdir(idir)
    end)

    it("refuses (401) a notification not signed with the sandbox's DWS key, and says so", function()
      local other = require("helpers.keys").pair("other")
      files.write(idir .. "/other.pem", other)
      local status = cli.run("notify send " .. q(during) .. " --dws-private-key " .. q(idir .. "/other.pem")
        .. " --client-id " .. sb.merchant.client_id)
      local out = nginx.read_file(idir .. "/out") or ""
      assert.are.same({ 1, true }, { status, out:find("-> 401 refused", 1, true) ~= nil }, out)
    end)

    it("on Ctrl-C (SIGINT) points the client back where it was and exits 130", function()
      os.execute("kill -INT " .. ipid)
      local rc = sb:wait(function() return (nginx.read_file(idir .. "/rc") or ""):match("^%d+\n") end, 10)
      local after = sb:notify_url(false)
      assert.are.same({ nil, true, "130\n", "http://127.0.0.1:9/before" },
        { before, during:find("^http://127%.0%.0%.1:%d+/notify$") ~= nil, rc, after })
    end)
  end)
end)
