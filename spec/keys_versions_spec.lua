-- Several DWS public keys by keyVersion (docs/keys.md "DWS keys by keyVersion"): the Signature
-- header's keyVersion picks the key a notification or answer is verified with. Real keys and real
-- signatures; the request table is what an HTTP server hands over. Answers from the sandbox while
-- it rotates its key are in spec/sandbox_keys_spec.lua.
local dws = require "dws"
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"

local CLIENT_ID = "SANDBOX_5Y0000000000001"
local BODY = assert(core.json_encode{
  referenceCustomerId = "demo-customer-0001", requestId = "9c0b6c8e-4c7e-4d8f-9a57-6a1d2f3b4c5d",
  operateSource = "MERCHANT",
  paymentMethodDetail = { paymentMethodDetailType = "CARD",
    card = { cardToken = "ALIPAYtoken", brand = "VISA", mask = "411111******1111" } },
})

local dir, merchant_priv, merchant_pub
local dws1_priv, dws1_pub, dws2_priv, dws2_pub

-- A notification as DWS sends it, signed by `key` and naming `version` in its Signature header
-- (`version == false`: a header without keyVersion).
local function notification(key, version)
  local time = tostring(core.time_ms())
  local b64 = assert(core.sign(key, "POST", "/notify", CLIENT_ID, time, BODY))
  local header = version == false and "algorithm=RSA256,signature=" .. core.url_encode(b64)
    or core.signature_header(b64, version)
  return { method = "POST", path = "/notify", body = BODY,
           headers = { ["Client-Id"] = CLIENT_ID, ["Request-Time"] = time, ["Signature"] = header } }
end

local function client_with(dws_public_key, extra)
  local o = { client_id = CLIENT_ID, private_key = merchant_priv, dws_public_key = dws_public_key,
              gateway = "https://dws.example" }
  for k, v in pairs(extra or {}) do o[k] = v end
  return dws.client(o)
end

setup(function()
  dir = nginx.tmpdir("dws-keyversions")
  local function pair(name)
    local priv, pub = nginx.make_keypair(dir, name)
    return nginx.read_file(priv), nginx.read_file(pub)
  end
  merchant_priv, merchant_pub = pair("merchant")
  local p1, p2
  p1, dws1_pub = pair("dws1")
  p2, dws2_pub = pair("dws2")
  dws1_priv, dws2_priv = assert(core.private_key(p1)), assert(core.private_key(p2))
end)

teardown(function()
  if dir then nginx.rmdir(dir) end
end)

describe("dws_public_key as a table keyVersion -> key", function()
  it("verifies a notification with the key its keyVersion names", function()
    local client = client_with{ ["1"] = dws1_pub, ["2"] = dws2_pub }
    local n, err = client:verify_notification(notification(dws2_priv, "2"))
    assert.is_nil(err)
    assert.are.equal("MERCHANT", n.operateSource)
  end)

  it("takes whole-number versions as table keys ({ key1, key2 } is versions 1 and 2)", function()
    local client = client_with{ dws1_pub, dws2_pub }
    assert.is_truthy(client:verify_notification(notification(dws2_priv, "2")))
  end)

  it("refuses a keyVersion it holds no key for with KEY_VERSION_UNKNOWN, naming the version", function()
    local client = client_with{ ["1"] = dws1_pub, ["2"] = dws2_pub }
    local _, err = client:verify_notification(notification(dws2_priv, "3"))
    assert.are.same({ "KEY_VERSION_UNKNOWN", 401,
      "notification signature does not verify: signature names keyVersion 3, not among the DWS keys held (1, 2)" },
      { err.code, err.http_status, err.message })
  end)

  it("refuses a signature by another version's key as SIGNATURE_INVALID", function()
    local client = client_with{ ["1"] = dws1_pub, ["2"] = dws2_pub }
    local _, err = client:verify_notification(notification(dws1_priv, "2"))
    assert.are.equal("SIGNATURE_INVALID", err.code)
  end)

  it("refuses a version removed from the ring at run time", function()
    local client = client_with{ ["1"] = dws1_pub, ["2"] = dws2_pub }
    client.dws_key:remove("1")
    local _, err = client:verify_notification(notification(dws1_priv, "1"))
    assert.are.equal("KEY_VERSION_UNKNOWN", err.code)
  end)

  it("accepts a version added to the ring at run time", function()
    local ring = assert(dws.signature.keyring{ ["1"] = dws1_pub })
    local client = client_with(ring)
    assert(ring:add(2, dws2_pub))
    assert.is_truthy(client:verify_notification(notification(dws2_priv, "2")))
  end)

  it("reads a header without keyVersion as keyVersion 1 (SIGNING.md's default)", function()
    local client = client_with{ ["1"] = dws1_pub, ["2"] = dws2_pub }
    assert.is_truthy(client:verify_notification(notification(dws1_priv, false)))
  end)

  it("does not echo a malformed keyVersion", function()
    local client = client_with{ ["2"] = dws2_pub }
    local _, err = client:verify_notification(notification(dws2_priv, "x\"y"))
    assert.are.same({ "KEY_VERSION_UNKNOWN",
      "notification signature does not verify: signature names a malformed keyVersion" },
      { err.code, err.message })
  end)

  it("shows the versions, never key material, in tostring", function()
    assert.are.equal("dws.keyring(1, 2)", tostring(client_with{ ["2"] = dws2_pub, ["1"] = dws1_pub }.dws_key))
  end)
end)

describe("one dws_public_key, as before", function()
  it("verifies whatever keyVersion the header names", function()
    local client = client_with(dws2_pub)
    assert.is_truthy(client:verify_notification(notification(dws2_priv, "7")))
  end)
end)

describe("dws_public_key option checks", function()
  it("refuses the merchant's own public key in the table, naming its keyVersion", function()
    local ok, err = pcall(client_with, { ["1"] = dws1_pub, ["2"] = merchant_pub })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("option dws_public_key is the public half of your own private_key "
      .. "(keyVersion 2); dws_public_key takes the DWS public key", 1, true), tostring(err))
  end)

  it("refuses an empty table", function()
    assert.has_error(function() client_with({}) end, "dws.client: option dws_public_key holds no key")
  end)

  it("refuses a version given twice (2 and \"2\")", function()
    assert.has_error(function() client_with({ [2] = dws1_pub, ["2"] = dws2_pub }) end,
      "dws.client: option dws_public_key gives keyVersion 2 twice")
  end)

  it("refuses an unreadable key, naming its version and not its text", function()
    assert.has_error(function() client_with({ ["1"] = dws1_pub, ["2"] = "not a key" }) end,
      "dws.client: option dws_public_key key of keyVersion 2 is unreadable: public key: neither PEM nor base64 DER")
  end)
end)

describe("dws.signature.key_for", function()
  it("answers the key of the header's keyVersion", function()
    local ring = assert(dws.signature.keyring{ ["1"] = dws1_pub, ["2"] = dws2_pub })
    local header = core.signature_header(assert(core.sign(dws2_priv, "POST", "/p", "C", "1", "{}")), "2")
    assert.are.equal(ring:get("2"), dws.signature.key_for(ring, header))
  end)
end)
