-- A PKCS#11 token key inside nginx (docs/keys.md "PKCS#11"): the client is made in init_by_lua
-- (the master logs in and loads the key, so a wrong URI or PIN stops nginx from starting), and each
-- of the two workers opens its own session after the fork, before its first signature. Against a
-- real softhsm2 token and the real sandbox. Tagged #nginx.
local curl = require "dws.curl"
local nginx = require "dws_sandbox.nginx"
local sandbox = require "helpers.sandbox"
local softhsm = require "helpers.softhsm"
local files = require "helpers.files"

local q = nginx.sh_quote
local CID = "SANDBOX_PKCS11_NGINX"
local CALLS = 40

local NODE = [[
env SOFTHSM2_CONF;
events { worker_connections 256; }
http {
  %s
  access_log off;
  init_by_lua_block {
    package.loaded.node_client = require("dws").client{ client_id = %q, private_key = %q,
      dws_public_key = %q, gateway = %q, max_retries = 0 }
  }
  server {
    listen 127.0.0.1:%d;
    location = /consult {
      content_by_lua_block {
        local res, err = package.loaded.node_client:consult_addable_payment_method{
          customerId = "2162878776333", env = { terminalType = "WEB" } }
        ngx.print(res and "S" or tostring(err))
      }
    }
  }
}
]]

local token, sb, prefix, port

lazy_setup(function()
  token = softhsm.start()
  token:keygen("signer", "01")
  local rc, pub = token:lua(string.format([[
    local core = require "dws.core"
    io.write(core.base64_encode(assert(core.private_key(%q)):public_der()))
  ]], token:uri("signer")))
  assert(rc == 0, pub)
  sb = assert(sandbox.start{ clients = { [CID] = { public_key = pub } } })
  prefix = token.dir .. "/node"
  for _, d in ipairs{ "/logs", "/conf", "/tmp" } do nginx.mkdir(prefix .. d) end
  port = nginx.free_ports(1)[1]
  files.write(prefix .. "/conf/nginx.conf", nginx.preamble(prefix):gsub("worker_processes 1", "worker_processes 2")
    .. string.format(NODE, nginx.lua_paths(), CID, token:uri("signer"), sb.dws_public_key, sb.http_url, port))
  -- nginx started with the token's environment (SOFTHSM2_CONF), which `env` passes on to the workers.
  local src, out = token:run((os.getenv("DWS_NGINX") or "nginx") .. " -p " .. q(prefix) .. " -c "
    .. q(prefix .. "/conf/nginx.conf") .. " -e " .. q(prefix .. "/logs/error.log"))
  assert(src == 0, out .. (files.read(prefix .. "/logs/error.log")))
  local deadline = os.time() + 10
  while not nginx.port_listening(port) and os.time() <= deadline do nginx.sleep(0.05) end
end)

lazy_teardown(function()
  if prefix then nginx.stop(prefix) end
  if sb then sb:stop() end
  if token then token:stop() end
end)

describe("a PKCS#11 key in nginx #nginx", function()
  it("signs every call, in every worker, with the key made in init_by_lua", function()
    local m = curl.multi{ slots = 8, max_response_bytes = 65536, multiplex = false }
    local answers, started = {}, 0
    while #answers < CALLS do
      while started < CALLS and m:running() < 8 do
        started = started + 1
        assert(m:start("http://127.0.0.1:" .. port .. "/consult", {}, nil, 30, 5))
      end
      for _, slot in ipairs{ m:perform(0.05) } do
        local status, _, body = m:take(slot)
        answers[#answers + 1] = status == 200 and body or ("HTTP " .. tostring(status))
      end
    end
    m:close()
    table.sort(answers)
    assert.are.same(("S\n"):rep(CALLS), table.concat(answers, "\n") .. "\n")
  end)
end)
