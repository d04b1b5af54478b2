-- A real PKCS#11 token for specs: Debian's softhsm2, initialised in a temporary directory of its
-- own (SOFTHSM2_CONF), with keys generated inside it by pkcs11-tool (opensc) as sensitive and never
-- extractable. softhsm2 reads SOFTHSM2_CONF when a process first loads it, and Lua cannot set the
-- environment of the busted process, so what uses the token runs as a child process with `env`
-- (token:lua, token:run, or nginx started by the spec with it).
local nginx = require "dws_sandbox.nginx"
local files = require "helpers.files"

local M = {}

M.MODULE = "/usr/lib/softhsm/libsofthsm2.so"
M.PIN = "4321"
M.LABEL = "dws-spec"

local q = nginx.sh_quote
local ROOT = os.getenv("DWS_ROOT")

local Token = {}
Token.__index = Token

-- Runs a shell command with SOFTHSM2_CONF set -> exit status, combined output.
function Token:run(cmd)
  local out = self.dir .. "/run.out"
  os.execute("(" .. self.env .. " " .. cmd .. ") >" .. q(out) .. " 2>&1; echo $? >" .. q(out .. ".rc"))
  return tonumber(files.read(out .. ".rc")), files.read(out)
end

-- pkcs11-tool against this token (logged in).
function Token:tool(args)
  return self:run("pkcs11-tool --module " .. q(M.MODULE) .. " --token-label " .. q(M.LABEL) .. " --login --pin "
    .. q(M.PIN) .. " " .. args)
end

-- A 2048-bit RSA pair generated in the token, sensitive and never extractable.
function Token:keygen(label, id)
  local rc, out = self:tool("--keypairgen --key-type rsa:2048 --sensitive --label " .. q(label) .. " --id " .. q(id))
  assert(rc == 0, out)
end

-- The pkcs11: URI of a private key; pin: "file" (pin-source, the default), "none", or a pin file path.
function Token:uri(label, pin)
  local u = "pkcs11:token=" .. M.LABEL .. ";object=" .. label .. ";type=private?module-path=" .. M.MODULE
  if pin == nil or pin == "file" then return u .. "&pin-source=file:" .. self.pin_file end
  if pin == "none" then return u end
  return u .. "&pin-source=file:" .. pin
end

-- LUA_PATH and LUA_CPATH for a Lua 5.4 child on the source tree (the build spec/run tests).
M.LUA_ENV = "LUA_PATH=" .. q(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;" .. ROOT .. "/sandbox/lua/?.lua;;")
  .. " LUA_CPATH=" .. q(ROOT .. "/" .. (os.getenv("DWS_BUILD") or "build") .. "/5.4/?.so;;")

-- Runs a Lua 5.4 script (text) with this token's environment and the source tree's paths ->
-- exit status, output.
function Token:lua(script, env)
  local file = self.dir .. "/script.lua"
  files.write(file, script)
  return self:run((env or "") .. " " .. M.LUA_ENV .. " lua5.4 " .. q(file))
end

function Token:stop()
  if self.dir then nginx.rmdir(self.dir) end
  self.dir = nil
end

-- A fresh token (label M.LABEL, user PIN M.PIN) in its own directory.
function M.start()
  local dir = nginx.tmpdir("dws-softhsm")
  nginx.mkdir(dir .. "/tokens")
  local conf = dir .. "/softhsm2.conf"
  files.write(conf, "directories.tokendir = " .. dir .. "/tokens\nobjectstore.backend = file\nlog.level = ERROR\n")
  local t = setmetatable({ dir = dir, conf = conf, env = "SOFTHSM2_CONF=" .. q(conf), pin_file = dir .. "/pin" }, Token)
  files.write(t.pin_file, M.PIN .. "\n")
  os.execute("chmod 600 " .. q(t.pin_file))
  local rc, out = t:run("softhsm2-util --init-token --free --label " .. q(M.LABEL) .. " --pin " .. q(M.PIN)
    .. " --so-pin 87654321")
  assert(rc == 0, out)
  return t
end

return M
