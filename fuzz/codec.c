/*
 * libFuzzer: percent and base64 coding. Invariants: strict base64 accepts only canonical text,
 * so decode then encode gives the input back; lenient (key) decoding agrees with strict decoding
 * of the text without whitespace; every encoder round-trips; output sizes are as dws.h promises.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_base64(const char *s, size_t n)
{
    const char *why = NULL;
    unsigned char *raw = malloc(DWS_B64_DECODED_MAX(n));
    unsigned char *raw2 = malloc(DWS_B64_DECODED_MAX(n));
    char *enc = malloc(DWS_B64_ENCODED_LEN(DWS_B64_DECODED_MAX(n)) + 1);
    char *squeezed = malloc(n + 1);
    size_t rawlen = 0, rawlen2 = 0, m = 0, i;
    int strict, lenient;

    if (raw == NULL || raw2 == NULL || enc == NULL || squeezed == NULL)
        goto out;
    strict = dws_b64_decode(s, n, raw, &rawlen, 0, &why) == 0;
    if (strict) {
        size_t elen = dws_b64_encode(raw, rawlen, enc);
        if (elen != n || memcmp(enc, s, n) != 0)
            abort();
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'))
            squeezed[m++] = s[i];
    }
    lenient = dws_b64_decode(s, n, raw2, &rawlen2, 1, &why) == 0;
    strict = dws_b64_decode(squeezed, m, raw, &rawlen, 0, &why) == 0;
    if (lenient != strict || (strict && (rawlen != rawlen2 || memcmp(raw, raw2, rawlen) != 0)))
        abort();
out:
    free(raw);
    free(raw2);
    free(enc);
    free(squeezed);
}

static void check_percent(const char *s, size_t n)
{
    const char *why = NULL;
    char *dec = malloc(n ? n : 1), *enc = NULL, *dec2 = NULL;
    size_t declen, enclen, dec2len;
    if (dec == NULL)
        return;
    if (dws_url_decode(s, n, dec, &declen, &why) == 0) {
        enc = malloc(3 * declen + 1);
        dec2 = malloc(declen + 1);
        if (enc != NULL && dec2 != NULL) {
            enclen = dws_url_encode(dec, declen, enc);
            if (dws_url_decode(enc, enclen, dec2, &dec2len, &why) != 0 || dec2len != declen ||
                memcmp(dec, dec2, declen) != 0)
                abort();
        }
    }
    free(dec);
    free(enc);
    free(dec2);
}

static void check_encode_roundtrip(const unsigned char *d, size_t n)
{
    const char *why = NULL;
    char *enc = malloc(DWS_B64_ENCODED_LEN(n) + 1);
    unsigned char *dec = malloc(DWS_B64_DECODED_MAX(DWS_B64_ENCODED_LEN(n)));
    size_t enclen, declen;
    if (enc != NULL && dec != NULL) {
        enclen = dws_b64_encode(d, n, enc);
        if (enclen != DWS_B64_ENCODED_LEN(n) ||
            dws_b64_decode(enc, enclen, dec, &declen, 0, &why) != 0 || declen != n ||
            memcmp(dec, d, n) != 0)
            abort();
    }
    free(enc);
    free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a heap copy of exactly the input size, so reads past the end are caught */
    char *s = malloc(size ? size : 1);
    if (s == NULL)
        return 0;
    if (size)
        memcpy(s, data, size);
    check_base64(s, size);
    check_percent(s, size);
    check_encode_roundtrip((const unsigned char *)s, size);
    free(s);
    return 0;
}
