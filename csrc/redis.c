/*
 * dws.redis: one blocking hiredis connection per userdata, for dws.store.redis outside nginx
 * (inside nginx the store speaks to Redis over cosockets instead, through nginx.redis).
 *
 *   local conn, err = redis.connect(host, port, timeout_s)
 *   conn:call(name, arg, ...) -> value | nil, message, kind
 *       value: string (bulk or status reply), integer, array (table 1..n, nested), or redis.null
 *       kind: "reply" (Redis answered with an error; the connection is still good)
 *             "io"    (refused, reset, timed out, closed: the connection is gone; make a new one)
 *   conn:close()   idempotent; also __gc and __close
 *   redis.null     a nil reply (an absent key); redis.version() -> "0.14.1"
 *
 * Policy (AUTH, SELECT, reconnecting once for idempotent commands, which commands those are)
 * lives in lua/dws/store/redis.lua; this file only moves bytes. No Lua code runs inside a
 * hiredis call, and a reply is converted under a guard userdata whose __gc frees it: if pushing
 * raises (out of memory), the error unwinds only through our frames and the reply is still
 * freed. Only luaopen_dws_redis is exported; the library links hiredis, dws.core does not.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "lua.h"
#include "lauxlib.h"

#include "class.h"

#define DWS_EXPORT __attribute__((visibility("default")))

#define CONN_MT "dws.redis"
#define GUARD_MT "dws.redis.reply"
/* Arguments per command: the store never sends more than a handful (MGET batches included). */
#define MAX_ARGS 1024
/* Replies nest at most two levels (SCAN: cursor + keys); deeper means a misbehaving server. */
#define MAX_DEPTH 8

typedef struct {
    redisContext *ctx;
    char where[96];
} conn;

typedef struct {
    redisReply *reply;
} guard;

static char null_sentinel;

static struct timeval to_timeval(double seconds)
{
    struct timeval tv;
    if (seconds < 0.001) seconds = 0.001;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
    return tv;
}

static conn *check_conn(lua_State *L)
{
    return (conn *)luaL_checkudata(L, 1, CONN_MT);
}

static void conn_drop(conn *c)
{
    if (c->ctx) {
        redisFree(c->ctx);
        c->ctx = NULL;
    }
}

/* redis.connect(host, port, timeout_s) -> conn | nil, message */
static int l_connect(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    lua_Integer port = luaL_checkinteger(L, 2);
    double timeout = luaL_optnumber(L, 3, 1.0);
    struct timeval tv;
    conn *c;
    redisContext *ctx;
    char message[256];

    luaL_argcheck(L, port > 0 && port < 65536, 2, "port out of range");
    luaL_argcheck(L, timeout > 0, 3, "timeout must be positive");
    tv = to_timeval(timeout);
    /* The userdata first: if it cannot be made, nothing of hiredis is held yet. */
    c = (conn *)lua_newuserdata(L, sizeof(*c));
    c->ctx = NULL;
    snprintf(c->where, sizeof(c->where), "%.80s:%d", host, (int)port);
    luaL_getmetatable(L, CONN_MT);
    lua_setmetatable(L, -2);

    ctx = redisConnectWithTimeout(host, (int)port, tv);
    if (ctx == NULL) {
        lua_pushnil(L);
        lua_pushliteral(L, "redis: out of memory making a connection");
        return 2;
    }
    if (ctx->err) {
        snprintf(message, sizeof(message), "redis: connect to %.95s: %.100s", c->where, ctx->errstr);
        redisFree(ctx);
        lua_pushnil(L);
        lua_pushstring(L, message);
        return 2;
    }
    if (redisSetTimeout(ctx, tv) != REDIS_OK) {
        snprintf(message, sizeof(message), "redis: %.95s: cannot set the timeout", c->where);
        redisFree(ctx);
        lua_pushnil(L);
        lua_pushstring(L, message);
        return 2;
    }
    c->ctx = ctx;
    return 1;
}

static int push_reply(lua_State *L, const redisReply *r, int depth)
{
    size_t i;
    luaL_checkstack(L, 4, "dws.redis: reply too deep");
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        lua_pushlstring(L, r->str, r->len);
        return 1;
    case REDIS_REPLY_INTEGER:
#if LUA_VERSION_NUM >= 503
        lua_pushinteger(L, (lua_Integer)r->integer);
#else
        lua_pushnumber(L, (lua_Number)r->integer);
#endif
        return 1;
    case REDIS_REPLY_NIL:
        lua_pushlightuserdata(L, &null_sentinel);
        return 1;
    case REDIS_REPLY_ARRAY:
        if (depth >= MAX_DEPTH || r->elements > INT_MAX) return 0;
        lua_createtable(L, (int)r->elements, 0);
        for (i = 0; i < r->elements; i++) {
            if (!push_reply(L, r->element[i], depth + 1)) return 0;
            lua_rawseti(L, -2, (int)(i + 1));
        }
        return 1;
    default:
        return 0;
    }
}

static int l_guard_gc(lua_State *L)
{
    guard *g = (guard *)luaL_checkudata(L, 1, GUARD_MT);
    if (g->reply) {
        freeReplyObject(g->reply);
        g->reply = NULL;
    }
    return 0;
}

/* conn:call(name, ...) -> value | nil, message, kind */
static int l_call(lua_State *L)
{
    conn *c = check_conn(L);
    int argc = lua_gettop(L) - 1, i;
    const char **argv;
    size_t *argvlen;
    guard *g;
    redisReply *reply;
    char message[256];

    luaL_argcheck(L, argc >= 1 && argc <= MAX_ARGS, 2, "a command name and at most 1023 arguments");
    if (c->ctx == NULL) {
        lua_pushnil(L);
        lua_pushfstring(L, "redis: %s: connection closed", c->where);
        lua_pushliteral(L, "io");
        return 3;
    }
    /* Lua-owned arrays (collected with the call's garbage); the strings stay on the stack. */
    argv = (const char **)lua_newuserdata(L, sizeof(*argv) * (size_t)argc);
    argvlen = (size_t *)lua_newuserdata(L, sizeof(*argvlen) * (size_t)argc);
    for (i = 0; i < argc; i++) {
        luaL_checktype(L, i + 2, LUA_TSTRING);
        argv[i] = lua_tolstring(L, i + 2, &argvlen[i]);
    }
    /* The guard exists before the reply does, so making it cannot leak a reply. */
    g = (guard *)lua_newuserdata(L, sizeof(*g));
    g->reply = NULL;
    luaL_getmetatable(L, GUARD_MT);
    lua_setmetatable(L, -2);

    reply = (redisReply *)redisCommandArgv(c->ctx, argc, argv, argvlen);
    if (reply == NULL) {
        int timed_out = c->ctx->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK);
        snprintf(message, sizeof(message), "redis: %.95s: %.100s", c->where,
                 timed_out ? "timed out" : (c->ctx->errstr[0] ? c->ctx->errstr : "connection lost"));
        /* hiredis leaves a failed context unusable: drop it now. */
        conn_drop(c);
        lua_pushnil(L);
        lua_pushstring(L, message);
        lua_pushliteral(L, "io");
        return 3;
    }
    g->reply = reply;
    if (reply->type == REDIS_REPLY_ERROR) {
        lua_pushnil(L);
        lua_pushlstring(L, reply->str, reply->len);
        lua_pushliteral(L, "reply");
    } else if (!push_reply(L, reply, 0)) {
        lua_pushnil(L);
        lua_pushliteral(L, "redis: unexpected reply shape");
        lua_pushliteral(L, "reply");
    } else {
        freeReplyObject(reply);
        g->reply = NULL;
        return 1;
    }
    freeReplyObject(reply);
    g->reply = NULL;
    return 3;
}

static int l_close(lua_State *L)
{
    conn_drop(check_conn(L));
    return 0;
}

static int l_tostring(lua_State *L)
{
    conn *c = check_conn(L);
    lua_pushfstring(L, "dws.redis(%s%s)", c->where, c->ctx ? "" : ", closed");
    return 1;
}

static int l_version(lua_State *L)
{
    lua_pushfstring(L, "%d.%d.%d", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
    return 1;
}

static const luaL_Reg conn_methods[] = {
    {"call", l_call},
    {"close", l_close},
    {NULL, NULL},
};

static const dws_class conn_class = {
    .name = CONN_MT, .methods = conn_methods, .methods_in_metatable = 0,
    .release = l_close, .tostring = l_tostring, .len = NULL,
};

DWS_EXPORT int luaopen_dws_redis(lua_State *L);

DWS_EXPORT int luaopen_dws_redis(lua_State *L)
{
    dws_class_register(L, &conn_class);
    if (luaL_newmetatable(L, GUARD_MT)) {
        lua_pushcfunction(L, l_guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_createtable(L, 0, 4);
    lua_pushcfunction(L, l_connect);
    lua_setfield(L, -2, "connect");
    lua_pushcfunction(L, l_version);
    lua_setfield(L, -2, "version");
    lua_pushlightuserdata(L, &null_sentinel);
    lua_setfield(L, -2, "null");
    lua_pushliteral(L, "dws.redis");
    lua_setfield(L, -2, "_NAME");
    return 1;
}
