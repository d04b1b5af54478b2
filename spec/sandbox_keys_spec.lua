-- Keys by keyVersion against the real sandbox (docs/keys.md): the sandbox rotates its DWS key at
-- run time (both versions sign for an overlap, then the new alone) and holds a merchant's
-- registered set of (keyVersion, public key); dws.client verifies each answer with the key its
-- keyVersion names.
local dws = require "dws"
local core = require "dws.core"
local sandbox = require "helpers.sandbox"
local test_keys = require "helpers.keys"

local CONSULT = { customerId = "2162878776333", env = { terminalType = "WEB" } }

local sb, base, dws2_pem

-- A transport over dws.curl that remembers the keyVersion of every answer's Signature header.
local function recording_transport(seen)
  local inner = require("dws.transport.curl").new{ ca_file = base.ca_file }
  return {
    request = function(_, req)
      local res, kind, message = inner:request(req)
      local sig = res and res.headers and res.headers["signature"]
      if type(sig) == "string" then seen[#seen + 1] = sig:match("keyVersion=([^,]*)") end
      return res, kind, message
    end,
    sleep = function(_, s) core.sleep(s) end,
    close = function() inner:close() end,
  }
end

local function client_with(over)
  local o = {}
  for k, v in pairs(base) do o[k] = v end
  for k, v in pairs(over or {}) do o[k] = v end
  return dws.client(o)
end

local function rotate(overlap)
  return sb:admin("POST", "dws-key/rotate", { keyVersion = "2", overlap = overlap, private_key = dws2_pem })
end

local function consult_codes(client, n)
  local codes = {}
  for i = 1, n do
    local res, err = client:consult_addable_payment_method(CONSULT)
    codes[i] = res and "S" or err.code
  end
  table.sort(codes)
  return codes
end

setup(function()
  sb = assert(sandbox.start())
  base = sb:client_options()
  dws2_pem = test_keys.pair("dws2")
end)

teardown(function()
  if sb then sb:stop() end
end)

before_each(function()
  sb:reset()
end)

describe("the sandbox's DWS key rotation", function()
  it("answers the new version's public key", function()
    local info = rotate(0)
    assert.are.equal(core.private_key(dws2_pem):public_der(), assert(core.public_key(info.public_key)):public_der())
  end)

  it("makes the new key itself when none is given", function()
    local info = sb:admin("POST", "dws-key/rotate", { keyVersion = "3" })
    assert.are.equal("public", assert(core.public_key(info.public_key)):kind())
  end)

  it("signs with both versions during the overlap, all verified by a client holding both", function()
    local info = rotate(60)
    local seen = {}
    local client = client_with{ dws_public_key = { ["1"] = sb.dws_public_key, ["2"] = info.public_key },
                                transport = recording_transport(seen) }
    local codes = consult_codes(client, 4)
    table.sort(seen)
    assert.are.same({ { "S", "S", "S", "S" }, { "1", "1", "2", "2" } }, { codes, seen })
  end)

  it("refuses an answer by a version the client does not hold: KEY_VERSION_UNKNOWN, once, no data", function()
    rotate(0)
    local client = client_with{ dws_public_key = { ["1"] = sb.dws_public_key } }
    local _, err = client:consult_addable_payment_method(CONSULT)
    assert.are.same({ "KEY_VERSION_UNKNOWN", "U", 1, false },
      { err.code, err.status, err.attempts, err.response ~= nil })
  end)

  it("refuses the new key's answers as SIGNATURE_INVALID for a client given one key (any version)", function()
    rotate(0)
    local _, err = client_with():consult_addable_payment_method(CONSULT)
    assert.are.equal("SIGNATURE_INVALID", err.code)
  end)

  it("logs the unknown keyVersion with the error", function()
    rotate(0)
    local logged
    local client = client_with{ dws_public_key = { ["1"] = sb.dws_public_key }, logger = function(level, _, fields)
      if level == "error" then logged = fields.message end
    end }
    client:consult_addable_payment_method(CONSULT)
    assert.truthy(logged and logged:find("signature names keyVersion 2, not among the DWS keys held (1)", 1, true),
      tostring(logged))
  end)

  it("refuses answers by a version removed from the client's ring during the overlap", function()
    local info = rotate(60)
    local client = client_with{ dws_public_key = { ["1"] = sb.dws_public_key, ["2"] = info.public_key } }
    client.dws_key:remove("1")
    assert.are.same({ "KEY_VERSION_UNKNOWN", "S" }, consult_codes(client, 2))
  end)

  it("signs with the new version alone once the overlap is retired", function()
    local info = rotate(60)
    sb:admin("POST", "dws-key/retire")
    local client = client_with{ dws_public_key = { ["2"] = info.public_key } }
    assert.are.same({ "S", "S", "S" }, consult_codes(client, 3))
  end)

  it("goes back to keyVersion 1 on reset", function()
    rotate(0)
    sb:reset()
    assert.are.equal("1", sb:admin("GET", "dws-key").keyVersion)
  end)

  it("refuses a rotation to the current version", function()
    assert.has_error(function() sb:admin("POST", "dws-key/rotate", { keyVersion = "1" }) end)
  end)
end)

describe("a merchant's registered keys in the sandbox", function()
  local new_priv, new_pub

  setup(function()
    new_priv, new_pub = test_keys.pair("rotated")
  end)

  local function register(keys)
    return sb:admin("POST", "merchant-keys", { client_id = base.client_id, keys = keys })
  end

  it("accepts a request signed by a registered version's key", function()
    register{ ["1"] = sb.merchant.public_key, ["2"] = new_pub }
    assert.are.same({ "S" }, consult_codes(client_with{ private_key = new_priv, key_version = 2 }, 1))
  end)

  it("refuses a keyVersion not registered with INVALID_SIGNATURE", function()
    register{ ["1"] = sb.merchant.public_key }
    assert.are.same({ "INVALID_SIGNATURE" }, consult_codes(client_with{ key_version = 2 }, 1))
  end)

  it("refuses a registered version signed by another key with INVALID_SIGNATURE", function()
    register{ ["1"] = sb.merchant.public_key, ["2"] = new_pub }
    assert.are.same({ "INVALID_SIGNATURE" }, consult_codes(client_with{ key_version = 2 }, 1))
  end)

  it("lists the registered versions", function()
    register{ ["2"] = new_pub, ["1"] = sb.merchant.public_key }
    assert.are.same({ "1", "2" }, sb:admin("GET", "merchant-keys?client_id=" .. base.client_id).versions)
  end)

  it("verifies any keyVersion with the config's key while no set is registered", function()
    assert.are.same({ "S" }, consult_codes(client_with{ key_version = 9 }, 1))
  end)
end)
