-- dws-scm-1.rockspec (stdin) -> the dws-openresty rockspec (stdout): the same modules built for
-- LuaJIT, the ABI of OpenResty and of nginx's Lua module, into a tree's lib/lua/5.1 and share/lua/5.1.
-- `make rockspec` runs it; spec/install_spec.lua checks the committed file is its output.
--
-- The differences, each replacing exactly one piece of the SDK rockspec (an error otherwise, so a
-- change of that file's shape is noticed here rather than shipped):
--   * package dws-openresty and its description;
--   * "lua ~> 5.1": luarocks --lua-version 5.1, whose trees nginx reads (LuaJIT is Lua 5.1 to them);
--   * LuaJIT's headers required (luarocks finds Lua 5.1's by default, and a module built against
--     those would call LuaJIT's 5.2-style functions undeclared): DWS_FOR_LUAJIT makes csrc/compat.h
--     refuse other headers with the LUA_INCDIR to give;
--   * no `dws` command (the Lua 5.4 rock's; a second one in the same tree would replace it) and no
--     test section (the suite runs from the source tree).
local text = io.read("a")

local function replace(pattern, repl)
  local out, n = text:gsub(pattern, function() return repl end)
  assert(n == 1, "dws-scm-1.rockspec: expected one match of " .. pattern .. ", found " .. n)
  text = out
end

replace('\npackage = "dws"\n', '\npackage = "dws-openresty"\n')
replace('\n   summary = "[^"]*",\n   detailed = %[%[.-%]%],\n', [[

   summary = "lua-dws for OpenResty and nginx's Lua module: the dws rock built for LuaJIT",
   detailed = [[
The modules of the dws rock, the C ones (dws.core, dws.curl, dws.redis) compiled against LuaJIT's
headers, for nginx's lua_package_path and lua_package_cpath. Install into the same tree as the dws
rock, from the lua-dws source directory:
   luarocks --lua-version 5.1 --tree T make --deps-mode=none \
      openresty/dws-openresty-scm-1.rockspec LUA_INCDIR=/usr/include/luajit-2.1
and point nginx at T/share/lua/5.1 and T/lib/lua/5.1 (docs/openresty.md).
]].."]],\n")
replace('\n   "lua >= 5%.1",\n', '\n   "lua ~> 5.1",\n')
replace('\nexternal_dependencies = {\n',
  '\nexternal_dependencies = {\n   LUAJIT = { header = "luajit-2.1/luajit.h" },\n')
local _, n = text:gsub('defines = { "_POSIX_C_SOURCE=200809L" }', '%0')
assert(n == 3, "dws-scm-1.rockspec: expected the three C modules' defines, found " .. n)
text = text:gsub('defines = { "_POSIX_C_SOURCE=200809L" }',
  'defines = { "_POSIX_C_SOURCE=200809L", "DWS_FOR_LUAJIT" }')
replace('\n   install = {\n      bin = { %["dws"%] = "bin/dws" },\n   },\n', "\n")
replace('\n%-%- `luarocks test`.-\ntest = {.-\n}\n$', "\n")
text = "-- Generated from dws-scm-1.rockspec by scripts/openresty_rockspec.lua (make rockspec): edit that.\n" .. text
io.write(text)
