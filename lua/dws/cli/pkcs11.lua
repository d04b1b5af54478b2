-- `dws keygen --pkcs11 URI`: a key pair generated inside a PKCS#11 token, by pkcs11-tool (opensc),
-- as sensitive and not extractable: only the public half leaves the token, written as
-- <name>_public.pem and .b64 for the portal; the private key is then used by its URI.
--
-- pkcs11-tool takes the PIN on its command line (it cannot read one from a pipe), where other users
-- of the machine could see it while it runs: generate on the machine the token belongs to (docs/keys.md).
local M = {}

local function sh_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function pct_decode(s)
  local bad = false
  local out = s:gsub("%%(..)", function(h)
    local n = tonumber(h, 16)
    if not n then bad = true return "" end
    return string.char(n)
  end)
  if bad then return nil end
  return out
end

-- The URI's parts: token and object labels, id (as hex), module-path, pin-source file.
local function parse(uri)
  local path, query = uri:match("^pkcs11:([^?]*)%??(.*)$")
  if not path then return nil, "--pkcs11 takes a pkcs11: URI" end
  local p = {}
  for item in path:gmatch("[^;]+") do
    local k, v = item:match("^([%w%-]+)=(.*)$")
    if k then p[k] = pct_decode(v) end
  end
  for item in query:gmatch("[^&]+") do
    local k, v = item:match("^([%w%-]+)=(.*)$")
    if k then p[k] = pct_decode(v) end
  end
  if not p.token or p.token == "" then return nil, "the URI must name the token (token=)" end
  if not p.object or p.object == "" then return nil, "the URI must name the new key (object=)" end
  if p["pin-value"] then return nil, "pin-value is refused; use pin-source=file:<path> or DWS_PKCS11_PIN" end
  if p.id then p.id = (p.id:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
  return p
end

-- -> ok, output (stderr too unless quiet: pkcs11-tool says which slot it uses there)
local function run(cmd, quiet)
  local p = io.popen(cmd .. (quiet and " 2>/dev/null" or " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

--- Generate the pair in the token. a: parsed arguments (pkcs11, bits); util: dws.cli.util.
-- -> the key's URI (without any PIN), the public key as bare base64 SPKI | nil, err
function M.keygen(a, util)
  local p, err = parse(a.pkcs11)
  if not p then return nil, err end
  local pin = os.getenv("DWS_PKCS11_PIN")
  local source = p["pin-source"]
  if source then
    local file = source:match("^file:(.*)$")
    if not file then return nil, "pin-source must be file:<path>" end
    local text, rerr = util.read_file((file:gsub("^//", "")))
    if not text then return nil, "pin-source: " .. tostring(rerr) end
    pin = text:match("^[^\r\n]*")
  end
  if not pin or pin == "" then return nil, "no PIN: give pin-source=file:<path> in the URI or DWS_PKCS11_PIN" end
  local base_cmd = "pkcs11-tool --module " .. sh_quote(p["module-path"] or "p11-kit-proxy.so") .. " --token-label "
    .. sh_quote(p.token)
  -- pkcs11-tool lists every object whatever --label says: look for the label in its listing
  local ok, out = run(base_cmd .. " --list-objects --type pubkey", true)
  if not ok then return nil, "pkcs11-tool cannot list the token's objects" end
  for label in out:gmatch("\n%s*label:%s*([^\n]-)%s*\n") do
    if label == p.object then return nil, "the token already holds an object labelled " .. p.object end
  end
  ok, out = run(base_cmd .. " --login --pin " .. sh_quote(pin) .. " --keypairgen --key-type rsa:" .. a.bits
    .. " --label " .. sh_quote(p.object) .. (p.id and " --id " .. p.id or "") .. " --sensitive --usage-sign")
  if not ok then return nil, "pkcs11-tool could not generate the pair: " .. out:gsub("%s+$", "") end
  local der_file = os.tmpname()
  ok, out = run(base_cmd .. " --read-object --type pubkey --label " .. sh_quote(p.object)
    .. " -o " .. sh_quote(der_file))
  local der = ok and util.read_file(der_file)
  os.remove(der_file)
  if not der then return nil, "cannot read the new public key from the token: " .. out:gsub("%s+$", "") end
  local core = require "dws.core"
  local key, kerr = core.public_key(core.base64_encode(der))
  if not key then return nil, "the token's public key: " .. tostring(kerr) end
  return a.pkcs11:gsub("%s+$", "") .. "\n", core.base64_encode(key:public_der())
end

return M
