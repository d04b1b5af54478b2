/*
 * JSON for dws.core.
 *
 * Encode: our own writer, because the bytes we sign are the bytes we send: object keys sorted,
 * numbers exact, optional stringify (numbers and booleans as JSON strings, as the DWS API wants).
 * The output buffer lives in a per-module userdata (an upvalue), reused across calls and wiped
 * after each, so a Lua error mid-way cannot leak it and card data never lingers in freed memory.
 * Errors name the path of the offending field, never its value.
 *
 * Decode: Debian's libcjson parses; we walk the tree into Lua tables. Each call's tree is owned
 * by a small userdata of its own on the Lua stack (freed at once when the walk ends, or by the
 * collector when a Lua error interrupts it), never by module state: the walk allocates Lua
 * objects, so the collector may run a finalizer that decodes JSON in the middle of it, and a
 * shared tree would then be freed under the outer walk's feet.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <openssl/crypto.h>

#include "buffer.h"
#include "class.h"
#include "dws.h"

#define JSON_MAX_DEPTH 64
#define STATE_MT "dws.json.state"
#define TREE_MT "dws.json.tree"
/* Keep a grown buffer between calls only up to this size. */
#define KEEP_BUFFER 65536

#define UV_ARRAY_MT lua_upvalueindex(1)
#define UV_NULL lua_upvalueindex(2)
#define UV_STATE lua_upvalueindex(3)

typedef struct key_ent {
    const char *s;
    size_t len;
    int vidx;           /* stack slot of the value, or 0: look it up with rawget */
} key_ent;

typedef struct json_state {
    char *buf;
    size_t len, cap;
    key_ent *keys;      /* a stack of key lists, one slice per object being encoded */
    size_t nkeys, keycap;
    int busy;           /* an encode is using this state (see state_for_call) */
} json_state;

typedef struct json_tree {
    cJSON *root;        /* one decode's parse tree, NULL once freed */
} json_tree;

typedef struct path_seg {
    const char *key;    /* NULL for an array index */
    size_t len;
    size_t index;
} path_seg;

typedef struct encoder {
    lua_State *L;
    json_state *st;
    int stringify;
    const char *reason;
    int err_depth;
    int bad_type;       /* the Lua type that could not be encoded, when reason is NULL */
    const void *seen[JSON_MAX_DEPTH + 1];
    path_seg path[JSON_MAX_DEPTH + 1];
} encoder;

static void state_wipe(json_state *st)
{
    if (st->buf != NULL) {
        OPENSSL_cleanse(st->buf, st->len);
        if (st->cap > KEEP_BUFFER) {
            free(st->buf);
            st->buf = NULL;
            st->cap = 0;
        }
    }
    st->len = 0;
    st->nkeys = 0;
}

static void tree_free(json_tree *t)
{
    if (t->root != NULL) {
        cJSON_Delete(t->root);
        t->root = NULL;
    }
}

static int tree_gc(lua_State *L)
{
    tree_free(luaL_checkudata(L, 1, TREE_MT));
    return 0;
}

static int state_gc(lua_State *L)
{
    json_state *st = luaL_checkudata(L, 1, STATE_MT);
    state_wipe(st);
    free(st->buf);
    free(st->keys);
    st->buf = NULL;
    st->keys = NULL;
    st->cap = st->keycap = 0;
    return 0;
}

/* Grow without realloc: realloc could leave a copy of card data in freed memory. */
static int grow(encoder *e, size_t extra)
{
    json_state *st = e->st;
    size_t need, cap;
    char *nb;
    if (extra > SIZE_MAX / 2 - st->len) {
        e->reason = "out of memory";
        return 0;
    }
    need = st->len + extra;
    cap = st->cap ? st->cap : 256;
    while (cap < need)
        cap *= 2;
    nb = malloc(cap);
    if (nb == NULL) {
        e->reason = "out of memory";
        return 0;
    }
    if (st->buf != NULL) {
        memcpy(nb, st->buf, st->len);
        OPENSSL_cleanse(st->buf, st->len);
        free(st->buf);
    }
    st->buf = nb;
    st->cap = cap;
    return 1;
}

static inline int reserve(encoder *e, size_t extra)
{
    return extra <= e->st->cap - e->st->len || grow(e, extra);
}

#define PUT(e, c) ((e)->st->buf[(e)->st->len++] = (char)(c))

static inline int put_char(encoder *e, char c)
{
    if (!reserve(e, 1))
        return 0;
    PUT(e, c);
    return 1;
}

static int put_lit(encoder *e, const char *s, size_t n)
{
    if (!reserve(e, n))
        return 0;
    memcpy(e->st->buf + e->st->len, s, n);
    e->st->len += n;
    return 1;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
            return 0;
        if (c == 0xe0 && s[1] < 0xa0) return 0;     /* overlong */
        if (c == 0xed && s[1] >= 0xa0) return 0;    /* surrogates */
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && s[1] < 0x90) return 0;     /* overlong */
        if (c == 0xf4 && s[1] >= 0x90) return 0;    /* above U+10FFFF */
        return 4;
    }
    return 0;
}

/* 1 for bytes that can be copied as they are: printable ASCII except '"' and '\\'. */
static const unsigned char plain_byte[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/*
 * True when none of the eight bytes of w needs a closer look: a control character, '\\',
 * non-ASCII, or stop (the encoder passes '"'; quotes are plain to the decoder's precheck, which
 * passes '\\' again). The classic word tricks: (x - 0x01..) & ~x has a high bit set iff some
 * byte of x is zero (on w ^ c.. it finds a byte equal to c), and (w - 0x20..) & ~w iff some
 * ASCII byte is below 0x20; non-ASCII bytes show in w's own high bits. Borrows can set high bits
 * above the first hit, so these are exact for "any byte" only, which is all this asks.
 */
static inline int word_is_plain(uint64_t w, unsigned char stop)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t ctl = (w - ones * 0x20) & ~w;
    uint64_t q = w ^ (ones * (uint64_t)stop);
    uint64_t b = w ^ (ones * (uint64_t)'\\');
    q = (q - ones) & ~q;
    b = (b - ones) & ~b;
    return ((ctl | q | b | w) & high) == 0;
}

static int put_string(encoder *e, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    char *out;
    /* Room for the plain case; an escape makes room for itself and the rest as it comes, so
     * a large string does not reserve six times its size. */
    if (n > SIZE_MAX / 2) {
        e->reason = "out of memory";
        return 0;
    }
    if (!reserve(e, n + 2))
        return 0;
    out = e->st->buf + e->st->len;
    *out++ = '"';
    while (i < n) {
        size_t end;
        if (n - i >= 8) {   /* eight plain bytes at a time: the common case */
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (word_is_plain(w, '"')) {
                memcpy(out, &w, 8);
                out += 8;
                i += 8;
                continue;
            }
        }
        /* a byte at a time to the end of this word, then words again */
        end = n - i > 8 ? i + 8 : n;
        while (i < end) {
            unsigned char c = s[i];
            if (plain_byte[c]) {
                *out++ = (char)c;
                i++;
                continue;
            }
            if (c < 0x20 || c == '"' || c == '\\') {
                e->st->len = (size_t)(out - e->st->buf);
                if (!reserve(e, 6 + (n - i) + 1))
                    return 0;
                out = e->st->buf + e->st->len;
            }
            if (c == '"' || c == '\\') {
                *out++ = '\\';
                *out++ = (char)c;
                i++;
            } else if (c < 0x20) {
                *out++ = '\\';
                *out++ = 'u';
                *out++ = '0';
                *out++ = '0';
                *out++ = hex[c >> 4];
                *out++ = hex[c & 15];
                i++;
            } else {
                size_t k = utf8_seq(s + i, n - i);
                if (k == 0) {
                    e->reason = "invalid UTF-8 in string";
                    return 0;
                }
                memcpy(out, s + i, k);
                out += k;
                i += k;
            }
        }
    }
    *out++ = '"';
    e->st->len = (size_t)(out - e->st->buf);
    return 1;
}

static int put_integer(encoder *e, long long v, int quoted)
{
    char tmp[24];
    int n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    if (!reserve(e, 24))
        return 0;
    do {
        tmp[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u != 0);
    if (quoted) PUT(e, '"');
    if (v < 0) PUT(e, '-');
    while (n > 0)
        PUT(e, tmp[--n]);
    if (quoted) PUT(e, '"');
    return 1;
}

static int put_number(encoder *e, int idx)
{
    lua_Number d;
#if DWS_HAVE_INTEGERS
    if (lua_isinteger(e->L, idx))
        return put_integer(e, (long long)lua_tointeger(e->L, idx), e->stringify);
#endif
    d = lua_tonumber(e->L, idx);
    if (!(d - d == 0)) {   /* NaN and infinities: x - x is NaN exactly for those */
        e->reason = "NaN or infinity cannot be encoded";
        return 0;
    }
    /* Integral values print without ".0"; 2^63 bounds what a long long holds. */
    if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 && (lua_Number)(long long)d == d)
        return put_integer(e, (long long)d, e->stringify);
    {
        char tmp[40];
        int i, n = snprintf(tmp, sizeof tmp, "%.17g", (double)d);
        if (n <= 0 || (size_t)n >= sizeof tmp || !reserve(e, (size_t)n + 2)) {
            e->reason = "cannot format number";
            return 0;
        }
        for (i = 0; i < n; i++)
            if (tmp[i] == ',')
                tmp[i] = '.';   /* a locale with a decimal comma */
        if (e->stringify) PUT(e, '"');
        memcpy(e->st->buf + e->st->len, tmp, (size_t)n);
        e->st->len += (size_t)n;
        if (e->stringify) PUT(e, '"');
    }
    return 1;
}

static int enc_value(encoder *e, int idx, int depth);

static int key_cmp(const void *a, const void *b)
{
    const key_ent *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c;
    /* most keys differ in their first byte: decide those without calling memcmp */
    if (n > 0 && x->s[0] != y->s[0])
        return (unsigned char)x->s[0] < (unsigned char)y->s[0] ? -1 : 1;
    c = memcmp(x->s, y->s, n);
    if (c != 0)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static void sort_keys(key_ent *k, size_t n)
{
    size_t i, j;
    if (n > 16) {
        qsort(k, n, sizeof *k, key_cmp);
        return;
    }
    for (i = 1; i < n; i++) {   /* insertion sort: objects are small */
        key_ent t = k[i];
        for (j = i; j > 0 && key_cmp(&k[j - 1], &t) > 0; j--)
            k[j] = k[j - 1];
        k[j] = t;
    }
}

static int push_key(encoder *e, const char *s, size_t len, int vidx)
{
    json_state *st = e->st;
    if (st->nkeys == st->keycap) {
        size_t cap = st->keycap ? st->keycap * 2 : 64;
        key_ent *nk = cap < SIZE_MAX / sizeof *nk ? malloc(cap * sizeof *nk) : NULL;
        if (nk == NULL) {
            e->reason = "out of memory";
            return 0;
        }
        if (st->keys != NULL)
            memcpy(nk, st->keys, st->nkeys * sizeof *nk);
        free(st->keys);
        st->keys = nk;
        st->keycap = cap;
    }
    st->keys[st->nkeys].s = s;
    st->keys[st->nkeys].len = len;
    st->keys[st->nkeys].vidx = vidx;
    st->nkeys++;
    return 1;
}

static int enc_array(encoder *e, int idx, int depth, size_t n)
{
    lua_State *L = e->L;
    size_t i;
    if (!put_char(e, '['))
        return 0;
    for (i = 1; i <= n; i++) {
        if (i > 1 && !put_char(e, ','))
            return 0;
        lua_rawgeti(L, idx, (lua_Integer)i);
        e->path[depth].key = NULL;
        e->path[depth].index = i;
        if (!enc_value(e, lua_gettop(L), depth + 1))
            return 0;
        lua_pop(L, 1);
    }
    return put_char(e, ']');
}

static int enc_object(encoder *e, int idx, int depth, size_t base)
{
    lua_State *L = e->L;
    size_t i, n = e->st->nkeys - base;
    if (n > 1)   /* with no key yet, keys is NULL: even NULL + 0 is undefined */
        sort_keys(e->st->keys + base, n);
    if (!put_char(e, '{'))
        return 0;
    for (i = 0; i < n; i++) {
        /* Re-read through st: a nested object may have moved the key stack. */
        const char *k = e->st->keys[base + i].s;
        size_t klen = e->st->keys[base + i].len;
        int vidx = e->st->keys[base + i].vidx;
        if (i > 0 && !put_char(e, ','))
            return 0;
        e->path[depth].key = k;
        e->path[depth].len = klen;
        if (!put_string(e, k, klen)) {
            e->reason = "object key is not valid UTF-8";
            e->err_depth = depth;
            return 0;
        }
        if (!put_char(e, ':'))
            return 0;
        if (vidx != 0) {   /* the value is already on the stack */
            if (!enc_value(e, vidx, depth + 1))
                return 0;
            continue;
        }
        lua_pushlstring(L, k, klen);
        lua_rawget(L, idx);
        if (!enc_value(e, lua_gettop(L), depth + 1))
            return 0;
        lua_pop(L, 1);
    }
    e->st->nkeys = base;
    return put_char(e, '}');
}

/* 1: all keys are strings, each value left on the stack; -1: use the general pass; 0: error. */
static int collect_on_stack(encoder *e, int idx)
{
    lua_State *L = e->L;
    int vidx = lua_gettop(L) + 2;   /* pair i sits at top + 2i + 1 (key), top + 2i + 2 (value) */
    unsigned count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        size_t klen;
        const char *k;
        if (lua_type(L, -2) != LUA_TSTRING)
            return -1;
        /* each pair keeps two slots; ask for room in batches, not per pair (the caller made
         * room for the first batch) */
        if ((++count & 15) == 0 && !lua_checkstack(L, 2 * 16 + 2))
            return -1;
        k = lua_tolstring(L, -2, &klen);
        if (!push_key(e, k, klen, vidx))
            return 0;
        vidx += 2;
        lua_pushvalue(L, -2);   /* the key again, for lua_next; the original stays as anchor */
    }
    return 1;
}

static int enc_table(encoder *e, int idx, int depth)
{
    lua_State *L = e->L;
    const void *p = lua_topointer(L, idx);
    size_t base = e->st->nkeys, nint = 0, maxint = 0;
    int i, is_array = 0;

    if (depth >= JSON_MAX_DEPTH) {
        e->reason = "nested deeper than 64 levels";
        return 0;
    }
    for (i = 0; i < depth; i++) {
        if (e->seen[i] == p) {
            e->reason = "cycle (a table contains itself)";
            return 0;
        }
    }
    e->seen[depth] = p;
    if (!lua_checkstack(L, 2 * 16 + 4)) {
        e->reason = "out of stack space";
        return 0;
    }
    if (lua_getmetatable(L, idx)) {
        is_array = lua_rawequal(L, -1, UV_ARRAY_MT);
        lua_pop(L, 1);
    }
    if (!is_array) {
        /* Try it as an object: leave keys and values on the stack so that encoding needs no
         * second lookup per key. A non-string key (a sequence, say) or a huge object falls
         * back to the general pass below. */
        int top = lua_gettop(L), r = collect_on_stack(e, idx);
        if (r == 1) {
            r = enc_object(e, idx, depth, base);
            lua_settop(L, top);
            return r;
        }
        lua_settop(L, top);
        if (r == 0)
            return 0;
        e->st->nkeys = base;
    }
    /* One pass over the keys decides: string keys make an object, 1..n an array. A marked
     * array runs to its largest index (holes are null), since the length operator's border is
     * not well defined for tables with holes. */
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        int kt = lua_type(L, -2);
        lua_pop(L, 1);
        if (kt == LUA_TSTRING) {
            size_t klen;
            const char *k = lua_tolstring(L, -1, &klen);
            if (!push_key(e, k, klen, 0)) {
                lua_pop(L, 1);
                return 0;
            }
        } else {
            lua_Number d = kt == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
            if (!(d >= 1 && d <= 9007199254740992.0 && (lua_Number)(size_t)d == d)) {
                lua_pop(L, 1);
                e->reason = "table has a key that is neither a string nor an array index";
                return 0;
            }
            nint++;
            if ((size_t)d > maxint)
                maxint = (size_t)d;
        }
    }
    if (is_array || nint > 0) {
        if (e->st->nkeys != base) {
            e->st->nkeys = base;
            e->reason = is_array ? "array (core.array_mt) has string keys"
                                 : "table mixes array items and string keys";
            return 0;
        }
        if (is_array) {
            if (maxint > 2 * nint + 64) {   /* t[1e9] = x must not write a billion nulls */
                e->reason = "array (core.array_mt) is too sparse";
                return 0;
            }
            return enc_array(e, idx, depth, maxint);
        }
        if (maxint != nint) {
            e->reason = "array has holes (mark it with core.array_mt and use null)";
            return 0;
        }
        return enc_array(e, idx, depth, nint);
    }
    return enc_object(e, idx, depth, base);
}

static int enc_value(encoder *e, int idx, int depth)
{
    lua_State *L = e->L;
    e->err_depth = depth;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return put_string(e, s, n);
    }
    case LUA_TNUMBER:
        return put_number(e, idx);
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            return e->stringify ? put_lit(e, "\"true\"", 6) : put_lit(e, "true", 4);
        return e->stringify ? put_lit(e, "\"false\"", 7) : put_lit(e, "false", 5);
    case LUA_TTABLE:
        return enc_table(e, idx, depth);
    case LUA_TNIL:
        return put_lit(e, "null", 4);
    case LUA_TLIGHTUSERDATA:
        if (lua_rawequal(L, idx, UV_NULL))
            return put_lit(e, "null", 4);
        break;
    default:
        break;
    }
    e->reason = NULL;   /* the error names the type */
    e->bad_type = lua_type(L, idx);
    return 0;
}

/* "<path>: <reason>", the path built from keys and indices, never from values. */
static void push_encode_error(lua_State *L, encoder *e)
{
    luaL_Buffer b;
    int i;
    luaL_buffinit(L, &b);
    if (e->err_depth == 0)
        luaL_addstring(&b, "value");
    for (i = 0; i < e->err_depth; i++) {
        const path_seg *seg = &e->path[i];
        if (seg->key != NULL) {
            if (i > 0)
                luaL_addchar(&b, '.');
            luaL_addlstring(&b, seg->key, seg->len > 64 ? 64 : seg->len);
        } else {
            char num[32];
            snprintf(num, sizeof num, "[%lu]", (unsigned long)seg->index);
            luaL_addstring(&b, num);
        }
    }
    luaL_addstring(&b, ": ");
    if (e->reason != NULL) {
        luaL_addstring(&b, e->reason);
    } else {
        luaL_addstring(&b, "cannot encode a ");
        luaL_addstring(&b, lua_typename(L, e->bad_type));
    }
    luaL_pushresult(&b);
}

/*
 * The module's state, or, when an encode is already using it, a fresh one on the stack: the walk
 * allocates Lua strings, so the collector may run a finalizer that encodes JSON in the middle of
 * it, and that inner call must not wipe the outer one's buffer. (A Lua error that interrupts an
 * encode, such as out of memory, leaves the module state marked busy; later calls then take this
 * slower path, correctly, until the state is collected.) The caller marks it busy and clears it.
 */
static json_state *state_for_call(lua_State *L)
{
    json_state *st = lua_touserdata(L, UV_STATE);
    if (!st->busy)
        return st;
    st = lua_newuserdata(L, sizeof *st);
    memset(st, 0, sizeof *st);
    luaL_setmetatable(L, STATE_MT);
    return st;
}

/* Encodes argument 1 into a state marked busy; that state, or NULL with nil, err pushed. */
static json_state *encode_to_state(lua_State *L)
{
    json_state *st;
    encoder e;
    luaL_checkany(L, 1);
    lua_settop(L, 2);
    st = state_for_call(L);
    st->busy = 1;
    e.L = L;
    e.st = st;
    e.stringify = lua_toboolean(L, 2);
    e.reason = NULL;
    e.err_depth = 0;
    e.bad_type = LUA_TNONE;
    state_wipe(st);   /* an earlier call interrupted by a Lua error may have left data */
    if (!enc_value(&e, 1, 0)) {
        state_wipe(st);
        st->busy = 0;
        push_encode_error(L, &e);
        lua_pushnil(L);
        lua_insert(L, -2);
        return NULL;
    }
    return st;
}

/* core.json_encode(value [, stringify]) -> string | nil, err */
static int l_json_encode(lua_State *L)
{
    json_state *st = encode_to_state(L);
    if (st == NULL)
        return 2;
    lua_pushlstring(L, st->buf, st->len);   /* may run finalizers: st stays busy until wiped */
    state_wipe(st);
    st->busy = 0;
    return 1;
}

/* ---- dws.buffer: an encoded body that never becomes a Lua string ---- */

const dws_buffer *dws_test_buffer(lua_State *L, int idx)
{
    const dws_buffer *b = NULL;
    if (lua_type(L, idx) == LUA_TUSERDATA && lua_getmetatable(L, idx)) {
        luaL_getmetatable(L, DWS_BUFFER_MT);
        if (lua_rawequal(L, -1, -2))
            b = lua_touserdata(L, idx);
        lua_pop(L, 2);
    }
    return b;
}

static dws_buffer *check_buffer(lua_State *L)
{
    return luaL_checkudata(L, 1, DWS_BUFFER_MT);
}

/* buffer:wipe(): idempotent; also __gc and __close, so the bytes are gone before Lua frees them. */
static int buffer_wipe(lua_State *L)
{
    dws_buffer *b = check_buffer(L);
    OPENSSL_cleanse(b->data, b->len);
    b->len = 0;
    return 0;
}

static int buffer_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)check_buffer(L)->len);
    return 1;
}

/* Never the contents: a buffer holds card data. */
static int buffer_tostring(lua_State *L)
{
    lua_pushfstring(L, "dws.buffer(%d bytes)", (int)check_buffer(L)->len);
    return 1;
}

/*
 * core.json_encode_buffer(value [, stringify]) -> dws.buffer | nil, err
 * As json_encode, but the bytes go into a userdata (sign and send it as they are; wipe it after).
 */
static int l_json_encode_buffer(lua_State *L)
{
    json_state *st = encode_to_state(L);
    dws_buffer *b;
    if (st == NULL)
        return 2;
    /* lua_newuserdata may raise (out of memory): st is wiped by the next call then. */
    b = lua_newuserdata(L, sizeof *b + st->len);
    b->len = st->len;
    if (st->len > 0)
        memcpy(b->data, st->buf, st->len);
    state_wipe(st);
    st->busy = 0;
    luaL_setmetatable(L, DWS_BUFFER_MT);
    return 1;
}

/* ---- decode ---- */

/*
 * One pass over the input before cJSON sees it: UTF-8 must be valid, raw control characters
 * are not JSON, and cJSON's NUL-terminated strings would silently cut "\u0000".
 */
static const char *precheck(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c;
        if (n - i >= 8) {   /* skip eight bytes at once when none is a control, '\\' or non-ASCII */
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (word_is_plain(w, '\\')) {
                i += 8;
                continue;
            }
        }
        c = s[i];
        if (plain_byte[c] || c == '"') {
            i++;
        } else if (c >= 0x20 && c < 0x80) {
            if (c == '\\' && i + 1 < n) {
                if (s[i + 1] == 'u' && n - i >= 6 && s[i + 2] == '0' && s[i + 3] == '0' &&
                    s[i + 4] == '0' && s[i + 5] == '0')
                    return "\\u0000 in a string is not supported";
                i += 2;
                continue;
            }
            i++;
        } else if (c < 0x20) {
            if (c != '\t' && c != '\n' && c != '\r')
                return "control character in JSON text";
            i++;
        } else {
            size_t k = utf8_seq(s + i, n - i);
            if (k == 0)
                return "invalid UTF-8 in JSON text";
            i += k;
        }
    }
    return NULL;
}

typedef struct decoder {
    lua_State *L;
    const char *reason;
} decoder;

static int dec_value(decoder *d, const cJSON *item, int depth)
{
    lua_State *L = d->L;
    const cJSON *c;
    int n = 0;
    if (!lua_checkstack(L, 3)) {
        d->reason = "out of stack space";
        return 0;
    }
    if (cJSON_IsString(item)) {
        /* pushlstring: lua_pushstring in 5.4 first probes a cache with strcmp */
        lua_pushlstring(L, item->valuestring, strlen(item->valuestring));
    } else if (cJSON_IsNumber(item)) {
        double v = item->valuedouble;
#if DWS_HAVE_INTEGERS
        if (v >= -9007199254740992.0 && v <= 9007199254740992.0 && (double)(lua_Integer)v == v)
            lua_pushinteger(L, (lua_Integer)v);
        else
#endif
            lua_pushnumber(L, (lua_Number)v);
    } else if (cJSON_IsTrue(item)) {
        lua_pushboolean(L, 1);
    } else if (cJSON_IsFalse(item)) {
        lua_pushboolean(L, 0);
    } else if (cJSON_IsNull(item)) {
        lua_pushvalue(L, UV_NULL);
    } else if (cJSON_IsArray(item) || cJSON_IsObject(item)) {
        int is_array = cJSON_IsArray(item);
        if (depth >= JSON_MAX_DEPTH) {
            d->reason = "nested deeper than 64 levels";
            return 0;
        }
        for (c = item->child; c != NULL; c = c->next)
            n++;
        if (is_array) {
            lua_createtable(L, n, 0);
            lua_pushvalue(L, UV_ARRAY_MT);
            lua_setmetatable(L, -2);
        } else {
            lua_createtable(L, 0, n);
        }
        n = 0;
        for (c = item->child; c != NULL; c = c->next) {
            if (!is_array)
                lua_pushlstring(L, c->string, strlen(c->string));
            if (!dec_value(d, c, depth + 1))
                return 0;
            if (is_array)
                lua_rawseti(L, -2, ++n);
            else
                lua_rawset(L, -3);
        }
    } else {
        d->reason = "unsupported JSON value";
        return 0;
    }
    return 1;
}

/* core.json_decode(s) -> value | nil, err */
static int l_json_decode(lua_State *L)
{
    size_t n, i;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *end = NULL, *why;
    json_tree *t;
    decoder d;

    why = precheck((const unsigned char *)s, n);
    if (why != NULL) {
        lua_pushnil(L);
        lua_pushstring(L, why);
        return 2;
    }
    lua_settop(L, 1);
    t = lua_newuserdata(L, sizeof *t);     /* stack: s, tree (before the tree exists) */
    t->root = NULL;
    luaL_setmetatable(L, TREE_MT);
    t->root = cJSON_ParseWithLengthOpts(s, n, &end, 0);
    if (t->root == NULL) {
        lua_pushnil(L);
        if (end != NULL && end >= s && end <= s + n)
            lua_pushfstring(L, "invalid JSON near byte %d", (int)(end - s) + 1);
        else
            lua_pushliteral(L, "invalid JSON");
        return 2;
    }
    for (i = (size_t)(end - s); i < n; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') {
            tree_free(t);
            lua_pushnil(L);
            lua_pushfstring(L, "invalid JSON: trailing data at byte %d", (int)i + 1);
            return 2;
        }
    }
    d.L = L;
    d.reason = NULL;
    if (!dec_value(&d, t->root, 0)) {
        tree_free(t);
        lua_settop(L, 2);
        lua_pushnil(L);
        lua_pushstring(L, d.reason);
        return 2;
    }
    tree_free(t);
    return 1;
}

static const luaL_Reg json_funcs[] = {
    {"json_encode", l_json_encode},
    {"json_decode", l_json_decode},
    {"json_encode_buffer", l_json_encode_buffer},
    {NULL, NULL}
};

static const luaL_Reg buffer_methods[] = {
    {"wipe", buffer_wipe},
    {"len", buffer_len},
    {NULL, NULL}
};

/* The wipe is the release: the bytes are gone before Lua frees them. */
static const dws_class buffer_class = {
    .name = DWS_BUFFER_MT, .methods = buffer_methods, .methods_in_metatable = 0,
    .release = buffer_wipe, .tostring = buffer_tostring, .len = buffer_len,
};

void dws_open_json(lua_State *L)
{
    json_state *st = lua_newuserdata(L, sizeof *st);
    memset(st, 0, sizeof *st);
    if (luaL_newmetatable(L, STATE_MT)) {
        lua_pushcfunction(L, state_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    if (luaL_newmetatable(L, TREE_MT)) {
        lua_pushcfunction(L, tree_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    dws_class_register(L, &buffer_class);
    /* stack: module, array_mt, null, state: all three become upvalues of each function */
    luaL_setfuncs(L, json_funcs, 3);
}
