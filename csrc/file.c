/*
 * Files that must be new: key files and other secrets are created here, and only here, with
 * open(O_CREAT | O_EXCL | O_NOFOLLOW), so an existing file or a link planted at the path (even a
 * dangling one) is refused by the kernel in the same step that creates the file: there is no
 * check-then-create window to race. The mode is set with fchmod on the open file, so the umask
 * cannot loosen it; a file that could not be written whole is removed again.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dws.h"

/* core.create_file(path, data, mode) -> true | nil, err ("exists" when the name is taken) */
static int l_create_file(lua_State *L)
{
    size_t len, off = 0;
    const char *path = luaL_checkstring(L, 1);
    const char *data = luaL_checklstring(L, 2, &len);
    lua_Integer mode = luaL_checkinteger(L, 3);
    luaL_argcheck(L, mode >= 0 && mode <= 0777, 3, "mode must be 0 to 0777");
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) {
        int e = errno;
        lua_pushnil(L);
        /* ELOOP: a link at the path (O_NOFOLLOW), reported like any name already taken */
        if (e == EEXIST || e == ELOOP)
            lua_pushliteral(L, "exists");
        else
            lua_pushstring(L, strerror(e));
        return 2;
    }
    int e = 0;
    if (fchmod(fd, (mode_t)mode) != 0)
        e = errno;
    while (!e && off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            e = n < 0 ? errno : EIO;
        else
            off += (size_t)n;
    }
    if (close(fd) != 0 && !e)
        e = errno;
    if (e) {
        unlink(path);
        lua_pushnil(L);
        lua_pushstring(L, strerror(e));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static const luaL_Reg file_funcs[] = {
    {"create_file", l_create_file},
    {NULL, NULL},
};

void dws_open_file(lua_State *L)
{
    luaL_setfuncs(L, file_funcs, 0);
}
