-- The stores that run inside nginx, against the store contract in a real nginx: ngx.shared
-- (dws.store.shared_dict) and Redis over cosockets (dws.store.redis with nginx.redis). Each
-- contract case runs in a content handler, one request per case, and becomes an `it` here.
-- Tagged #nginx (run under one busted flavour): the stores under test run inside nginx.
local contract = require "helpers.store_contract"
local redis_server = require "helpers.redis"
local nginx = require "dws_sandbox.nginx"

local root = os.getenv("DWS_ROOT") or "."
local dir, port, redis, curl

local CONF = [[
events { worker_connections 64; }
http {
  %s
  access_log off;
  lua_shared_dict contract 4m;
  # The smallest zone nginx accepts (8 pages): the contract fills it.
  lua_shared_dict tiny 32k;
  server {
    listen 127.0.0.1:%d;
    location = /case {
      content_by_lua_block {
        local contract = require "helpers.store_contract"
        local args = ngx.req.get_uri_args()
        local i, kind, run = tonumber(args.i), args.store, args.run
        local function make()
          if kind == "shared_dict" then
            return require("dws.store.shared_dict").new(ngx.shared.contract)
          end
          return require("dws.store.redis").new{ port = %d, prefix = "nginx:" }
        end
        local n = 0
        local env = {
          sleep = ngx.sleep,
          fresh_key = function(tag) n = n + 1; return "contract:" .. run .. ":" .. tag .. ":" .. n end,
        }
        if kind == "shared_dict" then
          env.full_store = function() return require("dws.store.shared_dict").new(ngx.shared.tiny) end
        end
        local ok, err = pcall(contract.cases[i][2], make(), env)
        ngx.say(ok and "ok" or tostring(err))
      }
    }
  }
}
]]

lazy_setup(function()
  dir = nginx.tmpdir("dws-store-nginx")
  redis = assert(redis_server.start())
  local ports, why = nginx.start_on_free_ports(dir, 1, function(p)
    return nginx.preamble(dir) .. string.format(CONF,
      nginx.lua_paths{ extra_path = { root .. "/spec/?.lua", root .. "/lua/?.lua", root .. "/lua/?/init.lua" } },
      p[1], redis.port)
  end)
  port = assert(ports, why)[1]
  curl = require("dws.transport.curl").new{}
end)

lazy_teardown(function()
  if dir then nginx.stop(dir) end
  if redis then redis:stop() end
  nginx.rmdir(dir)
end)

local run = tostring(os.time()) .. "-" .. tostring(math.random(1e9))

local function case(kind, i)
  return function()
    local res, kind_err, message = curl:request{ method = "GET", timeout = 60, connect_timeout = 5,
      url = string.format("http://127.0.0.1:%d/case?store=%s&i=%d&run=%s", port, kind, i, run) }
    assert(res, tostring(kind_err) .. " " .. tostring(message))
    assert.are.equal(200, res.status)
    assert.are.equal("ok\n", res.body)
  end
end

for _, kind in ipairs{ "shared_dict", "redis" } do
  describe("dws.store." .. kind .. " inside nginx (store contract) #nginx", function()
    for i, c in ipairs(contract.cases) do it(c[1], case(kind, i)) end
  end)
end
