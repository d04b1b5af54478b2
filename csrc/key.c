/*
 * RSA keys as userdata: parsed once, with the SHA-256 digest and a signing or verifying
 * EVP_PKEY_CTX prepared once per key, so a call costs one digest plus one RSA operation.
 * __gc, __close and close() share one idempotent release.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "buffer.h"
#include "class.h"
#include "dws.h"

#define KEY_MT "dws.key"

typedef struct dws_key {
    EVP_PKEY *pkey;
    EVP_PKEY_CTX *pctx;   /* sign_init or verify_init done, PKCS#1 v1.5 + SHA-256 set */
    EVP_MD *md;           /* SHA-256, fetched once */
    EVP_MD_CTX *mdctx;    /* reused for each digest */
    int is_private;
    int bits;
} dws_key;

/* Offset of lit in s[from..n), or n when absent. */
static size_t find(const char *s, size_t n, size_t from, const char *lit)
{
    size_t m = strlen(lit), i;
    for (i = from; m <= n && i + m <= n; i++)
        if (memcmp(s + i, lit, m) == 0)
            return i;
    return n;
}

static int contains(const char *s, size_t n, const char *lit)
{
    return find(s, n, 0, lit) < n;
}

static EVP_PKEY *decode(const unsigned char *data, size_t n, const char *input_type, int selection)
{
    EVP_PKEY *pkey = NULL;
    OSSL_DECODER_CTX *dctx = OSSL_DECODER_CTX_new_for_pkey(&pkey, input_type, NULL, NULL,
                                                           selection, NULL, NULL);
    if (dctx == NULL)
        return NULL;
    if (OSSL_DECODER_from_data(dctx, &data, &n) != 1) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    OSSL_DECODER_CTX_free(dctx);
    return pkey;
}

static int has_private_part(const EVP_PKEY *pkey)
{
    BIGNUM *d = NULL;
    if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_D, &d) != 1 || d == NULL)
        return 0;
    BN_clear_free(d);
    return 1;
}

/*
 * e = 1 turns a "signature" into the padded digest itself, and any small or even e is a sign of a
 * made-up key: require the FIPS 186-4 range (odd, 65537 <= e < 2^256), which every real RSA key
 * generator (OpenSSL, Java, the DWS portal) meets.
 */
static int exponent_ok(const EVP_PKEY *pkey)
{
    BIGNUM *e = NULL, *min = NULL;
    int ok;
    if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) != 1 || e == NULL)
        return 0;
    min = BN_new();
    ok = min != NULL && BN_set_word(min, DWS_KEY_MIN_EXPONENT) == 1 && BN_is_odd(e) &&
         BN_cmp(e, min) >= 0 && BN_num_bits(e) <= DWS_KEY_MAX_EXPONENT_BITS;
    BN_free(min);
    BN_free(e);
    return ok;
}

/*
 * OpenSSL's own validation: for a public key, SP 800-56B's public checks (odd composite modulus
 * without small factors, sane exponent); for a private key, the full pair-wise check as
 * RSA_check_key does it (p and q prime, n = pq, d inverts e, CRT values consistent), so a key
 * damaged in transit raises when the client is made instead of signing garbage.
 */
static int openssl_checks(EVP_PKEY *pkey, int want_private)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    int ok;
    if (ctx == NULL)
        return 0;
    ok = want_private ? EVP_PKEY_pairwise_check(ctx) : EVP_PKEY_public_check(ctx);
    EVP_PKEY_CTX_free(ctx);
    return ok == 1;
}

/* Base64 text to DER, skipping whitespace; 0 and *derlen = 0 when it is not base64. */
static EVP_PKEY *decode_base64(const char *text, size_t n, int selection, size_t *derlen)
{
    const char *why = NULL;
    size_t cap = DWS_B64_DECODED_MAX(n);
    unsigned char *der = malloc(cap);
    EVP_PKEY *pkey = NULL;
    *derlen = 0;
    if (der == NULL)
        return NULL;
    if (dws_b64_decode(text, n, der, derlen, 1, &why) != 0)
        *derlen = 0;
    if (*derlen > 0)
        pkey = decode(der, *derlen, "DER", selection);
    /* The DER of a private key is secret: wipe it before the allocator reuses it. */
    OPENSSL_cleanse(der, cap);
    free(der);
    return pkey;
}

/*
 * PEM that OpenSSL's reader refuses because its line breaks were lost on the way (the whole key
 * on one line, or literal "\n" from a JSON or environment value): decode the body between the
 * BEGIN and END lines ourselves.
 */
static EVP_PKEY *decode_pem_body(const char *text, size_t n, int selection)
{
    size_t begin = find(text, n, 0, "-----BEGIN "), start, end, i, m = 0, derlen;
    char *body;
    EVP_PKEY *pkey;
    if (begin == n)
        return NULL;
    start = find(text, n, begin + 11, "-----");
    if (start == n)
        return NULL;
    start += 5;
    end = find(text, n, start, "-----END ");
    if (end == n)
        return NULL;
    body = malloc(end - start + 1);
    if (body == NULL)
        return NULL;
    for (i = start; i < end; i++) {
        if (text[i] == '\\' && i + 1 < end && (text[i + 1] == 'n' || text[i + 1] == 'r')) {
            i++;
            continue;
        }
        body[m++] = text[i];
    }
    pkey = decode_base64(body, m, selection, &derlen);
    OPENSSL_cleanse(body, end - start + 1);
    free(body);
    return pkey;
}

EVP_PKEY *dws_key_parse(const char *text, size_t n, int want_private, char *err, size_t errlen)
{
    const char *kind = want_private ? "private key" : "public key";
    int selection = want_private ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY;
    EVP_PKEY *pkey = NULL;
    int bits;

    if (n == 0) {
        snprintf(err, errlen, "%s: empty", kind);
        return NULL;
    }
    if (n > DWS_KEY_TEXT_MAX) {
        snprintf(err, errlen, "%s: longer than %d bytes", kind, DWS_KEY_TEXT_MAX);
        return NULL;
    }
    if (contains(text, n, "-----BEGIN ")) {
        if (contains(text, n, "ENCRYPTED")) {
            snprintf(err, errlen, "%s: encrypted keys are not supported", kind);
            return NULL;
        }
        pkey = decode((const unsigned char *)text, n, "PEM", selection);
        if (pkey == NULL)
            pkey = decode_pem_body(text, n, selection);
    } else {
        size_t derlen;
        pkey = decode_base64(text, n, selection, &derlen);
        if (derlen == 0) {
            ERR_clear_error();
            snprintf(err, errlen, "%s: neither PEM nor base64 DER", kind);
            return NULL;
        }
    }
    ERR_clear_error();   /* the decoder leaves errors from the formats it tried */
    if (pkey == NULL) {
        snprintf(err, errlen, "%s: could not be parsed (expected %s)", kind,
                 want_private ? "PKCS#8 or PKCS#1, PEM or base64 DER"
                              : "X.509 SubjectPublicKeyInfo or PKCS#1, PEM or base64 DER");
        return NULL;
    }
    if (!EVP_PKEY_is_a(pkey, "RSA")) {
        const char *type = EVP_PKEY_get0_type_name(pkey);
        snprintf(err, errlen, "%s: not an RSA key (%s)", kind, type ? type : "unknown type");
        goto fail;
    }
    bits = EVP_PKEY_get_bits(pkey);
    if (bits < DWS_KEY_MIN_BITS || bits > DWS_KEY_MAX_BITS) {
        snprintf(err, errlen, "%s: RSA key of %d bits (accepted: %d to %d)", kind, bits,
                 DWS_KEY_MIN_BITS, DWS_KEY_MAX_BITS);
        goto fail;
    }
    if (has_private_part(pkey) != want_private) {
        snprintf(err, errlen, "%s: got a %s key", kind, want_private ? "public" : "private");
        goto fail;
    }
    if (!exponent_ok(pkey)) {
        snprintf(err, errlen, "%s: RSA public exponent must be odd, at least %d and under 2^%d",
                 kind, DWS_KEY_MIN_EXPONENT, DWS_KEY_MAX_EXPONENT_BITS);
        goto fail;
    }
    if (!openssl_checks(pkey, want_private)) {
        snprintf(err, errlen, "%s: %s", kind,
                 want_private ? "inconsistent RSA key (failed OpenSSL's key-pair check)"
                              : "not a valid RSA public key (failed OpenSSL's check)");
        goto fail;
    }
    ERR_clear_error();
    return pkey;
fail:
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return NULL;
}

static void key_release(dws_key *k)
{
    EVP_PKEY_CTX_free(k->pctx);
    EVP_MD_CTX_free(k->mdctx);
    EVP_MD_free(k->md);
    EVP_PKEY_free(k->pkey);   /* clears the key material itself */
    k->pctx = NULL;
    k->mdctx = NULL;
    k->md = NULL;
    k->pkey = NULL;
}

/* Prepare the per-key contexts; 0 on failure (the caller releases). */
static int key_prepare(dws_key *k)
{
    int ok;
    k->md = EVP_MD_fetch(NULL, "SHA256", NULL);
    k->mdctx = EVP_MD_CTX_new();
    k->pctx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
    if (k->md == NULL || k->mdctx == NULL || k->pctx == NULL)
        return 0;
    ok = k->is_private ? EVP_PKEY_sign_init(k->pctx) : EVP_PKEY_verify_init(k->pctx);
    return ok == 1 && EVP_PKEY_CTX_set_rsa_padding(k->pctx, RSA_PKCS1_PADDING) == 1 &&
           EVP_PKEY_CTX_set_signature_md(k->pctx, k->md) == 1;
}

static int digest(dws_key *k, const unsigned char *msg, size_t n, unsigned char *out)
{
    unsigned int len = 0;
    return EVP_DigestInit_ex2(k->mdctx, k->md, NULL) == 1 &&
           EVP_DigestUpdate(k->mdctx, msg, n) == 1 &&
           EVP_DigestFinal_ex(k->mdctx, out, &len) == 1 && len == 32;
}

/* Signs into sig (DWS_SIG_MAX bytes). Returns 0 or -1; the error queue is left empty. */
static int key_sign(dws_key *k, const unsigned char *msg, size_t n, unsigned char *sig,
                    size_t *siglen)
{
    unsigned char md[32];
    *siglen = DWS_SIG_MAX;
    if (!digest(k, msg, n, md) || EVP_PKEY_sign(k->pctx, sig, siglen, md, sizeof md) != 1) {
        ERR_clear_error();
        return -1;
    }
    return 0;
}

/* 1 verified, 0 not; *why says why not. */
static int key_verify(dws_key *k, const unsigned char *msg, size_t n, const unsigned char *sig,
                      size_t siglen, const char **why)
{
    unsigned char md[32];
    if (siglen != (size_t)EVP_PKEY_get_size(k->pkey)) {
        *why = "signature length does not match the key";
        return 0;
    }
    if (!digest(k, msg, n, md)) {
        ERR_clear_error();
        *why = "digest failed";
        return 0;
    }
    if (EVP_PKEY_verify(k->pctx, sig, siglen, md, sizeof md) != 1) {
        ERR_clear_error();
        *why = "signature does not match";
        return 0;
    }
    return 1;
}

static dws_key *check_key(lua_State *L, int idx, int want_private)
{
    dws_key *k = luaL_checkudata(L, idx, KEY_MT);
    if (k->pkey == NULL)
        luaL_argerror(L, idx, "key is closed");
    if (want_private >= 0 && k->is_private != want_private)
        luaL_argerror(L, idx, want_private ? "a private key is needed to sign"
                                           : "a public key is needed to verify");
    return k;
}

static int new_key(lua_State *L, int want_private)
{
    size_t n;
    const char *text = luaL_checklstring(L, 1, &n);
    char err[160];
    /* The userdata exists before any OpenSSL object, so nothing leaks if Lua raises. */
    dws_key *k = lua_newuserdata(L, sizeof *k);
    memset(k, 0, sizeof *k);
    luaL_setmetatable(L, KEY_MT);
    k->pkey = dws_key_parse(text, n, want_private, err, sizeof err);
    if (k->pkey == NULL) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    k->is_private = want_private;
    k->bits = EVP_PKEY_get_bits(k->pkey);
    if (!key_prepare(k)) {
        key_release(k);
        ERR_clear_error();
        lua_pushnil(L);
        lua_pushstring(L, want_private ? "private key: cannot prepare signing"
                                       : "public key: cannot prepare verification");
        return 2;
    }
    return 1;
}

static int l_private_key(lua_State *L) { return new_key(L, 1); }
static int l_public_key(lua_State *L) { return new_key(L, 0); }

static int push_sign_result(lua_State *L, int rc, const unsigned char *sig, size_t siglen,
                            int as_base64)
{
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, "signing failed");
        return 2;
    }
    if (as_base64) {
        char b64[DWS_B64_ENCODED_LEN(DWS_SIG_MAX)];
        lua_pushlstring(L, b64, dws_b64_encode(sig, siglen, b64));
    } else {
        lua_pushlstring(L, (const char *)sig, siglen);
    }
    return 1;
}

static int push_verify_result(lua_State *L, int ok, const char *why)
{
    lua_pushboolean(L, ok);
    if (ok)
        return 1;
    lua_pushstring(L, why);
    return 2;
}

static int m_sign(lua_State *L)
{
    dws_key *k = check_key(L, 1, 1);
    size_t n, siglen;
    const char *content = luaL_checklstring(L, 2, &n);
    unsigned char sig[DWS_SIG_MAX];
    int rc = key_sign(k, (const unsigned char *)content, n, sig, &siglen);
    return push_sign_result(L, rc, sig, siglen, 0);
}

static int m_verify(lua_State *L)
{
    dws_key *k = check_key(L, 1, 0);
    size_t n, siglen;
    const char *content = luaL_checklstring(L, 2, &n);
    const char *sig = luaL_checklstring(L, 3, &siglen);
    const char *why = NULL;
    int ok = key_verify(k, (const unsigned char *)content, n, (const unsigned char *)sig, siglen,
                        &why);
    return push_verify_result(L, ok, why);
}

static int m_bits(lua_State *L)
{
    lua_pushinteger(L, check_key(L, 1, -1)->bits);
    return 1;
}

static int m_kind(lua_State *L)
{
    lua_pushstring(L, check_key(L, 1, -1)->is_private ? "private" : "public");
    return 1;
}

/*
 * DER SubjectPublicKeyInfo of the key's public half, for a private key too: lets callers compare
 * two keys (the merchant's own public key configured as the DWS key) without private material.
 */
static int m_public_der(lua_State *L)
{
    dws_key *k = check_key(L, 1, -1);
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(k->pkey, &der);
    if (n <= 0) {
        ERR_clear_error();
        lua_pushnil(L);
        lua_pushliteral(L, "cannot encode the public key");
        return 2;
    }
    lua_pushlstring(L, (const char *)der, (size_t)n);
    OPENSSL_free(der);
    return 1;
}

static int m_close(lua_State *L)
{
    key_release(luaL_checkudata(L, 1, KEY_MT));
    return 0;
}

static int m_tostring(lua_State *L)
{
    dws_key *k = luaL_checkudata(L, 1, KEY_MT);
    if (k->pkey == NULL)
        lua_pushliteral(L, "dws.key(closed)");
    else
        lua_pushfstring(L, "dws.key(%s, %d bits)", k->is_private ? "private" : "public", k->bits);
    return 1;
}

/* The body: a string, or a dws.buffer (an encoded request kept out of Lua strings). */
static const char *body_arg(lua_State *L, int idx, size_t *len)
{
    const dws_buffer *b = dws_test_buffer(L, idx);
    if (b != NULL) {
        *len = b->len;
        return (const char *)b->data;
    }
    return luaL_checklstring(L, idx, len);
}

/* Gathers the six strings of core.sign / core.verify (stack 2..6) and builds the content. */
static unsigned char *build_content(lua_State *L, size_t *n)
{
    size_t len[5];
    const char *s[5];
    int i;
    for (i = 0; i < 4; i++)
        s[i] = luaL_checklstring(L, i + 2, &len[i]);
    s[4] = body_arg(L, 6, &len[4]);
    return dws_content_build(s[0], len[0], s[1], len[1], s[2], len[2], s[3], len[3], s[4], len[4],
                             n);
}

/* core.sign(key, method, path, client_id, time, body) -> base64 signature */
static int l_sign(lua_State *L)
{
    dws_key *k = check_key(L, 1, 1);
    size_t n = 0, siglen = 0;
    unsigned char sig[DWS_SIG_MAX];
    unsigned char *content;
    int rc;
    body_arg(L, 6, &n);   /* raise on bad arguments before anything is allocated */
    content = build_content(L, &n);
    if (content == NULL) {
        lua_pushnil(L);
        lua_pushliteral(L, "out of memory");
        return 2;
    }
    rc = key_sign(k, content, n, sig, &siglen);
    /* The body holds card data: wipe it before the allocator hands the memory out again. */
    OPENSSL_cleanse(content, n);
    free(content);
    return push_sign_result(L, rc, sig, siglen, 1);
}

/* core.verify(key, method, path, client_id, time, body, raw_sig) -> true | false, reason */
static int l_verify(lua_State *L)
{
    dws_key *k = check_key(L, 1, 0);
    size_t n = 0, siglen;
    const char *sig = luaL_checklstring(L, 7, &siglen);
    const char *why = NULL;
    unsigned char *content;
    int ok;
    luaL_checklstring(L, 6, NULL);
    content = build_content(L, &n);
    if (content == NULL)
        return push_verify_result(L, 0, "out of memory");
    ok = key_verify(k, content, n, (const unsigned char *)sig, siglen, &why);
    OPENSSL_cleanse(content, n);
    free(content);
    return push_verify_result(L, ok, why);
}

static const luaL_Reg key_methods[] = {
    {"sign", m_sign},
    {"verify", m_verify},
    {"bits", m_bits},
    {"kind", m_kind},
    {"public_der", m_public_der},
    {"close", m_close},
    {NULL, NULL}
};

static const dws_class key_class = {
    .name = KEY_MT, .methods = key_methods, .methods_in_metatable = 0,
    .release = m_close, .tostring = m_tostring, .len = NULL,
};

/*
 * core.generate_key([bits]) -> PKCS#8 PEM private key, bare base64 SPKI public key | nil, err.
 * For `dws keygen`: the pair in the forms DWS's portal and our own parser take.
 */
static int l_generate_key(lua_State *L)
{
    lua_Integer bits = luaL_optinteger(L, 1, DWS_KEY_MIN_BITS);
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx;
    BIO *bio = NULL;
    unsigned char *der = NULL;
    char *pem;
    long pemlen;
    int derlen;
    luaL_argcheck(L, bits >= DWS_KEY_MIN_BITS && bits <= DWS_KEY_MAX_BITS && bits % 8 == 0, 1,
                  "RSA key size out of range");
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (ctx == NULL || EVP_PKEY_keygen_init(ctx) != 1 ||
        EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)bits) != 1 || EVP_PKEY_keygen(ctx, &pkey) != 1)
        goto fail;
    bio = BIO_new(BIO_s_mem());
    /* PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY"), unencrypted. */
    if (bio == NULL || PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1)
        goto fail;
    derlen = i2d_PUBKEY(pkey, &der);
    if (derlen <= 0)
        goto fail;
    pemlen = BIO_get_mem_data(bio, &pem);
    lua_pushlstring(L, pem, (size_t)pemlen);
    /* The memory BIO held the private key: wipe it before the allocator reuses it. */
    OPENSSL_cleanse(pem, (size_t)pemlen);
    {
        char *b64 = malloc(DWS_B64_ENCODED_LEN((size_t)derlen));
        if (b64 == NULL) {
            lua_pop(L, 1);
            goto fail;
        }
        lua_pushlstring(L, b64, dws_b64_encode(der, (size_t)derlen, b64));
        free(b64);
    }
    OPENSSL_free(der);
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    return 2;
fail:
    OPENSSL_free(der);
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();
    lua_pushnil(L);
    lua_pushliteral(L, "RSA key generation failed");
    return 2;
}

static const luaL_Reg key_funcs[] = {
    {"generate_key", l_generate_key},
    {"private_key", l_private_key},
    {"public_key", l_public_key},
    {"sign", l_sign},
    {"verify", l_verify},
    {NULL, NULL}
};

void dws_open_key(lua_State *L)
{
    dws_class_register(L, &key_class);
    luaL_setfuncs(L, key_funcs, 0);
}
