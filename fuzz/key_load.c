/*
 * libFuzzer: key loading. The first byte picks private (odd) or public (even); the rest is the
 * key text. Invariants: no crash, no leak (LeakSanitizer), an empty OpenSSL error queue after
 * every call, and on failure a NUL-terminated message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "dws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[160];
    EVP_PKEY *pkey;
    char *text;
    if (size < 1)
        return 0;
    text = malloc(size - 1 ? size - 1 : 1);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, size - 1);
    memset(err, 'x', sizeof err);
    pkey = dws_key_parse(text, size - 1, data[0] & 1, err, sizeof err);
    if (ERR_peek_error() != 0)
        abort();
    if (pkey == NULL) {
        if (memchr(err, '\0', sizeof err) == NULL || err[0] == '\0')
            abort();
    } else {
        if (EVP_PKEY_get_bits(pkey) < DWS_KEY_MIN_BITS)
            abort();
        EVP_PKEY_free(pkey);
    }
    free(text);
    return 0;
}
