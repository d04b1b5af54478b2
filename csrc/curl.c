/*
 * dws.curl: one libcurl easy handle per userdata, for the plain-Lua transport.
 *
 *   local h = curl.new{ max_response_bytes=, ca_file=, proxy=, user_agent=, verify=true }
 *       max_response_bytes required (dws.transport.curl passes dws.defaults' when not given)
 *   h:request(url, headers, body, timeout_s, connect_timeout_s [, method])
 *       -> status, headers, body  |  nil, kind, message
 *       GET without a body, POST with one; method (optional) names another (HEAD: no body read).
 *   h:stats() -> { connects =, requests = }
 *   h:close()
 *
 * The handle is configured once and reused, so libcurl keeps its connection cache (keep-alive)
 * and TLS session across requests. No Lua code runs inside curl_easy_perform: the write and
 * header callbacks only append to C buffers owned by the userdata, and results are pushed to
 * Lua after every libcurl resource of the call has been released, so a Lua error (out of
 * memory while pushing) can never leak or leave libcurl in the middle of a transfer.
 *
 * curl.multi (many transfers in flight, for dws.multi) lives in curl_multi.c and shares the
 * option set-up, callbacks and result pushing below (curl_shared.h).
 */
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "lua.h"
#include "lauxlib.h"

#include "buffer.h"
#include "class.h"
#include "curl_shared.h"

#define DWS_EXPORT __attribute__((visibility("default")))

#define HANDLE_MT "dws.curl"
/* Buffers larger than this are released after a call instead of kept for the next one. */
#define KEEP_BUFFER_BYTES 65536
/* Header block limit, as transport.ngx's; libcurl itself caps one header line at 100 KiB. */
#define MAX_HEADER_BYTES 65536
/* libcurl's per-transfer buffers, wiped whole when freed: see dws_curl_configure. */
#define UPLOAD_BUFFER_BYTES 16384 /* the smallest libcurl accepts */
#define RECEIVE_BUFFER_BYTES 4096

typedef dws_cbuf buffer;
typedef dws_upload upload;

enum { METHOD_UNSET, METHOD_GET, METHOD_POST, METHOD_HEAD };

typedef struct {
    CURL *easy;
    dws_io io; /* the body is read straight from Lua-owned memory (argument 4 keeps it alive) */
    lua_Integer connects;
    lua_Integer requests;
    /* What the handle was last set to, so an unchanged option is not set again. libcurl's own
     * defaults (no timeouts, GET) are what the zeroed fields say. */
    long timeout_ms, connect_ms;
    int method, custom;
} handle;

/* memset the compiler may not drop (the barrier says the bytes are used): buffers may have
 * held a response worth hiding. */
void dws_cleanse(void *p, size_t n)
{
    memset(p, 0, n);
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

/*
 * libcurl's own allocations, cleansed on free: its upload buffer and request buffers held the body
 * (card data), and plain free() would leave those bytes in the heap for anyone who later reads the
 * process memory. Installed by curl_global_init_mem, so only when this module initialises libcurl
 * first in the process (see luaopen_dws_curl).
 */
static void wiping_free(void *p)
{
    if (p) {
        dws_cleanse(p, malloc_usable_size(p));
        free(p);
    }
}

static void *wiping_realloc(void *p, size_t n)
{
    size_t old;
    void *q;
    if (!p) return malloc(n);
    old = malloc_usable_size(p);
    /* Copy, then cleanse and free the old block (realloc could leave a copy behind). */
    q = malloc(n ? n : 1);
    if (!q) return NULL;
    memcpy(q, p, old < n ? old : n);
    wiping_free(p);
    return q;
}

static char *wiping_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *q = (char *)malloc(n);
    if (q) memcpy(q, s, n);
    return q;
}

void dws_cbuf_reset(dws_cbuf *b)
{
    if (b->data) dws_cleanse(b->data, b->len);
    if (b->cap > KEEP_BUFFER_BYTES) {
        free(b->data);
        b->data = NULL;
        b->cap = 0;
    }
    b->len = 0;
    b->overflow = 0;
}

void dws_cbuf_free(dws_cbuf *b)
{
    if (b->data) {
        dws_cleanse(b->data, b->cap);
        free(b->data);
    }
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Append; 0 on success, -1 when over the limit or out of memory (the transfer is aborted). */
static int buffer_append(buffer *b, const char *p, size_t n)
{
    if (n > b->limit - b->len) {
        b->overflow = 1;
        return -1;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *q;
        while (cap < b->len + n) cap = cap > b->limit / 2 ? b->limit : cap * 2;
        q = (char *)malloc(cap);
        if (!q) return -1;
        /* realloc could leave a stale copy of the bytes behind: copy, cleanse, free. */
        if (b->data) {
            memcpy(q, b->data, b->len);
            dws_cleanse(b->data, b->len);
            free(b->data);
        }
        b->data = q;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    buffer *b = (buffer *)ud;
    size_t total = size * n;
    return buffer_append(b, p, total) == 0 ? total : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    buffer *b = (buffer *)ud;
    size_t total = size * n;
    /* A status line starts a new response (1xx, proxy CONNECT): keep only the final one. */
    if (total >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        b->len = 0;
        return total;
    }
    return buffer_append(b, p, total) == 0 ? total : 0;
}

static size_t on_read(char *p, size_t size, size_t n, void *ud)
{
    upload *u = (upload *)ud;
    size_t room = size * n, left = u->len - u->sent;
    if (room > left) room = left;
    memcpy(p, u->data + u->sent, room);
    u->sent += room;
    return room;
}

/*
 * libcurl rewinds the body to send it again on its own: on a reused connection that died after the
 * request went out, it silently retries on a fresh one (the gateway then sees two requests while
 * the caller counted one). Refusing the rewind turns that into an error, so only the SDK's own
 * retry logic, which counts, re-signs and logs every attempt, ever sends a request twice.
 */
static int on_seek(void *ud, curl_off_t offset, int origin)
{
    (void)ud;
    (void)offset;
    (void)origin;
    return CURL_SEEKFUNC_FAIL;
}

/*
 * Whether a kept-alive connection has something waiting on it (bytes nobody asked for, or the
 * server's close). libcurl looks only at connections idle for a while, so a response sent after
 * the real one would otherwise be read as the answer to the next request, and the connection
 * would stay one answer behind for good. The one test, for h:request and the multi pool.
 */
int dws_curl_socket_stale(curl_socket_t s)
{
    struct pollfd p;
    p.fd = s;
    p.events = POLLIN;
    p.revents = 0;
    return poll(&p, 1, 0) != 0;   /* readable, closed, in error, or poll failed: never reuse */
}

static int connection_stale(CURL *e)
{
    curl_socket_t s = CURL_SOCKET_BAD;
    if (curl_easy_getinfo(e, CURLINFO_ACTIVESOCKET, &s) != CURLE_OK || s == CURL_SOCKET_BAD)
        return 0;   /* no connection to reuse */
    return dws_curl_socket_stale(s);
}

static handle *check_handle(lua_State *L)
{
    handle *h = (handle *)luaL_checkudata(L, 1, HANDLE_MT);
    if (!h->easy) luaL_error(L, "dws.curl: handle is closed");
    return h;
}

static void release(handle *h)
{
    if (h->easy) {
        curl_easy_cleanup(h->easy);
        h->easy = NULL;
    }
    dws_cbuf_free(&h->io.body);
    dws_cbuf_free(&h->io.head);
}

static int l_close(lua_State *L)
{
    handle *h = (handle *)luaL_checkudata(L, 1, HANDLE_MT);
    release(h);
    return 0;
}

static int l_tostring(lua_State *L)
{
    handle *h = (handle *)luaL_checkudata(L, 1, HANDLE_MT);
    if (h->easy)
        lua_pushfstring(L, "dws.curl (%p)", (void *)h);
    else
        lua_pushliteral(L, "dws.curl (closed)");
    return 1;
}

static int l_stats(lua_State *L)
{
    handle *h = (handle *)luaL_checkudata(L, 1, HANDLE_MT);
    return dws_curl_push_stats(L, h->connects, h->requests);
}

/* Optional string field of the options table; raises on a wrong type. */
static const char *opt_string(lua_State *L, int t, const char *who, const char *name)
{
    const char *s = NULL;
    size_t len = 0;
    lua_getfield(L, t, name);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: option '%s' must be a string", who, name);
        s = lua_tolstring(L, -1, &len);
        if (strlen(s) != len) luaL_error(L, "%s: option '%s' contains a NUL byte", who, name);
    }
    /* The string stays referenced by the options table, which stays on the stack. */
    lua_pop(L, 1);
    return s;
}

void dws_curl_read_conf(lua_State *L, int t, const char *who, dws_curl_conf *c)
{
    c->ca_file = opt_string(L, t, who, "ca_file");
    c->proxy = opt_string(L, t, who, "proxy");
    c->user_agent = opt_string(L, t, who, "user_agent");
    c->verify = 1;
    lua_getfield(L, t, "verify");
    if (!lua_isnil(L, -1)) {
        if (!lua_isboolean(L, -1)) luaL_error(L, "%s: option 'verify' must be a boolean", who);
        c->verify = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    /* Required: the default is dws.defaults' (Lua), so this file keeps no second copy of it. */
    lua_getfield(L, t, "max_response_bytes");
    {
        lua_Number n;
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "%s: option 'max_response_bytes' is required (a number)", who);
        n = lua_tonumber(L, -1);
        if (!(n >= 1 && n <= (lua_Number)INT_MAX) || n != (lua_Number)(long)n)
            luaL_error(L, "%s: option 'max_response_bytes' must be an integer in 1..%d", who, INT_MAX);
        c->max_response = (lua_Integer)n;
    }
    lua_pop(L, 1);
}

/* Every option that never changes between transfers, set once per easy handle. */
CURLcode dws_curl_configure(CURL *e, const dws_curl_conf *c, dws_io *io, const char **what)
{
    CURLcode rc = CURLE_OK;
    io->body.limit = (size_t)c->max_response;
    io->head.limit = MAX_HEADER_BYTES;
#define SET(opt, val)                                                                         \
    do {                                                                                      \
        if ((rc = curl_easy_setopt(e, opt, val)) != CURLE_OK) {                               \
            *what = #opt;                                                                     \
            return rc;                                                                        \
        }                                                                                     \
    } while (0)

    SET(CURLOPT_ERRORBUFFER, io->errbuf);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    SET(CURLOPT_SSL_VERIFYPEER, c->verify ? 1L : 0L);
    SET(CURLOPT_SSL_VERIFYHOST, c->verify ? 2L : 0L);
    if (c->ca_file) SET(CURLOPT_CAINFO, c->ca_file); /* libcurl copies string options */
    /*
     * Only the proxy option is used: "" stops libcurl from taking one from http_proxy,
     * HTTPS_PROXY or ALL_PROXY (which would receive plain-HTTP bodies, card data included), and an
     * empty no-proxy list stops NO_PROXY from sending around a configured one.
     */
    SET(CURLOPT_PROXY, c->proxy ? c->proxy : "");
    SET(CURLOPT_NOPROXY, "");
    SET(CURLOPT_READFUNCTION, on_read);
    SET(CURLOPT_READDATA, &io->up);
    SET(CURLOPT_SEEKFUNCTION, on_seek);
    SET(CURLOPT_SEEKDATA, &io->up);
    if (c->user_agent) SET(CURLOPT_USERAGENT, c->user_agent);
    /* Refuse early when Content-Length announces too much; the write callback catches the rest. */
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_response);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, &io->body);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, &io->head);
    /*
     * libcurl allocates its upload buffer (64 KiB by default; on_read fills it with the body) and
     * its receive buffer (16 KiB) per transfer, and wiping_free cleanses each whole block when it
     * is freed: 80 KiB written per call, every line of it a cache miss after a wait (measured:
     * 1,280 of a call's 7,200 lines fetched from memory). DWS bodies are a few KiB, so the
     * smallest upload buffer libcurl takes and a 4 KiB receive buffer cost a large answer a few
     * more reads, nothing else. Not fatal where libcurl refuses them.
     */
    (void)curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, (long)UPLOAD_BUFFER_BYTES);
    (void)curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)RECEIVE_BUFFER_BYTES);
#undef SET
    return CURLE_OK;
}

static int l_new(lua_State *L)
{
    dws_curl_conf conf;
    const char *what = NULL;
    handle *h;
    CURL *e;
    CURLcode rc;

    /* Check every option before creating anything, so raising here leaks nothing. */
    luaL_checktype(L, 1, LUA_TTABLE);
    dws_curl_read_conf(L, 1, "dws.curl.new", &conf);

    h = (handle *)lua_newuserdata(L, sizeof(handle));
    memset(h, 0, sizeof(*h));
    luaL_getmetatable(L, HANDLE_MT);
    lua_setmetatable(L, -2);

    e = h->easy = curl_easy_init();
    if (!e) {
        lua_pushnil(L);
        lua_pushliteral(L, "dws.curl.new: curl_easy_init failed");
        return 2;
    }
    /* From here on: no Lua call that can raise until every option is set. */
    rc = dws_curl_configure(e, &conf, &h->io, &what);
    /* One connection: a stale one is replaced (FRESH_CONNECT) and then closed as the oldest. */
    if (rc == CURLE_OK && (rc = curl_easy_setopt(e, CURLOPT_MAXCONNECTS, 1L)) != CURLE_OK) what = "CURLOPT_MAXCONNECTS";
    if (rc != CURLE_OK) {
        /* Environment problem (libcurl built without a feature), not a caller's mistake. */
        release(h);
        lua_pushnil(L);
        lua_pushfstring(L, "dws.curl.new: %s: %s", what, curl_easy_strerror(rc));
        return 2;
    }
    return 1;
}

/* Seconds (nil: none) to libcurl milliseconds; raises on a negative or non-number value. */
long dws_curl_timeout_arg(lua_State *L, int i)
{
    lua_Number s;
    if (lua_isnoneornil(L, i)) return 0;
    s = luaL_checknumber(L, i);
    luaL_argcheck(L, s >= 0 && s <= 86400.0 * 365, i, "timeout out of range");
    if (s == 0) return 0;
    /* Round up: a small positive timeout must not turn into "no timeout". */
    {
        lua_Number ms = s * 1000.0;
        long whole = (long)ms;
        return (lua_Number)whole < ms ? whole + 1 : whole;
    }
}

static int is_http_url(const char *url)
{
    return strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0 ||
           strncmp(url, "HTTP://", 7) == 0 || strncmp(url, "HTTPS://", 8) == 0;
}

static const char *error_kind(CURLcode rc, int overflow, const char *url)
{
    switch (rc) {
    case CURLE_UNSUPPORTED_PROTOCOL:
        /* Only http(s) is enabled, so for such a URL this is the server's reply (HTTP/0.9). */
        return is_http_url(url) ? "protocol" : "error";
    case CURLE_OPERATION_TIMEDOUT:
        return "timeout";
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
        return "connect";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_USE_SSL_FAILED:
        return "tls";
    case CURLE_FILESIZE_EXCEEDED:
        return "too_large";
    case CURLE_WRITE_ERROR:
        return overflow ? "too_large" : "error";
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_FAIL_REWIND: /* the connection died once the request was out: not resent */
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_BAD_CONTENT_ENCODING:
        return "protocol";
    default:
        return "error";
    }
}

/* Header lines collected by on_header -> table at the stack top. Names are lower-cased in place. */
static void push_headers(lua_State *L, dws_cbuf *b)
{
    char *p = b->data, *end = b->data ? b->data + b->len : NULL;
    lua_newtable(L);
    while (p && p < end) {
        char *eol = (char *)memchr(p, '\n', (size_t)(end - p));
        char *line_end = eol ? eol : end, *colon, *v, *ve, *c;
        char *next = eol ? eol + 1 : end;
        while (line_end > p && (line_end[-1] == '\r' || line_end[-1] == '\n')) line_end--;
        colon = (char *)memchr(p, ':', (size_t)(line_end - p));
        /* Skip blank lines, obsolete folded continuations and anything without a name. */
        if (!colon || colon == p || *p == ' ' || *p == '\t') {
            p = next;
            continue;
        }
        for (c = p; c < colon; c++)
            if (*c >= 'A' && *c <= 'Z') *c = (char)(*c + ('a' - 'A'));
        v = colon + 1;
        ve = line_end;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;

        lua_pushlstring(L, p, (size_t)(colon - p));
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        switch (lua_type(L, -1)) {
        case LUA_TNIL: /* first value: a plain string */
            lua_pop(L, 1);
            lua_pushlstring(L, v, (size_t)(ve - v));
            lua_rawset(L, -3);
            break;
        case LUA_TSTRING: /* second value: turn into an array */
            lua_createtable(L, 2, 0);
            lua_insert(L, -2);
            lua_rawseti(L, -2, 1);
            lua_pushlstring(L, v, (size_t)(ve - v));
            lua_rawseti(L, -2, 2);
            lua_rawset(L, -3);
            break;
        default: /* already an array */
            lua_pushlstring(L, v, (size_t)(ve - v));
            lua_rawseti(L, -2, (int)dws_rawlen(L, -2) + 1);
            lua_pop(L, 2);
            break;
        }
        p = next;
    }
}

/* A dws.buffer (made by dws.core) at index i, or raise. */
static const dws_buffer *check_buffer(lua_State *L, int i)
{
    int same = 0;
    if (lua_getmetatable(L, i)) {
        luaL_getmetatable(L, DWS_BUFFER_MT);
        same = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    if (!same) luaL_argerror(L, i, "body must be a string or a dws.buffer");
    return (const dws_buffer *)lua_touserdata(L, i);
}

const char *dws_curl_body_arg(lua_State *L, int i, size_t *len)
{
    *len = 0;
    if (lua_type(L, i) == LUA_TUSERDATA) {
        const dws_buffer *b = check_buffer(L, i);
        *len = b->len;
        return (const char *)b->data;
    }
    if (lua_isnoneornil(L, i)) return NULL;
    return luaL_checklstring(L, i, len);
}

size_t dws_curl_check_headers(lua_State *L, int t)
{
    size_t i, n;
    if (lua_isnoneornil(L, t)) return 0;
    luaL_checktype(L, t, LUA_TTABLE);
    n = (size_t)dws_rawlen(L, t);
    for (i = 1; i <= n; i++) {
        size_t len;
        const char *s;
        lua_rawgeti(L, t, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, t, "headers must be strings \"Name: value\"");
        s = lua_tolstring(L, -1, &len);
        /* A CR or LF would let a value smuggle extra headers into the request. */
        if (strlen(s) != len || strpbrk(s, "\r\n") || !memchr(s, ':', len))
            luaL_argerror(L, t, "header must be one \"Name: value\" line");
        lua_pop(L, 1);
    }
    return n;
}

struct curl_slist *dws_curl_header_list(lua_State *L, int t, size_t n)
{
    struct curl_slist *list = NULL, *l;
    size_t i;
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, t, (int)i); /* a string, checked: no conversion, no error */
        l = curl_slist_append(list, lua_tostring(L, -1));
        lua_pop(L, 1);
        if (!l) goto oom;
        list = l;
    }
    /* libcurl would otherwise wait for "100 Continue" on larger POST bodies. */
    l = curl_slist_append(list, "Expect:");
    if (!l) goto oom;
    return l;
oom:
    curl_slist_free_all(list);
    return NULL;
}

int dws_curl_push_failure(lua_State *L, CURLcode rc, const dws_io *io, const char *url)
{
    const char *kind = error_kind(rc, io->body.overflow || io->head.overflow, url);
    lua_pushnil(L);
    lua_pushstring(L, kind);
    if (io->body.overflow || rc == CURLE_FILESIZE_EXCEEDED)
        lua_pushfstring(L, "response body over %d bytes", (int)io->body.limit);
    else if (io->head.overflow)
        lua_pushliteral(L, "response headers too large");
    else if (rc == CURLE_SEND_FAIL_REWIND)
        lua_pushliteral(L, "the connection closed after the request was sent (not resent)");
    else if (io->errbuf[0] && strcmp(io->errbuf, curl_easy_strerror(rc)) != 0)
        lua_pushfstring(L, "%s: %s", curl_easy_strerror(rc), io->errbuf);
    else
        lua_pushstring(L, curl_easy_strerror(rc));
    return 3;
}

int dws_curl_push_stats(lua_State *L, lua_Integer connects, lua_Integer requests)
{
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, connects);
    lua_setfield(L, -2, "connects");
    lua_pushinteger(L, requests);
    lua_setfield(L, -2, "requests");
    return 1;
}

int dws_curl_push_response(lua_State *L, long status, dws_io *io)
{
    lua_pushinteger(L, (lua_Integer)status);
    push_headers(L, &io->head);
    lua_pushlstring(L, io->body.data ? io->body.data : "", io->body.len);
    return 3;
}

/*
 * Per-transfer options. The method's three options are set only when it differs from the previous
 * transfer's on this handle, and the timeouts only when they change: libcurl keeps them, and a
 * call after a wait pays for every option it touches.
 */
static void set_method(handle *h, int kind, const char *custom)
{
    CURL *e = h->easy;
    if (kind != h->method) {
        if (kind == METHOD_HEAD) {
            curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        } else if (kind == METHOD_POST) {
            curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
            curl_easy_setopt(e, CURLOPT_POST, 1L);
        } else {
            curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
            curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        }
        h->method = kind;
    }
    if (custom || h->custom) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, custom);
        h->custom = custom != NULL;
    }
}

static int l_request(lua_State *L)
{
    handle *h = check_handle(L);
    size_t url_len, body_len = 0, nheaders;
    const char *url = luaL_checklstring(L, 2, &url_len);
    const char *body, *method = NULL;
    long timeout_ms, connect_ms, status = 0, nconn = 0;
    struct curl_slist *list;
    CURL *e = h->easy;
    CURLcode rc;
    int n;

    /* 1. Check every argument; raising is only allowed here, before any resource exists. */
    luaL_argcheck(L, strlen(url) == url_len, 2, "URL contains a NUL byte");
    nheaders = dws_curl_check_headers(L, 3);
    body = dws_curl_body_arg(L, 4, &body_len);
    timeout_ms = dws_curl_timeout_arg(L, 5);
    connect_ms = dws_curl_timeout_arg(L, 6);
    if (!lua_isnoneornil(L, 7)) {
        size_t mlen;
        method = luaL_checklstring(L, 7, &mlen);
        luaL_argcheck(L, mlen > 0 && strlen(method) == mlen && !strpbrk(method, " \r\n"), 7, "invalid method");
    }

    /* 2. Copy the headers into a curl_slist (no Lua call below can raise). */
    list = dws_curl_header_list(L, 3, nheaders);
    if (!list) {
        lua_pushnil(L);
        lua_pushliteral(L, "error");
        lua_pushliteral(L, "out of memory building request headers");
        return 3;
    }

    /* 3. Per-call options, perform, collect. Failures of setopt surface through perform. */
    dws_cbuf_reset(&h->io.body);
    dws_cbuf_reset(&h->io.head);
    h->io.errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, list);
    if (timeout_ms != h->timeout_ms) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, h->timeout_ms = timeout_ms);
    if (connect_ms != h->connect_ms) curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->connect_ms = connect_ms);
    if (method && strcmp(method, "HEAD") == 0) {
        set_method(h, METHOD_HEAD, NULL);
    } else if (body) {
        set_method(h, METHOD_POST, method && strcmp(method, "POST") != 0 ? method : NULL);
        /* Read through on_read from the string or buffer (argument 4 keeps it alive); no copy
         * of ours, and a rewind is refused (on_seek). */
        h->io.up.data = body;
        h->io.up.len = body_len;
        h->io.up.sent = 0;
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    } else {
        set_method(h, METHOD_GET, method && strcmp(method, "GET") != 0 ? method : NULL);
    }

    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, connection_stale(e) ? 1L : 0L);

    rc = curl_easy_perform(e);
    h->requests++;
    if (curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK) h->connects += nconn;
    if (rc == CURLE_OK) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);

    /* Drop every pointer into Lua memory and the slist before freeing it. */
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    h->io.up.data = NULL;
    h->io.up.len = h->io.up.sent = 0;
    curl_slist_free_all(list);

    /* 4. Only now push results (may raise on out-of-memory; nothing is held). */
    n = rc != CURLE_OK ? dws_curl_push_failure(L, rc, &h->io, url) : dws_curl_push_response(L, status, &h->io);
    dws_cbuf_reset(&h->io.body);
    dws_cbuf_reset(&h->io.head);
    return n;
}

static int l_version(lua_State *L)
{
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    lua_pushstring(L, v && v->version ? v->version : LIBCURL_VERSION);
    return 1;
}

static const luaL_Reg handle_methods[] = {
    {"request", l_request},
    {"stats", l_stats},
    {"close", l_close},
    {NULL, NULL},
};

static const dws_class handle_class = {
    .name = HANDLE_MT, .methods = handle_methods, .methods_in_metatable = 1,
    .release = l_close, .tostring = l_tostring, .len = NULL,
};

static const luaL_Reg module_functions[] = {
    {"new", l_new},
    {"multi", dws_curl_multi_new},
    {"version", l_version},
    {NULL, NULL},
};

DWS_EXPORT int luaopen_dws_curl(lua_State *L);

DWS_EXPORT int luaopen_dws_curl(lua_State *L)
{
    /*
     * curl_global_init is not thread-safe before libcurl 7.84 and must run before any other
     * libcurl call. Lua states that load this module are created on one thread in practice
     * (a script, or one nginx worker); the flag makes repeated requires cheap.
     */
    static int initialized = 0;
    if (!initialized) {
        if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, malloc, wiping_free, wiping_realloc, wiping_strdup,
                                 calloc) != CURLE_OK)
            return luaL_error(L, "dws.curl: curl_global_init failed");
        initialized = 1;
    }
    dws_class_register(L, &handle_class);
    dws_curl_multi_register(L);
    lua_createtable(L, 0, 4);
    luaL_setfuncs(L, module_functions, 0);
    lua_pushliteral(L, "dws.curl");
    lua_setfield(L, -2, "_NAME");
    return 1;
}
