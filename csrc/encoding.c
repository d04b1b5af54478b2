/*
 * base64 and percent coding. The pure C coders at the top never allocate (the fuzz harnesses
 * call them directly); the Lua bindings below give them a stack buffer, or a userdata the GC
 * owns for large inputs (dws_scratch), so an error raised by the Lua API can never leak memory.
 */
#include <stdint.h>

#include "dws.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Each alphabet character's value plus one; 0 for every other byte (padding included). */
static const unsigned char b64_plus1[256] = {
    ['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6, ['G'] = 7, ['H'] = 8,
    ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63, ['/'] = 64,
};

static int b64_value(unsigned char c)
{
    return (int)b64_plus1[c] - 1;
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

size_t dws_b64_encode(const unsigned char *in, size_t n, char *out)
{
    size_t i = 0, o = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned long v = ((unsigned long)in[i] << 16) | ((unsigned long)in[i + 1] << 8) | in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        unsigned long v = (unsigned long)in[i] << 16;
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        unsigned long v = ((unsigned long)in[i] << 16) | ((unsigned long)in[i + 1] << 8);
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
    return o;
}

int dws_b64_decode(const char *in, size_t n, unsigned char *out, size_t *outlen, int skip_space,
                   const char **why)
{
    int quad[4];
    int qn = 0, pad = 0, done = 0;
    size_t i, o = 0;

    i = 0;
    /*
     * Every quad before the last, when no spaces are skipped: one table lookup per character and
     * one test per quad (a 344-character signature took 33 instructions a character through the
     * loop below). A quad with anything but alphabet characters, padding included, is left to
     * the loop below, which starts at that quad in the same state and reports what is wrong.
     */
    if (!skip_space) {
        const unsigned char *u = (const unsigned char *)in;
        for (; n > 4 && i < n - 4; i += 4) {
            unsigned a = b64_plus1[u[i]], b = b64_plus1[u[i + 1]], c = b64_plus1[u[i + 2]],
                     d = b64_plus1[u[i + 3]];
            unsigned long v;
            if (!a || !b || !c || !d) break;
            v = ((unsigned long)(a - 1) << 18) | ((unsigned long)(b - 1) << 12) | ((unsigned long)(c - 1) << 6) |
                (unsigned long)(d - 1);
            out[o++] = (unsigned char)(v >> 16);
            out[o++] = (unsigned char)(v >> 8);
            out[o++] = (unsigned char)v;
        }
    }
    for (; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (skip_space && is_space(c))
            continue;
        if (done) {
            *why = "base64: data after padding";
            return -1;
        }
        if (c == '=') {
            if (qn < 2) {
                *why = "base64: misplaced padding";
                return -1;
            }
            pad++;
            quad[qn++] = 0;
        } else {
            int v = b64_value(c);
            if (v < 0) {
                *why = "base64: invalid character";
                return -1;
            }
            if (pad) {
                *why = "base64: data after padding";
                return -1;
            }
            quad[qn++] = v;
        }
        if (qn == 4) {
            unsigned long v = ((unsigned long)quad[0] << 18) | ((unsigned long)quad[1] << 12) |
                              ((unsigned long)quad[2] << 6) | (unsigned long)quad[3];
            /* Only the canonical encoding is accepted: unused bits must be zero. */
            if ((pad == 1 && (v & 0xff)) || (pad == 2 && (v & 0xffff))) {
                *why = "base64: non-canonical encoding";
                return -1;
            }
            out[o++] = (unsigned char)(v >> 16);
            if (pad < 2) out[o++] = (unsigned char)(v >> 8);
            if (pad < 1) out[o++] = (unsigned char)v;
            qn = 0;
            done = pad > 0;
        }
    }
    if (qn != 0) {
        *why = "base64: length is not a multiple of 4";
        return -1;
    }
    *outlen = o;
    return 0;
}

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

size_t dws_url_encode(const char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (is_unreserved(c)) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    return o;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int dws_url_decode(const char *in, size_t n, char *out, size_t *outlen, const char **why)
{
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        if (in[i] == '%') {
            int hi, lo;
            if (n - i < 3 || (hi = hex_value((unsigned char)in[i + 1])) < 0 ||
                (lo = hex_value((unsigned char)in[i + 2])) < 0) {
                *why = "percent-decoding: bad %XX escape";
                return -1;
            }
            out[o++] = (char)((hi << 4) | lo);
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    *outlen = o;
    return 0;
}

/* ---- Lua bindings ---- */

static int l_base64_encode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char stackbuf[DWS_STACK_SCRATCH];
    char *out;
    luaL_argcheck(L, n <= (SIZE_MAX / 4) * 3 - 3, 1, "string too long");
    out = dws_scratch(L, stackbuf, DWS_B64_ENCODED_LEN(n));
    lua_pushlstring(L, out, dws_b64_encode((const unsigned char *)s, n, out));
    return 1;
}

static int l_base64_decode(lua_State *L)
{
    size_t n, outlen;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *why = NULL;
    unsigned char stackbuf[DWS_STACK_SCRATCH];
    unsigned char *out = dws_scratch(L, stackbuf, DWS_B64_DECODED_MAX(n));
    if (dws_b64_decode(s, n, out, &outlen, 0, &why) != 0)
        return dws_push_error(L, why);
    lua_pushlstring(L, (const char *)out, outlen);
    return 1;
}

static int l_url_encode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char stackbuf[DWS_STACK_SCRATCH];
    char *out;
    luaL_argcheck(L, n <= SIZE_MAX / 3, 1, "string too long");
    out = dws_scratch(L, stackbuf, n * 3);
    lua_pushlstring(L, out, dws_url_encode(s, n, out));
    return 1;
}

static int l_url_decode(lua_State *L)
{
    size_t n, outlen;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *why = NULL;
    char stackbuf[DWS_STACK_SCRATCH];
    char *out = dws_scratch(L, stackbuf, n);
    if (dws_url_decode(s, n, out, &outlen, &why) != 0)
        return dws_push_error(L, why);
    lua_pushlstring(L, out, outlen);
    return 1;
}

static const luaL_Reg encoding_funcs[] = {
    {"base64_encode", l_base64_encode},
    {"base64_decode", l_base64_decode},
    {"url_encode", l_url_encode},
    {"url_decode", l_url_decode},
    {NULL, NULL}
};

void dws_open_encoding(lua_State *L)
{
    luaL_setfuncs(L, encoding_funcs, 0);
}
