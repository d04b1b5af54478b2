-- luacheck configuration: no globals anywhere; nginx code may use `ngx`, specs use busted's.
std = "max"
max_line_length = 120
files["spec"] = { std = "+busted" }
files["lua/dws/transport/ngx.lua"] = { read_globals = { "ngx" } }
files["sandbox/lua/dws_sandbox"] = { read_globals = { "ngx" } }
files["lua/dws/notification.lua"] = { read_globals = { "ngx" } }
files["lua/dws/client.lua"] = { read_globals = { "ngx" } }
files["lua/dws/runtime.lua"] = { read_globals = { "ngx" } }
files["lua/dws/store"] = { read_globals = { "ngx" } }
files["examples"] = { read_globals = { "ngx" } }
files["bench"] = { read_globals = { "ngx", "wrk" }, globals = { "request", "response", "init", "done", "setup" } }
