-- `dws keygen`: an RSA key pair in the three files a merchant needs, and the one function that
-- writes key files (write_new_files), for every command that makes one.
--
-- Key files are created, never opened: a file or a symbolic link already at a key's path is refused
-- (a planted link would otherwise carry the private key wherever it points, or let its owner swap
-- the public key before it is uploaded). Modes are set explicitly, so the umask cannot widen them:
-- private 0600, public 0644.
local core = require "dws.core"
local util = require "dws.cli.util"

local M = {}

local out, fail = util.out, util.fail

--- Write new files into directory `dir` (made 0700 when missing):
-- `files` is an array of `{ path = , data = , mode = "0600" | "0644" }` (paths inside `dir`).
-- Each file is created by dws.core.create_file (open with O_CREAT|O_EXCL|O_NOFOLLOW, its mode set
-- with fchmod): the kernel refuses a file or link already at the path in the same step that
-- creates it, so no check can be raced. When any file cannot be created, those already written are
-- removed again. Returns true, or nil, err.
function M.write_new_files(dir, files)
  local dok, derr = util.mkdir_private(dir)
  if not dok then return nil, derr end
  local done = {}
  for _, f in ipairs(files) do
    local ok, err = core.create_file(f.path, f.data, tonumber(f.mode, 8))
    if not ok then
      for _, path in ipairs(done) do os.remove(path) end
      if err == "exists" then return nil, f.path .. " exists; refusing to overwrite a key (or follow a link)" end
      return nil, "cannot create " .. f.path .. ": " .. err
    end
    done[#done + 1] = f.path
  end
  return true
end

local function public_pem(b64)
  return "-----BEGIN PUBLIC KEY-----\n" .. b64:gsub("(" .. ("."):rep(64) .. ")", "%1\n"):gsub("\n$", "")
    .. "\n-----END PUBLIC KEY-----\n"
end

--- `dws keygen [--out DIR] [--name NAME] [--bits N]`. Returns the exit status.
function M.run(a)
  if not a.bits then return fail("--bits must be a number", 64) end
  local version = a.key_version and require("dws.signature").key_version(a.key_version)
  if a.key_version and not version then return fail("--key-version must be letters, digits, '.-_'", 64) end
  local ok, priv, pub
  if a.pkcs11 then -- made in the token: priv is the key's URI, only the public half comes out
    ok, priv, pub = pcall(require("dws.cli.pkcs11").keygen, a, require "dws.cli.util")
  else
    ok, priv, pub = pcall(core.generate_key, a.bits)
  end
  if not ok then
    return fail((tostring(priv):gsub("^bad argument #1 to '[^']*' %((.*)%)$", "--bits %1")), 64)
  end
  if not priv then return fail(pub) end
  local base = a.out .. "/" .. a.name .. (version and "_v" .. version or "")
  local files = {
    { path = base .. (a.pkcs11 and "_private.uri" or "_private.pem"), data = priv, mode = "0600" },
    { path = base .. "_public.pem", data = public_pem(pub), mode = "0644" },
    { path = base .. "_public.b64", data = pub .. "\n", mode = "0644" },
  }
  local wok, werr = M.write_new_files(a.out, files)
  if not wok then return fail(werr) end
  out(a.pkcs11 and "private key (in the token; its URI):  " or "private key (PKCS#8 PEM, mode 0600): ", files[1].path,
    "\n")
  out("public key (PEM, mode 0644):         ", files[2].path, "\n")
  out("public key (base64, for the portal): ", files[3].path, "\n")
  out(pub, "\n")
  if version then
    out("keyVersion ", version, ": upload the public key as version ", version, ", then sign with key_version = \"",
      version, "\"\n")
  end
  return 0
end

return M
