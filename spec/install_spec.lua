-- The README's install section, run as written: its ```sh block, from the source directory, in a
-- fresh shell (`env -i`: no LUA_PATH, no DWS_ROOT) whose $HOME is a new directory, so its
-- `T=$HOME/dws-tree` is a fresh tree. The environment that block leaves is saved, and every later step
-- runs in it, from a directory outside the checkout: the rocks' own commands, a plain Lua script, the
-- README's OpenResty synopsis on the tree's LuaJIT build, the README's merchant busted spec and
-- `make docs`. Tagged #install (and #nginx: it runs once per suite).
--
-- A step is `shell(cmd)` (-> output, exit status); a plain Lua 5.4 script is `script(name, source,
-- args)`: add steps with them.
local nginx = require "dws_sandbox.nginx"

local ROOT = os.getenv("DWS_ROOT")
local q = nginx.sh_quote

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"exit=$?\"")
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.-)exit=(%d+)\n?$")
  return body, tonumber(code)
end

-- The README's fenced block of the given language that follows the heading, first one after it.
local function readme_block(heading, lang, first_line)
  local readme = assert(nginx.read_file(ROOT .. "/README.md"))
  local at = assert(readme:find("\n" .. heading .. "\n", 1, true), "README has no " .. heading)
  for block in readme:sub(at):gmatch("\n```" .. lang .. "\n(.-\n)```") do
    if not first_line or block:sub(1, #first_line) == first_line then return block end
  end
  error("README: no ```" .. lang .. " block after " .. heading)
end

describe("the README's install section #install #nginx", function()
  local home, tree, work, envfile, sbdir

  -- A fresh shell: only HOME, USER, PATH (and the suite's key cache, which only saves RSA key time).
  local function fresh(cmd)
    local keep = { "HOME=" .. q(home), "USER=" .. q(os.getenv("USER") or "root"), "PATH=" .. q(os.getenv("PATH")) }
    if os.getenv("DWS_KEY_CACHE") then keep[#keep + 1] = "DWS_KEY_CACHE=" .. q(os.getenv("DWS_KEY_CACHE")) end
    -- free ports, not the sandbox's documented defaults: other specs run at the same time
    keep[#keep + 1] = "DWS_SANDBOX_HTTP_PORT=0 DWS_SANDBOX_HTTPS_PORT=0"
    -- the README's default sandbox directory, this run's own
    keep[#keep + 1] = "DWS_SANDBOX_DIR=" .. q(home .. "/default-sandbox")
    return sh("env -i " .. table.concat(keep, " ") .. " sh -c " .. q(cmd))
  end

  -- A step in the shell the install section leaves, from the merchant's directory.
  local function shell(cmd)
    return fresh(". " .. q(envfile) .. " && cd " .. q(work) .. " && " .. cmd)
  end

  local function script(name, source, args)
    nginx.write_file(work .. "/" .. name, source)
    return shell("lua5.4 " .. name .. (args and " " .. args or ""))
  end

  lazy_setup(function()
    home = nginx.tmpdir("dws-home")
    work = nginx.tmpdir("dws-merchant")
    tree = home .. "/dws-tree"
    envfile = home .. "/install.env"
    sbdir = work .. "/sandbox"
    local block = readme_block("## Installing: the two rocks", "sh")
    local out, code = fresh("set -e; cd " .. q(ROOT) .. "\n" .. block .. "export -p > " .. q(envfile))
    assert(code == 0, "the install section failed:\n" .. out)
  end)

  lazy_teardown(function()
    if sbdir then shell("dws-sandbox stop --dir " .. q(sbdir)) end
    if work then nginx.stop(work .. "/synopsis") end

    if not os.getenv("KEEP") then nginx.rmdir(work) nginx.rmdir(home) end
  end)

  it("leaves Lua 5.4's paths in the _5_4 variables, which Lua 5.1 and LuaJIT never read", function()
    local out = shell('echo "LUA_PATH=${LUA_PATH-unset} LUA_CPATH=${LUA_CPATH-unset}"; ' ..
      'echo "$LUA_CPATH_5_4" | grep -c ' .. q(tree .. "/lib/lua/5.4/?.so"))
    assert.are.equal("LUA_PATH=unset LUA_CPATH=unset\n1\n", out)
  end)

  it("the dws-openresty rock puts the LuaJIT build of dws.core in $T/lib/lua/5.1", function()
    local out = shell("luajit -e " .. q("package.path = '" .. tree .. "/share/lua/5.1/?.lua;" .. tree ..
      "/share/lua/5.1/?/init.lua;' .. package.path; package.cpath = '" .. tree .. "/lib/lua/5.1/?.so'; " ..
      "local dws = require 'dws'; print(package.searchpath('dws.core', package.cpath), dws.VERSION ~= nil)"))
    assert.are.equal(tree .. "/lib/lua/5.1/dws/core.so\ttrue\n", out)
  end)

  it("the tree holds two builds of dws.core, the SDK's for each Lua: none from the sandbox rock", function()
    local out = shell("cd " .. q(tree) .. " && find . -name core.so | sort")
    assert.are.equal("./lib/lua/5.1/dws/core.so\n./lib/lua/5.4/dws/core.so\n", out)
  end)

  it("dws keygen writes a PKCS#8 private key and prints the bare base64 public key", function()
    local out, code = shell("dws keygen")
    assert.are.equal(0, code, out)
    assert.matches("^%-%-%-%-%-BEGIN PRIVATE KEY%-%-%-%-%-", nginx.read_file(work .. "/merchant_private.pem") or "")
  end)

  it("the installed launcher starts the sandbox and prints its ports and CA file", function()
    local out, code = shell("dws-sandbox start --dir " .. q(sbdir))
    assert.are.equal(0, code, out)
    assert.matches("http=%d+ https=%d+ dir=.* ca_file=.*/certs/ca%.pem", out)
  end)

  it("the sandbox's nginx loads the tree's LuaJIT build and names every directory", function()
    local conf = nginx.read_file(sbdir .. "/conf/nginx.conf") or ""
    assert.are.equal(tree .. "/lib/lua/5.1/?.so", conf:match('lua_package_cpath "([^;"]*)'))
  end)

  it("dws bind binds a card through the sandbox", function()
    local out, code = shell("dws bind --sandbox " .. q(sbdir))
    assert.are.equal(0, code, out)
    assert.matches("addPaymentMethod%s+S SUCCESS", out)
  end)

  it("a plain Lua script binds a card", function()
    local out, code = script("bind.lua", [[
local st = assert(require("dws_sandbox.control").status(arg[1]))
local function read(p) local f = assert(io.open(p, "rb")) local s = f:read("*a") f:close() return s end
local client = require("dws").client{ client_id = st.client_id, private_key = read(st.merchant_private_key),
  dws_public_key = read(st.dws_public_key), gateway = "https://127.0.0.1:" .. st.https_port, ca_file = st.ca }
local outcome, err = client:bind_card{ customerId = "2162878776333", env = { terminalType = "WEB" },
  card = { cardNo = "4111111111111111", securityCode = "123", expiryMonth = "12",
           expiryYear = tostring(tonumber(os.date("!%Y")) + 1),
           instUserName = { firstName = "Ada", lastName = "Lovelace" } } }
assert(outcome, tostring(err))
print("mask=" .. outcome.mask)
]], q(sbdir))
    assert.are.equal(0, code, out)
    assert.matches("mask=411111%*%*%*%*%*%*1111", out)
  end)

  it("the README's first binding: the sandbox with no arguments, dws listen, wait_binding says BOUND", function()
    local first = "### A first binding, from a plain Lua script"
    nginx.write_file(work .. "/first_binding.lua", readme_block(first, "lua", "-- first_binding.lua"))
    local out, code = shell(readme_block(first, "sh"))
    shell("dws-sandbox stop")
    assert.are.equal(0, code, out)
    assert.matches("\nBOUND\tALIPAY%S+\n$", out)
  end)

  it("dws notify send posts a signed notification to a merchant endpoint and reads its ack", function()
    -- A tiny nginx as the merchant's endpoint: it answers the acknowledgement DWS expects.
    local prefix = work .. "/merchant"
    local port = nginx.free_ports(1)[1]
    local conf = "daemon on;\nworker_processes 1;\npid " .. prefix .. "/logs/nginx.pid;\nerror_log " .. prefix ..
      "/logs/error.log;\nevents {}\nhttp {\n access_log off;\n server {\n  listen 127.0.0.1:" .. port ..
      ";\n  location /notify { default_type application/json; return 200 " ..
      "'{\"result\":{\"resultStatus\":\"S\",\"resultCode\":\"SUCCESS\",\"resultMessage\":\"success\"}}'; }\n }\n}\n"
    assert(nginx.start(prefix, conf, { port }, 30))
    local out, code = shell("dws notify send http://127.0.0.1:" .. port .. "/notify" ..
      " --client-id SANDBOX_DEMO_MERCHANT --dws-private-key " .. q(sbdir .. "/keys/dws_private.pem"))
    nginx.stop(prefix)
    assert.are.equal(0, code, out)
  end)

  it("the README's OpenResty synopsis, started on the tree, binds a card through nginx", function()
    local prefix = work .. "/synopsis"
    local port = nginx.free_ports(1)[1]
    local https = (nginx.read_file(sbdir .. "/ports") or ""):match("https=(%d+)")
    -- Workers (nobody, when nginx starts as root) read the CA file and $T themselves: the README's
    -- `chmod o+x "$HOME"` for $T, and the same for the merchant's directory holding the CA file.
    assert(select(2, shell('chmod o+x "$HOME"')) == 0)
    assert(nginx.run("chmod 711 " .. q(work) .. " && mkdir -p " .. q(prefix .. "/logs") ..
      " && install -m 644 " .. q(sbdir .. "/certs/ca.pem") .. " " .. q(work .. "/ca.pem")))
    local conf = assert(nginx.read_file(ROOT .. "/examples/openresty/synopsis.conf"))
    for name, value in pairs{ TREE = tree, PORT = port, CLIENT_ID = "SANDBOX_DEMO_MERCHANT",
        PRIVATE_KEY_FILE = sbdir .. "/keys/merchant_private.pem",
        DWS_PUBLIC_KEY_FILE = sbdir .. "/keys/dws_public.pem",
        GATEWAY = "https://127.0.0.1:" .. tostring(https), GATEWAY_NAME = "localhost", CA_FILE = work .. "/ca.pem",
        RESOLVER = "127.0.0.1" } do
      conf = conf:gsub("%${" .. name .. "}", (tostring(value):gsub("%%", "%%%%")))
    end
    nginx.write_file(prefix .. "/synopsis.conf", conf)
    local out, code = shell("nginx -p " .. q(prefix) .. " -c " .. q(prefix .. "/synopsis.conf") ..
      " -e " .. q(prefix .. "/logs/error.log") .. " && curl -s -X POST --data " ..
      q('{"customerId":"2162878776333","env":{"terminalType":"WEB"},"card":{"cardNo":"4111111111111111",' ..
        '"securityCode":"123","expiryMonth":"12","expiryYear":"' .. (tonumber(os.date("!%Y")) + 1) ..
        '","instUserName":{"firstName":"Ada","lastName":"Lovelace"}}}') ..
      " http://127.0.0.1:" .. port .. "/bind")
    assert.are.equal(0, code, out)
    assert.matches('"status":"ACCEPTED"', out, 1, true)
  end)

  it("the synopsis's workers run the tree's LuaJIT build of dws.core", function()
    local master = nginx.pid_of(work .. "/synopsis")
    local out = sh("for p in $(pgrep -P " .. tostring(master) .. "); do grep -o " ..
      q(tree .. "/lib/lua/5\\.[0-9]/dws/core.so") .. " /proc/$p/maps; done | sort -u")
    assert.are.equal(tree .. "/lib/lua/5.1/dws/core.so\n", out)
  end)

  it("the README's merchant spec runs with the README's busted command", function()
    nginx.write_file(work .. "/merchant_spec.lua",
      readme_block("### dws.testing: the sandbox in your own busted specs", "lua", "-- merchant_spec.lua"))
    local command = readme_block("### dws.testing: the sandbox in your own busted specs", "sh"):gsub("\n$", "")
    local out, code = shell(command)
    assert.are.equal(0, code, out)
    assert.matches("1 success / 0 failures / 0 errors", out:gsub("\27%[[%d;]*m", ""))
  end)

  it("make docs runs in the shell the install section leaves", function()
    local out, code = shell("cd " .. q(ROOT) .. " && make docs")
    assert.are.equal(0, code, out)
  end)

  it("the installed launcher stops the sandbox", function()
    shell("dws-sandbox stop --dir " .. q(sbdir))
    local out, code = shell("dws-sandbox status --dir " .. q(sbdir))
    assert.are.equal(3, code, out)
  end)
end)
