-- Start and stop the example merchant server (examples/openresty/) in a private nginx prefix.
--
-- As a module (package.path must include examples/?.lua):
--   local server = assert(require("merchant_server").start{
--     dir = "/tmp/x", gateway = sb.https_url, ca_file = sb.ca_file, client_id = "...",
--     private_key_file = "...", dws_public_key_file = "...", [port = n], [test_hooks = true],
--     [journal = "sqlite:/path/file.db"] })
--   server.url, server.notify_url, server:stop()
-- From the shell:
--   lua5.4 examples/merchant_server.lua start --dir D --port N --gateway URL --client-id ID \
--       --private-key FILE --dws-public-key FILE [--ca-file FILE] [--server-name NAME] [--journal SPEC]
-- server_name: the name the gateway's certificate carries, when the gateway URL has an IP address
-- (nginx verifies DNS names only), e.g. "localhost" for the local sandbox.
--   lua5.4 examples/merchant_server.lua stop --dir D
local nginx = require "dws_sandbox.nginx"

local M = {}

local function root_dir()
  local root = os.getenv("DWS_ROOT")
  if root then return root end
  local here = debug.getinfo(1, "S").source:match("^@(.*)/examples/[^/]*$")
  return here or "."
end

local function json_string(s)
  return '"' .. tostring(s):gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function fill(template, vars)
  return (template:gsub("%${([%w_]+)}", function(name)
    return assert(vars[name], "merchant_server: no value for ${" .. name .. "}")
  end))
end

local Server = {}
Server.__index = Server

function Server:stop()
  return nginx.stop(self.prefix)
end

-- start(opts) -> server | nil, err. opts.workers: nginx worker processes (default 1); opts.log_level
-- goes into the config (default: the level of the error_log).
function M.start(opts)
  assert(type(opts) == "table", "merchant_server.start: options table required")
  for _, k in ipairs{ "dir", "gateway", "client_id", "private_key_file", "dws_public_key_file" } do
    assert(opts[k], "merchant_server.start: " .. k .. " required")
  end
  local root = opts.root or root_dir()
  local prefix = opts.dir
  local port = opts.port or nginx.free_ports(1)[1]
  nginx.mkdir(prefix .. "/conf")
  nginx.mkdir(prefix .. "/tmp")

  local config_file = prefix .. "/conf/merchant.json"
  local fields = {}
  for _, k in ipairs{ "client_id", "private_key_file", "dws_public_key_file", "gateway", "ca_file", "server_name",
                       "journal", "store", "log_level" } do
    if opts[k] then fields[#fields + 1] = json_string(k) .. ":" .. json_string(opts[k]) end
  end
  fields[#fields + 1] = '"test_hooks":' .. (opts.test_hooks and "true" or "false")
  assert(nginx.write_file(config_file, "{" .. table.concat(fields, ",") .. "}\n", "600"))

  local template = assert(nginx.read_file(root .. "/examples/openresty/nginx.conf"),
    "merchant_server: examples/openresty/nginx.conf not found under " .. root)
  local tls = "# plain http gateway: no trusted certificate needed"
  if opts.ca_file then
    tls = "lua_ssl_trusted_certificate " .. opts.ca_file .. ";\n    lua_ssl_verify_depth 3;"
  end
  local conf = fill(template, {
    PREAMBLE = nginx.preamble(prefix),
    -- the launcher's own paths plus examples/openresty for merchant.lua
    LUA_PATHS = nginx.lua_paths{ extra_path = { root .. "/examples/openresty/?.lua", root .. "/lua/?.lua",
      root .. "/lua/?/init.lua" } }:gsub("\n(.)", "\n    %1"),
    PREFIX = prefix,
    TLS = tls,
    CONFIG_FILE = config_file,
    PORT = tostring(port),
  })
  if opts.workers then
    -- More than the preamble's one worker (the bench's two-worker row): all share the dicts.
    conf = conf:gsub("worker_processes 1;", "worker_processes " .. math.floor(opts.workers) .. ";", 1)
  end
  local ok, err = nginx.start(prefix, conf, { port })
  if not ok then return nil, err end
  return setmetatable({
    prefix = prefix,
    port = port,
    url = "http://127.0.0.1:" .. port,
    notify_url = "http://127.0.0.1:" .. port .. "/notify",
    error_log = prefix .. "/logs/error.log",
  }, Server)
end

function M.stop(dir)
  return nginx.stop(dir)
end

local function main(argv)
  local cmd, opts = argv[1], {}
  local i = 2
  while argv[i] do
    local name = argv[i]:match("^%-%-([%w-]+)$")
    if not name or argv[i + 1] == nil then
      io.stderr:write("merchant_server: bad argument ", argv[i], "\n")
      os.exit(2)
    end
    opts[name:gsub("-", "_")] = argv[i + 1]
    i = i + 2
  end
  if cmd == "start" then
    local server, err = M.start{
      dir = opts.dir, port = tonumber(opts.port), gateway = opts.gateway, ca_file = opts.ca_file,
      client_id = opts.client_id, private_key_file = opts.private_key, dws_public_key_file = opts.dws_public_key,
      server_name = opts.server_name, test_hooks = opts.test_hooks == "true", journal = opts.journal,
      store = opts.store,
    }
    if not server then
      io.stderr:write("merchant_server: ", tostring(err), "\n")
      os.exit(1)
    end
    print(server.url)
  elseif cmd == "stop" and opts.dir then
    M.stop(opts.dir)
  else
    io.stderr:write("usage: merchant_server.lua start|stop --dir DIR [options]\n")
    os.exit(2)
  end
end

if ... ~= "merchant_server" and type(arg) == "table" and arg[0] and arg[0]:match("merchant_server%.lua$") then
  main(arg)
end

return M
