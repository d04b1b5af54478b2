/*
 * libFuzzer: the redaction core (csrc/redact.c) on arbitrary bytes, in a real Lua 5.4 state.
 * Invariants of core.mask_card_digits: never raises; the length is kept; only digits change, and
 * only to '*'; no run of digits that could be a card is left (12-19 digits, Luhn-valid, not a
 * 13-digit run starting with 1); masking the result again changes nothing.
 * Invariants of core.escape_text: no control byte, NEL, U+2028 or U+2029 is left; text without
 * them comes back as it was.
 * The Luhn check here is the harness's own, so a bug in the core's cannot hide itself.
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

/* core[fn](s) -> its one result, as bytes. */
static const char *call(const char *fn, const char *s, size_t n, size_t *outlen)
{
    lua_getfield(L, 1, fn);
    lua_pushlstring(L, s, n);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        fprintf(stderr, "%s raised: %s\n", fn, lua_tostring(L, -1));
        abort();
    }
    if (!lua_isstring(L, -1))
        abort();
    return lua_tolstring(L, -1, outlen);
}

static int luhn_ok(const char *d, size_t n)
{
    int sum = 0;
    for (size_t i = 0; i < n; i++) {
        int v = d[n - 1 - i] - '0';
        if (i % 2 == 1)
            v = v * 2 > 9 ? v * 2 - 9 : v * 2;
        sum += v;
    }
    return sum % 10 == 0;
}

static int digit(char c)
{
    return c >= '0' && c <= '9';
}

static void check_masked(const char *in, size_t n, const char *out, size_t outlen)
{
    if (outlen != n)
        abort();
    for (size_t i = 0; i < n; i++)
        if (in[i] != out[i] && !(digit(in[i]) && out[i] == '*'))
            abort();
    for (size_t i = 0; i < n;) {
        if (!digit(out[i])) {
            i++;
            continue;
        }
        size_t start = i;
        while (i < n && digit(out[i]))
            i++;
        size_t len = i - start;
        if (len >= 12 && len <= 19 && !(len == 13 && out[start] == '1') && luhn_ok(out + start, len))
            abort();
    }
}

static void check_escaped(const char *in, size_t n, const char *out, size_t outlen)
{
    int clean = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c < 0x20 || c == 0x7f || (c == 0xc2 && i + 1 < n && (unsigned char)in[i + 1] == 0x85) ||
            (c == 0xe2 && i + 2 < n && (unsigned char)in[i + 1] == 0x80 &&
             ((unsigned char)in[i + 2] == 0xa8 || (unsigned char)in[i + 2] == 0xa9)))
            clean = 0;
    }
    if (clean && (outlen != n || memcmp(in, out, n) != 0))
        abort();
    for (size_t i = 0; i < outlen; i++) {
        unsigned char c = (unsigned char)out[i];
        if (c < 0x20 || c == 0x7f)
            abort();
        if (c == 0xc2 && i + 1 < outlen && (unsigned char)out[i + 1] == 0x85)
            abort();
        if (c == 0xe2 && i + 2 < outlen && (unsigned char)out[i + 1] == 0x80 &&
            ((unsigned char)out[i + 2] == 0xa8 || (unsigned char)out[i + 2] == 0xa9))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    size_t n1, n2, n3;
    lua_settop(L, 1);
    const char *once = call("mask_card_digits", in, size, &n1);
    check_masked(in, size, once, n1);
    const char *twice = call("mask_card_digits", once, n1, &n2);
    if (n2 != n1 || memcmp(once, twice, n1) != 0)
        abort();
    const char *escaped = call("escape_text", in, size, &n3);
    check_escaped(in, size, escaped, n3);
    lua_settop(L, 1);
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
