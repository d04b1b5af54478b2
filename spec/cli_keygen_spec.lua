-- #nginx (the subject is a child process: lua5.4 bin/dws) dws keygen: a refused key size fails
-- the command, key files are created without following links and never over an existing file,
-- and their modes do not depend on the umask.
local nginx = require "dws_sandbox.nginx"
local files = require "helpers.files"
local cli = require "helpers.cli"

local q = cli.q

describe("dws keygen #nginx", function()
  local dir
  before_each(function() dir = nginx.tmpdir("dws-keygen") end)
  after_each(function() nginx.rmdir(dir) end)

  it("exits non-zero for --bits 1024 and writes nothing", function()
    local status, _, err = cli.run("keygen --bits 1024 --out " .. q(dir .. "/k"))
    assert.are.same({ 64, true, nil }, { status, err:find("--bits", 1, true) ~= nil,
      cli.mode(dir .. "/k/merchant_private.pem") })
  end)

  it("makes the private key 0600, the public files 0644 and the directory 0700 under umask 000", function()
    local status, _, err = cli.run("keygen --out " .. q(dir .. "/k"), { umask = "000" })
    assert.are.equal(0, status, err)
    assert.are.same({ "600", "644", "644", "700" }, { cli.mode(dir .. "/k/merchant_private.pem"),
      cli.mode(dir .. "/k/merchant_public.pem"), cli.mode(dir .. "/k/merchant_public.b64"), cli.mode(dir .. "/k") })
  end)

  it("refuses a symbolic link planted at the private key's path, and writes nothing through it", function()
    assert.truthy(os.execute("ln -s " .. q(dir .. "/stolen.pem") .. " " .. q(dir .. "/merchant_private.pem")))
    local status, _, err = cli.run("keygen --out " .. q(dir))
    assert.are.same({ 1, true, nil }, { status, err:find("refusing", 1, true) ~= nil, cli.mode(dir .. "/stolen.pem") })
  end)

  it("refuses a symbolic link to an existing file at a public key's path, leaving that file as it was", function()
    files.write(dir .. "/theirs.b64", "attacker's key\n")
    assert.truthy(os.execute("ln -s " .. q(dir .. "/theirs.b64") .. " " .. q(dir .. "/merchant_public.b64")))
    local status = cli.run("keygen --out " .. q(dir))
    assert.are.same({ 1, "attacker's key\n", nil }, { status, files.read(dir .. "/theirs.b64"),
      cli.mode(dir .. "/merchant_private.pem") })
  end)

  it("refuses an existing key file and leaves it as it was", function()
    files.write(dir .. "/merchant_private.pem", "mine")
    local status = cli.run("keygen --out " .. q(dir))
    assert.are.same({ 1, "mine" }, { status, files.read(dir .. "/merchant_private.pem") })
  end)

  it("write_new_files creates no file through a link at the path: the create itself refuses it", function()
    -- No check precedes the create to be raced: a link planted at any moment before it is refused
    -- by open(O_CREAT|O_EXCL|O_NOFOLLOW) itself.
    local keygen = require "dws.cli.keygen"
    os.execute("ln -s " .. q(dir .. "/elsewhere") .. " " .. q(dir .. "/a.pem"))
    local ok, err = keygen.write_new_files(dir, { { path = dir .. "/a.pem", data = "secret", mode = "0600" } })
    assert.are.same({ nil, true, nil }, { ok, err:find("refusing", 1, true) ~= nil, cli.mode(dir .. "/elsewhere") })
  end)

  it("dws.core.create_file refuses an existing name, a dangling link included, and keeps the mode asked", function()
    local core = require "dws.core"
    os.execute("ln -s " .. q(dir .. "/nowhere") .. " " .. q(dir .. "/dangling"))
    local made = core.create_file(dir .. "/new", "x", tonumber("0640", 8))
    assert.are.same({ true, "640", { nil, "exists" }, { nil, "exists" }, nil },
      { made, cli.mode(dir .. "/new"), { core.create_file(dir .. "/new", "y", 384) },
        { core.create_file(dir .. "/dangling", "y", 384) }, cli.mode(dir .. "/nowhere") })
  end)
end)
