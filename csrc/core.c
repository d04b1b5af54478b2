/*
 * luaopen_dws_core: the module table, the array marker and the null sentinel, and the topic
 * files (key.c, encoding.c, sigheader.c, random.c, clock.c, redact.c, json.c), each registered by its
 * dws_open_<topic>. Per-module state lives in upvalues and the registry, never in C globals, so
 * independent Lua states (nginx workers, coroutines' owners) never share it.
 */
#include <cJSON.h>
#include <openssl/crypto.h>

#include "dws.h"

/* A stack buffer when it fits, else a userdata: either way nothing can leak on error. */
void *dws_scratch(lua_State *L, void *stackbuf, size_t need)
{
    if (need <= DWS_STACK_SCRATCH)
        return stackbuf;
    return lua_newuserdata(L, need);
}

int dws_push_error(lua_State *L, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

static int l_versions(lua_State *L)
{
    lua_createtable(L, 0, 3);
    lua_pushstring(L, OpenSSL_version(OPENSSL_VERSION));
    lua_setfield(L, -2, "openssl");
    lua_pushstring(L, cJSON_Version());
    lua_setfield(L, -2, "cjson");
    lua_getglobal(L, "_VERSION");
    lua_setfield(L, -2, "lua");
    return 1;
}

DWS_EXPORT int luaopen_dws_core(lua_State *L)
{
    lua_newtable(L);

    dws_open_key(L);
    dws_open_encoding(L);
    dws_open_sigheader(L);
    dws_open_random(L);
    dws_open_clock(L);
    dws_open_file(L);
    dws_open_redact(L);
    lua_pushcfunction(L, l_versions);
    lua_setfield(L, -2, "versions");

    /* The array marker: dws.array() sets it, json_decode gives it to every array. */
    lua_newtable(L);
    lua_pushliteral(L, "array");
    lua_setfield(L, -2, "__jsontype");
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "array_mt");

    /* core.null: NULL as light userdata, as lua-cjson's cjson.null. */
    lua_pushlightuserdata(L, NULL);
    lua_pushvalue(L, -1);
    lua_setfield(L, -4, "null");

    dws_open_json(L);   /* takes array_mt and null as upvalues */
    return 1;
}
