/*
 * The byte-level half of dws.redact: card-number-like digit runs in free text, the Luhn check,
 * the first-six/last-four mask, control-character escaping. Every log line and error message goes
 * through these, so they run once per string in one pass of C instead of a dozen Lua patterns
 * (measured: redaction was most of a logged notification's cost). The rules themselves are the
 * ones dws.redact documents; dws/redact.lua keeps the field-name and security-code parts.
 *
 * All masking keeps the length of the text, so it works in place on one copy. The copy holds
 * whatever the caller's text held (possibly a card number): it is cleansed before it is left.
 */
#include <string.h>
#include <openssl/crypto.h>

#include "dws.h"

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Lua's %s (C locale isspace) plus - . / _ , : what people put between groups of a card number. */
static int is_sep(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r' || c == '-' ||
           c == '.' || c == '/' || c == '_' || c == ',';
}

/* Luhn over n ASCII digits (the caller has checked they are digits). */
static int luhn(const unsigned char *d, size_t n)
{
    unsigned sum = 0;
    int twice = 0;
    while (n-- > 0) {
        unsigned v = (unsigned)(d[n] - '0');
        if (twice) {
            v *= 2;
            if (v > 9)
                v -= 9;
        }
        sum += v;
        twice = !twice;
    }
    return sum % 10 == 0;
}

/*
 * Whether digits could be a card number: 12 to 19 digits, Luhn-valid. Millisecond timestamps
 * from 2001 to 2286 are 13 digits starting with 1, and no card number is (13-digit cards are
 * Visa's, starting with 4; issuer 1 numbers are 15 digits), so they stay readable.
 */
static int could_be_card(const unsigned char *d, size_t n)
{
    if (n < 12 || n > 19)
        return 0;
    if (n == 13 && d[0] == '1')
        return 0;
    return luhn(d, n);
}

/* Position k of an n-character card number is hidden: the first six and last four stay when
 * n >= 13 (what PCI DSS allows to be shown); shorter, everything is hidden. */
static int hidden(size_t k, size_t n)
{
    return n < 13 || (k >= 6 && k + 4 < n);
}

/*
 * The next run at or after *i: digits, with separators inside when seps is set. [*from, *end)
 * spans it from its first digit to its last; returns 0 when no digit is left.
 */
static int next_run(const unsigned char *b, size_t len, size_t *i, int seps, size_t *from, size_t *end)
{
    while (*i < len && !is_digit(b[*i]))
        (*i)++;
    if (*i >= len)
        return 0;
    *from = *end = *i;
    while (*i < len && (is_digit(b[*i]) || (seps && is_sep(b[*i])))) {
        if (is_digit(b[*i]))
            *end = *i + 1;
        (*i)++;
    }
    return 1;
}

/* Pass 1: every maximal digit run that could be a card. Returns whether anything changed. */
static int mask_runs(unsigned char *b, size_t len)
{
    int changed = 0;
    size_t i = 0, from, end;
    while (next_run(b, len, &i, 0, &from, &end)) {
        if (could_be_card(b + from, end - from)) {
            for (size_t k = from; k < end; k++)
                if (hidden(k - from, end - from))
                    b[k] = '*';
            changed = 1;
        }
    }
    return changed;
}

/*
 * A group of a grouped run: its digits at [start, start + len), then sep separator bytes. Groups
 * are read up to end, the byte after the run's last digit, so the last group has sep 0.
 */
typedef struct group {
    size_t start, len, sep;
} group;

static group group_at(const unsigned char *b, size_t pos, size_t end)
{
    group g;
    g.start = pos;
    while (pos < end && is_digit(b[pos]))
        pos++;
    g.len = pos - g.start;
    g.sep = 0;
    while (pos < end && !is_digit(b[pos])) {
        pos++;
        g.sep++;
    }
    return g;
}

static size_t after(group g)
{
    return g.start + g.len + g.sep;
}

#define GROUP_MAX_SEP 3   /* separators between two groups of one number */
#define GROUP_MIN_LEN 3   /* digits in a group that starts or continues a number */
#define CARD_MAX 19

/* Group g continues into the next one as one number. */
static int continues(const unsigned char *b, group g, size_t end)
{
    if (after(g) >= end || g.sep < 1 || g.sep > GROUP_MAX_SEP)
        return 0;
    return group_at(b, after(g), end).len >= GROUP_MIN_LEN;
}

/* Appends group g's digits to the candidate number (only the first CARD_MAX are kept: a longer
 * candidate is no card anyway). */
static void take(const unsigned char *b, group g, unsigned char *digits, size_t *n)
{
    for (size_t k = 0; k < g.len; k++, (*n)++)
        if (*n < CARD_MAX)
            digits[*n] = b[g.start + k];
}

/*
 * Pass 2: a card number as people type or print it, groups of 3 or more digits split by up to
 * three separators ("4111 1111 1111 1111", "3782 - 822463 - 10005"), inside the run [from, end)
 * that starts and ends with a digit. From each group of 3 or more digits, groups are joined until
 * the number has 13 digits, then while it is not (yet) a possible card, up to 19; a number that
 * could be a card is masked, separators kept, and the search goes on after it.
 */
static int mask_grouped(unsigned char *b, size_t from, size_t end)
{
    int changed = 0;
    size_t pos = from;
    while (pos < end) {
        group first = group_at(b, pos, end), last = first;
        unsigned char digits[CARD_MAX];
        size_t n = 0;
        take(b, first, digits, &n);
        if (first.len >= GROUP_MIN_LEN) {
            while (n < 13 && continues(b, last, end)) {
                last = group_at(b, after(last), end);
                take(b, last, digits, &n);
            }
            while (!(n <= CARD_MAX && could_be_card(digits, n)) && continues(b, last, end) &&
                   n + group_at(b, after(last), end).len <= CARD_MAX) {
                last = group_at(b, after(last), end);
                take(b, last, digits, &n);
            }
        }
        if (n >= 13 && n <= CARD_MAX && could_be_card(digits, n)) {
            size_t k = 0;
            for (size_t p = first.start; p < last.start + last.len; p++)
                if (is_digit(b[p]) && hidden(k++, n))
                    b[p] = '*';
            changed = 1;
            pos = after(last);
        } else {
            pos = after(first);
        }
    }
    return changed;
}

/* Runs of digits and separators, each from its first digit to its last, go to mask_grouped. */
static int mask_grouped_runs(unsigned char *b, size_t len)
{
    int changed = 0;
    size_t i = 0, from, end;
    while (next_run(b, len, &i, 1, &from, &end))
        if (mask_grouped(b, from, end))
            changed = 1;
    return changed;
}

/* A working copy of the string at idx: the stack buffer when it fits, else a GC-owned userdata. */
static unsigned char *copy_arg(lua_State *L, int idx, unsigned char *stackbuf, size_t *len)
{
    const char *s = luaL_checklstring(L, idx, len);
    unsigned char *b = dws_scratch(L, stackbuf, *len ? *len : 1);
    memcpy(b, s, *len);
    return b;
}

/* core.mask_card_digits(s) -> s with every card-like digit run masked (s itself when none). */
static int l_mask_card_digits(lua_State *L)
{
    unsigned char stackbuf[DWS_STACK_SCRATCH];
    size_t len;
    unsigned char *b = copy_arg(L, 1, stackbuf, &len);
    int changed = mask_runs(b, len);
    /* Again until nothing changes: a number masked can end inside a group that also starts
     * another possible card ("3782 - 822463782 - 841111123": 3782 822463782, then
     * 3782 841111123), which the pass, going on after the first, does not look at. Each pass
     * masks at least one more digit, so this ends. */
    while (mask_grouped_runs(b, len))
        changed = 1;
    if (changed)
        lua_pushlstring(L, (const char *)b, len);
    else
        lua_pushvalue(L, 1);
    OPENSSL_cleanse(b, len);
    return 1;
}

/* core.mask_card(s) -> the first six and last four characters kept when #s >= 13, the rest stars. */
static int l_mask_card(lua_State *L)
{
    unsigned char stackbuf[DWS_STACK_SCRATCH];
    size_t len;
    unsigned char *b = copy_arg(L, 1, stackbuf, &len);
    for (size_t k = 0; k < len; k++)
        if (hidden(k, len))
            b[k] = '*';
    lua_pushlstring(L, (const char *)b, len);
    OPENSSL_cleanse(b, len);
    return 1;
}

/* core.luhn(digits) -> whether a string of ASCII digits passes the Luhn check (false otherwise). */
static int l_luhn(lua_State *L)
{
    size_t len;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    int ok = len > 0;
    for (size_t k = 0; ok && k < len; k++)
        ok = is_digit(s[k]);
    lua_pushboolean(L, ok && luhn(s, len));
    return 1;
}

static int ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Whether word (lower case) occurs in s in any letter case. */
static int has_word(const unsigned char *s, size_t len, const char *word)
{
    size_t wl = strlen(word);
    for (size_t i = 0; i + wl <= len; i++) {
        size_t k = 0;
        while (k < wl && ascii_lower(s[i + k]) == (unsigned char)word[k])
            k++;
        if (k == wl)
            return 1;
    }
    return 0;
}

/*
 * core.code_hint(s, words) -> whether s could name a security code: three digits in a row and one
 * of words (lower-case strings: dws.redact makes them from its one list of secret fields) in any
 * letter case. dws.redact runs its security-code patterns only then.
 */
static int l_code_hint(lua_State *L)
{
    size_t len, run = 0;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    luaL_checktype(L, 2, LUA_TTABLE);
    int digits3 = 0;
    for (size_t i = 0; i < len && !digits3; i++) {
        run = is_digit(s[i]) ? run + 1 : 0;
        digits3 = run >= 3;
    }
    int named = 0;
    for (int i = 1; digits3 && !named; i++) {
        lua_rawgeti(L, 2, i);
        const char *word = lua_tostring(L, -1);
        if (!word) {
            lua_pop(L, 1);
            break;
        }
        named = has_word(s, len, word);
        lua_pop(L, 1);
    }
    lua_pushboolean(L, named);
    return 1;
}

/*
 * core.escape_text(s) -> s with control characters escaped (\n, \r, \t, other C0 bytes and DEL as
 * \xHH) and the Unicode line breaks NEL, U+2028, U+2029 as \u0085, \u2028, \u2029, so text from a
 * gateway or a caller cannot start a forged log line. s itself when there is nothing to escape.
 */
static int l_escape_text(lua_State *L)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    size_t i = 0;
    for (; i < len; i++)
        if (s[i] < 0x20 || s[i] == 0x7f || s[i] == 0xc2 || s[i] == 0xe2)
            break;
    if (i == len) {
        lua_settop(L, 1);
        return 1;
    }
    luaL_Buffer buf;
    luaL_buffinit(L, &buf);
    luaL_addlstring(&buf, (const char *)s, i);
    while (i < len) {
        unsigned char c = s[i];
        if (c == '\n' || c == '\r' || c == '\t') {
            luaL_addchar(&buf, '\\');
            luaL_addchar(&buf, c == '\n' ? 'n' : c == '\r' ? 'r' : 't');
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            char esc[4] = { '\\', 'x', hex[c >> 4], hex[c & 15] };
            luaL_addlstring(&buf, esc, sizeof esc);
            i++;
        } else if (c == 0xc2 && i + 1 < len && s[i + 1] == 0x85) {
            luaL_addstring(&buf, "\\u0085");
            i += 2;
        } else if (c == 0xe2 && i + 2 < len && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9)) {
            luaL_addstring(&buf, s[i + 2] == 0xa8 ? "\\u2028" : "\\u2029");
            i += 3;
        } else {
            luaL_addchar(&buf, (char)c);
            i++;
        }
    }
    luaL_pushresult(&buf);
    return 1;
}

void dws_open_redact(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "mask_card_digits", l_mask_card_digits },
        { "mask_card", l_mask_card },
        { "luhn", l_luhn },
        { "code_hint", l_code_hint },
        { "escape_text", l_escape_text },
        { NULL, NULL },
    };
    luaL_setfuncs(L, fns, 0);
}
