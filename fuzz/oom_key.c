/*
 * The out-of-memory paths of dws.core's key functions (make test-oom): core.generate_key and
 * key:public_der are run with the Lua allocator failing at the 1st, 2nd, ... allocation, until
 * they run through. Built with AddressSanitizer and LeakSanitizer: an OpenSSL object or DER
 * buffer left behind when a push raises is a leak, and the run fails. OpenSSL's own allocations
 * go through a free that looks for a private key's PEM in every block it releases: a PEM freed
 * unwiped fails the run too.
 *
 *   fuzz/out/oom_key        exit 0 when every budget was clean
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

#include "dws.h"

static long budget = -1;       /* Lua allocations left before one fails; -1: no limit */
static int unwiped;            /* freed OpenSSL blocks that still held a private key's PEM */

static void *lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (budget == 0)
        return NULL;
    if (budget > 0)
        budget--;
    return realloc(ptr, nsize);
}

static void *ossl_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return malloc(n);
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return realloc(p, n);
}

static void ossl_free(void *p, const char *file, int line)
{
    static const char marker[] = "PRIVATE KEY-----";
    size_t n, m = sizeof marker - 1, i;
    (void)file;
    (void)line;
    if (p == NULL)
        return;
    n = malloc_usable_size(p);
    for (i = 0; n >= m && i <= n - m; i++) {
        if (memcmp((const char *)p + i, marker, m) == 0) {
            unwiped++;
            break;
        }
    }
    free(p);
}

static const char *SCRIPT =
    "local core = ...\n"
    "local pem, pub = core.generate_key()\n"
    "local k = assert(core.public_key(pub))\n"
    "local der = k:public_der()\n"
    "k:close()\n"
    "return #der\n";

/* One run with the given budget; 1 when the script ran through. */
static int run(long n)
{
    lua_State *L = lua_newstate(lua_alloc, NULL);
    int done;
    if (L == NULL)
        return 0;
    budget = -1;
    luaL_openlibs(L);
    if (luaL_loadstring(L, SCRIPT) != LUA_OK) {
        lua_close(L);
        return 0;
    }
    luaL_requiref(L, "dws.core", luaopen_dws_core, 0);
    budget = n;
    done = lua_pcall(L, 1, 1, 0) == LUA_OK;
    budget = -1;
    lua_close(L);
    return done;
}

int main(void)
{
    long n;
    if (CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free) != 1) {
        fprintf(stderr, "oom_key: cannot set OpenSSL's allocator\n");
        return 2;
    }
    for (n = 0; n < 100000; n++) {
        if (run(n))
            break;
    }
    if (n == 100000) {
        fprintf(stderr, "oom_key: the script never ran through\n");
        return 1;
    }
    printf("oom_key: %ld failing budgets, then a clean run; unwiped private PEM blocks freed: %d\n", n, unwiped);
    return unwiped == 0 ? 0 : 1;
}
