/*
 * RSA keys as userdata: parsed once, with the SHA-256 digest and a signing or verifying
 * EVP_PKEY_CTX prepared once per key, so a call costs one digest plus one RSA operation.
 * __gc, __close and close() share one idempotent release.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    int is_p11;           /* held by a PKCS#11 token (pkcs11.c): no private bytes here */
    int p11_stale;        /* a signature failed in the token: log in again before the next */
    pid_t pid;            /* the process whose token session pkey belongs to */
    dws_p11_ref p11;      /* to log in again in a forked process */
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
    if (k->is_p11 && k->pid != getpid()) {
        /*
         * A forked child that never signed still holds its parent's token objects: freeing them
         * could reach the module the parent initialised, so they are left (once per process).
         */
        k->pctx = NULL;
        k->pkey = NULL;
    }
    dws_p11_ref_free(&k->p11);
    EVP_PKEY_CTX_free(k->pctx);
    EVP_MD_CTX_free(k->mdctx);
    EVP_MD_free(k->md);
    EVP_PKEY_free(k->pkey);   /* clears the key material itself */
    k->pctx = NULL;
    k->mdctx = NULL;
    k->md = NULL;
    k->pkey = NULL;
}

/* The signing or verifying context of k->pkey; 0 on failure (the caller releases). */
static int pctx_prepare(dws_key *k)
{
    int ok;
    k->pctx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
    if (k->pctx == NULL)
        return 0;
    ok = k->is_private ? EVP_PKEY_sign_init(k->pctx) : EVP_PKEY_verify_init(k->pctx);
    return ok == 1 && EVP_PKEY_CTX_set_rsa_padding(k->pctx, RSA_PKCS1_PADDING) == 1 &&
           EVP_PKEY_CTX_set_signature_md(k->pctx, k->md) == 1;
}

/* Prepare the per-key contexts; 0 on failure (the caller releases). */
static int key_prepare(dws_key *k)
{
    k->md = EVP_MD_fetch(NULL, "SHA256", NULL);
    k->mdctx = EVP_MD_CTX_new();
    return k->md != NULL && k->mdctx != NULL && pctx_prepare(k);
}

static int digest(dws_key *k, const unsigned char *msg, size_t n, unsigned char *out)
{
    unsigned int len = 0;
    return EVP_DigestInit_ex2(k->mdctx, k->md, NULL) == 1 &&
           EVP_DigestUpdate(k->mdctx, msg, n) == 1 &&
           EVP_DigestFinal_ex(k->mdctx, out, &len) == 1 && len == 32;
}

/*
 * A token key in a process other than the one that loaded it (an nginx worker forked from the
 * master that ran init_by_lua): PKCS#11 sessions do not survive fork, so this process logs in and
 * loads the key again, once, before its first signature; the parent's objects are left as they
 * are (see key_release). After a signature failed in the token (it went away, the session was
 * lost), the next signature logs in again the same way, freeing this process's old objects.
 * Until a new key is loaded and prepared the old one stays, so the key is never half-made.
 * 0, or -1 with err.
 */
static int key_p11_this_process(dws_key *k, char *err, size_t errlen)
{
    EVP_PKEY *pkey, *old_pkey = k->pkey;
    EVP_PKEY_CTX *old_pctx = k->pctx;
    int ours = k->pid == getpid();
    if (!k->is_p11 || (ours && !k->p11_stale))
        return 0;
    pkey = dws_p11_load(&k->p11, k->p11_stale, err, errlen);
    if (pkey == NULL)
        return -1;
    k->pkey = pkey;
    if (!pctx_prepare(k)) {
        EVP_PKEY_CTX_free(k->pctx);
        EVP_PKEY_free(pkey);
        k->pkey = old_pkey;
        k->pctx = old_pctx;
        ERR_clear_error();
        snprintf(err, errlen, "PKCS#11: cannot prepare signing");
        return -1;
    }
    if (ours) {
        EVP_PKEY_CTX_free(old_pctx);
        EVP_PKEY_free(old_pkey);
    }
    k->pid = getpid();   /* from here on, key_release frees these */
    k->p11_stale = 0;
    return 0;
}

/* Signs into sig (DWS_SIG_MAX bytes). Returns 0 or -1; the error queue is left empty. */
static int key_sign(dws_key *k, const unsigned char *msg, size_t n, unsigned char *sig,
                    size_t *siglen, char *err, size_t errlen)
{
    unsigned char md[32];
    snprintf(err, errlen, "signing failed");
    if (key_p11_this_process(k, err, errlen) != 0)
        return -1;
    *siglen = DWS_SIG_MAX;
    if (!digest(k, msg, n, md) || EVP_PKEY_sign(k->pctx, sig, siglen, md, sizeof md) != 1) {
        ERR_clear_error();
        if (k->is_p11) {
            k->p11_stale = 1;
            snprintf(err, errlen, "signing failed in the PKCS#11 token (token removed or session lost?)");
        }
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

/*
 * A private key in a PKCS#11 token: log in, load it through the engine, and check what can be
 * checked of its public half (RSA, size, exponent); the private half never reaches this process.
 */
static EVP_PKEY *p11_key(dws_key *k, const char *text, size_t n, const char *pin, size_t pinlen,
                         char *err, size_t errlen)
{
    EVP_PKEY *pkey;
    int bits;
    if (dws_p11_ref_parse(text, n, pin, pinlen, &k->p11, err, errlen) != 0)
        return NULL;
    k->is_p11 = 1;
    k->pid = getpid();
    pkey = dws_p11_load(&k->p11, 0, err, errlen);
    if (pkey == NULL)
        return NULL;
    if (!EVP_PKEY_is_a(pkey, "RSA")) {
        snprintf(err, errlen, "private key: the PKCS#11 object is not an RSA key");
        goto fail;
    }
    bits = EVP_PKEY_get_bits(pkey);
    if (bits < DWS_KEY_MIN_BITS || bits > DWS_KEY_MAX_BITS) {
        snprintf(err, errlen, "private key: RSA key of %d bits (accepted: %d to %d)", bits,
                 DWS_KEY_MIN_BITS, DWS_KEY_MAX_BITS);
        goto fail;
    }
    if (!exponent_ok(pkey)) {
        snprintf(err, errlen, "private key: RSA public exponent must be odd, at least %d and under 2^%d",
                 DWS_KEY_MIN_EXPONENT, DWS_KEY_MAX_EXPONENT_BITS);
        goto fail;
    }
    ERR_clear_error();
    return pkey;
fail:
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return NULL;
}

static int new_key(lua_State *L, int want_private)
{
    size_t n, pinlen = 0;
    const char *text = luaL_checklstring(L, 1, &n);
    const char *pin = NULL;
    char err[200];
    dws_key *k;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "pin");
        if (!lua_isnil(L, -1)) {
            luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, 2, "pin must be a string");
            pin = lua_tolstring(L, -1, &pinlen);   /* stays on the stack, so it stays alive */
        }
    }
    /* The userdata exists before any OpenSSL object, so nothing leaks if Lua raises. */
    k = lua_newuserdata(L, sizeof *k);
    memset(k, 0, sizeof *k);
    luaL_setmetatable(L, KEY_MT);
    if (dws_p11_is_uri(text, n)) {
        if (want_private)
            k->pkey = p11_key(k, text, n, pin, pinlen, err, sizeof err);
        else
            snprintf(err, sizeof err, "public key: a pkcs11: URI names a token's private key; give the public "
                     "key as text");
    } else if (pin != NULL) {
        snprintf(err, sizeof err, "%s: a PIN is for pkcs11: URIs only", want_private ? "private key" : "public key");
    } else {
        k->pkey = dws_key_parse(text, n, want_private, err, sizeof err);
    }
    if (k->pkey == NULL) {
        key_release(k);
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

static int push_sign_result(lua_State *L, const dws_key *k, int rc, const unsigned char *sig,
                            size_t siglen, int as_base64, const char *err)
{
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        if (!k->is_p11)
            return 2;
        /* the kind, for the caller's retry rule: the token, not the request, failed */
        lua_pushliteral(L, "pkcs11");
        return 3;
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
    char err[160];
    int rc = key_sign(k, (const unsigned char *)content, n, sig, &siglen, err, sizeof err);
    return push_sign_result(L, k, rc, sig, siglen, 0, err);
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
    unsigned char *der, *p;
    int n = i2d_PUBKEY(k->pkey, NULL);
    if (n > 0) {
        /* Written into a userdata the GC owns: a push that raises (out of memory) leaks nothing. */
        der = p = lua_newuserdata(L, (size_t)n);
        if (i2d_PUBKEY(k->pkey, &p) == n) {
            lua_pushlstring(L, (const char *)der, (size_t)n);
            return 1;
        }
    }
    ERR_clear_error();
    lua_pushnil(L);
    lua_pushliteral(L, "cannot encode the public key");
    return 2;
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
        lua_pushfstring(L, "dws.key(%s, %d bits%s)", k->is_private ? "private" : "public", k->bits,
                        k->is_p11 ? ", pkcs11" : "");
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
    char err[160];
    unsigned char *content;
    int rc;
    body_arg(L, 6, &n);   /* raise on bad arguments before anything is allocated */
    content = build_content(L, &n);
    if (content == NULL) {
        lua_pushnil(L);
        lua_pushliteral(L, "out of memory");
        return 2;
    }
    rc = key_sign(k, content, n, sig, &siglen, err, sizeof err);
    /* The body holds card data: wipe it before the allocator hands the memory out again. */
    OPENSSL_cleanse(content, n);
    free(content);
    return push_sign_result(L, k, rc, sig, siglen, 1, err);
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
 * What core.generate_key holds while it works, in a userdata made first: if a push raises (out
 * of memory) its __gc frees the OpenSSL objects and wipes the PEM the memory BIO held, so an
 * error leaks neither memory nor the private key.
 */
#define KEYGEN_MT "dws.keygen_state"

typedef struct keygen_state {
    EVP_PKEY *pkey;
    EVP_PKEY_CTX *ctx;
    BIO *bio;
    unsigned char *der;
    char *b64;
} keygen_state;

static void keygen_free(keygen_state *g)
{
    if (g->bio != NULL) {
        char *pem = NULL;
        long len = BIO_get_mem_data(g->bio, &pem);
        if (len > 0 && pem != NULL)
            OPENSSL_cleanse(pem, (size_t)len);
        BIO_free(g->bio);
    }
    OPENSSL_free(g->der);
    free(g->b64);
    EVP_PKEY_free(g->pkey);
    EVP_PKEY_CTX_free(g->ctx);
    memset(g, 0, sizeof *g);
}

static int keygen_gc(lua_State *L)
{
    keygen_free(luaL_checkudata(L, 1, KEYGEN_MT));
    return 0;
}

/*
 * core.generate_key([bits]) -> PKCS#8 PEM private key, bare base64 SPKI public key | nil, err.
 * For `dws keygen`: the pair in the forms DWS's portal and our own parser take.
 */
static int l_generate_key(lua_State *L)
{
    lua_Integer bits = luaL_optinteger(L, 1, DWS_KEY_MIN_BITS);
    keygen_state *g;
    char *pem = NULL;
    long pemlen;
    int derlen;
    size_t b64len;
    luaL_argcheck(L, bits >= DWS_KEY_MIN_BITS && bits <= DWS_KEY_MAX_BITS && bits % 8 == 0, 1,
                  "RSA key size out of range");
    g = lua_newuserdata(L, sizeof *g);
    memset(g, 0, sizeof *g);
    luaL_setmetatable(L, KEYGEN_MT);
    g->ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (g->ctx == NULL || EVP_PKEY_keygen_init(g->ctx) != 1 ||
        EVP_PKEY_CTX_set_rsa_keygen_bits(g->ctx, (int)bits) != 1 || EVP_PKEY_keygen(g->ctx, &g->pkey) != 1)
        goto fail;
    g->bio = BIO_new(BIO_s_mem());
    /* PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY"), unencrypted. */
    if (g->bio == NULL || PEM_write_bio_PrivateKey(g->bio, g->pkey, NULL, NULL, 0, NULL, NULL) != 1)
        goto fail;
    derlen = i2d_PUBKEY(g->pkey, &g->der);
    if (derlen <= 0)
        goto fail;
    g->b64 = malloc(DWS_B64_ENCODED_LEN((size_t)derlen));
    if (g->b64 == NULL)
        goto fail;
    b64len = dws_b64_encode(g->der, (size_t)derlen, g->b64);
    pemlen = BIO_get_mem_data(g->bio, &pem);
    lua_pushlstring(L, pem, (size_t)pemlen);
    lua_pushlstring(L, g->b64, b64len);
    keygen_free(g);   /* wipes the PEM in the BIO now, not at the next collection */
    return 2;
fail:
    keygen_free(g);
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
    if (luaL_newmetatable(L, KEYGEN_MT)) {
        lua_pushcfunction(L, keygen_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    luaL_setfuncs(L, key_funcs, 0);
}
