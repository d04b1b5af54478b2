-- Small things users hit: key confusion, a TLS error that names ca_file,
-- the unknown-field warning, and one version everywhere.
local core = require "dws.core"
local dws = require "dws"
local sandbox = require "helpers.sandbox"
local files = require "helpers.files"
local keys = require "helpers.keys"

local ROOT = os.getenv("DWS_ROOT")

describe("key confusion", function()
  local priv, pub = keys.pair("merchant")
  local _, other_pub = keys.pair("dws")
  local base = { client_id = "C", private_key = priv, gateway = "https://dws.example" }
  local function with(dws_public_key)
    local o = {}
    for k, v in pairs(base) do o[k] = v end
    o.dws_public_key = dws_public_key
    return o
  end

  it("raises when dws_public_key is the public half of private_key, saying which key goes where", function()
    local ok, err = pcall(dws.client, with(pub))
    assert.is_false(ok)
    assert.truthy(tostring(err):find("dws_public_key is the public half of your own private_key; "
      .. "dws_public_key takes the DWS public key", 1, true), tostring(err))
  end)

  it("raises for the same key given as PEM, as a parsed key, or with private_key parsed", function()
    local pem = "-----BEGIN PUBLIC KEY-----\n" .. pub:gsub(("."):rep(64), "%0\n") .. "\n-----END PUBLIC KEY-----\n"
    for _, o in ipairs{ with(pem), with(core.public_key(pub)),
                        { client_id = "C", private_key = core.private_key(priv), dws_public_key = pub,
                          gateway = "https://dws.example" } } do
      assert.has_error(function() dws.client(o) end)
    end
  end)

  it("accepts another key", function()
    assert.truthy(dws.client(with(other_pub)))
  end)

  it("never puts key material in the message", function()
    local _, err = pcall(dws.client, with(pub))
    assert.is_nil(tostring(err):find(pub:sub(40, 80), 1, true))
    assert.is_nil(tostring(err):find("BEGIN", 1, true))
  end)
end)

describe("public_der", function()
  it("gives the same SubjectPublicKeyInfo for a private key and its public half, as openssl does", function()
    local priv, pub = keys.pair("merchant")
    assert.are.equal(core.base64_decode(pub), core.private_key(priv):public_der())
    assert.are.equal(core.base64_decode(pub), core.public_key(pub):public_der())
  end)
end)

describe("client against the sandbox", function()
  local sb
  setup(function() sb = assert(sandbox.start()) end)
  teardown(function() if sb then sb:stop() end end)

  local function client(over)
    local o = { client_id = sb.merchant.client_id, private_key = sb.merchant.private_key,
                dws_public_key = sb.dws_public_key, gateway = sb.https_url, ca_file = sb.ca_file,
                max_retries = 0 }
    for k, v in pairs(over or {}) do o[k] = v end
    return dws.client(o)
  end

  it("names the ca_file option when the gateway's CA is not trusted", function()
    -- As a merchant who forgot ca_file for a gateway with a private CA.
    local c = dws.client{ client_id = sb.merchant.client_id, private_key = sb.merchant.private_key,
                    dws_public_key = sb.dws_public_key, gateway = sb.https_url, max_retries = 0 }
    local res, err = c:consult_addable_payment_method{ customerId = "2162878776333", env = { terminalType = "WEB" } }
    assert.is_nil(res)
    assert.are.equal("TLS_ERROR", err.code)
    assert.truthy(tostring(err.message):find("ca_file option", 1, true), tostring(err.message))
  end)

  it("sends a request field the API pages do not define, with a warning naming it", function()
    local events = {}
    local c = client{ logger = function(level, _, fields)
      if fields and fields.event == "unknown_fields" then
        events[#events + 1] = { level = level, fields = fields.fields }
      end
    end }
    local res = c:consult_addable_payment_method{ customerId = "2162878776333", customerld = "typo",
                                                  env = { terminalType = "WEB", colour = "x" } }
    assert.truthy(res, "the call still succeeds")
    assert.are.same({ { level = "warn", fields = { "customerld", "env.colour" } } }, events)
  end)

  it("logs no warning for a request with known fields only", function()
    local warned = false
    local c = client{ logger = function(_, _, fields)
      if fields and fields.event == "unknown_fields" then warned = true end
    end }
    assert.truthy(c:consult_addable_payment_method{ customerId = "2162878776333", env = { terminalType = "WEB" } })
    assert.is_false(warned)
  end)
end)

describe("one version", function()
  local function rockspec(path)
    local env = {}
    assert(load(files.read(path), "@" .. path, "t", env))()
    return env
  end

  it("the release rockspec is dws-<dws.VERSION>-1 and matches dws-scm-1 but for version and tag", function()
    local scm = rockspec(ROOT .. "/dws-scm-1.rockspec")
    local rel = rockspec(ROOT .. "/rockspecs/dws-" .. dws.VERSION .. "-1.rockspec")
    assert.are.equal(dws.VERSION .. "-1", rel.version)
    assert.are.equal("v" .. dws.VERSION, rel.source.tag)
    assert.are.same(scm.build, rel.build) -- `make rockspec` after changing dws-scm-1.rockspec
    assert.are.same(scm.dependencies, rel.dependencies)
  end)

  it("the user agent carries dws.VERSION", function()
    local c = dws.client{ client_id = "C", private_key = files.read(files.EXAMPLE .. "/merchant_private.pem"),
                          dws_public_key = select(2, keys.pair("dws")), gateway = "https://dws.example" }
    assert.truthy(c.options.user_agent:find("lua-dws/" .. dws.VERSION .. " ", 1, true))
  end)
end)
