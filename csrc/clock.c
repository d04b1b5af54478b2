/*
 * Clocks and sleep: wall-clock milliseconds (the request time header, notification skew,
 * journal times), a monotonic clock for durations and expiries (a stepped wall clock must not
 * move them) and an EINTR-safe sleep (retry backoff outside nginx).
 */
#include <errno.h>
#include <time.h>

#include "dws.h"

static int l_time_ms(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000 + (lua_Integer)(ts.tv_nsec / 1000000));
    return 1;
}

static int l_monotonic(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

static int l_sleep(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);
    struct timespec req, rem;
    luaL_argcheck(L, s >= 0 && s <= 1e9, 1, "expected seconds from 0 to 1e9");
    req.tv_sec = (time_t)s;
    req.tv_nsec = (long)((s - (lua_Number)req.tv_sec) * 1e9);
    if (req.tv_nsec > 999999999L)
        req.tv_nsec = 999999999L;
    /* A signal must not cut the sleep short: resume with what remains. */
    while (nanosleep(&req, &rem) != 0 && errno == EINTR)
        req = rem;
    return 0;
}

static const luaL_Reg clock_funcs[] = {
    {"time_ms", l_time_ms},
    {"monotonic", l_monotonic},
    {"sleep", l_sleep},
    {NULL, NULL}
};

void dws_open_clock(lua_State *L)
{
    luaL_setfuncs(L, clock_funcs, 0);
}
