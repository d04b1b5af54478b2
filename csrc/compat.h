/*
 * Lua 5.1 (LuaJIT 2.1, OpenResty's ABI) vs Lua 5.4 differences, nothing else.
 * OpenResty's LuaJIT already provides luaL_setfuncs, luaL_testudata and luaL_setmetatable.
 */
#ifndef DWS_COMPAT_H
#define DWS_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

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
