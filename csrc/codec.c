/*
 * base64, percent coding, the Signature header, content-to-sign.
 * The pure C coders at the top never allocate (the fuzz harnesses call them directly); the
 * Lua bindings below give them a stack buffer, or a userdata the GC owns for large inputs, so
 * an error raised by the Lua API can never leak memory.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "dws.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
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

    for (i = 0; i < n; i++) {
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

static int span_ieq(const char *p, size_t n, const char *lit)
{
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char a = (unsigned char)p[i], b = (unsigned char)lit[i];
        if (b == '\0') return 0;
        if (a >= 'A' && a <= 'Z') a = (unsigned char)(a - 'A' + 'a');
        if (b >= 'A' && b <= 'Z') b = (unsigned char)(b - 'A' + 'a');
        if (a != b) return 0;
    }
    return lit[n] == '\0';
}

static void span_trim(const char **p, size_t *n)
{
    while (*n > 0 && (**p == ' ' || **p == '\t')) {
        (*p)++;
        (*n)--;
    }
    while (*n > 0 && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
        (*n)--;
}

int dws_sigheader_parse(const char *s, size_t n, dws_sigheader *out, const char **why)
{
    size_t pos = 0;
    memset(out, 0, sizeof *out);
    if (n > DWS_SIGHEADER_MAX) {
        *why = "Signature header too long";
        return -1;
    }
    while (pos <= n) {
        const char *item = s + pos, *eq, *name, *value;
        size_t len = 0, nlen, vlen;
        dws_span *slot = NULL;
        while (pos + len < n && s[pos + len] != ',')
            len++;
        pos += len + 1;
        span_trim(&item, &len);
        if (len == 0)
            continue;
        eq = memchr(item, '=', len);
        if (eq == NULL) {
            *why = "Signature header: item without '='";
            return -1;
        }
        name = item;
        nlen = (size_t)(eq - item);
        value = eq + 1;
        vlen = len - nlen - 1;
        span_trim(&name, &nlen);
        span_trim(&value, &vlen);
        if (span_ieq(name, nlen, "signature"))
            slot = &out->signature;
        else if (span_ieq(name, nlen, "algorithm"))
            slot = &out->algorithm;
        else if (span_ieq(name, nlen, "keyversion"))
            slot = &out->key_version;
        if (slot == NULL)
            continue;   /* unknown items are ignored, as the SDKs do */
        if (slot->ptr != NULL) {
            *why = "Signature header: duplicated item";
            return -1;
        }
        slot->ptr = value;
        slot->len = vlen;
    }
    if (out->signature.ptr == NULL) {
        *why = "Signature header: no signature= item";
        return -1;
    }
    if (out->signature.len == 0) {
        *why = "Signature header: empty signature";
        return -1;
    }
    return 0;
}

unsigned char *dws_content_build(const char *method, size_t mlen, const char *path, size_t plen,
                                 const char *client_id, size_t clen, const char *time, size_t tlen,
                                 const char *body, size_t blen, size_t *outlen)
{
    size_t parts[5], total = 4, i, o = 0;
    unsigned char *buf;
    parts[0] = mlen; parts[1] = plen; parts[2] = clen; parts[3] = tlen; parts[4] = blen;
    for (i = 0; i < 5; i++) {
        if (parts[i] > SIZE_MAX - total)
            return NULL;
        total += parts[i];
    }
    buf = malloc(total ? total : 1);
    if (buf == NULL)
        return NULL;
    memcpy(buf + o, method, mlen); o += mlen;
    buf[o++] = ' ';
    memcpy(buf + o, path, plen); o += plen;
    buf[o++] = '\n';
    memcpy(buf + o, client_id, clen); o += clen;
    buf[o++] = '.';
    memcpy(buf + o, time, tlen); o += tlen;
    buf[o++] = '.';
    if (blen) memcpy(buf + o, body, blen);
    o += blen;
    *outlen = o;
    return buf;
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

/* core.signature_header(b64sig, key_version) */
static int l_signature_header(lua_State *L)
{
    size_t n, vlen, i, o;
    const char *sig = luaL_checklstring(L, 1, &n);
    const char *ver = luaL_checklstring(L, 2, &vlen);
    luaL_Buffer b;
    char enc[3 * 64];
    luaL_argcheck(L, vlen > 0, 2, "empty key version");
    for (i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)ver[i];
        luaL_argcheck(L, c > ' ' && c < 0x7f && c != ',' && c != '=', 2,
                      "key version must be printable ASCII without ',' or '='");
    }
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "algorithm=RSA256,keyVersion=");
    luaL_addlstring(&b, ver, vlen);
    luaL_addstring(&b, ",signature=");
    for (i = 0; i < n; i += o) {
        o = n - i < 64 ? n - i : 64;
        luaL_addlstring(&b, enc, dws_url_encode(sig + i, o, enc));
    }
    luaL_pushresult(&b);
    return 1;
}

/* core.parse_signature_header(s) -> { algorithm=, keyVersion=, signature = raw } | nil, err */
static int l_parse_signature_header(lua_State *L)
{
    size_t n, declen, rawlen;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *why = NULL;
    dws_sigheader h;
    char decoded[DWS_SIGHEADER_MAX];
    unsigned char raw[DWS_B64_DECODED_MAX(DWS_SIGHEADER_MAX)];

    if (dws_sigheader_parse(s, n, &h, &why) != 0)
        return dws_push_error(L, why);
    if (dws_url_decode(h.signature.ptr, h.signature.len, decoded, &declen, &why) != 0)
        return dws_push_error(L, "Signature header: signature is not percent-encoded correctly");
    if (dws_b64_decode(decoded, declen, raw, &rawlen, 0, &why) != 0 || rawlen == 0)
        return dws_push_error(L, "Signature header: signature is not valid base64");
    lua_createtable(L, 0, 3);
    if (h.algorithm.ptr != NULL) {
        lua_pushlstring(L, h.algorithm.ptr, h.algorithm.len);
        lua_setfield(L, -2, "algorithm");
    }
    if (h.key_version.ptr != NULL) {
        lua_pushlstring(L, h.key_version.ptr, h.key_version.len);
        lua_setfield(L, -2, "keyVersion");
    }
    lua_pushlstring(L, (const char *)raw, rawlen);
    lua_setfield(L, -2, "signature");
    return 1;
}

static const luaL_Reg codec_funcs[] = {
    {"base64_encode", l_base64_encode},
    {"base64_decode", l_base64_decode},
    {"url_encode", l_url_encode},
    {"url_decode", l_url_decode},
    {"signature_header", l_signature_header},
    {"parse_signature_header", l_parse_signature_header},
    {NULL, NULL}
};

void dws_open_codec(lua_State *L)
{
    luaL_setfuncs(L, codec_funcs, 0);
}