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
module (or OpenResty). Install from the lua-dws source directory, after the dws rock and the
dws-openresty rock (its LuaJIT build) into the same tree (README, Installing):
   luarocks --lua-version 5.4 --tree T make --deps-mode=none sandbox/dws-sandbox-scm-1.rockspec
]],
   license = "MIT",
}
dependencies = {
   "lua >= 5.1",
   "dws",
}
-- nginx runs LuaJIT: the sandbox loads the LuaJIT build of dws.core that the dws-openresty rock
-- installs beside the dws rock in the same tree (<tree>/lib/lua/5.1; dws_sandbox.nginx finds it). A
-- rock for Lua 5.4 cannot depend on a Lua 5.1 one, so the launcher checks for it and says how to
-- install it.
build = {
   type = "builtin",
   modules = {},
   install = {
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
         ["dws_sandbox.strict"] = "sandbox/lua/dws_sandbox/strict.lua",
         ["dws_sandbox.testdata"] = "sandbox/lua/dws_sandbox/testdata.lua",
      },
      bin = { ["dws-sandbox"] = "sandbox/bin/dws-sandbox" },
   },
}
