-- #nginx (child processes: lua5.4 bin/dws) dws sandbox without --dir uses the launcher's default
-- directory, as dws-sandbox does, rather than refusing.
local nginx = require "dws_sandbox.nginx"
local cli = require "helpers.cli"

describe("dws sandbox without --dir #nginx", function()
  it("status looks in the launcher's default ($DWS_SANDBOX_DIR): exit 3, naming it", function()
    local dir = nginx.tmpdir("dws-cli-sbdefault")
    local status, out = cli.run("sandbox status", { env = "DWS_SANDBOX_DIR=" .. cli.q(dir .. "/sb") })
    nginx.rmdir(dir)
    assert.are.same({ 3, "stopped dir=" .. dir .. "/sb\n" }, { status, out })
  end)
end)
