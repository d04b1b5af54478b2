-- RSA key pairs for specs that need a key of their own but not a particular one: each made once
-- per run under its name (spec/run's DWS_KEY_CACHE, shared by every spec file and both flavours)
-- instead of with core.generate_key in each file and flavour (~0.15 s of CPU a key). The same
-- name gives the same pair within a run, different names different pairs.
local nginx = require "dws_sandbox.nginx"

local M = {}

local made = {}

-- name -> a PKCS#8 PEM private key, its public half as bare base64 SubjectPublicKeyInfo (the two
-- forms core.generate_key returns).
function M.pair(name)
  if not made[name] then
    local dir = nginx.tmpdir("dws-spec-keys")
    local priv, pub = nginx.make_keypair(dir, "spec_" .. name)
    local pem = assert(nginx.read_file(priv))
    local b64 = assert(nginx.read_file(pub)):gsub("%-%-%-%-%-[^\n]*%-%-%-%-%-", ""):gsub("%s", "")
    nginx.rmdir(dir)
    made[name] = { pem, b64 }
  end
  return made[name][1], made[name][2]
end

return M
