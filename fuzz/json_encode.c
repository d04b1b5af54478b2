/*
 * libFuzzer: core.json_encode on arbitrary bytes as a string, as an object key and as a value,
 * in a real Lua 5.4 state. Lua's own utf8.len is the independent judge of valid UTF-8.
 * Invariants: encode never raises; it succeeds exactly when the bytes are valid UTF-8; what it
 * writes decodes back to the same bytes (NUL aside: the decoder refuses \u0000 by design).
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

static const char CHECK[] =
    "local core, s = ...\n"
    "local valid = utf8.len(s) ~= nil\n"
    "local shapes = {\n"
    "  { s, function(b) return b end },\n"
    "  { { [s] = s }, function(b) return b[s] end },\n"
    "  { setmetatable({ s, 1.5, s }, core.array_mt), function(b) return b[3] end },\n"
    "}\n"
    "for _, shape in ipairs(shapes) do\n"
    "  for _, stringify in ipairs{ false, true } do\n"
    "    local out, err = core.json_encode(shape[1], stringify)\n"
    "    if valid ~= (out ~= nil) then error('validity disagrees: ' .. tostring(err)) end\n"
    "    if out and not s:find('\\0', 1, true) then\n"
    "      local back = assert(core.json_decode(out))\n"
    "      if shape[2](back) ~= s then error('round trip changed the bytes') end\n"
    "      if core.json_encode(back, stringify) ~= out then error('re-encoding differs') end\n"
    "    end\n"
    "  end\n"
    "end\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "dws.core", luaopen_dws_core, 0);           /* index 1 */
    if (luaL_loadbuffer(L, CHECK, sizeof CHECK - 1, "=check") != LUA_OK)  /* index 2 */
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_settop(L, 2);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 1);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        fprintf(stderr, "json_encode check failed: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, 2);
    lua_gc(L, LUA_GCCOLLECT, 0);   /* keep mallocs and frees even for libFuzzer's leak check */
    return 0;
}
