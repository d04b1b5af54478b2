-- Generated from dws-scm-1.rockspec by scripts/openresty_rockspec.lua (make rockspec): edit that.
rockspec_format = "3.0"
package = "dws-openresty"
version = "0.1.0-1"
source = {
   url = "git+https://example.invalid/lua-dws.git",
   tag = "v0.1.0",
}
description = {
   summary = "lua-dws for OpenResty and nginx's Lua module: the dws rock built for LuaJIT",
   detailed = [[
The modules of the dws rock, the C ones (dws.core, dws.curl, dws.redis) compiled against LuaJIT's
headers, for nginx's lua_package_path and lua_package_cpath. Install into the same tree as the dws
rock, from the lua-dws source directory:
   luarocks --lua-version 5.1 --tree T make --deps-mode=none \
      openresty/dws-openresty-scm-1.rockspec LUA_INCDIR=/usr/include/luajit-2.1
and point nginx at T/share/lua/5.1 and T/lib/lua/5.1 (docs/openresty.md).
]],
   license = "MIT",
}
dependencies = {
   "lua ~> 5.1",
   -- bin/dws also needs argparse (and `dws listen` LuaSocket): Debian's lua-argparse and lua-socket
   -- (scripts/deps.sh). Not listed here, where luarocks, which does not see Debian's Lua packages,
   -- would fetch them from the network.
}
external_dependencies = {
   LUAJIT = { header = "luajit-2.1/luajit.h" },
   OPENSSL = { header = "openssl/evp.h", library = "crypto" },
   -- Debian keeps curl.h under the multiarch include dir, which the compiler finds by itself.
   CURL = { library = "curl" },
   CJSON = { header = "cjson/cJSON.h", library = "cjson" },
   HIREDIS = { header = "hiredis/hiredis.h", library = "hiredis" },
}
build = {
   type = "builtin",
   modules = {
      ["dws.core"] = {
         sources = { "csrc/core.c", "csrc/key.c", "csrc/encoding.c", "csrc/sigheader.c",
                     "csrc/random.c", "csrc/clock.c", "csrc/redact.c", "csrc/json.c", "csrc/pkcs11.c",
                     "csrc/file.c" },
         libraries = { "crypto", "cjson" },
         incdirs = { "$(OPENSSL_INCDIR)", "$(CJSON_INCDIR)", "$(CJSON_INCDIR)/cjson" },
         libdirs = { "$(OPENSSL_LIBDIR)", "$(CJSON_LIBDIR)" },
         defines = { "_POSIX_C_SOURCE=200809L", "DWS_FOR_LUAJIT" },
      },
      ["dws.curl"] = {
         sources = { "csrc/curl.c", "csrc/curl_multi.c" },
         libraries = { "curl" },
         libdirs = { "$(CURL_LIBDIR)" },
         defines = { "_POSIX_C_SOURCE=200809L", "DWS_FOR_LUAJIT" },
      },
      ["dws.redis"] = {
         sources = { "csrc/redis.c" },
         libraries = { "hiredis" },
         incdirs = { "$(HIREDIS_INCDIR)" },
         libdirs = { "$(HIREDIS_LIBDIR)" },
         defines = { "_POSIX_C_SOURCE=200809L", "DWS_FOR_LUAJIT" },
      },
      ["dws.abi"] = "lua/dws/abi.lua",
      ["dws.api"] = "lua/dws/api.lua",
      ["dws.bind_card"] = "lua/dws/bind_card.lua",
      ["dws.card"] = "lua/dws/card.lua",
      ["dws.cli"] = "lua/dws/cli.lua",
      ["dws.cli.keygen"] = "lua/dws/cli/keygen.lua",
      ["dws.cli.listen"] = "lua/dws/cli/listen.lua",
      ["dws.cli.keyfile"] = "lua/dws/cli/keyfile.lua",
      ["dws.cli.pkcs11"] = "lua/dws/cli/pkcs11.lua",
      ["dws.cli.notify"] = "lua/dws/cli/notify.lua",
      ["dws.cli.util"] = "lua/dws/cli/util.lua",
      ["dws.cli.verify"] = "lua/dws/cli/verify.lua",
      ["dws.cli.gateway"] = "lua/dws/cli/gateway.lua",
      ["dws.gateway.config"] = "lua/dws/gateway/config.lua",
      ["dws.gateway.hmac"] = "lua/dws/gateway/hmac.lua",
      ["dws.gateway.lock"] = "lua/dws/gateway/lock.lua",
      ["dws.gateway.metrics"] = "lua/dws/gateway/metrics.lua",
      ["dws.gateway.outbox"] = "lua/dws/gateway/outbox.lua",
      ["dws.gateway.server"] = "lua/dws/gateway/server.lua",
      ["dws.client"] = "lua/dws/client.lua",
      ["dws.defaults"] = "lua/dws/defaults.lua",
      ["dws.errors"] = "lua/dws/errors.lua",
      ["dws"] = "lua/dws/init.lua",
      ["dws.notification"] = "lua/dws/notification.lua",
      ["dws.store"] = "lua/dws/store.lua",
      ["dws.store.sqlite"] = "lua/dws/store/sqlite.lua",
      ["dws.journal"] = "lua/dws/journal.lua",
      ["dws.store.redis"] = "lua/dws/store/redis.lua",
      ["dws.store.shared_dict"] = "lua/dws/store/shared_dict.lua",
      ["dws.testing"] = "lua/dws/testing.lua",
      ["dws.redact"] = "lua/dws/redact.lua",
      ["dws.retry"] = "lua/dws/retry.lua",
      ["dws.signature"] = "lua/dws/signature.lua",
      ["dws.transport.curl"] = "lua/dws/transport/curl.lua",
      ["dws.multi"] = "lua/dws/multi.lua",
      ["dws.wait"] = "lua/dws/wait.lua",
      ["dws.transport.ngx"] = "lua/dws/transport/ngx.lua",
      ["dws.validate"] = "lua/dws/validate.lua",
      ["dws.time"] = "lua/dws/time.lua",
      ["dws.codes"] = "lua/dws/codes.lua",
      ["dws.url"] = "lua/dws/url.lua",
      ["dws.pipeline"] = "lua/dws/pipeline.lua",
      ["dws.runtime"] = "lua/dws/runtime.lua",
   },
}
