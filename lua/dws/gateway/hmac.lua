--- HMAC-SHA256 inside nginx (LuaJIT's FFI over the libcrypto nginx itself links), for the gateway's
-- Standard Webhooks signatures and its constant-time token comparison.
-- @module dws.gateway.hmac
local ffi = require "ffi"
local core = require "dws.core"
local bit = require "bit"

ffi.cdef [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len, const unsigned char *d, size_t n,
                    unsigned char *md, unsigned int *md_len);
]]

-- nginx is linked against libcrypto, so its symbols are already global; a build that is not gets
-- the library loaded by name.
local lib = ffi.C
if not pcall(function() return lib.HMAC end) then lib = ffi.load("crypto") end

local M = {}

local md = ffi.new("unsigned char[32]")
local md_len = ffi.new("unsigned int[1]")

--- The raw 32-byte HMAC-SHA256 of `data` under `key`.
-- syntax: `mac = hmac.sha256(key, data)`
function M.sha256(key, data)
  if lib.HMAC(lib.EVP_sha256(), key, #key, data, #data, md, md_len) == nil then
    error("dws.gateway.hmac: HMAC failed")
  end
  return ffi.string(md, md_len[0])
end

--- Whether two strings are equal, in time that depends on their lengths only.
-- syntax: `same = hmac.equal(a, b)`
function M.equal(a, b)
  if #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do diff = bit.bor(diff, bit.bxor(a:byte(i), b:byte(i))) end
  return diff == 0
end

--- The Standard Webhooks signature header value: "v1,<base64 HMAC-SHA256 of id.timestamp.body>".
-- syntax: `value = hmac.webhook_signature(key, id, timestamp, body)`
function M.webhook_signature(key, id, timestamp, body)
  return "v1," .. core.base64_encode(M.sha256(key, id .. "." .. timestamp .. "." .. body))
end

return M
