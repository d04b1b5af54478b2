/*
 * The one shape of a userdata class's metatable, shared by dws.core, dws.curl and dws.redis
 * (each its own .so, hence static inline: no symbol to export or to link across libraries).
 *
 *   __index     the methods
 *   __gc        release, which must be idempotent: it also runs after an explicit close()
 *   __close     the same release, for Lua 5.4's to-be-closed variables
 *   __tostring  never the secret contents (a key, a card body)
 *   __name      set here too: LuaJIT's luaL_newmetatable does not set it
 */
#ifndef DWS_CLASS_H
#define DWS_CLASS_H

#include "lua.h"
#include "lauxlib.h"

typedef struct {
    const char *name;         /* the registry key and __name */
    const luaL_Reg *methods;
    /* 1: the metatable is its own __index (the methods sit in it); 0: a separate methods table */
    int methods_in_metatable;
    lua_CFunction release;
    lua_CFunction tostring;
    lua_CFunction len;        /* __len, or NULL for none */
} dws_class;

/* Registers the metatable once per Lua state (a second require finds it); leaves the stack as is. */
static inline void dws_class_register(lua_State *L, const dws_class *c)
{
    if (luaL_newmetatable(L, c->name)) {
        if (c->methods_in_metatable) {
            luaL_setfuncs(L, c->methods, 0);
            lua_pushvalue(L, -1);
        } else {
            lua_newtable(L);
            luaL_setfuncs(L, c->methods, 0);
        }
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, c->release);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, c->release);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, c->tostring);
        lua_setfield(L, -2, "__tostring");
        if (c->len != NULL) {
            lua_pushcfunction(L, c->len);
            lua_setfield(L, -2, "__len");
        }
        lua_pushstring(L, c->name);
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
}

#endif
