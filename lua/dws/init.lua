-- require "dws": the public API of lua-dws (see README.md and HACKING.md).
local core = require "dws.core"
local client = require "dws.client"
local errors = require "dws.errors"
local signature = require "dws.signature"

local dws = {
  VERSION = client.VERSION,
  errors = errors,
  signature = signature,
  null = core.null,
}

--- dws.client(opts): make a client; see client.lua for the options. Raises on programming
-- errors (an alias, so error positions point at the caller).
dws.client = client.new

--- Mark a table as a JSON array (so an empty one is sent as [] rather than {}).
function dws.array(t)
  if t == nil then t = {} end
  if type(t) ~= "table" then error("dws.array: expects a table", 2) end
  return setmetatable(t, core.array_mt)
end

--- Decode JSON text (e.g. paymentOptionDetail, which the gateway sends as a string).
-- Returns the value, or nil, err on malformed input.
function dws.decode_json(s)
  if type(s) ~= "string" then return nil, "dws.decode_json: expects a string" end
  local ok, value, err = pcall(core.json_decode, s)
  if not ok then return nil, "malformed JSON" end
  if value == nil then return nil, err or "malformed JSON" end
  return value
end

return dws
