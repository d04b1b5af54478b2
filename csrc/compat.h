/*
 * Lua 5.1 (LuaJIT 2.1, OpenResty's ABI) vs Lua 5.4 differences, nothing else.
 * OpenResty's LuaJIT already provides luaL_setfuncs, luaL_testudata and luaL_setmetatable.
 */
#ifndef DWS_COMPAT_H
#define DWS_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

/* The dws-openresty rock (DWS_FOR_LUAJIT) builds for LuaJIT, whose lua.h has LUA_OK; luarocks hands
 * the compiler Lua 5.1's headers unless told otherwise, and against those LuaJIT's luaL_setfuncs and
 * friends would be called undeclared. */
#if defined(DWS_FOR_LUAJIT) && !defined(LUA_OK)
#error "dws-openresty is built against LuaJIT's headers: add LUA_INCDIR=/usr/include/luajit-2.1 to the luarocks command (docs/openresty.md)"
#endif

#if LUA_VERSION_NUM < 502
#define lua_rawlen(L, i) lua_objlen(L, (i))
#endif

/* Lua 5.3+ has a separate integer subtype; LuaJIT has doubles only. */
#if LUA_VERSION_NUM >= 503
#define DWS_HAVE_INTEGERS 1
#define dws_isinteger(L, i) lua_isinteger(L, (i))
#else
#define DWS_HAVE_INTEGERS 0
#define dws_isinteger(L, i) 0
#endif

#endif
