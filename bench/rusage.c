/*
 * bench_rusage: getrusage(RUSAGE_SELF) for the bench, so a call's CPU can be split into user
 * time (Lua, JSON, RSA, libcurl) and system time (the kernel's loopback TCP work, poll).
 *
 *   local r = require "bench_rusage"
 *   local user, sys, voluntary_switches, involuntary_switches = r.self()
 *   r.profiled(f, ...)   calls f(...) inside dws_bench_profiled, the function bench/profile
 *                        has callgrind collect in (--toggle-collect), so set-up falls out
 */
#include <sys/resource.h>

#include <lua.h>
#include <lauxlib.h>

static int l_self(lua_State *L)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return luaL_error(L, "getrusage failed");
    lua_pushnumber(L, (lua_Number)ru.ru_utime.tv_sec + (lua_Number)ru.ru_utime.tv_usec / 1e6);
    lua_pushnumber(L, (lua_Number)ru.ru_stime.tv_sec + (lua_Number)ru.ru_stime.tv_usec / 1e6);
    lua_pushnumber(L, (lua_Number)ru.ru_nvcsw);
    lua_pushnumber(L, (lua_Number)ru.ru_nivcsw);
    return 4;
}

int dws_bench_profiled(lua_State *L);

/* Not static, never inlined: callgrind finds it by name. */
__attribute__((noinline)) int dws_bench_profiled(lua_State *L)
{
    lua_call(L, lua_gettop(L) - 1, 0);
    return 0;
}

int luaopen_bench_rusage(lua_State *L);

int luaopen_bench_rusage(lua_State *L)
{
    lua_newtable(L);
    lua_pushcfunction(L, l_self);
    lua_setfield(L, -2, "self");
    lua_pushcfunction(L, dws_bench_profiled);
    lua_setfield(L, -2, "profiled");
    return 1;
}
