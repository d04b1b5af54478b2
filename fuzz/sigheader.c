/*
 * libFuzzer: Signature header parsing, then the percent and base64 decoding of its value, as
 * core.parse_signature_header does. Invariants: spans stay inside the input; decoders never
 * write past the sizes dws.h promises.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void in_input(const dws_span *sp, const char *s, size_t n)
{
    if (sp->ptr == NULL)
        return;
    if (sp->ptr < s || sp->ptr + sp->len > s + n)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data, *why = NULL;
    dws_sigheader h;
    char *dec;
    unsigned char *raw;
    size_t declen, rawlen;

    if (dws_sigheader_parse(s, size, &h, &why) != 0) {
        if (why == NULL)
            abort();
        return 0;
    }
    in_input(&h.algorithm, s, size);
    in_input(&h.key_version, s, size);
    in_input(&h.signature, s, size);
    if (h.signature.ptr == NULL || h.signature.len == 0)
        abort();
    /* exact-size heap buffers, so ASan sees any overflow */
    dec = malloc(h.signature.len);
    if (dec == NULL)
        return 0;
    if (dws_url_decode(h.signature.ptr, h.signature.len, dec, &declen, &why) == 0) {
        if (declen > h.signature.len)
            abort();
        raw = malloc(DWS_B64_DECODED_MAX(declen));
        if (raw != NULL && dws_b64_decode(dec, declen, raw, &rawlen, 0, &why) == 0 &&
            rawlen > DWS_B64_DECODED_MAX(declen))
            abort();
        free(raw);
    }
    free(dec);
    return 0;
}
