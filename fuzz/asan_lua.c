/*
 * A minimal Lua 5.4 interpreter for `make test-asan`, linked with the sanitizers so that the
 * ASan runtime comes first without LD_PRELOAD (which would also reach nginx, openssl and curl
 * when the specs start them). Put first on PATH as lua5.4, it serves busted and the specs:
 *
 *   lua5.4 [-e stat] [-l mod] [-v] [script [args] | -]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL)
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static int report(lua_State *L, int status)
{
    if (status != LUA_OK) {
        fprintf(stderr, "lua5.4: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    return status;
}

/*
 * Ctrl-C as the stock interpreter answers it: the signal sets a hook, and the hook raises
 * "interrupted!" in the running script at its next instruction, so a script can catch it and
 * clean up (dws listen points the sandbox's notify URL back). A process started in the background
 * by a shell has SIGINT ignored; the stock interpreter installs its handler all the same.
 */
static lua_State *running;

static void interrupted(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}

static void on_sigint(int sig)
{
    signal(sig, SIG_DFL); /* a second Ctrl-C ends the process */
    lua_sethook(running, interrupted, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
}

static int docall(lua_State *L, int nargs)
{
    int base = lua_gettop(L) - nargs, status;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    running = L;
    signal(SIGINT, on_sigint);
    status = lua_pcall(L, nargs, LUA_MULTRET, base);
    signal(SIGINT, SIG_DFL);
    lua_remove(L, base);
    return status;
}

int main(int argc, char **argv)
{
    lua_State *L = luaL_newstate();
    int i, status = LUA_OK, script = 0;
    if (L == NULL)
        return 1;
    luaL_openlibs(L);
    for (i = 1; i < argc && status == LUA_OK; i++) {
        if (strcmp(argv[i], "-e") == 0 && i + 1 < argc) {
            status = luaL_loadbuffer(L, argv[i + 1], strlen(argv[i + 1]), "=(command line)");
            if (status == LUA_OK)
                status = docall(L, 0);
            i++;
        } else if (strcmp(argv[i], "-l") == 0 && i + 1 < argc) {
            lua_getglobal(L, "require");
            lua_pushstring(L, argv[i + 1]);
            status = docall(L, 1);
            if (status == LUA_OK)
                lua_setglobal(L, argv[i + 1]);
            i++;
        } else if (strcmp(argv[i], "-v") == 0) {
            puts(LUA_COPYRIGHT);
        } else {
            script = i;
            break;
        }
    }
    if (status == LUA_OK && script > 0) {
        int n = 0, j;
        /* arg: script at 0, its arguments from 1, the interpreter and options below 0 */
        lua_createtable(L, argc - script, script + 1);
        for (j = 0; j < argc; j++) {
            lua_pushstring(L, argv[j]);
            lua_rawseti(L, -2, j - script);
        }
        lua_setglobal(L, "arg");
        if (strcmp(argv[script], "-") == 0)
            status = luaL_loadfile(L, NULL);
        else
            status = luaL_loadfile(L, argv[script]);
        if (status == LUA_OK) {
            luaL_checkstack(L, argc - script, "too many arguments");
            for (j = script + 1; j < argc; j++, n++)
                lua_pushstring(L, argv[j]);
            status = docall(L, n);
        }
    } else if (status == LUA_OK && argc == 1) {
        status = luaL_loadfile(L, NULL);
        if (status == LUA_OK)
            status = docall(L, 0);
    }
    report(L, status);
    lua_close(L);
    return status == LUA_OK ? 0 : 1;
}
