/*
 * curl.multi: many transfers in flight over libcurl's multi interface, for dws.multi (run_all).
 *
 *   local m = curl.multi{ slots = 32, multiplex = true, ca_file=, proxy=, user_agent=, verify=,
 *                         max_response_bytes= }
 *   m:start(url, headers, body, timeout_s, connect_timeout_s) -> slot (1..slots)
 *       | nil, kind, message        (out of memory; raises when no slot is free: a caller's bug)
 *       POST with body (a string or a dws.buffer, copied: the caller may wipe it at once),
 *       GET without one.
 *   m:perform(wait_s) -> slot, slot, ...   the transfers that finished (none when wait_s ran out)
 *   m:take(slot) -> status, headers, body | nil, kind, message   (as h:request) and frees the slot
 *   m:running() -> number of transfers in flight or finished and not yet taken
 *   m:stats() -> { connects =, requests = }
 *   m:close()   idempotent; __gc, __close
 *
 * Every slot's easy handle is configured once, at creation, and reused: a transfer sets only its
 * URL, headers, body size and (when they change) timeouts. The connection pool is libcurl's, held
 * by the multi handle and bounded at `slots` connections; HTTP/2 streams are multiplexed on one
 * connection when the gateway offers h2 (ALPN) and multiplex is on.
 *
 * No Lua code runs inside curl_multi_perform or curl_multi_poll: the callbacks only append to each
 * slot's C buffers, and nothing that can raise (a Lua allocation) happens while a libcurl call is
 * on the stack, so an error never longjmps through libcurl frames. As in h:request, a rewind is
 * refused, so libcurl never resends a request on its own.
 *
 * As h:request drops a kept-alive connection with anything waiting on it, so does the pool: libcurl
 * 7.88 reuses a connection that has unread bytes (it only looks for the server's close), so a
 * response sent after the real one would be read as the next transfer's answer. The connections
 * left idle by finished transfers are noted (socket, local and peer port); before libcurl next
 * picks connections, one with bytes waiting is drained and shut for reading, which libcurl then
 * sees as closed and discards. Each slot knows the connection its transfer sends on
 * (CURLOPT_PREREQFUNCTION names its ports), and a connection a running transfer holds is never
 * noted nor touched: over h2 other streams go on after one ends, and libcurl may hand a freed
 * connection to a waiting transfer before the finished one is collected. Bytes meant for a transfer
 * are thus never drained.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "lua.h"
#include "lauxlib.h"

#include "class.h"
#include "curl_shared.h"

#define MULTI_MT "dws.curl.multi"
#define MAX_SLOTS 1024

enum { SLOT_FREE, SLOT_RUNNING, SLOT_DONE };

typedef struct {
    CURL *easy;
    dws_io io;
    char *body; /* our copy of the request body, cleansed when the transfer ends */
    size_t body_len;
    struct curl_slist *headers;
    int state;
    int is_http; /* the URL names http(s): error_kind reads an unsupported protocol as the server's */
    CURLcode rc;
    long status;
    long timeout_ms, connect_ms; /* what the easy handle is set to */
    int posting;                 /* likewise: POST (1) or GET (0) */
    int pipewait;                /* likewise: CURLOPT_PIPEWAIT */
    int conn_local, conn_peer;   /* ports of the connection the transfer sends on; 0: none yet */
    void *pool;                  /* the multi this slot belongs to (for on_prereq) */
} slot;

/* A kept-alive connection no transfer is using, as its socket and ports (a closed socket's number
 * may come back as another connection's: the ports tell them apart). */
typedef struct {
    curl_socket_t fd;
    int local_port, peer_port;
} idle_conn;

typedef struct {
    CURLM *multi;
    slot *slots;
    idle_conn *idle; /* up to 2 * n: libcurl may hold a few more connections than slots, briefly */
    int nidle;
    int n;
    int busy; /* slots not free */
    int multiplex;
    int *finished; /* n entries: filled by collect, pushed afterwards */
    lua_Integer connects, requests;
} multi;

static multi *check_multi(lua_State *L)
{
    multi *m = (multi *)luaL_checkudata(L, 1, MULTI_MT);
    if (!m->multi) luaL_error(L, "dws.curl.multi: closed");
    return m;
}

/* The end of a transfer: libcurl forgets the request's memory, which is then wiped and freed. */
static void end_transfer(multi *m, slot *s)
{
    if (s->state == SLOT_RUNNING) curl_multi_remove_handle(m->multi, s->easy);
    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    s->io.up.data = NULL;
    s->io.up.len = s->io.up.sent = 0;
    curl_slist_free_all(s->headers);
    s->headers = NULL;
    if (s->body) {
        dws_cleanse(s->body, s->body_len);
        free(s->body);
        s->body = NULL;
    }
    s->body_len = 0;
}

static void release(multi *m)
{
    int i;
    if (m->slots) {
        for (i = 0; i < m->n; i++) {
            slot *s = &m->slots[i];
            if (!s->easy) continue;
            end_transfer(m, s);
            curl_easy_cleanup(s->easy);
            s->easy = NULL;
            dws_cbuf_free(&s->io.body);
            dws_cbuf_free(&s->io.head);
        }
        free(m->slots);
        m->slots = NULL;
    }
    free(m->finished);
    m->finished = NULL;
    free(m->idle);
    m->idle = NULL;
    m->nidle = 0;
    if (m->multi) {
        curl_multi_cleanup(m->multi);
        m->multi = NULL;
    }
    m->busy = 0;
}

static int l_close(lua_State *L)
{
    release((multi *)luaL_checkudata(L, 1, MULTI_MT));
    return 0;
}

static int l_tostring(lua_State *L)
{
    multi *m = (multi *)luaL_checkudata(L, 1, MULTI_MT);
    if (m->multi)
        lua_pushfstring(L, "dws.curl.multi (%d slots)", m->n);
    else
        lua_pushliteral(L, "dws.curl.multi (closed)");
    return 1;
}

static int l_stats(lua_State *L)
{
    multi *m = (multi *)luaL_checkudata(L, 1, MULTI_MT);
    return dws_curl_push_stats(L, m->connects, m->requests);
}

static int l_running(lua_State *L)
{
    lua_pushinteger(L, check_multi(L)->busy);
    return 1;
}

/* A socket's local or peer port (-1 when it is not an open IP socket). */
static int port_of(curl_socket_t fd, int peer)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int rc = peer ? getpeername(fd, (struct sockaddr *)&ss, &len) : getsockname(fd, (struct sockaddr *)&ss, &len);
    if (rc != 0) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

static void idle_remove(multi *m, int i)
{
    m->idle[i] = m->idle[--m->nidle];
}

/* Whether a running transfer other than `self` sends on the connection with these ports. */
static int held(const multi *m, const slot *self, int local_port, int peer_port)
{
    int i;
    for (i = 0; i < m->n; i++) {
        const slot *s = &m->slots[i];
        if (s != self && s->state == SLOT_RUNNING && s->conn_local == local_port && s->conn_peer == peer_port)
            return 1;
    }
    return 0;
}

/* A finished transfer's connection, still in libcurl's pool (CURLINFO_ACTIVESOCKET answers only
 * while the handle is in the multi), is idle until a transfer takes it up again, unless another
 * running transfer holds it already. */
static void idle_add(multi *m, slot *s)
{
    curl_socket_t fd = CURL_SOCKET_BAD;
    int i, local_port, peer_port;
    if (curl_easy_getinfo(s->easy, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK || fd == CURL_SOCKET_BAD) return;
    for (i = 0; i < m->nidle; i++)
        if (m->idle[i].fd == fd) idle_remove(m, i--);
    local_port = port_of(fd, 0);
    peer_port = port_of(fd, 1);
    if (held(m, s, local_port, peer_port)) return;
    if (m->nidle == 2 * m->n) return; /* not watched: no worse than libcurl alone */
    m->idle[m->nidle].fd = fd;
    m->idle[m->nidle].local_port = local_port;
    m->idle[m->nidle].peer_port = peer_port;
    m->nidle++;
}

/* CURLOPT_PREREQFUNCTION: a transfer is about to send on this connection (new or reused). */
static int on_prereq(void *ud, char *peer_ip, char *local_ip, int peer_port, int local_port)
{
    slot *s = (slot *)ud;
    multi *m = (multi *)s->pool;
    int i;
    (void)peer_ip;
    (void)local_ip;
    s->conn_local = local_port;
    s->conn_peer = peer_port;
    for (i = 0; i < m->nidle; i++)
        if (m->idle[i].local_port == local_port && m->idle[i].peer_port == peer_port) idle_remove(m, i--);
    return CURL_PREREQFUNC_OK;
}

/* Before libcurl picks connections: an idle one with bytes waiting (or closed) is drained and shut
 * for reading, so that libcurl's own check finds it closed and never sends on it. */
static void drop_stale(multi *m)
{
    int i;
    for (i = 0; i < m->nidle; i++) {
        idle_conn *c = &m->idle[i];
        char sink[4096];
        int guard;
        if (port_of(c->fd, 0) != c->local_port || port_of(c->fd, 1) != c->peer_port
            || held(m, NULL, c->local_port, c->peer_port)) {
            /* closed by libcurl (the number may be another socket's now), or taken up again */
            idle_remove(m, i--);
            continue;
        }
        if (!dws_curl_socket_stale(c->fd)) continue;
        /* Bounded: a gateway that keeps sending is cut off by the shutdown all the same. */
        for (guard = 0; guard < 64 && recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; guard++) {
        }
        dws_cleanse(sink, sizeof(sink));
        shutdown(c->fd, SHUT_RD);
        idle_remove(m, i--);
    }
}

int dws_curl_multi_new(lua_State *L)
{
    dws_curl_conf conf;
    lua_Integer n = 32;
    int multiplex = 1, i;
    const char *what = "curl_multi_init";
    CURLcode rc = CURLE_OK;
    multi *m;

    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    dws_curl_read_conf(L, 1, "dws.curl.multi", &conf);
    lua_getfield(L, 1, "slots");
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1)) luaL_error(L, "dws.curl.multi: option 'slots' must be a number");
        n = lua_tointeger(L, -1);
        if (n < 1 || n > MAX_SLOTS || (lua_Number)n != lua_tonumber(L, -1))
            luaL_error(L, "dws.curl.multi: option 'slots' must be a whole number in 1..%d", MAX_SLOTS);
    }
    lua_pop(L, 1);
    lua_getfield(L, 1, "multiplex");
    if (!lua_isnil(L, -1)) {
        if (!lua_isboolean(L, -1)) luaL_error(L, "dws.curl.multi: option 'multiplex' must be a boolean");
        multiplex = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);

    m = (multi *)lua_newuserdata(L, sizeof(multi));
    memset(m, 0, sizeof(*m));
    luaL_getmetatable(L, MULTI_MT);
    lua_setmetatable(L, -2);
    /* From here on nothing raises: a failure releases what exists (the __gc would too). */
    m->multi = curl_multi_init();
    m->slots = (slot *)calloc((size_t)n, sizeof(slot));
    m->finished = (int *)calloc((size_t)n, sizeof(int));
    m->idle = (idle_conn *)calloc((size_t)n * 2, sizeof(idle_conn));
    if (!m->multi || !m->slots || !m->finished || !m->idle) goto fail;
    m->n = (int)n;
    m->multiplex = multiplex;
    /* The pool: at most one connection per slot, all kept alive between batches. */
    curl_multi_setopt(m->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)n);
    curl_multi_setopt(m->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)n);
    curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, (long)n);
    curl_multi_setopt(m->multi, CURLMOPT_PIPELINING, multiplex ? (long)CURLPIPE_MULTIPLEX : (long)CURLPIPE_NOTHING);
    for (i = 0; i < m->n; i++) {
        slot *s = &m->slots[i];
        what = "curl_easy_init";
        s->easy = curl_easy_init();
        if (!s->easy) goto fail;
        rc = dws_curl_configure(s->easy, &conf, &s->io, &what);
        if (rc == CURLE_OK) {
            what = "CURLOPT_PRIVATE";
            rc = curl_easy_setopt(s->easy, CURLOPT_PRIVATE, (void *)s);
        }
        if (rc == CURLE_OK) {
            what = "CURLOPT_PREREQFUNCTION";
            rc = curl_easy_setopt(s->easy, CURLOPT_PREREQFUNCTION, on_prereq);
        }
        s->pool = m;
        if (rc == CURLE_OK) rc = curl_easy_setopt(s->easy, CURLOPT_PREREQDATA, (void *)s);
        if (rc != CURLE_OK) goto fail;
    }
    return 1;

fail:
    release(m);
    lua_pushnil(L);
    if (rc != CURLE_OK)
        lua_pushfstring(L, "dws.curl.multi: %s: %s", what, curl_easy_strerror(rc));
    else
        lua_pushfstring(L, "dws.curl.multi: %s failed (out of memory)", what);
    return 2;
}

static int l_start(lua_State *L)
{
    multi *m = check_multi(L);
    size_t url_len, body_len = 0, nheaders;
    const char *url = luaL_checklstring(L, 2, &url_len);
    const char *body;
    long timeout_ms, connect_ms;
    slot *s = NULL;
    int i;
    CURLMcode mrc;

    /* 1. Check every argument and find a free slot; raising is only allowed here. */
    luaL_argcheck(L, strlen(url) == url_len, 2, "URL contains a NUL byte");
    nheaders = dws_curl_check_headers(L, 3);
    body = dws_curl_body_arg(L, 4, &body_len);
    timeout_ms = dws_curl_timeout_arg(L, 5);
    connect_ms = dws_curl_timeout_arg(L, 6);
    for (i = 0; i < m->n; i++) {
        if (m->slots[i].state == SLOT_FREE) {
            s = &m->slots[i];
            break;
        }
    }
    if (!s) luaL_error(L, "dws.curl.multi: every slot is busy (take finished transfers first)");

    /* 2. Copies of what libcurl reads while the transfer runs (no Lua call below can raise). */
    s->headers = dws_curl_header_list(L, 3, nheaders);
    if (!s->headers) goto oom;
    if (body) {
        s->body = (char *)malloc(body_len ? body_len : 1);
        if (!s->body) goto oom;
        memcpy(s->body, body, body_len);
        s->body_len = body_len;
    }

    /* 3. The transfer's own options; everything else was set when the slot was made. */
    dws_cbuf_reset(&s->io.body);
    dws_cbuf_reset(&s->io.head);
    s->io.errbuf[0] = '\0';
    s->status = 0;
    s->rc = CURLE_OK;
    s->is_http = strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0 ||
                 strncmp(url, "HTTP://", 7) == 0 || strncmp(url, "HTTPS://", 8) == 0;
    curl_easy_setopt(s->easy, CURLOPT_URL, url);
    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
    if (timeout_ms != s->timeout_ms) curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, s->timeout_ms = timeout_ms);
    if (connect_ms != s->connect_ms)
        curl_easy_setopt(s->easy, CURLOPT_CONNECTTIMEOUT_MS, s->connect_ms = connect_ms);
    /* Over TLS, wait for a connection that may multiplex (h2, offered by ALPN) rather than open one
     * per transfer. Plain http is HTTP/1.1 here: waiting would only hold every transfer of a batch
     * behind the first answer, and then put the next one on that connection at once. */
    {
        int pipewait = m->multiplex && (strncmp(url, "https://", 8) == 0 || strncmp(url, "HTTPS://", 8) == 0);
        if (pipewait != s->pipewait) curl_easy_setopt(s->easy, CURLOPT_PIPEWAIT, (long)(s->pipewait = pipewait));
    }
    if (body) {
        if (!s->posting) curl_easy_setopt(s->easy, CURLOPT_POST, 1L);
        s->posting = 1;
        s->io.up.data = s->body;
        s->io.up.len = body_len;
        s->io.up.sent = 0;
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    } else if (s->posting) {
        curl_easy_setopt(s->easy, CURLOPT_HTTPGET, 1L);
        s->posting = 0;
    }
    mrc = curl_multi_add_handle(m->multi, s->easy);
    if (mrc != CURLM_OK) {
        end_transfer(m, s);
        lua_pushnil(L);
        lua_pushliteral(L, "error");
        lua_pushstring(L, curl_multi_strerror(mrc));
        return 3;
    }
    s->state = SLOT_RUNNING;
    s->conn_local = s->conn_peer = 0; /* until libcurl names its connection (on_prereq) */
    m->busy++;
    m->requests++;
    lua_pushinteger(L, (lua_Integer)(s - m->slots) + 1);
    return 1;

oom:
    end_transfer(m, s);
    lua_pushnil(L);
    lua_pushliteral(L, "error");
    lua_pushliteral(L, "out of memory starting a transfer");
    return 3;
}

/* Moves every finished transfer to SLOT_DONE; -> how many (their indices in m->finished). */
static int collect(multi *m)
{
    CURLMsg *msg;
    int left, done = 0;
    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
        slot *s = NULL;
        long nconn = 0;
        if (msg->msg != CURLMSG_DONE) continue;
        if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s) != CURLE_OK || !s) continue;
        s->rc = msg->data.result;
        if (s->rc == CURLE_OK) curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &s->status);
        if (curl_easy_getinfo(s->easy, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK) m->connects += nconn;
        idle_add(m, s);
        end_transfer(m, s); /* msg is not used after this */
        s->state = SLOT_DONE;
        m->finished[done++] = (int)(s - m->slots) + 1;
    }
    return done;
}

static int l_perform(lua_State *L)
{
    multi *m = check_multi(L);
    lua_Number wait = luaL_optnumber(L, 2, 0);
    int running = 0, done, i;
    luaL_argcheck(L, wait >= 0 && wait <= 3600, 2, "wait out of range");
    luaL_checkstack(L, m->n, "dws.curl.multi: perform");

    drop_stale(m);
    curl_multi_perform(m->multi, &running);
    done = collect(m);
    if (done == 0 && running > 0 && wait > 0) {
        curl_multi_poll(m->multi, NULL, 0, (int)(wait * 1000.0 + 0.5), NULL);
        curl_multi_perform(m->multi, &running);
        done = collect(m);
    }
    /* Only now, with no libcurl frame below, touch the Lua stack. */
    for (i = 0; i < done; i++) lua_pushinteger(L, m->finished[i]);
    return done;
}

static int l_take(lua_State *L)
{
    multi *m = check_multi(L);
    lua_Integer k = luaL_checkinteger(L, 2);
    slot *s;
    int n;
    luaL_argcheck(L, k >= 1 && k <= m->n && m->slots[k - 1].state == SLOT_DONE, 2, "no finished transfer in this slot");
    s = &m->slots[k - 1];
    s->state = SLOT_FREE;
    m->busy--;
    /* The pushes may raise (out of memory); the slot is free either way and its buffers are reset
     * on its next start, or freed by close. */
    n = s->rc != CURLE_OK ? dws_curl_push_failure(L, s->rc, &s->io, s->is_http ? "http://" : "")
                          : dws_curl_push_response(L, s->status, &s->io);
    dws_cbuf_reset(&s->io.body);
    dws_cbuf_reset(&s->io.head);
    return n;
}

static const luaL_Reg multi_methods[] = {
    {"start", l_start},
    {"perform", l_perform},
    {"take", l_take},
    {"running", l_running},
    {"stats", l_stats},
    {"close", l_close},
    {NULL, NULL},
};

static const dws_class multi_class = {
    .name = MULTI_MT, .methods = multi_methods, .methods_in_metatable = 1,
    .release = l_close, .tostring = l_tostring, .len = NULL,
};

void dws_curl_multi_register(lua_State *L)
{
    dws_class_register(L, &multi_class);
}
