/*
 * What dws.curl's two halves share: curl.c (one easy handle per userdata, h:request) and
 * curl_multi.c (curl.multi: transfers in flight over libcurl's multi interface). The callbacks
 * only append to C buffers, so no Lua code ever runs inside libcurl, in either half.
 * Internal to dws.curl (hidden visibility): nothing here is exported from the .so.
 */
#ifndef DWS_CURL_SHARED_H
#define DWS_CURL_SHARED_H

#include <stddef.h>

#include <curl/curl.h>

#include "lua.h"

/* Kept local (not csrc/compat.h) so this module builds on its own. */
#if LUA_VERSION_NUM < 502
#define dws_rawlen(L, i) lua_objlen((L), (i))
#else
#define dws_rawlen(L, i) lua_rawlen((L), (i))
#endif

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    size_t limit;
    int overflow; /* set when the limit stopped the transfer */
} dws_cbuf;

/* The request body, read by libcurl through the read callback. */
typedef struct {
    const char *data;
    size_t len;
    size_t sent;
} dws_upload;

/* One transfer's C side: what the callbacks write to. */
typedef struct {
    dws_upload up;
    dws_cbuf body;
    dws_cbuf head; /* raw header lines of the latest response only */
    char errbuf[CURL_ERROR_SIZE];
} dws_io;

/* The options of curl.new and curl.multi (strings stay owned by the options table). */
typedef struct {
    const char *ca_file, *proxy, *user_agent;
    int verify;
    lua_Integer max_response;
} dws_curl_conf;

/* Reads the options table at index t; raises on a wrong type (before any resource exists). */
void dws_curl_read_conf(lua_State *L, int t, const char *who, dws_curl_conf *c);
/* Sets every per-handle option once; CURLE_OK or the failing option's code (*what names it). */
CURLcode dws_curl_configure(CURL *e, const dws_curl_conf *c, dws_io *io, const char **what);
void dws_cbuf_reset(dws_cbuf *b);
void dws_cbuf_free(dws_cbuf *b);
/* Whether a kept-alive connection's socket has anything waiting (bytes, a close, an error). */
int dws_curl_socket_stale(curl_socket_t s);
/* Checks the headers array at index i (raises on a bad one); -> its length. */
size_t dws_curl_check_headers(lua_State *L, int i);
/* The checked headers, "Expect:" appended -> slist, or NULL when out of memory. Never raises. */
struct curl_slist *dws_curl_header_list(lua_State *L, int i, size_t n);
/* Argument i: a string or a dws.buffer -> its bytes (raises on anything else). */
const char *dws_curl_body_arg(lua_State *L, int i, size_t *len);
/* Seconds (nil: none) to libcurl milliseconds; raises on a negative or non-number value. */
long dws_curl_timeout_arg(lua_State *L, int i);
/* Pushes nil, kind, message for a failed transfer (3 values). */
int dws_curl_push_failure(lua_State *L, CURLcode rc, const dws_io *io, const char *url);
/* Pushes status, headers, body (3 values); lower-cases the header names in place. */
int dws_curl_push_response(lua_State *L, long status, dws_io *io);
/* Pushes { connects =, requests = } (1 value): h:stats() and m:stats() return the same shape. */
int dws_curl_push_stats(lua_State *L, lua_Integer connects, lua_Integer requests);
/* memset the compiler may not drop. */
void dws_cleanse(void *p, size_t n);

int dws_curl_multi_new(lua_State *L);
void dws_curl_multi_register(lua_State *L);

#endif
