rockspec_format = "3.0"
package = "dws-sandbox"
version = "scm-1"
source = {
   url = "git+https://example.invalid/lua-dws.git",
}
description = {
   summary = "A local Alipay+ DWS sandbox in nginx, for testing merchants' DWS integrations",
   detailed = [[
The consultAddablePaymentMethod / cacheCard / addPaymentMethod APIs with test cards, signed
notifications, armable faults and per-client delivery logs, run by Debian's nginx with the Lua
module (or OpenResty). Install from the lua-dws source directory:
   luarocks --lua-version 5.4 make sandbox/dws-sandbox-scm-1.rockspec
]],
   license = "MIT",
}
dependencies = {
   "lua >= 5.1",
   "dws",
}
external_dependencies = {
   -- nginx runs LuaJIT, which cannot load the Lua 5.4 build of dws.core that the dws rock installs:
   -- this rock compiles the same C sources again against LuaJIT's headers.
   LUAJIT = { header = "luajit-2.1/luajit.h" },
   OPENSSL = { header = "openssl/evp.h", library = "crypto" },
   CJSON = { header = "cjson/cJSON.h", library = "cjson" },
}
build = {
   -- The top-level Makefile's own rule for build/jit/dws/core.so (one set of flags), into a build
   -- directory of its own; installed as dws_sandbox/jit/dws/core.so, where dws_sandbox.nginx looks.
   type = "make",
   makefile = "Makefile",
   build_target = "build/sandbox-rock/jit/dws/core.so",
   build_variables = {
      BUILD = "build/sandbox-rock",
      LUAJIT_CFLAGS = "-I$(LUAJIT_INCDIR)/luajit-2.1",
      CJSON_CFLAGS = "-I$(CJSON_INCDIR)/cjson",
      CFLAGS = "$(CFLAGS)",
   },
   install_pass = false,
   install = {
      lib = { ["dws_sandbox.jit.dws.core"] = "build/sandbox-rock/jit/dws/core.so" },
      lua = {
         ["dws_sandbox.admin"] = "sandbox/lua/dws_sandbox/admin.lua",
         ["dws_sandbox.apis"] = "sandbox/lua/dws_sandbox/apis.lua",
         ["dws_sandbox.challenge"] = "sandbox/lua/dws_sandbox/challenge.lua",
         ["dws_sandbox.config"] = "sandbox/lua/dws_sandbox/config.lua",
         ["dws_sandbox.control"] = "sandbox/lua/dws_sandbox/control.lua",
         ["dws_sandbox.faults"] = "sandbox/lua/dws_sandbox/faults.lua",
         ["dws_sandbox.latency"] = "sandbox/lua/dws_sandbox/latency.lua",
         ["dws_sandbox.keys"] = "sandbox/lua/dws_sandbox/keys.lua",
         ["dws_sandbox.nginx"] = "sandbox/lua/dws_sandbox/nginx.lua",
         ["dws_sandbox.notify"] = "sandbox/lua/dws_sandbox/notify.lua",
         ["dws_sandbox.server"] = "sandbox/lua/dws_sandbox/server.lua",
         ["dws_sandbox.store"] = "sandbox/lua/dws_sandbox/store.lua",
         ["dws_sandbox.testdata"] = "sandbox/lua/dws_sandbox/testdata.lua",
      },
      bin = { ["dws-sandbox"] = "sandbox/bin/dws-sandbox" },
   },
}
