-- The sandbox's launcher as a merchant meets it (`dws sandbox`, `dws-sandbox`; docs/sandbox.md
-- "Running it"), and faults as a spec arms them. Every sandbox here listens on free ports (flags or
-- the environment): the documented defaults are checked where they are resolved, never bound, since
-- other specs run at the same time.
local core = require "dws.core"
local curl = require "dws.curl"
local nginx = require "dws_sandbox.nginx"
local control = require "dws_sandbox.control"
local faults = require "dws_sandbox.faults"
local testing = require "dws.testing"

local ROOT = os.getenv("DWS_ROOT") or "."
local q = nginx.sh_quote

-- -> output (stdout and stderr), exit status
local function sh(cmd)
  local p = assert(io.popen("{ " .. cmd .. "\n} 2>&1; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)__rc=(%d+)%s*$")
  return body or out, tonumber(rc)
end

local function dws(args, env)
  return sh("env " .. (env or "") .. " lua5.4 " .. q(ROOT .. "/bin/dws") .. " " .. args)
end

local function launcher(args, env)
  return sh("env " .. (env or "") .. " lua5.4 " .. q(ROOT .. "/sandbox/bin/dws-sandbox") .. " " .. args)
end

describe("dws sandbox without --dir #nginx", function()
  it("starts, reports and stops the sandbox in the default directory", function()
    -- the default is /tmp/dws-sandbox-$USER: a USER of this test's own
    local user = "dwsspec" .. core.uuid4():sub(1, 8)
    local dir = "/tmp/dws-sandbox-" .. user
    local env = "-u DWS_SANDBOX_DIR USER=" .. user .. " DWS_SANDBOX_HTTP_PORT=0 DWS_SANDBOX_HTTPS_PORT=0"
    local started, start_rc = dws("sandbox start", env)
    local status, status_rc = dws("sandbox status", env)
    local _, stop_rc = dws("sandbox stop", env)
    nginx.rmdir(dir)
    assert.are.same({ 0, 0, 0 }, { start_rc, status_rc, stop_rc }, started .. status)
    assert.are.equal(dir, started:match(" dir=(%S+)"))
    assert.are.equal(dir, status:match("^running pid=%d+ .* dir=(%S+)"))
  end)
end)

describe("sandbox ports", function()
  it("default to the documented 12080 (http) and 12443 (https)", function()
    assert.are.same({ 12080, 12443 }, { control.ports{} })
  end)

  it("come from --http-port and --https-port", function()
    assert.are.same({ 20001, 20002 }, { control.ports{ http_port = "20001", https_port = "20002" } })
  end)

  it("are free ones with --free-ports (0)", function()
    assert.are.same({ 0, 0 }, { control.ports{ free_ports = true } })
  end)

  it("refuse a port that is not a number", function()
    local _, _, err = control.ports{ http_port = "80a" }
    assert.matches("--http-port", err, 1, true)
  end)

  it("are the ones the docs give", function()
    local doc = assert(nginx.read_file(ROOT .. "/docs/sandbox.md"))
    assert.truthy(doc:find("12080", 1, true) and doc:find("12443", 1, true))
  end)

  it("come from DWS_SANDBOX_HTTP_PORT when no flag is given #nginx", function()
    local dir = nginx.tmpdir("dws-sbports")
    local port = nginx.free_ports(1)[1]
    local out, rc = launcher("start --dir " .. q(dir), "DWS_SANDBOX_HTTP_PORT=" .. port .. " DWS_SANDBOX_HTTPS_PORT=0")
    launcher("stop --dir " .. q(dir))
    nginx.rmdir(dir)
    assert.are.same({ 0, tostring(port) }, { rc, out:match("^http=(%d+) ") }, out)
  end)
end)

describe("a sandbox start on a port in use #nginx", function()
  it("fails, naming the port and the way out", function()
    local a, b = nginx.tmpdir("dws-sbbusy"), nginx.tmpdir("dws-sbbusy")
    local ports = nginx.free_ports(2)
    local flags = " --http-port " .. ports[1] .. " --https-port " .. ports[2]
    local _, first = launcher("start --dir " .. q(a) .. flags)
    local out, second = launcher("start --dir " .. q(b) .. flags)
    launcher("stop --dir " .. q(a))
    launcher("stop --dir " .. q(b))
    nginx.rmdir(a)
    nginx.rmdir(b)
    assert.are.same({ 0, 1 }, { first, second })
    assert.matches("port[s]? " .. ports[1] .. "[^\n]* in use .*%-%-free%-ports", out)
  end)
end)

describe("dws-sandbox --config #nginx", function()
  it("prints the client the config serves, on start and in status", function()
    local dir = nginx.tmpdir("dws-sbconf")
    local _, pub = nginx.make_keypair(dir, "shop")
    local conf = dir .. "/my_config.lua"
    nginx.write_file(conf, "return { clients = { SANDBOX_MY_SHOP = { public_key = " ..
      string.format("%q", nginx.read_file(pub)) .. " } } }\n")
    local started, rc = launcher("start --free-ports --dir " .. q(dir .. "/sb") .. " --config " .. q(conf))
    local status = launcher("status --dir " .. q(dir .. "/sb"))
    local st = control.status(dir .. "/sb")
    launcher("stop --dir " .. q(dir .. "/sb"))
    nginx.rmdir(dir)
    assert.are.equal(0, rc, started)
    assert.are.same({ "SANDBOX_MY_SHOP", "SANDBOX_MY_SHOP", "SANDBOX_MY_SHOP" },
      { started:match("client_id=(%S+)"), status:match("client_id=(%S+)"), st.client_id })
  end)
end)

describe("docs/sandbox.md's config block #nginx", function()
  it("starts a sandbox as written (but for the key), serving its client", function()
    local doc = assert(nginx.read_file(ROOT .. "/docs/sandbox.md"))
    local block = assert(doc:match("\n```lua\n(return {\n  clients = .-)\n```"), "the config block")
    local dir = nginx.tmpdir("dws-sbdoc")
    local _, pub = nginx.make_keypair(dir, "shop")
    local i, j = block:find('"<PEM or bare base64>"', 1, true)
    nginx.write_file(dir .. "/config.lua", block:sub(1, i - 1) .. string.format("%q", nginx.read_file(pub)) ..
      block:sub(j + 1))
    local out, rc = launcher("start --free-ports --dir " .. q(dir .. "/sb") .. " --config " .. q(dir .. "/config.lua"))
    local http = out:match("http=(%d+)")
    local health = http and (sh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:" .. http ..
      "/__sandbox/health"))
    launcher("stop --dir " .. q(dir .. "/sb"))
    nginx.rmdir(dir)
    assert.are.same({ 0, "200", "SANDBOX_MY_SHOP" }, { rc, health, out:match("client_id=(%S+)") }, out)
  end)
end)

describe("sandbox help", function()
  it("dws-sandbox --help describes every option", function()
    local out = launcher("--help")
    local missing = {}
    for _, opt in ipairs{ "--dir", "--http-port", "--https-port", "--free-ports", "--config", "--foreground" } do
      if not out:find("\n  " .. opt:gsub("%p", "%%%0") .. "[^\n]*%a%a%a") then missing[#missing + 1] = opt end
    end
    assert.are.same({}, missing)
  end)

  it("dws sandbox start --help describes every option", function()
    local out = dws("sandbox start --help")
    local missing = {}
    for _, opt in ipairs{ "--dir", "--http-port", "--https-port", "--free-ports", "--config", "--foreground" } do
      -- argparse puts a long option's text on the next line
      if not out:find("\n%s+" .. opt:gsub("%p", "%%%0") .. "[^\n]*\n?%s+%u") then missing[#missing + 1] = opt end
    end
    assert.are.same({}, missing)
  end)

  it("dws sandbox --help describes start, stop and status", function()
    local out = dws("sandbox --help")
    local missing = {}
    for _, cmd in ipairs{ "start", "stop", "status" } do
      if not out:find("\n%s+" .. cmd .. "%s+%u") then missing[#missing + 1] = cmd end
    end
    assert.are.same({}, missing)
  end)
end)

describe("the sandbox's config file #nginx", function()
  it("is created 0600 whatever the umask", function()
    local dir = nginx.tmpdir("dws-sbmode")
    local out, rc = sh("umask 000 && lua5.4 " .. q(ROOT .. "/sandbox/bin/dws-sandbox") ..
      " start --free-ports --dir " .. q(dir))
    launcher("stop --dir " .. q(dir))
    local mode = sh("stat -c %a " .. q(dir .. "/sandbox_config.lua")):gsub("%s", "")
    nginx.rmdir(dir)
    assert.are.same({ 0, "600" }, { rc, mode }, out)
  end)

  it("and the keys: private 0600, public 0644, their directory 0700, under umask 000 (no key cache)", function()
    local dir = nginx.tmpdir("dws-sbkeys")
    -- one pair made afresh as the launcher makes it outside spec/run (without the key cache)
    local out, rc = sh("umask 000 && env -u DWS_KEY_CACHE LUA_PATH=" .. q(package.path) .. " KEYDIR=" ..
      q(dir .. "/keys") .. " lua5.4 -e " .. q("require('dws_sandbox.nginx').make_keypair(os.getenv('KEYDIR'), 'dws')"))
    local modes = sh("stat -c %a " .. q(dir .. "/keys") .. " " .. q(dir .. "/keys/dws_private.pem") .. " " ..
      q(dir .. "/keys/dws_public.pem"))
    nginx.rmdir(dir)
    assert.are.same({ 0, "700 600 644" }, { rc, (modes:gsub("%s+", " "):gsub(" $", "")) }, out)
  end)

  it("a key is not written through a link planted where it goes", function()
    local dir = nginx.tmpdir("dws-sbkeylink")
    nginx.mkdir(dir .. "/keys")
    sh("ln -s " .. q(dir .. "/stolen") .. " " .. q(dir .. "/keys/dws_private.pem"))
    local out, rc = launcher("start --free-ports --dir " .. q(dir))
    launcher("stop --dir " .. q(dir))
    local followed = nginx.read_file(dir .. "/stolen") ~= nil
    nginx.rmdir(dir)
    assert.are.same({ 1, false }, { rc, followed }, out)
    assert.matches("symbolic link", out, 1, true)
  end)

  it("is not written through a link planted where it goes", function()
    local dir = nginx.tmpdir("dws-sblink")
    sh("ln -s " .. q(dir .. "/elsewhere") .. " " .. q(dir .. "/sandbox_config.lua"))
    local out, rc = launcher("start --free-ports --dir " .. q(dir))
    launcher("stop --dir " .. q(dir))
    local followed = nginx.read_file(dir .. "/elsewhere") ~= nil
    nginx.rmdir(dir)
    assert.are.same({ 1, false }, { rc, followed }, out)
    assert.matches("symbolic link", out, 1, true)
  end)
end)

describe("sandbox faults #nginx", function()
  local sb, handle, key

  local function post(api, body)
    local path = "/ams/sandbox/api/v1/paymentMethods/" .. api
    local time = tostring(core.time_ms())
    local sig = core.signature_header(core.sign(key, "POST", path, sb.merchant.client_id, time, body), "1")
    return handle:request(sb.https_url .. path, { "Content-Type: application/json; charset=UTF-8",
      "Client-Id: " .. sb.merchant.client_id, "Request-Time: " .. time, "Signature: " .. sig }, body, 10, 5)
  end

  setup(function()
    sb = assert(testing.start())
    key = assert(core.private_key(sb.merchant.private_key))
    handle = curl.new{ max_response_bytes = 1024 * 1024, ca_file = sb.ca_file }
  end)

  teardown(function()
    if handle then handle:close() end
    if sb then sb:stop() end
  end)

  before_each(function() sb:reset() end)

  it("an unknown one is refused, the message listing the real ones", function()
    local ok, err = pcall(sb.fault, sb, "drop")
    assert.is_false(ok)
    local missing = {}
    for _, name in ipairs(faults.names()) do
      if not tostring(err):find(name, 1, true) then missing[#missing + 1] = name end
    end
    assert.are.same({}, missing)
  end)

  it("aimed at addPaymentMethod spares the other APIs and hits addPaymentMethod once", function()
    sb:fault("http_503", 1, { api = "addPaymentMethod" })
    local consult = post("consultAddablePaymentMethod", '{"customerId":"2162878776333","env":{"terminalType":"WEB"}}')
    local add = '{"requestId":"aim-1","customerId":"2162878776333","env":{"terminalType":"WEB"},' ..
      '"paymentMethodDetail":{"paymentMethodDetailType":"CARD","card":{"cardToken":"PYMTnone"}}}'
    local first, second = post("addPaymentMethod", add), post("addPaymentMethod", add)
    assert.are.same({ 200, 503, 200 }, { consult, first, second })
  end)

  it("aimed at an API that does not exist is refused", function()
    assert.has_error(function() sb:fault("reset", 1, { api = "addCard" }) end)
  end)

  it("named in dws.testing's doc all exist", function()
    local src = assert(nginx.read_file(ROOT .. "/lua/dws/testing.lua"))
    local line = assert(src:match("@tparam string name ([^\n]*)"))
    local unknown = {}
    for name in line:gmatch('`"([%w_]+)"`') do
      if not faults.KINDS[name] then unknown[#unknown + 1] = name end
    end
    assert.are.same({}, unknown)
  end)

  it("in docs/sandbox.md's table are exactly the sandbox's", function()
    local doc = assert(nginx.read_file(ROOT .. "/docs/sandbox.md"))
    local section = assert(doc:match("\n### Faults\n(.-)\n#"), "docs/sandbox.md has a Faults section")
    local named = {}
    for row in section:gmatch("\n| ([^|]+) |") do
      for name in row:gmatch("`([%w_]+)`") do named[#named + 1] = name end
    end
    table.sort(named)
    assert.are.same(faults.names(), named)
  end)
end)
