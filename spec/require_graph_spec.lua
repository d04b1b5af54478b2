-- scripts/require_graph.lua: the layers of lua/dws, checked on the real tree and on made-up ones.
local nginx = require "dws_sandbox.nginx"

local root = os.getenv("DWS_ROOT") or "."
local script = root .. "/scripts/require_graph.lua"

-- Run the checker over a tree; -> exit ok, its output (both streams)
local function check(tree)
  local p = io.popen("DWS_ROOT='" .. tree .. "' lua5.4 '" .. script .. "' 2>&1; echo \"exit=$?\"")
  local out = p:read("a")
  p:close()
  return out:match("exit=0") ~= nil, out
end

local function tree(files)
  local dir = nginx.tmpdir("dws-graph")
  for name, text in pairs(files) do
    nginx.mkdir(dir .. "/" .. name:match("^(.*)/"))
    nginx.write_file(dir .. "/" .. name, text)
  end
  return dir
end

describe("the require graph", function()
  it("of lua/dws has nothing upward and no cycle", function()
    local ok, out = check(root)
    assert.is_true(ok, out)
  end)

  it("refuses a module that requires a higher layer", function()
    local dir = tree{ ["lua/dws/api.lua"] = 'local c = require "dws.client"\n', ["lua/dws/client.lua"] = "" }
    local ok, out = check(dir)
    nginx.rmdir(dir)
    assert.are.same({ false, true }, { ok, out:find("dws.api (layer 0) requires dws.client (layer 8): upward", 1, true)
      ~= nil })
  end)

  it("refuses a cycle inside one layer, lazy requires included", function()
    local dir = tree{ ["lua/dws/notification.lua"] = 'local function f() return require("dws.bind_card") end\n',
                      ["lua/dws/bind_card.lua"] = 'local n = require "dws.notification"\n' }
    local ok, out = check(dir)
    nginx.rmdir(dir)
    assert.are.same({ false, true }, { ok, out:find("cycle: ", 1, true) ~= nil })
  end)

  it("ignores a require shown in a comment", function()
    local dir = tree{ ["lua/dws/api.lua"] = '-- local c = require "dws.client"\n', ["lua/dws/client.lua"] = "" }
    local ok = check(dir)
    nginx.rmdir(dir)
    assert.is_true(ok)
  end)

  it("asks for a layer for a module it does not know", function()
    local dir = tree{ ["lua/dws/newthing.lua"] = "" }
    local ok, out = check(dir)
    nginx.rmdir(dir)
    assert.are.same({ false, true }, { ok, out:find("dws.newthing: no layer", 1, true) ~= nil })
  end)
end)
