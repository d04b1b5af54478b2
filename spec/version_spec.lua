-- One version: dws.VERSION, the release rockspecs `make rockspec` writes, and the user agent.
local dws = require "dws"

local root = os.getenv("DWS_ROOT") or "."

local function read(path)
  local f = io.open(root .. "/" .. path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

describe("the version", function()
  it("is the release rockspec's", function()
    local spec = read("rockspecs/dws-" .. dws.VERSION .. "-1.rockspec")
    assert.matches('\nversion = "' .. dws.VERSION:gsub("%.", "%%.") .. '%-1"', spec)
  end)

  it("is the OpenResty release rockspec's", function()
    local spec = read("openresty/dws-openresty-" .. dws.VERSION .. "-1.rockspec")
    assert.matches('\nversion = "' .. dws.VERSION:gsub("%.", "%%.") .. '%-1"', spec)
  end)
end)
