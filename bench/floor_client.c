/*
 * The floor of a whole DWS call: the least a client can do for one consult, in C with OpenSSL
 * only. One TLS keep-alive connection to the sandbox; per call, the request signed
 * (SHA256withRSA over "POST <path>\n<client-id>.<request-time>.<body>", SIGNING.md), sent in one
 * write, the answer's head read up to its blank line, its body by Content-Length, and the
 * answer's signature verified with the DWS public key. Nothing else: no JSON parsing, no
 * validation, no logging, no retries, no redaction, no chunked bodies.
 *
 *   floor_client host port ca.pem client_id merchant_private.pem dws_public.pem body.json calls rounds
 *
 * CPU per call is measured as bench/bench.lua measures lua-dws's: warm-up calls first (the
 * connection, the caches), then `rounds` interleaved rounds of calls/rounds calls, the cheapest
 * round kept, on CLOCK_PROCESS_CPUTIME_ID (the clock of os.clock()). Output is "name value"
 * lines for bench.lua: cpu (seconds per call), user and sys (getrusage over the kept round), wall,
 * calls, connects.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/resource.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#define PATH "/ams/sandbox/api/v1/paymentMethods/consultAddablePaymentMethod"
#define WARMUP 20
#define HEAD_MAX 16384
#define BODY_MAX (1 << 20)

struct conn {
    SSL *ssl;
    char head[HEAD_MAX];
    char *body;
    size_t have; /* bytes in head[] not yet consumed */
};

static void die(const char *what)
{
    fprintf(stderr, "floor_client: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double rusage_s(int user)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return user ? (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6
                : (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        die("cannot read a file");
    buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n)
        die("cannot read a file");
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

static EVP_PKEY *read_key(const char *path, int private)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *k;
    if (f == NULL)
        die("cannot open a key file");
    k = private ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (k == NULL)
        die("cannot parse a key");
    return k;
}

static int tcp_connect(const char *host, const char *port)
{
    struct addrinfo hints, *res, *ai;
    int fd = -1, one = 1;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        die("getaddrinfo");
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        die("connect");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* TLS 1.2 at least, the peer verified against ca_file and the host (a name or an IP literal). */
static SSL *tls_connect(SSL_CTX *ctx, int fd, const char *host)
{
    SSL *ssl = SSL_new(ctx);
    X509_VERIFY_PARAM *param;
    if (ssl == NULL)
        die("SSL_new");
    param = SSL_get0_param(ssl);
    if (X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1) {
        if (X509_VERIFY_PARAM_set1_host(param, host, 0) != 1 || SSL_set_tlsext_host_name(ssl, host) != 1)
            die("host check");
    }
    SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    if (SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1)
        die("TLS handshake");
    return ssl;
}

static void write_all(SSL *ssl, const char *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        int n = SSL_write(ssl, buf + done, (int)(len - done));
        if (n <= 0)
            die("SSL_write");
        done += (size_t)n;
    }
}

/* The value of header `name` (lower case) in head[0..len), NUL-terminated in place; NULL if absent. */
static char *header(char *head, const char *name)
{
    size_t n = strlen(name);
    char *line = strstr(head, "\r\n");
    while (line != NULL && line[2] != '\r') {
        char *start = line + 2, *end = strstr(start, "\r\n");
        if (end == NULL)
            return NULL;
        if ((size_t)(end - start) > n && start[n] == ':' && strncasecmp(start, name, n) == 0) {
            char *v = start + n + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            return v;
        }
        line = end;
    }
    return NULL;
}

static size_t value_len(const char *v)
{
    return strcspn(v, "\r");
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The signature= item of a Signature header, percent-decoded and base64-decoded into raw. */
static int signature_of(const char *v, size_t vlen, unsigned char *raw, size_t *rawlen)
{
    char b64[1024];
    size_t i = 0, o = 0;
    const char *p = NULL;
    int n;
    for (i = 0; i + 10 <= vlen; i++) {
        if (strncmp(v + i, "signature=", 10) == 0 && (i == 0 || v[i - 1] == ',')) {
            p = v + i + 10;
            break;
        }
    }
    if (p == NULL)
        return 0;
    for (; p < v + vlen && *p != ',' && o < sizeof b64 - 1; p++) {
        if (*p == '%' && p + 2 < v + vlen && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
            b64[o++] = (char)(hexval(p[1]) * 16 + hexval(p[2]));
            p += 2;
        } else {
            b64[o++] = *p;
        }
    }
    if (o == 0 || o % 4 != 0)
        return 0;
    n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)o);
    if (n < 0)
        return 0;
    /* EVP_DecodeBlock counts the padding as zero bytes */
    if (b64[o - 1] == '=') n--;
    if (b64[o - 2] == '=') n--;
    *rawlen = (size_t)n;
    return 1;
}

/* Reads one answer: the head up to its blank line, then Content-Length bytes of body. Returns the
 * body length; *head_end is where the head ends in c->head. */
static size_t read_answer(struct conn *c, size_t *head_end)
{
    char *end;
    char *cl;
    size_t hlen, blen, got;
    c->head[c->have] = '\0';
    while ((end = strstr(c->head, "\r\n\r\n")) == NULL) {
        int n;
        if (c->have >= HEAD_MAX - 1)
            die("head too large");
        n = SSL_read(c->ssl, c->head + c->have, (int)(HEAD_MAX - 1 - c->have));
        if (n <= 0)
            die("SSL_read (head)");
        c->have += (size_t)n;
        c->head[c->have] = '\0';
    }
    hlen = (size_t)(end - c->head) + 4;
    end[2] = '\0'; /* the head as a string, its last CRLF kept for header() */
    cl = header(c->head, "content-length");
    if (cl == NULL)
        die("no Content-Length");
    blen = (size_t)strtoul(cl, NULL, 10);
    if (blen > BODY_MAX)
        die("body too large");
    got = c->have - hlen;
    if (got > blen)
        die("more than one answer");
    memcpy(c->body, c->head + hlen, got);
    while (got < blen) {
        int n = SSL_read(c->ssl, c->body + got, (int)(blen - got));
        if (n <= 0)
            die("SSL_read (body)");
        got += (size_t)n;
    }
    c->have = 0;
    *head_end = hlen;
    return blen;
}

struct call {
    const char *client_id;
    const char *host_header;
    char *body;
    size_t body_len;
    EVP_MD_CTX *sign_proto;   /* initialised once with the merchant key, copied per call */
    EVP_MD_CTX *verify_proto; /* initialised once with the DWS public key */
    EVP_MD_CTX *scratch;      /* each call's copy of one of them */
    char *content;            /* scratch for the content to sign or verify */
    char *request;
};

static void one_call(struct conn *c, struct call *k)
{
    unsigned char sig[512], raw[512];
    char b64[700], enc[1100], rtime[32];
    size_t siglen = sizeof sig, rawlen = 0, clen, head_end, blen, i, o = 0;
    struct timespec now;
    EVP_MD_CTX *ctx = k->scratch;
    int n, len;
    char *status, *cid, *rt, *sv;

    clock_gettime(CLOCK_REALTIME, &now);
    snprintf(rtime, sizeof rtime, "%lld", (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000);
    clen = (size_t)sprintf(k->content, "POST %s\n%s.%s.", PATH, k->client_id, rtime);
    memcpy(k->content + clen, k->body, k->body_len);
    clen += k->body_len;
    if (EVP_MD_CTX_copy_ex(ctx, k->sign_proto) != 1
        || EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)k->content, clen) != 1)
        die("sign");
    n = EVP_EncodeBlock((unsigned char *)b64, sig, (int)siglen);
    for (i = 0; i < (size_t)n; i++) {
        char ch = b64[i];
        if (ch == '+' || ch == '/' || ch == '=') {
            static const char hex[] = "0123456789ABCDEF";
            enc[o++] = '%';
            enc[o++] = hex[(unsigned char)ch >> 4];
            enc[o++] = hex[(unsigned char)ch & 15];
        } else {
            enc[o++] = ch;
        }
    }
    enc[o] = '\0';
    len = sprintf(k->request, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json; charset=UTF-8\r\n"
        "Client-Id: %s\r\nRequest-Time: %s\r\nSignature: algorithm=RSA256,keyVersion=1,signature=%s\r\n"
        "Content-Length: %zu\r\n\r\n", PATH, k->host_header, k->client_id, rtime, enc, k->body_len);
    memcpy(k->request + len, k->body, k->body_len);
    write_all(c->ssl, k->request, (size_t)len + k->body_len);

    blen = read_answer(c, &head_end);
    status = c->head;
    if (strncmp(status, "HTTP/1.1 200 ", 13) != 0)
        die("status not 200");
    cid = header(c->head, "client-id");
    rt = header(c->head, "response-time");
    sv = header(c->head, "signature");
    if (cid == NULL || rt == NULL || sv == NULL)
        die("an answer without client-id, response-time or signature");
    if (!signature_of(sv, value_len(sv), raw, &rawlen))
        die("unreadable signature header");
    clen = (size_t)sprintf(k->content, "POST %s\n%.*s.%.*s.", PATH, (int)value_len(cid), cid,
        (int)value_len(rt), rt);
    memcpy(k->content + clen, c->body, blen);
    clen += blen;
    if (EVP_MD_CTX_copy_ex(ctx, k->verify_proto) != 1
        || EVP_DigestVerify(ctx, raw, rawlen, (unsigned char *)k->content, clen) != 1)
        die("the answer's signature does not verify");
}

struct best {
    double cpu, user, sys, wall;
};

/* The measured rounds, a function of their own so that callgrind can count only them
 * (make bench-profile-floor-client: --toggle-collect=dws_bench_profiled_floor_client). */
struct best dws_bench_profiled_floor_client(struct conn *c, struct call *k, long rounds, long per);
struct best dws_bench_profiled_floor_client(struct conn *c, struct call *k, long rounds, long per)
{
    struct best b = { -1, 0, 0, 0 };
    long r, i;
    for (r = 0; r < rounds; r++) {
        double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
        double u0 = rusage_s(1), s0 = rusage_s(0), cpu;
        for (i = 0; i < per; i++)
            one_call(c, k);
        cpu = (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0) / (double)per;
        if (b.cpu < 0 || cpu < b.cpu) {
            b.cpu = cpu;
            b.wall = (clock_s(CLOCK_MONOTONIC) - w0) / (double)per;
            b.user = (rusage_s(1) - u0) / (double)per;
            b.sys = (rusage_s(0) - s0) / (double)per;
        }
    }
    return b;
}

int main(int argc, char **argv)
{
    struct conn c;
    struct call k;
    SSL_CTX *ctx;
    EVP_PKEY *priv, *pub;
    char host_header[300];
    long calls, rounds, per, i;
    struct best b;
    int fd;

    if (argc != 10) {
        fprintf(stderr, "usage: floor_client host port ca.pem client_id merchant_private.pem dws_public.pem "
            "body.json calls rounds\n");
        return 2;
    }
    calls = strtol(argv[8], NULL, 10);
    rounds = strtol(argv[9], NULL, 10);
    if (calls < 1 || rounds < 1 || rounds > calls)
        die("calls and rounds: 1 <= rounds <= calls");
    per = calls / rounds;

    priv = read_key(argv[5], 1);
    pub = read_key(argv[6], 0);
    memset(&k, 0, sizeof k);
    k.client_id = argv[4];
    k.body = read_file(argv[7], &k.body_len);
    snprintf(host_header, sizeof host_header, "%s:%s", argv[1], argv[2]);
    k.host_header = host_header;
    k.sign_proto = EVP_MD_CTX_new();
    k.verify_proto = EVP_MD_CTX_new();
    k.scratch = EVP_MD_CTX_new();
    if (k.sign_proto == NULL || k.verify_proto == NULL || k.scratch == NULL
        || EVP_DigestSignInit(k.sign_proto, NULL, EVP_sha256(), NULL, priv) != 1
        || EVP_DigestVerifyInit(k.verify_proto, NULL, EVP_sha256(), NULL, pub) != 1)
        die("digest contexts");
    k.content = malloc(BODY_MAX + 1024);
    k.request = malloc(k.body_len + 4096);
    c.body = malloc(BODY_MAX);
    c.have = 0;
    if (k.content == NULL || k.request == NULL || c.body == NULL)
        die("out of memory");

    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1
        || SSL_CTX_load_verify_locations(ctx, argv[3], NULL) != 1)
        die("TLS context");
    fd = tcp_connect(argv[1], argv[2]);
    c.ssl = tls_connect(ctx, fd, argv[1]);

    for (i = 0; i < WARMUP; i++)
        one_call(&c, &k);
    b = dws_bench_profiled_floor_client(&c, &k, rounds, per);
    printf("cpu %.9f\nuser %.9f\nsys %.9f\nwall %.9f\ncalls %ld\nconnects 1\n", b.cpu, b.user, b.sys,
        b.wall, per * rounds + WARMUP);

    SSL_shutdown(c.ssl);
    SSL_free(c.ssl);
    close(fd);
    SSL_CTX_free(ctx);
    EVP_MD_CTX_free(k.sign_proto);
    EVP_MD_CTX_free(k.verify_proto);
    EVP_MD_CTX_free(k.scratch);
    EVP_PKEY_free(priv);
    EVP_PKEY_free(pub);
    free(k.content);
    free(k.request);
    free(k.body);
    free(c.body);
    return 0;
}
