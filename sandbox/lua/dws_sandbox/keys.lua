-- Keys by keyVersion, as DWS holds them: the DWS signing key (rotated at run time, the old and the
-- new version both signing for an overlap, then the new alone) and each merchant's registered set
-- of (keyVersion, public key).
--
-- State lives in this worker's Lua (config.lua runs one worker), set up by init in the master and
-- changed by the admin endpoints (admin.lua). Nothing here logs or returns private key material.
local core = require "dws.core"

local M = {}

-- The DWS key signing now, the one before it (during an overlap), the overlap's end (ngx.now()),
-- and the key init was given (reset goes back to it).
local current, previous, overlap_until, initial
-- private key userdata -> its keyVersion, for signing with whichever key was picked.
local version_of = setmetatable({}, { __mode = "k" })
-- During an overlap answers alternate between the two versions, as DWS's own nodes would while a
-- rotation rolls out: a merchant holding only one of them sees failures at once, not by chance.
local turn = 0
-- client_id -> { [keyVersion] = public key } once the merchant registered a set; until then the
-- config's one key verifies whatever keyVersion a request names (the sandbox's earlier contract).
local merchant_sets = {}

local function now()
  return ngx.now()
end

--- init_by_lua: the DWS key from the config is keyVersion "1".
function M.init(dws_key)
  current = { version = "1", key = dws_key }
  version_of[dws_key] = "1"
  initial = current
  previous, overlap_until = nil, 0
end

--- The key to sign the next DWS answer or notification with.
function M.signing_key()
  if previous and now() < overlap_until then
    turn = turn + 1
    if turn % 2 == 0 then return previous.key end
  end
  return current.key
end

--- The keyVersion a DWS signature by `key` names ("1" for keys this module does not know, such as
-- the foreign key of the foreign_key fault: it poses as the DWS key).
function M.version_of(key)
  return version_of[key] or "1"
end

local function plain_version(v)
  if type(v) == "number" and v == math.floor(v) and v >= 0 then v = string.format("%d", v) end
  if type(v) ~= "string" or v == "" or #v > 32 or v:find("[^%w%.%-_]") then return nil end
  return v
end

--- Rotate the DWS key: `t.keyVersion` (new, not the current one), `t.private_key` (PEM; made here
-- when absent), `t.overlap` (seconds both versions sign; default 0: the new one alone at once).
-- -> { keyVersion, public_key (bare base64 SPKI), previous, overlap } | nil, err
function M.rotate(t)
  local version = plain_version(t.keyVersion)
  if not version then return nil, "keyVersion must be letters, digits, '.-_'" end
  if version == current.version then return nil, "keyVersion " .. version .. " is the current one" end
  local overlap = t.overlap or 0
  if type(overlap) ~= "number" or not (overlap >= 0 and overlap <= 86400) then
    return nil, "overlap must be 0 to 86400 seconds"
  end
  local pem = t.private_key
  if pem == nil then
    pem = core.generate_key()
    if not pem then return nil, "could not make a key" end
  end
  if type(pem) ~= "string" then return nil, "private_key must be PEM text" end
  local key, err = core.private_key(pem)
  if not key then return nil, "private_key: " .. tostring(err) end
  local der = assert(key:public_der())
  previous, current = current, { version = version, key = key }
  turn = 0
  version_of[key] = version
  overlap_until = now() + overlap
  return { keyVersion = version, public_key = core.base64_encode(der), previous = previous.version,
           overlap = overlap }
end

--- End the overlap now: only the current key signs from here on.
function M.retire()
  local old = previous and previous.version
  previous, overlap_until = nil, 0
  return { keyVersion = current.version, retired = old }
end

--- { keyVersion = current, previous = version during an overlap, overlap_left = seconds }
function M.state()
  local left = previous and math.max(0, overlap_until - now()) or 0
  return { keyVersion = current.version, previous = left > 0 and previous.version or nil, overlap_left = left }
end

--- Register a merchant's set of public keys: `keys` = { [keyVersion] = PEM or base64 SPKI }.
-- Replaces any earlier set. -> list of versions | nil, err
function M.register(client_id, keys)
  if type(client_id) ~= "string" or client_id == "" then return nil, "client_id required" end
  if type(keys) ~= "table" then return nil, "keys must be an object keyVersion -> public key" end
  local set, versions = {}, {}
  for v, text in pairs(keys) do
    local version = plain_version(v)
    if not version then return nil, "keyVersion must be letters, digits, '.-_'" end
    if type(text) ~= "string" then return nil, "keyVersion " .. version .. ": not key text" end
    local key, err = core.public_key(text)
    if not key then return nil, "keyVersion " .. version .. ": " .. tostring(err) end
    set[version] = key
    versions[#versions + 1] = version
  end
  if #versions == 0 then return nil, "keys is empty" end
  table.sort(versions)
  merchant_sets[client_id] = set
  return versions
end

--- The versions registered for a merchant, sorted (nil when it registered none).
function M.registered(client_id)
  local set = merchant_sets[client_id]
  if not set then return nil end
  local list = {}
  for v in pairs(set) do list[#list + 1] = v end
  table.sort(list)
  return list
end

--- The key that verifies a merchant's request naming `version` (nil: the default "1"): from its
-- registered set when it has one (nil when the set does not hold that version, as DWS refuses
-- it), else the config's key for any version.
function M.merchant_key(client_id, version, config_key)
  local set = merchant_sets[client_id]
  if not set then return config_key end
  local v = plain_version(version == nil and "1" or version)
  return v and set[v] or nil
end

--- The admin reset: the DWS key init was given, no merchant sets.
function M.reset()
  current, previous, overlap_until = initial, nil, 0
  merchant_sets = {}
  turn = 0
end

return M
