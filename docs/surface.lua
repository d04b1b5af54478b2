-- What scripts/docs_check.lua (make docs-check) holds to a doc comment, besides every key of every
-- module in config.ld: the modules the rock installs that are internal on purpose, and the classes
-- whose methods users call: found as the named upvalue of the constructor, or (C userdata) as the
-- __index of an object `instance` makes.
return {
  rockspec = "dws-scm-1.rockspec",
  -- every .lua file under it must be a module the rockspec installs
  lua_dir = "lua",
  -- Internal: reached only through the documented modules (HACKING.md describes them).
  internal = {
    ["dws.abi"] = true,          -- which Lua a C module is built for; explains a failed require
    ["dws.api"] = true,          -- API definitions: paths, fields, limits
    ["dws.validate"] = true,     -- request validation against dws.api
    ["dws.card"] = true,         -- Luhn, expiry, brand for bind_card
    ["dws.defaults"] = true,     -- defaults and limits; docs/calls.md "Client options" documents them
    ["dws.journal"] = true,      -- the binding journal behind client:binding and friends
    ["dws.bind_card"] = true,    -- client:bind_card, binding, resume_binding, pending_bindings
    ["dws.cli"] = true,          -- the dws command (docs/cli.md)
    ["dws.cli.keygen"] = true,
    ["dws.cli.listen"] = true,
    ["dws.cli.keyfile"] = true,
    ["dws.cli.pkcs11"] = true,
    ["dws.cli.notify"] = true,
    ["dws.cli.util"] = true,
    ["dws.cli.verify"] = true,
    ["dws.curl"] = true,         -- libcurl backend of dws.transport.curl (HACKING.md "dws.curl")
    ["dws.redis"] = true,        -- hiredis backend of dws.store.redis (HACKING.md "dws.redis")
    ["dws.multi"] = true,        -- the scheduler behind client:run_all
    ["dws.time"] = true,         -- Request-Time parsing and the one time-window rule
    ["dws.runtime"] = true,      -- inside nginx or not: phases, sleeping, background timers
    ["dws.url"] = true,          -- the one URL splitter (gateway option, cosocket URLs, redis specs)
    ["dws.codes"] = true,        -- the one table of codes (docs/calls.md "Errors" is made from it)
    ["dws.wait"] = true,         -- client:wait_binding's polling
    -- The gateway (docs/gateway.md documents it as a product: its config, endpoints, events).
    ["dws.cli.gateway"] = true,
    ["dws.gateway.config"] = true,
    ["dws.gateway.hmac"] = true,
    ["dws.gateway.lock"] = true,
    ["dws.gateway.metrics"] = true,
    ["dws.gateway.outbox"] = true,
    ["dws.gateway.server"] = true,
  },
  -- Keys made in a loop from a documented table: documented by that table.
  generated = {
    ["dws.errors"] = function(key) return require("dws.codes").by_code[key] ~= nil end,
  },
  classes = {
    { module = "dws.client", class = "Client", constructor = "new" },
    { module = "dws.store", class = "Memory", constructor = "memory" },
    { module = "dws.store.sqlite", class = "Sqlite", constructor = "open" },
    { module = "dws.store.redis", class = "Redis", constructor = "new" },
    { module = "dws.store.shared_dict", class = "Shared", constructor = "new" },
    { module = "dws.transport.curl", class = "Transport", constructor = "new" },
    { module = "dws.transport.ngx", class = "Transport", constructor = "new" },
    { module = "dws.testing", class = "Sandbox", constructor = "start" },
    { module = "dws.signature", class = "Keyring", constructor = "keyring" },
    { module = "dws.core", class = "key", instance = function()
        local core = require "dws.core"
        return assert(core.public_key(select(2, core.generate_key())))
      end },
    { module = "dws.core", class = "buffer", instance = function()
        return assert(require("dws.core").json_encode_buffer({}))
      end },
  },
}
