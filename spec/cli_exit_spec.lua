-- #nginx (child processes: lua5.4 bin/dws) Every failure of `dws` exits non-zero: 64 for usage
-- (a bad option value included), 1 for a failure, 3 for a sandbox that is not running.
local nginx = require "dws_sandbox.nginx"
local cli = require "helpers.cli"

local q = cli.q

describe("dws exit status on failure #nginx", function()
  local dir
  setup(function() dir = nginx.tmpdir("dws-cli-exit") end)
  teardown(function() nginx.rmdir(dir) end)

  local function none() return q(dir .. "/none") end
  -- { arguments, stdin, expected status }
  local CASES = {
    { "frobnicate", nil, 64 },
    { "keygen --bits 1024 --out DIR/k", nil, 64 },
    { "keygen --bits many", nil, 64 },
    { "sign --private-key NONE --client-id X --path /p", "{}", 1 },
    { "verify --public-key NONE --client-id X --path /p --signature s", "{}", 64 },
    { "call noSuchApi", "{}", 64 },
    { "call cacheCard", "{}", 64 },
    { "call cacheCard --profile NONE", "{}", 64 },
    { "bind --sandbox NONE", nil, 64 },
    { "notify send http://127.0.0.1:1/notify --dws-private-key NONE --client-id X", nil, 1 },
    { "notify resend r-1 --sandbox NONE", nil, 1 },
    { "listen --sandbox NONE", nil, 1 },
    { "listen --sandbox NONE --port 70000", nil, 64 },
    { "sandbox status --dir NONE", nil, 3 },
  }
  for _, case in ipairs(CASES) do
    it("dws " .. case[1] .. " exits " .. case[3], function()
      local args = case[1]:gsub("NONE", none()):gsub("DIR", q(dir))
      local status, _, err = cli.run(args, { stdin = case[2] })
      assert.are.equal(case[3], status, err)
    end)
  end
end)
