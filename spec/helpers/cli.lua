-- The `dws` command as a child process (lua5.4 bin/dws), for the spec/cli_*_spec.lua files.
local nginx = require "dws_sandbox.nginx"
local files = require "helpers.files"

local M = {}

local ROOT = os.getenv("DWS_ROOT")
local q = nginx.sh_quote
M.q = q

--- Runs `dws ARGS` -> exit status, stdout, stderr. opts: stdin (text), env ("NAME=value ..."),
-- umask ("000"), cwd.
function M.run(args, opts)
  opts = opts or {}
  local dir = nginx.tmpdir("dws-cli-run")
  local cmd = (opts.env or "") .. " lua5.4 " .. q(ROOT .. "/bin/dws") .. " " .. args
    .. " >" .. dir .. "/out 2>" .. dir .. "/err"
  if opts.stdin then
    files.write(dir .. "/in", opts.stdin)
    cmd = cmd .. " <" .. dir .. "/in"
  else
    cmd = cmd .. " </dev/null"
  end
  if opts.umask then cmd = "umask " .. opts.umask .. " && " .. cmd end
  if opts.cwd then cmd = "cd " .. q(opts.cwd) .. " && " .. cmd end
  -- The status through a file: os.execute's results differ between Lua 5.4 and LuaJIT.
  os.execute("(" .. cmd .. "); echo $? >" .. dir .. "/rc")
  local status = tonumber(files.read(dir .. "/rc"))
  local out, err = files.read(dir .. "/out"), files.read(dir .. "/err")
  nginx.rmdir(dir)
  return status, out, err
end

--- A file's mode as `stat -c %a` prints it ("600"), or nil when there is nothing at path.
function M.mode(path)
  local p = io.popen("stat -c %a " .. q(path) .. " 2>/dev/null")
  local m = p:read("l")
  p:close()
  return m
end

--- An nginx location (for helpers.httpd) at `path`: a merchant's notify endpoint, answering what
-- client:handle_notification answers for a client with these options.
function M.endpoint_location(path, client_id, private_key, dws_public_key)
  return [[
    location = ]] .. path .. [[ {
        content_by_lua_block {
            ngx.req.read_body()
            local client = require("dws").client{ client_id = "]] .. client_id .. [[",
              private_key = [=[]] .. private_key .. [[]=], dws_public_key = [=[]] .. dws_public_key .. [[]=],
              gateway = "https://127.0.0.1" }
            local status, headers, body = client:handle_notification({ method = ngx.req.get_method(),
              path = ngx.var.request_uri, headers = ngx.req.get_headers(), body = ngx.req.get_body_data() },
              function() return true end)
            ngx.status = status
            for k, v in pairs(headers) do ngx.header[k] = v end
            ngx.print(body)
        }
    }
]]
end

return M
