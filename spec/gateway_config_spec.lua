-- The gateway's configuration file: what it refuses (each refusal names the key) and the nginx.conf
-- made from it.
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local config = require "dws.gateway.config"

local TOKEN = string.rep("t", 40)

describe("dws.gateway.config", function()
  local dir

  setup(function() dir = nginx.tmpdir("dws-gateway-config") end)
  teardown(function() nginx.rmdir(dir) end)

  local function load(extra, drop)
    local c = { dir = dir .. "/gw", client_id = "C", private_key_file = "k.pem", dws_public_key_file = "d.pem",
                gateway = "https://dws.example", backends = { shop = { token = TOKEN, apis = { "cacheCard" } } } }
    for k, v in pairs(extra or {}) do c[k] = v end
    if drop then c[drop] = nil end
    local path = dir .. "/gateway.json"
    nginx.write_file(path, assert(core.json_encode(c)))
    return config.load(path)
  end

  local function refused(extra, drop)
    local c, err = load(extra, drop)
    assert.is_nil(c)
    return err
  end

  it("fills the defaults", function()
    local c = assert(load())
    assert.are.same({ "127.0.0.1:8480", "127.0.0.1:8481", "/notify" }, { c.listen, c.notify_listen, c.notify_path })
  end)

  it("takes relative paths from the file's directory", function()
    assert.are.equal(dir .. "/k.pem", assert(load()).private_key_file)
  end)

  it("refuses a missing required key, naming it", function()
    assert.matches("client_id is required", refused(nil, "client_id"))
  end)

  it("refuses an unknown key (a typo)", function()
    assert.matches("forward_too is not a known key", refused{ forward_too = "http://x" })
  end)

  it("refuses a short token", function()
    assert.matches("backends.shop.token must be at least 32", refused{ backends = { shop = { token = "short",
      apis = { "cacheCard" } } } })
  end)

  it("refuses an API name it does not know in an allow-list", function()
    assert.matches("unknown API payNow", refused{ backends = { shop = { token = TOKEN, apis = { "payNow" } } } })
  end)

  it("refuses a backend listen address off loopback without TLS", function()
    assert.matches("listen is not loopback", refused{ listen = "10.0.0.5:8480" })
  end)

  it("takes a unix socket", function()
    assert.are.equal("unix:/run/dws.sock", assert(load{ listen = "unix:/run/dws.sock" }).listen)
  end)

  it("refuses forward_to without a secret", function()
    assert.matches("needs forward_secret", refused{ forward_to = "http://127.0.0.1:9000/" })
  end)

  it("refuses a forward secret not in the whsec_ form", function()
    assert.matches("whsec_", refused{ forward_to = "http://127.0.0.1:9000/", forward_secret = "plain" })
  end)

  it("keeps the forward key decoded, and the secret text out of the table", function()
    local c = assert(load{ forward_to = "http://127.0.0.1:9000/",
      forward_secret = "whsec_" .. core.base64_encode(string.rep("k", 32)) })
    assert.are.same({ string.rep("k", 32), nil }, { c.forward_key, c.forward_secret })
  end)

  describe("nginx.conf", function()
    local function conf(extra)
      return config.nginx_conf(assert(load(extra)), { uid = "1000",
        lua_lines = 'lua_package_path "/l/?.lua";\nlua_package_cpath "/jit/?.so";\n' })
    end

    it("sets the package paths it is given", function()
      assert.truthy(conf():find('    lua_package_path "/l/?.lua";\n    lua_package_cpath "/jit/?.so";\n', 1, true))
    end)

    it("loads Debian's Lua module", function()
      assert.truthy(conf():find("load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;", 1, true))
    end)

    it("loads no module on OpenResty", function()
      assert.falsy(conf{ nginx_modules = "" }:find("load_module", 1, true))
    end)

    it("listens with TLS when tls_cert and tls_key are set", function()
      assert.truthy(conf{ tls_cert = "/c.pem", tls_key = "/k.pem" }:find("listen 127.0.0.1:8480 ssl;", 1, true))
    end)

    it("keeps no access log (bodies carry card data)", function()
      assert.truthy(conf():find("access_log off;", 1, true))
    end)
  end)
end)
