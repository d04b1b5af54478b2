-- The dws-openresty rockspec (the SDK built for LuaJIT) is generated from dws-scm-1.rockspec, never
-- edited: the committed files are what `make rockspec` writes today.
local nginx = require "dws_sandbox.nginx"
local dws = require "dws"

local ROOT = os.getenv("DWS_ROOT") or "."
local q = nginx.sh_quote

local function generated()
  local p = io.popen("lua5.4 " .. q(ROOT .. "/scripts/openresty_rockspec.lua") .. " < " ..
    q(ROOT .. "/dws-scm-1.rockspec") .. " 2>&1")
  local out = p:read("*a")
  p:close()
  return out
end

local function rockspec(path)
  local env = {}
  assert(load(assert(nginx.read_file(path)), "@" .. path, "t", env))()
  return env
end

describe("the dws-openresty rockspec", function()
  it("is scripts/openresty_rockspec.lua's output for dws-scm-1.rockspec (run make rockspec)", function()
    assert.are.equal(generated(), nginx.read_file(ROOT .. "/openresty/dws-openresty-scm-1.rockspec"))
  end)

  it("builds the modules dws-scm-1 builds, for LuaJIT, and installs no command", function()
    local sdk = rockspec(ROOT .. "/dws-scm-1.rockspec")
    local jit = rockspec(ROOT .. "/openresty/dws-openresty-scm-1.rockspec")
    for _, m in pairs(sdk.build.modules) do
      if type(m) == "table" then table.insert(m.defines, "DWS_FOR_LUAJIT") end
    end
    assert.are.same({ sdk.build.modules, nil }, { jit.build.modules, jit.build.install })
  end)

  it("has a release rockspec that matches it but for version and tag", function()
    local scm = rockspec(ROOT .. "/openresty/dws-openresty-scm-1.rockspec")
    local rel = rockspec(ROOT .. "/openresty/dws-openresty-" .. dws.VERSION .. "-1.rockspec")
    assert.are.same({ dws.VERSION .. "-1", "v" .. dws.VERSION, scm.build }, { rel.version, rel.source.tag, rel.build })
  end)
end)
