/*
 * uuid4 and random bytes, both from OpenSSL's RAND_bytes. A generator failure is returned as
 * nil, err (with the OpenSSL error queue cleared), never raised.
 */
#include <openssl/err.h>
#include <openssl/rand.h>

#include "dws.h"

static int l_uuid4(lua_State *L)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[16];
    char out[36];
    int i, o = 0;
    if (RAND_bytes(r, sizeof r) != 1) {
        ERR_clear_error();
        return dws_push_error(L, "uuid4: random generator failed");
    }
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);   /* version 4 */
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);   /* RFC 4122 variant */
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[r[i] >> 4];
        out[o++] = hex[r[i] & 15];
    }
    lua_pushlstring(L, out, sizeof out);
    return 1;
}

#define RANDOM_BYTES_MAX (1024 * 1024)

static int l_random_bytes(lua_State *L)
{
    lua_Number want = luaL_checknumber(L, 1);
    unsigned char stackbuf[DWS_STACK_SCRATCH];
    unsigned char *out;
    size_t n;
    luaL_argcheck(L, want >= 0 && want <= RANDOM_BYTES_MAX && (lua_Number)(size_t)want == want, 1,
                  "expected an integer from 0 to 1048576");
    n = (size_t)want;
    out = dws_scratch(L, stackbuf, n);
    if (n > 0 && RAND_bytes(out, (int)n) != 1) {
        ERR_clear_error();
        return dws_push_error(L, "random_bytes: random generator failed");
    }
    lua_pushlstring(L, (const char *)out, n);
    return 1;
}

static const luaL_Reg random_funcs[] = {
    {"uuid4", l_uuid4},
    {"random_bytes", l_random_bytes},
    {NULL, NULL}
};

void dws_open_random(lua_State *L)
{
    luaL_setfuncs(L, random_funcs, 0);
}
