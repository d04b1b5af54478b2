/*
 * Internal interface between the topic files of dws.core. Everything here is hidden in the
 * shared object (-fvisibility=hidden) except luaopen_dws_core; the fuzz harnesses link the
 * sources directly and call the pure C functions below.
 */
#ifndef DWS_H
#define DWS_H

#include <stddef.h>
#include <openssl/evp.h>
#include "compat.h"

#define DWS_EXPORT __attribute__((visibility("default")))

DWS_EXPORT int luaopen_dws_core(lua_State *L);

/* Per-topic registration; each adds its functions to the module table at the top of the stack. */
void dws_open_key(lua_State *L);
void dws_open_encoding(lua_State *L);
void dws_open_sigheader(lua_State *L);
void dws_open_random(lua_State *L);
void dws_open_clock(lua_State *L);
void dws_open_file(lua_State *L);
void dws_open_redact(lua_State *L);
/* Needs the array marker and the null sentinel at the top of the stack (array_mt below null). */
void dws_open_json(lua_State *L);

/* ---- core.c: helpers for the Lua bindings of the topic files ---- */

/*
 * Scratch space for a binding: stackbuf (DWS_STACK_SCRATCH bytes) when need fits, else a new
 * userdata on the stack that the GC owns.
 */
#define DWS_STACK_SCRATCH 4096
void *dws_scratch(lua_State *L, void *stackbuf, size_t need);
/* Pushes nil, msg; returns 2. */
int dws_push_error(lua_State *L, const char *msg);

/* ---- json.c ---- */

/* The dws.buffer at idx (see buffer.h), or NULL when it is anything else. */
struct dws_buffer;
const struct dws_buffer *dws_test_buffer(lua_State *L, int idx);

/* ---- pkcs11.c: private keys in a PKCS#11 token (RFC 7512 URI, OpenSSL's "pkcs11" engine) ---- */

/* A key reference: the URI's path part, the module-path, the PIN (wiped by dws_p11_ref_free). */
typedef struct dws_p11_ref {
    char *uri;
    char *module;
    char *pin;
} dws_p11_ref;

/* Whether text starts with "pkcs11:". */
int dws_p11_is_uri(const char *text, size_t n);
/* Parses the URI (PIN from pin-source=file: or pin, not both); 0, or -1 with err (never the PIN). */
int dws_p11_ref_parse(const char *text, size_t n, const char *pin, size_t pinlen, dws_p11_ref *ref,
                      char *err, size_t errlen);
void dws_p11_ref_free(dws_p11_ref *ref);
/* Logs in and loads the private key through the engine (in this process); NULL with err. again:
 * after a failure in the token, the engine looks at the slots afresh first. */
EVP_PKEY *dws_p11_load(const dws_p11_ref *ref, int again, char *err, size_t errlen);

/* ---- encoding.c: pure C, no Lua state, never allocate ---- */

/* Output needs DWS_B64_ENCODED_LEN(n) bytes; returns the length written. */
#define DWS_B64_ENCODED_LEN(n) ((((n) + 2) / 3) * 4)
size_t dws_b64_encode(const unsigned char *in, size_t n, char *out);

/*
 * Strict standard base64 (alphabet, '=' padding, length a multiple of 4, zero trailing bits).
 * With skip_space, ASCII whitespace anywhere is ignored (keys pasted over several lines).
 * out needs DWS_B64_DECODED_MAX(n) bytes. Returns 0, or -1 with *why set to a static message.
 */
#define DWS_B64_DECODED_MAX(n) (((n) / 4) * 3 + 3)
int dws_b64_decode(const char *in, size_t n, unsigned char *out, size_t *outlen, int skip_space,
                   const char **why);

/* Keeps A-Z a-z 0-9 - _ . ~; out needs 3 * n bytes. */
size_t dws_url_encode(const char *in, size_t n, char *out);
/* '+' stays '+'; %XX in either case; out needs n bytes. Returns 0, or -1 with *why. */
int dws_url_decode(const char *in, size_t n, char *out, size_t *outlen, const char **why);

/* ---- sigheader.c: pure C, no Lua state ---- */

/* Spans into the parsed Signature header; a NULL ptr means the item was absent. */
typedef struct dws_span {
    const char *ptr;
    size_t len;
} dws_span;

typedef struct dws_sigheader {
    dws_span algorithm;
    dws_span key_version;
    dws_span signature;    /* still percent-encoded base64 */
} dws_sigheader;

#define DWS_SIGHEADER_MAX 8192
int dws_sigheader_parse(const char *s, size_t n, dws_sigheader *out, const char **why);

/*
 * "<method> <path>\n<client_id>.<time>.<body>" in a malloc'd buffer the caller must
 * OPENSSL_cleanse and free. NULL on overflow or allocation failure.
 */
unsigned char *dws_content_build(const char *method, size_t mlen, const char *path, size_t plen,
                                 const char *client_id, size_t clen, const char *time, size_t tlen,
                                 const char *body, size_t blen, size_t *outlen);

/* ---- key.c ---- */

#define DWS_KEY_MIN_BITS 2048
#define DWS_KEY_MAX_BITS 16384
#define DWS_KEY_TEXT_MAX 65536
/* Public exponent range (FIPS 186-4): odd, at least 65537, fewer than 257 bits. */
#define DWS_KEY_MIN_EXPONENT 65537
#define DWS_KEY_MAX_EXPONENT_BITS 256
#define DWS_SIG_MAX (DWS_KEY_MAX_BITS / 8)

/*
 * Parse an RSA key from PEM or bare base64 DER. Returns the key, or NULL with a message in err
 * (never containing key bytes). The OpenSSL error queue is left empty either way.
 */
EVP_PKEY *dws_key_parse(const char *text, size_t n, int want_private, char *err, size_t errlen);

#endif
