--- `require "dws"`: the public API of lua-dws (see README.md and HACKING.md).
--
--     local dws = require "dws"
--     local client = dws.client{ client_id =, private_key =, dws_public_key =, gateway = }
--     local res, err = client:cache_card{ paymentMethodDetail = {...} }
-- @module dws

-- Loaded first, so that a dws.core built for the other Lua (5.4 vs LuaJIT) is reported as such.
local core = require("dws.abi").require "dws.core"
local client = require "dws.client"
local errors = require "dws.errors"
local signature = require "dws.signature"
local store = require "dws.store"
local notification = require "dws.notification"

local dws = {
  VERSION = client.VERSION,
  errors = errors,
  signature = signature,
  store = store,
  notification = notification,
  null = core.null,
}

--- The version of lua-dws, `"<major>.<minor>.<patch>"` (`dws.client.VERSION`; the release
-- rockspec and the user agent carry the same).
-- @field VERSION

--- The SDK's error codes and error objects: `dws.errors.PARAM_ILLEGAL`, ... (see `dws.errors`).
-- @field errors

--- Request signatures: `dws.signature.sign`, `dws.signature.verify` (see `dws.signature`).
-- @field signature

--- Stores for the binding journal and notification de-duplication: `dws.store.open(spec)`,
-- `dws.store.memory{...}`, `dws.store.register(scheme, opener)` (see `dws.store`).
-- @field store

--- Binding notifications: `dws.notification.outcome(n)` (what a verified notification says:
-- `"BOUND"`, `"FAILED"` or `"UNCONFIRMED"`), the acknowledgement and refusal bodies (see
-- `dws.notification`).
-- @field notification

--- The JSON `null`: decoded answers hold it where DWS sent `null`; put it in a request to send one.
-- A lightuserdata (`dws.core.null`), so it is true in a test: compare with `==`.
-- @field null

--- Make a client (`dws.client.new`; an alias, so error positions point at the caller).
-- syntax: `client = dws.client(opts)`
-- @function client
-- @tparam table opts see `dws.client.new` and the README's "Client options"
-- @treturn dws.client.Client the client
-- @raise on a programming error: an unknown option, a wrong type, a value out of range, an
-- unreadable key
dws.client = client.new

--- Mark a table as a JSON array (so an empty one is sent as `[]` rather than `{}`).
-- syntax: `t = dws.array(t?)`
-- @tparam[opt] table t the table (a new empty one when nil)
-- @treturn table `t`, marked
-- @raise when `t` is not a table
function dws.array(t)
  if t == nil then t = {} end
  if type(t) ~= "table" then error("dws.array: expects a table", 2) end
  return setmetatable(t, core.array_mt)
end

--- Decode JSON text, such as paymentOptionDetail (which the gateway sends as a string).
-- Returns the value, or nil, err on malformed input.
-- syntax: `value, err = dws.decode_json(s)`
-- @tparam string s JSON text
-- @return the value (`dws.null` for `null`; arrays re-encode as arrays)
-- @treturn[2] nil
-- @treturn[2] string err on malformed JSON or a non-string argument
function dws.decode_json(s)
  if type(s) ~= "string" then return nil, "dws.decode_json: expects a string" end
  local ok, value, err = pcall(core.json_decode, s)
  if not ok then return nil, "malformed JSON" end
  if value == nil then return nil, err or "malformed JSON" end
  return value
end

return dws
