-- Section 10: signing through a PKCS#11 token (softhsm2, through OpenSSL's "pkcs11" engine) against
-- signing with a key held in the process, both in one child process, in interleaved rounds (the
-- best of each is kept, so other work on the machine can only make a figure worse).
--
-- The child is its own process because softhsm2 reads SOFTHSM2_CONF when it is first loaded, and
-- the bench process cannot set its own environment. CPU time (os.clock) is the figure, as in the
-- rest of the bench: softhsm2 signs inside the child, so its work is counted.
local nginx = require "dws_sandbox.nginx"

local M = {}

local MODULE = "/usr/lib/softhsm/libsofthsm2.so"
local PIN = "4321"
local SIGNS = tonumber(os.getenv("DWS_BENCH_PKCS11_SIGNS")) or 200
local ROUNDS = 5

local q = nginx.sh_quote

-- What the child runs: the two keys, then ROUNDS rounds of SIGNS signatures each, interleaved.
local CHILD = [[
local core = require "dws.core"
local token_uri, n, rounds = arg[1], tonumber(arg[2]), tonumber(arg[3])
local inproc = assert(core.private_key((core.generate_key())))
local token = assert(core.private_key(token_uri))
local body = string.rep("x", 300)
local function per_sign(key)
  assert(core.sign(key, "POST", "/ams/api/v1/paymentMethods/cacheCard", "C", "1", body))
  local t0 = os.clock()
  for _ = 1, n do core.sign(key, "POST", "/ams/api/v1/paymentMethods/cacheCard", "C", "1", body) end
  return (os.clock() - t0) / n
end
local best_in, best_tok = math.huge, math.huge
for _ = 1, rounds do
  best_in = math.min(best_in, per_sign(inproc))
  best_tok = math.min(best_tok, per_sign(token))
end
io.write(string.format("%.9f %.9f\n", best_in, best_tok))
]]

function M.run(ctx)
  local row, F = ctx.row, ctx.floor
  for _, tool in ipairs{ "softhsm2-util", "pkcs11-tool" } do
    if not nginx.run("command -v " .. tool .. " >/dev/null 2>&1") then error(tool .. " is not installed", 0) end
  end
  local dir = nginx.tmpdir("dws-bench-pkcs11")
  local ok, err = pcall(function()
    nginx.mkdir(dir .. "/tokens")
    nginx.write_file(dir .. "/softhsm2.conf", "directories.tokendir = " .. dir .. "/tokens\n"
      .. "objectstore.backend = file\nlog.level = ERROR\n")
    nginx.write_file(dir .. "/pin", PIN .. "\n", "600")
    local env = "SOFTHSM2_CONF=" .. q(dir .. "/softhsm2.conf")
    assert(nginx.run(env .. " softhsm2-util --init-token --free --label bench --pin " .. PIN
      .. " --so-pin 87654321 >/dev/null 2>&1"), "softhsm2-util --init-token failed")
    assert(nginx.run(env .. " pkcs11-tool --module " .. MODULE .. " --token-label bench --login --pin " .. PIN
      .. " --keypairgen --key-type rsa:2048 --sensitive --label signer --id 01 >/dev/null 2>&1"),
      "pkcs11-tool --keypairgen failed")
    nginx.write_file(dir .. "/child.lua", CHILD)
    local uri = "pkcs11:token=bench;object=signer;type=private?module-path=" .. MODULE .. "&pin-source=file:"
      .. dir .. "/pin"
    local root = ctx.root
    local p = assert(io.popen(env .. " LUA_PATH=" .. q(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;")
      .. " LUA_CPATH=" .. q(root .. "/build/5.4/?.so;;") .. " lua5.4 " .. q(dir .. "/child.lua") .. " " .. q(uri)
      .. " " .. SIGNS .. " " .. ROUNDS .. " 2>&1"))
    local out = p:read("a")
    p:close()
    local inproc, token = out:match("^([%d.]+) ([%d.]+)\n$")
    assert(inproc, "child: " .. out)
    inproc, token = tonumber(inproc), tonumber(token)
    local function us(s) return string.format("%.1f us", s * 1e6) end
    row("11", "sign in-process: dws.core key, RSA-2048 (best of " .. ROUNDS .. " x " .. SIGNS .. ")", us(inproc),
      function() return string.format("%.2fx", inproc / F.sign) end, "ratio to the floor's sign")
    row("11", "sign through a PKCS#11 token: softhsm2 via engine pkcs11, same run", us(token),
      string.format("%.2fx", token / inproc), "ratio to in-process signing; a hardware token adds its own latency")
  end)
  nginx.rmdir(dir)
  if not ok then error(err, 0) end
end

return M
