/*
 * The cryptographic floor of one DWS call: one RSA-2048 SHA256withRSA signature and one
 * verification, with the same key, through OpenSSL's EVP API, timed in-process.
 *
 *   floor [private_key.pem [seconds [count]]]
 *
 * With a count, no timing: count signatures and count verifications through copied contexts,
 * for callgrind (bench/profile counts instructions inside dws_bench_profiled_floor only).
 * Without a key file an RSA-2048 key is generated. Times are CPU time of this process
 * (CLOCK_PROCESS_CPUTIME_ID), the same clock as os.clock() in the Lua bench, so the ratios
 * compare like with like. Output is "name value" lines for bench/bench.lua to read.
 *
 * Two ways to drive EVP are timed, in interleaved rounds, and the floor is the cheaper of them:
 *   init  a fresh EVP_MD_CTX and EVP_DigestSignInit per operation (the obvious code);
 *   dup   EVP_MD_CTX_copy_ex from a context initialised once (skips the provider fetch).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/err.h>

/* What a consult request signs: path, client id, millisecond time, the JSON body. */
static const char CONTENT[] =
    "POST /ams/sandbox/api/v1/paymentMethods/consultAddablePaymentMethod\n"
    "SANDBOX_5YEJ0N2ZEYM407225.1700000000000."
    "{\"customerId\":\"2162878776333\",\"env\":{\"terminalType\":\"WEB\"},\"scenes\":[\"TOPUP\"]}";

#define ROUNDS 5

typedef int (*op_fn)(EVP_PKEY *, EVP_MD_CTX *, unsigned char *, size_t *);

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "floor: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static int sign_init(EVP_PKEY *pkey, EVP_MD_CTX *proto, unsigned char *sig, size_t *len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok;
    (void)proto;
    ok = ctx != NULL
        && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1
        && EVP_DigestSign(ctx, sig, len, (const unsigned char *)CONTENT, sizeof CONTENT - 1) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

static int sign_dup(EVP_PKEY *pkey, EVP_MD_CTX *proto, unsigned char *sig, size_t *len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok;
    (void)pkey;
    ok = ctx != NULL
        && EVP_MD_CTX_copy_ex(ctx, proto) == 1
        && EVP_DigestSign(ctx, sig, len, (const unsigned char *)CONTENT, sizeof CONTENT - 1) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

static int verify_init(EVP_PKEY *pkey, EVP_MD_CTX *proto, unsigned char *sig, size_t *len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok;
    (void)proto;
    ok = ctx != NULL
        && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1
        && EVP_DigestVerify(ctx, sig, *len, (const unsigned char *)CONTENT, sizeof CONTENT - 1) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

static int verify_dup(EVP_PKEY *pkey, EVP_MD_CTX *proto, unsigned char *sig, size_t *len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok;
    (void)pkey;
    ok = ctx != NULL
        && EVP_MD_CTX_copy_ex(ctx, proto) == 1
        && EVP_DigestVerify(ctx, sig, *len, (const unsigned char *)CONTENT, sizeof CONTENT - 1) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* Seconds of CPU per operation: repeat until budget seconds have been spent (at least 20 ops). */
static double time_op(op_fn op, EVP_PKEY *pkey, EVP_MD_CTX *proto, unsigned char *sig, size_t siglen,
                      double budget, long *count)
{
    double t0 = cpu_now(), t;
    long n = 0;
    do {
        size_t len = siglen;
        if (!op(pkey, proto, sig, &len)) die("EVP operation failed");
        n++;
        t = cpu_now();
    } while (t - t0 < budget || n < 20);
    *count = n;
    return (t - t0) / (double)n;
}

void dws_bench_profiled_floor(EVP_PKEY *pkey, EVP_MD_CTX *sproto, EVP_MD_CTX *vproto, long count);

/* count signs and verifies; not static, never inlined: bench/profile has callgrind count only here. */
__attribute__((noinline)) void dws_bench_profiled_floor(EVP_PKEY *pkey, EVP_MD_CTX *sproto, EVP_MD_CTX *vproto,
                                                         long count)
{
    unsigned char sig[512];
    long i;
    for (i = 0; i < count; i++) {
        size_t len = sizeof sig;
        if (!sign_dup(pkey, sproto, sig, &len)) die("sign failed");
        if (!verify_dup(pkey, vproto, sig, &len)) die("verify failed");
    }
}

static EVP_PKEY *load_key(const char *path)
{
    EVP_PKEY *pkey = NULL;
    if (path != NULL) {
        FILE *f = fopen(path, "r");
        if (f == NULL) die("cannot open the key file");
        pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
        if (pkey == NULL) die("cannot parse the key file");
    } else {
        pkey = EVP_RSA_gen(2048);
        if (pkey == NULL) die("cannot generate a key");
    }
    if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA || EVP_PKEY_get_bits(pkey) != 2048)
        die("the key is not RSA-2048");
    return pkey;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 && argv[1][0] != '\0' ? argv[1] : NULL;
    double budget = argc > 2 ? atof(argv[2]) : 0.5;
    EVP_PKEY *pkey = load_key(path);
    EVP_MD_CTX *sproto = EVP_MD_CTX_new(), *vproto = EVP_MD_CTX_new();
    unsigned char sig[512];
    size_t siglen = sizeof sig;
    long n_si, n_sd, n_vi, n_vd;
    double si, sd, vi, vd;
    int round;

    if (budget <= 0) budget = 0.5;
    if (sproto == NULL || vproto == NULL
        || EVP_DigestSignInit(sproto, NULL, EVP_sha256(), NULL, pkey) != 1
        || EVP_DigestVerifyInit(vproto, NULL, EVP_sha256(), NULL, pkey) != 1)
        die("cannot initialise the contexts");

    /* One signature to verify; also warms the caches the timed loops would otherwise pay for. */
    if (!sign_init(pkey, NULL, sig, &siglen)) die("sign failed");

    if (argc > 3) {
        long count = atol(argv[3]);
        dws_bench_profiled_floor(pkey, sproto, vproto, count);
        printf("count %ld\n", count);
        EVP_MD_CTX_free(sproto);
        EVP_MD_CTX_free(vproto);
        EVP_PKEY_free(pkey);
        return 0;
    }

    /* Interleaved rounds, the fastest of each kept: a burst of other work on the machine
     * inflates one round of one variant, not the floor. */
    si = sd = vi = vd = 1e9;
    n_si = n_sd = n_vi = n_vd = 0;
    for (round = 0; round < ROUNDS; round++) {
        long n;
        double t;
        t = time_op(sign_init, pkey, NULL, sig, sizeof sig, budget / ROUNDS, &n);
        if (t < si) si = t;
        n_si += n;
        t = time_op(sign_dup, pkey, sproto, sig, sizeof sig, budget / ROUNDS, &n);
        if (t < sd) sd = t;
        n_sd += n;
        t = time_op(verify_init, pkey, NULL, sig, siglen, budget / ROUNDS / 2, &n);
        if (t < vi) vi = t;
        n_vi += n;
        t = time_op(verify_dup, pkey, vproto, sig, siglen, budget / ROUNDS / 2, &n);
        if (t < vd) vd = t;
        n_vd += n;
    }

    printf("openssl %s\n", OpenSSL_version(OPENSSL_VERSION_STRING));
    printf("content_bytes %zu\n", sizeof CONTENT - 1);
    printf("sign_init_us %.3f\nsign_init_n %ld\n", si * 1e6, n_si);
    printf("sign_dup_us %.3f\nsign_dup_n %ld\n", sd * 1e6, n_sd);
    printf("verify_init_us %.3f\nverify_init_n %ld\n", vi * 1e6, n_vi);
    printf("verify_dup_us %.3f\nverify_dup_n %ld\n", vd * 1e6, n_vd);
    printf("sign_us %.3f\n", (si < sd ? si : sd) * 1e6);
    printf("verify_us %.3f\n", (vi < vd ? vi : vd) * 1e6);

    EVP_MD_CTX_free(sproto);
    EVP_MD_CTX_free(vproto);
    EVP_PKEY_free(pkey);
    return 0;
}
