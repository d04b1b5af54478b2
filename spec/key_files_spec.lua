-- Private key files as the `dws` command reads them, checked like ssh checks its own (docs/keys.md
-- "Key files"): a file group or others can read is refused, saying how to fix it, unless
-- DWS_ALLOW_OPEN_KEY_FILES=1. The command runs as a Lua 5.4 child process (#once: the busted
-- flavour does not change it).
local nginx = require "dws_sandbox.nginx"
local files = require "helpers.files"

local ROOT = os.getenv("DWS_ROOT")
local q = nginx.sh_quote
local dir

-- `dws ARGS` with env -> exit status, stdout .. stderr.
local function dws_cmd(args, env)
  local cmd = (env or "") .. " lua5.4 " .. q(ROOT .. "/bin/dws") .. " " .. args .. " >" .. q(dir .. "/out")
    .. " 2>&1 </dev/null"
  os.execute("(" .. cmd .. "); echo $? >" .. q(dir .. "/rc"))
  return tonumber(files.read(dir .. "/rc")), files.read(dir .. "/out")
end

local function key_file(name, mode)
  local path = dir .. "/" .. name
  files.write(path, (require("helpers.keys").pair("merchant"))) -- any key: the file's mode is the subject
  os.execute("chmod " .. mode .. " " .. q(path))
  return path
end

local function sign_with(path, env)
  files.write(dir .. "/body.json", "{}")
  return dws_cmd("sign --client-id C --path /p --time 1 --private-key " .. q(path) .. " " .. q(dir .. "/body.json"),
    env)
end

setup(function() dir = nginx.tmpdir("dws-keyfiles") end)
teardown(function() if dir then nginx.rmdir(dir) end end)

describe("dws and private key files #once", function()
  it("refuses a key file others can read, saying how to fix it", function()
    local path = key_file("open.pem", "644")
    local rc, out = sign_with(path)
    assert.are.same({ 1, "dws: private key file " .. path .. " has mode 0644: group or others can read it (or "
      .. "write it); a private key file must be readable by its owner only: chmod 600 '" .. path .. "' (or set "
      .. "DWS_ALLOW_OPEN_KEY_FILES=1 to accept it)\n" }, { rc, out })
  end)

  it("refuses a key file its group can read", function()
    local rc = sign_with(key_file("group.pem", "640"))
    assert.are.equal(1, rc)
  end)

  it("accepts a key file only its owner can read", function()
    local rc, out = sign_with(key_file("own.pem", "600"))
    assert.are.same({ 0, true }, { rc, out:find("Signature: algorithm=RSA256", 1, true) ~= nil })
  end)

  it("accepts an open key file with DWS_ALLOW_OPEN_KEY_FILES=1", function()
    local rc = sign_with(key_file("allowed.pem", "644"), "DWS_ALLOW_OPEN_KEY_FILES=1")
    assert.are.equal(0, rc)
  end)

  it("refuses an open DWS_PRIVATE_KEY_FILE for dws call before anything is sent", function()
    local path = key_file("profile.pem", "604")
    files.write(dir .. "/req.json", "{}")
    local rc, out = dws_cmd("call consultAddablePaymentMethod " .. q(dir .. "/req.json"),
      "DWS_CLIENT_ID=C DWS_PRIVATE_KEY_FILE=" .. q(path) .. " DWS_PUBLIC_KEY=x DWS_GATEWAY=https://127.0.0.1:9")
    assert.are.same({ true, true }, { rc ~= 0, out:find("has mode 0604", 1, true) ~= nil })
  end)
end)
