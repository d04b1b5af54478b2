-- Which Lua a C module was built for, and a require that says so when it is the wrong one.
--
-- A C module built for Lua 5.4 cannot load into LuaJIT (nginx), nor the reverse: the dynamic loader
-- stops at the first Lua API function the other interpreter lacks ("undefined symbol: lua_rotate").
-- That message names neither the cause nor the fix, and code that takes any failed require for a
-- missing package ("lua-sql-sqlite3 is not installed") sends the user the wrong way. Internal
-- (docs/surface.lua); used by dws (dws.core), dws.store.sqlite and the sandbox's launcher.
local M = {}

--- What file_abi says of a build for LuaJIT (the Lua 5.1 ABI).
M.LUAJIT = "LuaJIT (Lua 5.1)"

-- C API functions only Lua 5.2 and later export (LuaJIT 2.1, the Lua 5.1 ABI, has none of them).
local NEWER = {}
for name in ([[lua_rotate lua_callk lua_pcallk lua_newuserdatauv luaL_checkversion_ lua_getglobal
    lua_setglobal lua_rawlen luaL_prepbuffsize lua_geti lua_seti lua_isinteger lua_len luaL_len lua_arith
    lua_compare lua_getiuservalue lua_setiuservalue lua_yieldk lua_rawgetp lua_rawsetp
    luaL_tolstring]]):gmatch("%S+") do
  NEWER[name] = true
end
-- C API functions only the Lua 5.1 ABI (LuaJIT) exports.
local OLDER = {}
for name in ([[lua_objlen lua_setfenv lua_getfenv luaL_register luaL_prepbuffer lua_equal lua_lessthan
    lua_tonumber lua_tointeger luaL_openlib luaL_findtable]]):gmatch("%S+") do
  OLDER[name] = true
end

--- The interpreter running this code: "LuaJIT" or _VERSION ("Lua 5.4").
function M.running()
  if type(rawget(_G, "jit")) == "table" then return "LuaJIT" end
  return _VERSION
end

local function is_51(flavour) return flavour == "LuaJIT" or flavour == "Lua 5.1" end

-- "Lua 5.4" from a path in a versioned directory (.../lua/5.4/...), else the ABI the symbol belongs to.
local function built_for(path, symbol)
  local v = path and path:match("/lua/(5%.%d)/")
  if NEWER[symbol] then
    if v and v ~= "5.1" then return "Lua " .. v end
    return "Lua 5.2 or later"
  end
  if OLDER[symbol] then return M.LUAJIT end
  return nil
end

--- The Lua a C module file was built for, from the API functions it imports:
-- "Lua 5.2 or later" (or "Lua 5.4" when the path says so), "LuaJIT (Lua 5.1)", or nil when unknown.
function M.file_abi(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("*a")
  f:close()
  -- The dynamic string table holds each imported name between NUL bytes.
  for name in data:gmatch("%z(luaL?_[%w_]+)%f[%z]") do
    local abi = built_for(path, name)
    if abi then return abi end
  end
  return nil
end

-- The cpath template that found name at path, moved to the version directory wanted (nil: unknown).
local function template_for(name, path, version)
  local rel = name:gsub("%.", "/") .. ".so"
  if not path or path:sub(-#rel) ~= rel then return nil end
  local dir = path:sub(1, -#rel - 1)
  if not dir:find("/lua/5%.%d/$") then return nil end
  return (dir:gsub("/lua/5%.%d/$", "/lua/" .. version .. "/")) .. "?.so"
end

-- What to do, for the interpreter running now.
local function advice(name, path)
  if is_51(M.running()) then
    return "set lua_package_cpath (in nginx; LUA_CPATH elsewhere) to LuaJIT's directories only, e.g. " ..
      (template_for(name, path, "5.1") or "<tree>/lib/lua/5.1/?.so") ..
      ", not ending in ';;', which adds $LUA_CPATH from nginx's environment (docs/openresty.md)"
  end
  return "set LUA_CPATH_5_4 to Lua 5.4 directories only, e.g. " ..
    (template_for(name, path, "5.4") or "<tree>/lib/lua/5.4/?.so") .. " (the README's install section)"
end

--- A failed require's message, explained when the cause is a module built for another Lua:
-- "<name> at <path> is built for Lua 5.4, not LuaJIT (undefined symbol lua_rotate); set ...".
-- Any other message comes back unchanged, and so does nil. The second value is true when explained.
function M.explain(name, err)
  if type(err) ~= "string" then return err end
  local symbol = err:match("undefined symbol: (luaL?_[%w_]+)")
  if not symbol then return err end
  local path = err:match("from file '([^']+)'")
  local here = M.running()
  -- Only a mismatch: a newer-Lua function missing under LuaJIT, or a LuaJIT one under Lua 5.2+.
  if not ((NEWER[symbol] and is_51(here)) or (OLDER[symbol] and not is_51(here))) then return err end
  local abi = built_for(path, symbol)
  return string.format("%s at %s is built for %s, not %s (undefined symbol %s); %s", name,
    path or "(path unknown)", abi, here, symbol, advice(name, path)), true
end

--- `require(name)`, or nil, the explained message and true when it was built for the other Lua.
function M.try(name)
  local ok, mod = pcall(require, name)
  if ok then return mod end
  local msg, wrong_abi = M.explain(name, tostring(mod))
  return nil, msg, wrong_abi == true
end

--- `require(name)`, raising the explained message as require would raise its own.
function M.require(name)
  local mod, err = M.try(name)
  if mod == nil then error(err, 0) end
  return mod
end

return M
