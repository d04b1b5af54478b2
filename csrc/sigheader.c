/*
 * The Signature header (build and parse) and the content to sign. The pure C parts never
 * allocate except dws_content_build, whose caller wipes and frees; the fuzz harnesses call them
 * directly. Parsing keeps fixed-size stack buffers: the header is bounded by DWS_SIGHEADER_MAX.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dws.h"

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

static const luaL_Reg sigheader_funcs[] = {
    {"signature_header", l_signature_header},
    {"parse_signature_header", l_parse_signature_header},
    {NULL, NULL}
};

void dws_open_sigheader(lua_State *L)
{
    luaL_setfuncs(L, sigheader_funcs, 0);
}
