-- #nginx (child processes: lua5.4 bin/dws and the sandbox) dws call --pretty, a malformed JSON
-- request or profile reported with its position, dws bind --wait's answers without a listener.
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local files = require "helpers.files"
local sandbox = require "helpers.sandbox"
local cli = require "helpers.cli"

local q = cli.q
local BODY = '{"customerId":"2162878776333","env":{"terminalType":"WEB"},"scenes":["TOPUP"]}'

describe("dws call and bind #nginx", function()
  local sb, dir
  setup(function()
    sb = assert(sandbox.start{ notify_scale = 0.001 })
    dir = nginx.tmpdir("dws-cli-call")
    files.write(dir .. "/profile.lua", string.format(
      "return { client_id = %q, private_key = %q, dws_public_key = %q, gateway = %q, ca_file = %q }",
      sb.merchant.client_id, sb.merchant.private_key, sb.dws_public_key, sb.https_url, sb.ca_file))
  end)
  teardown(function()
    if sb then sb:stop() end
    nginx.rmdir(dir)
  end)
  local function profile() return " --profile " .. q(dir .. "/profile.lua") end

  it("--pretty prints the same answer indented, one member per line", function()
    local status, out = cli.run("call consultAddablePaymentMethod --pretty" .. profile(), { stdin = BODY })
    assert.are.same({ 0, true, "S" }, { status, out:find('\n  "result": {\n    "resultCode": "SUCCESS",\n', 1, true)
      ~= nil, core.json_decode(out).result.resultStatus })
  end)

  it("a malformed request names the byte, line and column (exit 64)", function()
    local status, _, err = cli.run("call consultAddablePaymentMethod" .. profile(),
      { stdin = '{"customerId": "2162878776333",\n "env": {terminalType: "WEB"}}' })
    assert.are.same({ 64, true }, { status, err:find("near byte 43 (line 2, column 11)", 1, true) ~= nil }, err)
  end)

  it("a malformed JSON profile names the position too (exit 64)", function()
    files.write(dir .. "/bad.json", '{"client_id": "X",\n"gateway" "https://x"}')
    local status, _, err = cli.run("call consultAddablePaymentMethod --profile " .. q(dir .. "/bad.json"),
      { stdin = BODY })
    assert.are.same({ 64, true }, { status, err:find("(line 2, column 11)", 1, true) ~= nil }, err)
  end)

  it("bind --wait without a listener ends with WAIT_TIMEOUT, exit 2 (outcome unknown)", function()
    local status, _, err = cli.run("bind" .. profile() .. " --journal " .. q("sqlite:" .. dir .. "/j.db")
      .. " --wait 0.3")
    assert.are.same({ 2, true }, { status, err:find("WAIT_TIMEOUT", 1, true) ~= nil }, err)
  end)

  it("bind --sandbox acts as the client the sandbox serves (here dws.testing's, not the launcher's demo)", function()
    local status, out, err = cli.run("bind --sandbox " .. q(sb.dir))
    assert.are.same({ 0, true }, { status, out:find("status%s+ACCEPTED") ~= nil }, err)
  end)

  it("bind --wait without --journal is a usage error (exit 64)", function()
    local status, _, err = cli.run("bind" .. profile() .. " --wait 5")
    assert.are.same({ 64, true }, { status, err:find("--wait needs --journal", 1, true) ~= nil })
  end)
end)
