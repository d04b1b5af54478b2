-- The installed rocks alone (issue 11, "Done means"): both rocks built into a fresh tree with
-- `luarocks make` from the source directory (no network), then everything run from a directory outside
-- the repository with only the tree's paths. Tagged #install (and #nginx: it runs once per suite).
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

describe("the installed rocks #install #nginx", function()
  local tree, work, env, sbdir

  -- Only the tree's paths: what `eval "$(luarocks --lua-version 5.4 --tree T path)"` gives a user.
  local function run(cmd)
    return sh("cd " .. q(work) .. " && env -u DWS_ROOT -u DWS_SANDBOX_JIT_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 "
      .. env .. " sh -c " .. q(cmd))
  end

  lazy_setup(function()
    tree = nginx.tmpdir("dws-tree")
    work = nginx.tmpdir("dws-merchant")
    for _, rs in ipairs{ "dws-scm-1.rockspec", "sandbox/dws-sandbox-scm-1.rockspec" } do
      local out, code = sh("cd " .. q(ROOT) .. " && luarocks --lua-version 5.4 make --deps-mode=none --tree " ..
        q(tree) .. " " .. rs)
      assert(code == 0, out)
    end
    local lpath = sh("luarocks --lua-version 5.4 --tree " .. q(tree) .. " path --lr-path"):gsub("%s+$", "")
    local lcpath = sh("luarocks --lua-version 5.4 --tree " .. q(tree) .. " path --lr-cpath"):gsub("%s+$", "")
    env = "LUA_PATH=" .. q(lpath .. ";;") .. " LUA_CPATH=" .. q(lcpath .. ";;") ..
      " PATH=" .. q(tree .. "/bin:" .. os.getenv("PATH")) ..
      -- free ports, not the documented defaults: other specs run at the same time
      " DWS_SANDBOX_HTTP_PORT=0 DWS_SANDBOX_HTTPS_PORT=0"
    sbdir = work .. "/sandbox"
  end)

  lazy_teardown(function()
    if sbdir then sh(q(tree .. "/bin/dws-sandbox") .. " stop --dir " .. q(sbdir)) end
    nginx.rmdir(work)
    nginx.rmdir(tree)
  end)

  it("dws keygen writes a PKCS#8 private key and prints the bare base64 public key", function()
    local out, code = run("dws keygen")
    assert.are.equal(0, code, out)
    assert.matches("^%-%-%-%-%-BEGIN PRIVATE KEY%-%-%-%-%-", nginx.read_file(work .. "/merchant_private.pem") or "")
  end)

  it("the installed launcher starts the sandbox and prints its ports and CA file", function()
    local out, code = run("dws-sandbox start --dir " .. q(sbdir))
    assert.are.equal(0, code, out)
    assert.matches("http=%d+ https=%d+ dir=.* ca_file=.*/certs/ca%.pem", out)
  end)

  it("dws bind binds a card through the sandbox", function()
    local out, code = run("dws bind --sandbox " .. q(sbdir))
    assert.are.equal(0, code, out)
    assert.matches("addPaymentMethod%s+S SUCCESS", out)
  end)

  it("a plain Lua script binds a card", function()
    nginx.write_file(work .. "/bind.lua", [[
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
]])
    local out, code = run("lua5.4 bind.lua " .. q(sbdir))
    assert.are.equal(0, code, out)
    assert.matches("mask=411111%*%*%*%*%*%*1111", out)
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
    local out, code = run("dws notify send http://127.0.0.1:" .. port .. "/notify --client-id SANDBOX_DEMO_MERCHANT" ..
      " --dws-private-key " .. q(sbdir .. "/keys/dws_private.pem"))
    nginx.stop(prefix)
    assert.are.equal(0, code, out)
  end)

  it("a merchant's own busted spec runs through dws.testing (busted --lua=lua5.4, LUA_PATH_5_4)", function()
    nginx.write_file(work .. "/merchant_spec.lua", [[
local testing = require "dws.testing"
describe("my shop", function()
  local sb
  lazy_setup(function() sb = assert(testing.start()) end)
  lazy_teardown(function() sb:stop() end)
  it("binds the test card", function()
    local client = require("dws").client(sb:client_options())
    local outcome = assert(client:bind_card{ customerId = "2162878776333", env = { terminalType = "WEB" },
      card = { cardNo = "4111111111111111", securityCode = "123", expiryMonth = "12",
               expiryYear = tostring(tonumber(os.date("!%Y")) + 1),
               instUserName = { firstName = "Ada", lastName = "Lovelace" } } })
    assert.are.equal("1111", outcome.last4)
  end)
end)
]])
    local out, code = run('LUA_PATH_5_4="$LUA_PATH" LUA_CPATH_5_4="$LUA_CPATH" && export LUA_PATH_5_4 LUA_CPATH_5_4' ..
      ' && unset LUA_PATH LUA_CPATH && busted --lua=lua5.4 -o plainTerminal merchant_spec.lua')
    assert.are.equal(0, code, out)
    assert.matches("1 success / 0 failures / 0 errors", out)
  end)

  it("the installed launcher stops the sandbox", function()
    run("dws-sandbox stop --dir " .. q(sbdir))
    local out, code = run("dws-sandbox status --dir " .. q(sbdir))
    assert.are.equal(3, code, out)
  end)
end)
