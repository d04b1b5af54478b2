/*
 * Private keys held by a PKCS#11 token, named by an RFC 7512 "pkcs11:" URI and used through
 * OpenSSL's ENGINE interface with the "pkcs11" engine (libp11; Debian's libengine-pkcs11-openssl).
 * lua-dws never sees the key's bytes: the engine hands back an EVP_PKEY whose private operations
 * run in the token (for softhsm2, inside its library).
 *
 * The ENGINE API is deprecated in OpenSSL 3 but is the interface libp11 offers there; it is kept
 * to this file, the one place that suppresses the deprecation warnings.
 *
 * The PIN comes from the URI's pin-source=file:<path> or from the caller; it is kept (to open a
 * session again in a forked worker) in malloc'd memory wiped on release, and never appears in a
 * message. A pin-value= in the URI is refused: URIs end up in configuration dumps and logs.
 */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/engine.h>
#include <openssl/err.h>

#include "dws.h"

#define PIN_MAX 256
#define URI_MAX 4096

static char *dup_span(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into a new NUL-terminated string; NULL on a bad escape, a NUL or no memory. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t i, o = 0;
    if (out == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int h, l;
            if (i + 2 >= n) {
                free(out);
                return NULL;
            }
            h = hexval(s[i + 1]);
            l = hexval(s[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0)) {
                free(out);
                return NULL;
            }
            c = (char)(h * 16 + l);
            i += 2;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return out;
}

/* The PIN file's first line (no line break), at most PIN_MAX bytes; 0 or -1 with err set. */
static int read_pin_file(const char *path, char **pin, char *err, size_t errlen)
{
    char buf[PIN_MAX + 2];
    size_t n;
    struct stat st;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "PKCS#11: cannot read the pin-source file (%s)", strerror(errno));
        return -1;
    }
    /* As ssh holds private key files: a PIN others can read is no secret. */
    if (fstat(fileno(f), &st) != 0 || (st.st_mode & 077) != 0) {
        fclose(f);
        snprintf(err, errlen, "PKCS#11: the pin-source file is readable by group or others: chmod 600 it");
        return -1;
    }
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    n = strcspn(buf, "\r\n");
    if (n > PIN_MAX) {
        OPENSSL_cleanse(buf, sizeof buf);
        snprintf(err, errlen, "PKCS#11: the pin-source file's PIN is longer than %d bytes", PIN_MAX);
        return -1;
    }
    *pin = dup_span(buf, n);
    OPENSSL_cleanse(buf, sizeof buf);
    if (*pin == NULL) {
        snprintf(err, errlen, "PKCS#11: out of memory");
        return -1;
    }
    return 0;
}

void dws_p11_ref_free(dws_p11_ref *ref)
{
    if (ref->pin != NULL) {
        OPENSSL_cleanse(ref->pin, strlen(ref->pin));
        free(ref->pin);
    }
    free(ref->uri);
    free(ref->module);
    ref->pin = ref->uri = ref->module = NULL;
}

int dws_p11_is_uri(const char *text, size_t n)
{
    return n >= 7 && memcmp(text, "pkcs11:", 7) == 0;
}

/*
 * Splits the URI: its path part (token=, object=, id=, ...) goes to the engine as it is; of the
 * query, module-path= and pin-source= are ours, pin-value= is refused, the rest ignored (RFC 7512
 * lets a consumer ignore attributes it does not know).
 */
int dws_p11_ref_parse(const char *text, size_t n, const char *pin, size_t pinlen, dws_p11_ref *ref,
                      char *err, size_t errlen)
{
    const char *q;
    size_t plen;
    memset(ref, 0, sizeof *ref);
    /* A URI read from a file or an environment value often ends with a line break. */
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' ' || text[n - 1] == '\t'))
        n--;
    q = memchr(text, '?', n);
    plen = q ? (size_t)(q - text) : n;
    if (n > URI_MAX || memchr(text, '\0', n) != NULL) {
        snprintf(err, errlen, "PKCS#11 URI: longer than %d bytes, or holds a NUL", URI_MAX);
        return -1;
    }
    {
        /* The path must name the key: an object (label) or an id. */
        size_t i = 7;
        int named = 0;
        while (i < plen) {
            size_t j = i;
            while (j < plen && text[j] != ';')
                j++;
            if ((j - i > 7 && memcmp(text + i, "object=", 7) == 0) ||
                (j - i > 3 && memcmp(text + i, "id=", 3) == 0))
                named = 1;
            i = j + 1;
        }
        if (!named) {
            snprintf(err, errlen, "PKCS#11 URI: names no object= or id= (which key in the token?)");
            return -1;
        }
    }
    ref->uri = dup_span(text, plen);
    if (ref->uri == NULL)
        goto oom;
    if (q != NULL) {
        const char *s = q + 1, *end = text + n;
        while (s < end) {
            const char *amp = memchr(s, '&', (size_t)(end - s));
            size_t len = amp ? (size_t)(amp - s) : (size_t)(end - s);
            if (len > 12 && memcmp(s, "module-path=", 12) == 0) {
                free(ref->module);
                ref->module = pct_decode(s + 12, len - 12);
                if (ref->module == NULL) {
                    snprintf(err, errlen, "PKCS#11 URI: module-path is not percent-encoded correctly");
                    goto fail;
                }
            } else if (len >= 10 && memcmp(s, "pin-value=", 10) == 0) {
                snprintf(err, errlen, "PKCS#11 URI: pin-value is refused (it would travel with the URI into "
                         "configuration and logs); use pin-source=file:<path> or the PIN option");
                goto fail;
            } else if (len >= 11 && memcmp(s, "pin-source=", 11) == 0) {
                char *src = pct_decode(s + 11, len - 11);
                int rc;
                if (src == NULL || strncmp(src, "file:", 5) != 0) {
                    free(src);
                    snprintf(err, errlen, "PKCS#11 URI: pin-source must be file:<path>");
                    goto fail;
                }
                if (ref->pin != NULL) {
                    free(src);
                    snprintf(err, errlen, "PKCS#11 URI: pin-source given twice");
                    goto fail;
                }
                /* file:///path and file:/path both name /path */
                rc = read_pin_file(src + 5 + (strncmp(src + 5, "//", 2) == 0 ? 2 : 0), &ref->pin, err, errlen);
                free(src);
                if (rc != 0)
                    goto fail;
            }
            s += len + 1;
        }
    }
    if (pin == NULL && ref->pin == NULL) {
        /* Without one the engine would prompt on the terminal (or fail inside nginx). */
        snprintf(err, errlen, "PKCS#11: no PIN: give pin-source=file:<path> in the URI, or the PIN option");
        goto fail;
    }
    if (pin != NULL) {
        if (ref->pin != NULL) {
            snprintf(err, errlen, "PKCS#11: a PIN given both as an option and by pin-source");
            goto fail;
        }
        if (pinlen > PIN_MAX || memchr(pin, '\0', pinlen) != NULL) {
            snprintf(err, errlen, "PKCS#11: the PIN is longer than %d bytes or holds a NUL", PIN_MAX);
            goto fail;
        }
        ref->pin = dup_span(pin, pinlen);
        if (ref->pin == NULL)
            goto oom;
    }
    return 0;
oom:
    snprintf(err, errlen, "PKCS#11: out of memory");
fail:
    dws_p11_ref_free(ref);
    return -1;
}

/* Whether OpenSSL's error queue holds a reason naming an incorrect PIN; empties the queue. */
static int queue_says_pin_incorrect(void)
{
    unsigned long e;
    int found = 0;
    char buf[256];
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, buf, sizeof buf);
        if (strstr(buf, "PIN_INCORRECT") != NULL || strstr(buf, "PIN incorrect") != NULL ||
            strstr(buf, "pin incorrect") != NULL)
            found = 1;
    }
    return found;
}

/*
 * The engine, loaded and initialised once per process: ENGINE_by_id finds libp11's engine in
 * OpenSSL's engines directory. A module path can only be set before the first key is loaded.
 */
static ENGINE *engine;
static char *engine_module;

static ENGINE *get_engine(const char *module, char *err, size_t errlen)
{
    ENGINE *e;
    if (engine != NULL) {
        if ((module == NULL) != (engine_module == NULL) ||
            (module != NULL && strcmp(module, engine_module) != 0)) {
            snprintf(err, errlen, "PKCS#11: this process already uses another module-path (one module per "
                     "process)");
            return NULL;
        }
        return engine;
    }
    if (module != NULL && access(module, R_OK) != 0) {
        snprintf(err, errlen, "PKCS#11: module-path names no readable file");
        return NULL;
    }
    e = ENGINE_by_id("pkcs11");
    if (e == NULL) {
        ERR_clear_error();
        snprintf(err, errlen, "PKCS#11: OpenSSL engine \"pkcs11\" not found (install libengine-pkcs11-openssl)");
        return NULL;
    }
    /* libp11 otherwise prints its own diagnostics on stderr (nginx's error log); ours say it. */
    if (ENGINE_ctrl_cmd_string(e, "QUIET", NULL, 1) != 1)
        ERR_clear_error();
    if (module != NULL && ENGINE_ctrl_cmd_string(e, "MODULE_PATH", module, 0) != 1) {
        ERR_clear_error();
        ENGINE_free(e);
        snprintf(err, errlen, "PKCS#11: the engine refused the module-path");
        return NULL;
    }
    if (ENGINE_init(e) != 1) {
        ERR_clear_error();
        ENGINE_free(e);
        snprintf(err, errlen, "PKCS#11: the engine could not load the PKCS#11 module%s", module ? " at module-path" :
                 " (none given: p11-kit's proxy; set module-path=)");
        return NULL;
    }
    if (module != NULL) {
        engine_module = dup_span(module, strlen(module));
        if (engine_module == NULL) {
            ENGINE_finish(e);
            ENGINE_free(e);
            snprintf(err, errlen, "PKCS#11: out of memory");
            return NULL;
        }
    }
    engine = e;
    return e;
}

EVP_PKEY *dws_p11_load(const dws_p11_ref *ref, int again, char *err, size_t errlen)
{
    EVP_PKEY *pkey;
    ENGINE *e = get_engine(ref->module, err, errlen);
    if (e == NULL)
        return NULL;
    ERR_clear_error();
    /* After a failure in the token: look at the slots afresh (a token removed and put back). */
    if (again && ENGINE_ctrl_cmd_string(e, "RE_ENUMERATE", NULL, 1) != 1)
        ERR_clear_error();
    /* The engine copies the PIN for the login it makes while loading the key. */
    if (ref->pin != NULL && ENGINE_ctrl_cmd_string(e, "PIN", ref->pin, 0) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "PKCS#11: the engine refused the PIN");
        return NULL;
    }
    pkey = ENGINE_load_private_key(e, ref->uri, NULL, NULL);
    if (pkey == NULL) {
        if (queue_says_pin_incorrect())
            snprintf(err, errlen, "PKCS#11: wrong PIN (the token refused the login)");
        else
            snprintf(err, errlen, "PKCS#11: no such private key: the token or the object the URI names was not "
                     "found");
        ERR_clear_error();
        return NULL;
    }
    ERR_clear_error();
    return pkey;
}
