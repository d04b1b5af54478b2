-- A C module built for the other Lua (Lua 5.4 vs LuaJIT, the nginx one) is reported as such, naming
-- its path and the setting to change, instead of a bare "undefined symbol" or "not installed".
-- The loads run in child interpreters with the package paths a misconfigured shell or nginx gives.
-- Tagged #nginx: the subject runs outside busted, the same under both flavours.
local nginx = require "dws_sandbox.nginx"
local abi = require "dws.abi"

local ROOT = os.getenv("DWS_ROOT") or "."
local q = nginx.sh_quote

-- Runs code in lua (lua5.4 or luajit) with exactly these paths; -> output
local function child(lua, path, cpath, code)
  local p = io.popen("cd " .. q(ROOT) .. " && LUA_PATH=" .. q(path) .. " LUA_CPATH=" .. q(cpath) ..
    " env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 " .. lua .. " -e " .. q(code) .. " 2>&1")
  local out = p:read("*a")
  p:close()
  return out
end

local LUA_DIRS = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua"

-- Debian's luasql directory for a Lua version (multiarch: found, not assumed).
local function luasql_dir(v)
  local p = io.popen("ls -d /usr/lib/*/lua/" .. v .. "/luasql 2>/dev/null | head -1")
  local d = p:read("*l")
  p:close()
  return assert(d, "lua-sql-sqlite3 for Lua " .. v .. " is not installed"):gsub("/luasql$", "")
end

describe("a module built for the other Lua #nginx", function()
  it("LuaJIT requiring dws with the Lua 5.4 build names the file and the Lua it is built for", function()
    local out = child("luajit", LUA_DIRS, ROOT .. "/build/5.4/?.so",
      'local ok, err = pcall(require, "dws") print(err)')
    assert.matches("dws.core at " .. ROOT:gsub("%p", "%%%0") .. "/build/5.4/dws/core.so is built for " ..
      "Lua 5.2 or later, not LuaJIT", out)
  end)

  it("the LuaJIT message says which setting to change and warns about ';;'", function()
    local out = child("luajit", LUA_DIRS, ROOT .. "/build/5.4/?.so",
      'local ok, err = pcall(require, "dws") print(err)')
    assert.matches("set lua_package_cpath .* not ending in ';;'", out)
  end)

  it("Lua 5.4 requiring dws with the LuaJIT build names the file and LuaJIT", function()
    local out = child("lua5.4", LUA_DIRS, ROOT .. "/build/jit/?.so",
      'local ok, err = pcall(require, "dws") print(err)')
    assert.matches("dws.core at .*/build/jit/dws/core.so is built for LuaJIT %(Lua 5.1%), not Lua 5.4", out)
  end)

  it("the SQLite store under LuaJIT with Debian's Lua 5.4 luasql says so, and where the 5.1 one is", function()
    local dir54, dir51 = luasql_dir("5.4"), luasql_dir("5.1")
    local out = child("luajit", LUA_DIRS, ROOT .. "/build/jit/?.so;" .. dir54 .. "/?.so",
      'local s = require("dws.store.sqlite").open("/tmp/dws-abi-never-created.db") print(select(2, s:get("k")))')
    assert.matches("luasql.sqlite3 at " .. dir54:gsub("%p", "%%%0") .. "/luasql/sqlite3.so is built for Lua 5.4, " ..
      "not LuaJIT %(undefined symbol [%w_]+%); set lua_package_cpath .* e%.g%. " ..
      dir51:gsub("%p", "%%%0") .. "/%?%.so", out)
  end)

  it("a luasql that is simply missing is still reported as not installed", function()
    local out = child("luajit", LUA_DIRS, ROOT .. "/build/jit/?.so",
      'local s = require("dws.store.sqlite").open("/tmp/dws-abi-never-created.db") print(select(2, s:get("k")))')
    assert.matches("lua%-sql%-sqlite3 is not installed %(Debian: apt install lua%-sql%-sqlite3%)", out)
  end)

  it("file_abi tells the two builds of dws.core apart", function()
    assert.are.same({ "Lua 5.2 or later", "LuaJIT (Lua 5.1)" },
      { abi.file_abi(ROOT .. "/build/5.4/dws/core.so"), abi.file_abi(ROOT .. "/build/jit/dws/core.so") })
  end)
end)
