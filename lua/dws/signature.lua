--- Message signatures (RSASSA-PKCS1-v1_5, SHA-256) over `<METHOD> <PATH>\n<Client-Id>.<Request-Time>.<body>`,
-- and the response verification policy.
-- @module dws.signature

-- Message signatures as ../shared/dws-api/SIGNING.md describes them, and the response
-- verification policy. The crypto and header coding are in dws.core (C); this module handles
-- arguments, key forms and the rules about which headers must be present.
local core = require "dws.core"

local type, pairs, pcall, tostring, format = type, pairs, pcall, tostring, string.format
local getmetatable, setmetatable, next = getmetatable, setmetatable, next

local signature = {}

-- keyVersion when none is given: SIGNING.md's default, kept with the client's other defaults.
local DEFAULT_KEY_VERSION = require("dws.defaults").options.key_version

local function need_string(args, name, fn)
  local v = args[name]
  if type(v) == "number" then return format("%d", v) end -- Request-Time given as a number
  if type(v) ~= "string" then
    error(format("dws.signature.%s: %s must be a string", fn, name), 3)
  end
  return v
end

--- A key as text (PEM or bare base64) parsed, or a parsed dws.core key checked for its kind.
-- A private key may also be an RFC 7512 `pkcs11:` URI: the key stays in the token (docs/keys.md).
-- The one key loader: dws.client's key options and the public sign/verify go through it.
-- syntax: `key, err = dws.signature.load_key(k, kind, opts?)`
-- @tparam string|userdata k key text, a `pkcs11:` URI (private keys), or a `dws.core` key
-- @tparam string kind "private" or "public"
-- @tparam[opt] table opts `pin`: the token's PIN for a `pkcs11:` URI without pin-source
-- @treturn userdata the `dws.core` key
-- @treturn[2] nil
-- @treturn[2] string err (never key material)
function signature.load_key(k, kind, opts)
  local key = k
  if type(k) == "string" then
    local err
    key, err = (kind == "private" and core.private_key or core.public_key)(k, opts)
    if not key then return nil, "is unreadable: " .. tostring(err) end
  elseif type(k) ~= "userdata" then
    return nil, "must be key text or a dws.core key"
  end
  local ok, actual = pcall(function() return key:kind() end)
  if not ok or actual ~= kind then return nil, "must be a " .. kind .. " key" end
  return key
end

local function load_key(k, kind, fn)
  local key, err = signature.load_key(k, kind)
  if not key then error(format("dws.signature.%s: %s_key %s", fn, kind, err), 3) end
  return key
end

--- A keyVersion as the Signature header carries it: a version string (letters, digits, `.-_`) as
-- it is, or a whole number written without a fraction (Lua 5.4 would write 2.0 as "2.0").
-- The one rule: dws.client's key_version option and `sign` both go through it.
-- syntax: `v, err = dws.signature.key_version(v)`
-- @tparam string|number v
-- @treturn string the keyVersion text
-- @treturn[2] nil
-- @treturn[2] string err
function signature.key_version(v)
  if type(v) == "number" then
    if not (v >= 0 and v < 2^31) or v ~= math.floor(v) then return nil, "must be a whole number >= 0" end
    return format("%d", v)
  end
  if type(v) ~= "string" or v == "" or v:find("[^%w%.%-_]") then return nil, "must be a plain version string" end
  return v
end

-- The error code for a keyVersion no DWS key is held for (dws.errors.KEY_VERSION_UNKNOWN).
local KEY_VERSION_UNKNOWN = "KEY_VERSION_UNKNOWN"

-- Several DWS public keys by keyVersion (class Keyring, documented at the end of this file).
local Keyring = {}
Keyring.__index = Keyring
Keyring.__name = "dws.keyring"
local function sorted_versions(ring)
  local list = {}
  for v in pairs(ring._keys) do list[#list + 1] = v end
  table.sort(list)
  return list
end

-- Never key material: the versions only.
function Keyring.__tostring(ring)
  return "dws.keyring(" .. table.concat(sorted_versions(ring), ", ") .. ")"
end

--- A ring of DWS public keys from a table keyVersion -> key (text or `dws.core` public key).
-- Versions are normalised by dws.signature.key_version (`[2]` and `["2"]` are the same version,
-- and may not both be given).
-- syntax: `ring, err = dws.signature.keyring{ ["1"] = old_key, ["2"] = new_key }`
-- @tparam table keys keyVersion -> key; at least one
-- @treturn Keyring the ring
-- @treturn[2] nil
-- @treturn[2] string err (never key material)
function signature.keyring(keys)
  if getmetatable(keys) == Keyring then return keys end
  if type(keys) ~= "table" then return nil, "must be a table of keyVersion -> key" end
  local ring = setmetatable({ _keys = {} }, Keyring)
  for version, key in pairs(keys) do
    local v, verr = signature.key_version(version)
    if not v then return nil, "has a keyVersion that " .. verr end
    if ring._keys[v] then return nil, "gives keyVersion " .. v .. " twice" end
    local ok, err = ring:add(v, key)
    if not ok then return nil, err end
  end
  if next(ring._keys) == nil then return nil, "holds no key" end
  return ring
end

--- Whether `v` is a key ring made by dws.signature.keyring.
-- syntax: `yes = dws.signature.is_keyring(v)`
-- @param v any value
-- @treturn bool
function signature.is_keyring(v)
  return getmetatable(v) == Keyring
end

--- The DWS key(s) of dws.client's `dws_public_key` option: one key (text or parsed; it verifies
-- whatever keyVersion a signature names, as before key rings existed) or a table keyVersion -> key
-- (a Keyring). None may be the public half of the merchant's own `private_key`: every answer would
-- fail to verify, so the mistake is named at once, with the keyVersion it was given for.
-- syntax: `keys, err = dws.signature.dws_keys(value, private_key)`
-- @param value key text, a `dws.core` public key, a table keyVersion -> key, or a Keyring
-- @param[opt] private_key the merchant's parsed `dws.core` private key
-- @treturn userdata|Keyring the key, or the ring
-- @treturn[2] nil
-- @treturn[2] string err (to follow "option dws_public_key ")
function signature.dws_keys(value, private_key)
  local keys, err
  if type(value) == "table" then
    keys, err = signature.keyring(value)
  else
    keys, err = signature.load_key(value, "public")
  end
  if not keys then return nil, err end
  if private_key then
    local own = private_key:public_der()
    local list = signature.is_keyring(keys) and keys:versions() or { false }
    for i = 1, #list do
      local v = list[i]
      if (v and keys:get(v) or keys):public_der() == own then
        return nil, "is the public half of your own private_key" .. (v and " (keyVersion " .. v .. ")" or "")
          .. "; dws_public_key takes the DWS public key (from the DWS portal), while your public key is the one "
          .. "you upload to DWS"
      end
    end
  end
  return keys
end

--- The key to verify a signature with: the one rule for choosing among DWS keys. One key (not a
-- ring) verifies whatever keyVersion the header names. A ring answers the key of the header's
-- keyVersion; a header without keyVersion names "1", SIGNING.md's default (our choice). A version
-- the ring does not hold is `nil, why, "KEY_VERSION_UNKNOWN"` (the version quoted only when it is
-- a well-formed one: header bytes are the sender's).
-- syntax: `key, why, code = dws.signature.key_for(keys, header)`
-- @param keys a `dws.core` public key or a Keyring
-- @tparam string|table header the Signature header value, or core.parse_signature_header's table
-- @treturn userdata the `dws.core` public key
-- @treturn[2] nil
-- @treturn[2] string why
-- @treturn[2] string code `"KEY_VERSION_UNKNOWN"`, or `"SIGNATURE_INVALID"` for a malformed header
function signature.key_for(keys, header)
  if not signature.is_keyring(keys) then return keys end
  if type(header) == "string" then
    local perr
    header, perr = core.parse_signature_header(header)
    if not header then return nil, "signature header malformed: " .. tostring(perr), "SIGNATURE_INVALID" end
  end
  local named = header.keyVersion
  if named == nil then named = DEFAULT_KEY_VERSION end
  local v = signature.key_version(named)
  if not v then return nil, "signature names a malformed keyVersion", KEY_VERSION_UNKNOWN end
  local key = keys._keys[v]
  if not key then
    return nil, "signature names keyVersion " .. v .. ", not among the DWS keys held ("
      .. table.concat(sorted_versions(keys), ", ") .. ")", KEY_VERSION_UNKNOWN
  end
  return key
end

--- The Signature header value for a request:
-- "algorithm=RSA256,keyVersion=<v>,signature=<url-encoded base64>".
-- syntax: `header, err = dws.signature.sign{ private_key =, method =, path =, client_id =, time =, body = }`
-- @tparam table args `private_key` (PEM or bare base64 text, or a `dws.core` key), `method`, `path`,
-- `client_id`, `time` (string or number), `body` (the exact bytes sent), `key_version` (default "1";
-- a string, or a whole number)
-- @treturn string the Signature header value
-- @treturn[2] nil
-- @treturn[2] string err when signing fails
-- @raise on a missing or mistyped argument, an unreadable key or a malformed `key_version`
function signature.sign(args)
  if type(args) ~= "table" then error("dws.signature.sign: expects a table of arguments", 2) end
  local key = load_key(args.private_key, "private", "sign")
  local b64, err = core.sign(key, need_string(args, "method", "sign"), need_string(args, "path", "sign"),
    need_string(args, "client_id", "sign"), need_string(args, "time", "sign"), need_string(args, "body", "sign"))
  if not b64 then return nil, err end
  local version, verr = signature.key_version(args.key_version or DEFAULT_KEY_VERSION)
  if not version then error("dws.signature.sign: key_version " .. verr, 2) end
  return core.signature_header(b64, version)
end

--- Verify a Signature header value over a message with a parsed core public key.
-- A predicate (docs/calls.md "Conventions"): true, or false and the reason (and, for a keyVersion no key
-- is held for, the code `"KEY_VERSION_UNKNOWN"`).
-- syntax: `ok, why, code = dws.signature.verify_message{ key =, method =, path =, client_id =, time =, body =,
-- signature = }`
-- @tparam table args `key` (a `dws.core` public key, or a Keyring: the header's keyVersion picks
-- the key), `method`, `path`, `client_id`, `time`, `body`, `signature` (the header value)
-- @treturn bool true
-- @treturn[2] bool false
-- @treturn[2] string why: missing, malformed, another algorithm, an unknown keyVersion, or does not verify
-- @treturn[2] string|nil code `"KEY_VERSION_UNKNOWN"` for an unknown keyVersion
function signature.verify_message(args)
  local header = args.signature
  if type(header) ~= "string" or header == "" then return false, "signature header missing" end
  local parsed, perr = core.parse_signature_header(header)
  if not parsed then return false, "signature header malformed: " .. tostring(perr) end
  if parsed.algorithm ~= nil and parsed.algorithm ~= "RSA256" then
    return false, "unsupported signature algorithm"
  end
  local key, kwhy, code = signature.key_for(args.key, parsed)
  if not key then return false, kwhy, code ~= "SIGNATURE_INVALID" and code or nil end
  local ok, why = core.verify(key, args.method, args.path, args.client_id, args.time, args.body,
    parsed.signature)
  if ok ~= true then return false, why or "signature does not verify" end
  return true
end

--- Verify a Signature header value over a message. Public form: the key may be text (PEM or
-- bare base64) or a parsed core key. A predicate, like verify_message: true, or false and the reason.
-- syntax: `ok, why = dws.signature.verify{ public_key =, method =, path =, client_id =, time =, body =, signature = }`
-- @tparam table args `public_key`, `method`, `path`, `client_id`, `time`, `body`, `signature` (the
-- Signature header value)
-- @treturn bool true when it verifies
-- @treturn[2] bool false
-- @treturn[2] string why
-- @raise on a missing or mistyped argument, or an unreadable key
function signature.verify(args)
  if type(args) ~= "table" then error("dws.signature.verify: expects a table of arguments", 2) end
  local key = load_key(args.public_key, "public", "verify")
  return signature.verify_message{
    key = key,
    method = need_string(args, "method", "verify"),
    path = need_string(args, "path", "verify"),
    client_id = need_string(args, "client_id", "verify"),
    time = need_string(args, "time", "verify"),
    body = need_string(args, "body", "verify"),
    signature = args.signature,
  }
end

-- Header name -> its lower-case spelling, remembered: every answer and notification brings the
-- same few names, so no new string is made per header per call. A sender choosing names at will
-- only makes it start over (names are not secrets).
local LOWER_MAX = 256
local lower_of, lower_count = {}, 0
local function lower_name(name)
  local l = lower_of[name]
  if l == nil then
    l = name:lower()
    if lower_count >= LOWER_MAX then lower_of, lower_count = {}, 0 end
    lower_of[name] = l
    lower_count = lower_count + 1
  end
  return l
end

-- Response headers the policy reads, by lower-case name.
local WANTED = { ["signature"] = true, ["response-time"] = true, ["client-id"] = true }

--- The one rule for reading signed headers out of a caller's table, for answers and notifications
-- alike: `wanted` is a set of lower-case names; any letter case matches. Returns a table of the
-- wanted ones present (empty values dropped), or nil, reason when one is given twice (an array
-- value, or two spellings: which copy was signed cannot be known) or is not a string (headers are
-- text on the wire; anything else was made by code that might not send what it shows). Names
-- outside `wanted` are not looked at, whatever their shape.
-- syntax: `h, why = dws.signature.pick_headers(headers, wanted)`
-- @tparam table headers name -> value (or array of values)
-- @tparam table wanted lower-case name -> true
-- @treturn table lower-case name -> value, for the wanted names present
-- @treturn[2] nil
-- @treturn[2] string why
function signature.pick_headers(headers, wanted)
  local out = {}
  if type(headers) ~= "table" then return out end
  for name, value in pairs(headers) do
    if type(name) == "string" then
      local lname = wanted[name] and name or lower_name(name)
      if wanted[lname] then
        if type(value) == "table" then
          if #value ~= 1 then return nil, lname .. " header given more than once" end
          value = value[1]
        end
        if out[lname] ~= nil then return nil, lname .. " header given more than once" end
        if type(value) ~= "string" then return nil, lname .. " header is not text" end
        if value ~= "" then out[lname] = value end
      end
    end
  end
  return out
end

--- Pick signature, response-time and client-id out of a response's headers, by pick_headers' rule.
-- syntax: `h, why = dws.signature.response_headers(headers)`
-- @tparam table headers name -> value (or array of values)
-- @treturn table `{ signature =, ["response-time"] =, ["client-id"] = }`
-- @treturn[2] nil
-- @treturn[2] string why
function signature.response_headers(headers)
  return signature.pick_headers(headers, WANTED)
end

--- The response policy of SIGNING.md, signature part. Returns
--   "verified", response-time both headers present and the signature verifies (the caller
--                             checks the signed time against its clock);
--   "unsigned"                signature or response-time missing (the caller accepts only F or U);
--   nil, reason[, code]       a signature present that does not verify, or malformed headers;
--                             code "KEY_VERSION_UNKNOWN" when it names a keyVersion not held.
-- syntax: `verdict, time_or_why, code = dws.signature.check_response(key, method, path, client_id, headers, body)`
-- @param key a `dws.core` public key (the DWS key) or a Keyring
-- @tparam string method
-- @tparam string path the path as sent and signed
-- @tparam string client_id
-- @tparam table headers the response's headers
-- @tparam string body the response's exact bytes
-- @treturn string `"verified"` (and the response-time) or `"unsigned"`
-- @treturn[2] nil
-- @treturn[2] string reason
-- @treturn[2] string|nil code `"KEY_VERSION_UNKNOWN"` for an unknown keyVersion
function signature.check_response(key, method, path, client_id, headers, body)
  local h, why = signature.response_headers(headers)
  if not h then return nil, why end
  local sig, time = h["signature"], h["response-time"]
  if sig == nil or time == nil then return "unsigned" end
  local rid = h["client-id"]
  if rid ~= nil and rid ~= client_id then return nil, "response client-id is not this client's" end
  local ok, reason, code = signature.verify_message{ key = key, method = method, path = path, client_id = client_id,
    time = time, body = body, signature = sig }
  if not ok then return nil, reason, code end
  return "verified", time
end

--- Several DWS public keys by keyVersion, for verifying answers and notifications while DWS
-- rotates its key: `dws.client`'s `dws_public_key` takes one (or a plain table, made into one).
-- A ring can be changed at run time (`add`, `remove`) without making a new client: the client
-- holds the ring itself (`client.dws_key`).
-- @type Keyring

--- Add (or replace) the key of one keyVersion.
-- syntax: `ok, err = ring:add(version, key)`
-- @tparam string|number version a keyVersion (dws.signature.key_version's rule)
-- @tparam string|userdata key public key text or a `dws.core` public key
-- @treturn bool true
-- @treturn[2] nil
-- @treturn[2] string err (never key material)
function Keyring:add(version, key)
  local v, verr = signature.key_version(version)
  if not v then return nil, "keyVersion " .. verr end
  local k, kerr = signature.load_key(key, "public")
  if not k then return nil, "key of keyVersion " .. v .. " " .. kerr end
  self._keys[v] = k
  return true
end

--- Stop accepting a keyVersion: signatures naming it are refused from now on (`KEY_VERSION_UNKNOWN`).
-- syntax: `ring:remove(version)`
-- @tparam string|number version
-- @treturn bool whether the version was held
function Keyring:remove(version)
  local v = signature.key_version(version)
  local held = v ~= nil and self._keys[v] ~= nil
  if held then self._keys[v] = nil end
  return held
end

--- The key held for a keyVersion, or nil.
-- syntax: `key = ring:get(version)`
-- @tparam string|number version
-- @treturn userdata|nil the `dws.core` public key
function Keyring:get(version)
  local v = signature.key_version(version)
  return v and self._keys[v] or nil
end

--- The keyVersions held, sorted.
-- syntax: `list = ring:versions()`
-- @treturn {string,...}
function Keyring:versions()
  return sorted_versions(self)
end

return signature
