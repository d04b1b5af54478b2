/*
 * libFuzzer: core.json_decode on arbitrary bytes, in a real Lua 5.4 state.
 * Invariants: decode never raises; whatever decodes re-encodes (unless it holds a number JSON
 * allows but we refuse to write, such as 1e999), and encode(decode(encode(v))) == encode(v).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "dws.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = luaL_newstate();
    luaL_requiref(L, "dws.core", luaopen_dws_core, 0);   /* stays at index 1 */
    return 0;
}

static void call(const char *fn, int nargs)
{
    lua_getfield(L, 1, fn);
    lua_insert(L, -1 - nargs);
    if (lua_pcall(L, nargs, 2, 0) != LUA_OK) {
        fprintf(stderr, "%s raised: %s\n", fn, lua_tostring(L, -1));
        abort();
    }
}

/* Free this input's garbage now: libFuzzer's leak check re-runs any input that leaves more
 * mallocs than frees, which a lazily collecting Lua state would do on every input. */
static int done(void)
{
    lua_settop(L, 1);
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n1, n2;
    const char *s1, *s2;
    lua_settop(L, 1);
    lua_pushlstring(L, (const char *)data, size);
    call("json_decode", 1);                      /* value, err */
    if (lua_isnil(L, -2)) {
        if (!lua_isstring(L, -1))
            abort();
        return done();
    }
    lua_pop(L, 1);
    call("json_encode", 1);                      /* s1, err */
    if (lua_isnil(L, -2))
        return done();
    lua_pop(L, 1);
    s1 = lua_tolstring(L, -1, &n1);              /* stays on the stack, so stays alive */
    lua_pushvalue(L, -1);
    call("json_decode", 1);
    if (lua_isnil(L, -2)) {
        fprintf(stderr, "our own output did not decode: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_pop(L, 1);
    call("json_encode", 1);
    s2 = lua_tolstring(L, -2, &n2);
    if (s2 == NULL || n1 != n2 || memcmp(s1, s2, n1) != 0) {
        fprintf(stderr, "re-encoding changed the bytes\n");
        abort();
    }
    return done();
}
