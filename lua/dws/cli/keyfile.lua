-- Private key files as the `dws` command reads them, checked the way ssh checks its own: a file
-- that group or others may read is refused, with the command that fixes it. The SDK itself takes
-- key text, never a path, so the check lives where files are read: here.
local M = {}

-- The environment variable that accepts such a file all the same (a shared CI runner, a key
-- mounted by a secrets manager with its own access control).
M.ALLOW_ENV = "DWS_ALLOW_OPEN_KEY_FILES"

local function sh_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The permission bits of path (links followed, as the file read is the target), as a number, or
-- nil when stat cannot say.
local function mode_of(path)
  local p = io.popen("stat -L -c %a -- " .. sh_quote(path) .. " 2>/dev/null")
  if not p then return nil end
  local out = p:read("a")
  p:close()
  local octal = out and out:match("^(%d+)%s*$")
  return octal and tonumber(octal, 8) or nil
end

--- Whether a private key file's mode lets group or others read it: nil when not (or when the
-- allowing variable is set), else the message that says how to fix it.
function M.too_open(path)
  local allow = os.getenv(M.ALLOW_ENV)
  if allow == "1" then return nil end
  local mode = mode_of(path)
  if mode == nil or mode % 64 == 0 then return nil end
  return string.format("private key file %s has mode %04o: group or others can read it (or write it); "
    .. "a private key file must be readable by its owner only: chmod 600 %s (or set %s=1 to accept it)",
    path, mode % 4096, sh_quote(path), M.ALLOW_ENV)
end

--- The text of a private key file, refused when group or others can read it. A file holding a
-- pkcs11: URI names a key in a token and holds no secret (its PIN file is checked when the token
-- is opened), so it is not held to this.
-- -> text | nil, err
function M.read_private(path, read_file)
  local text, err = read_file(path)
  if not text then return nil, err end
  if text:find("^%s*pkcs11:") then return (text:gsub("^%s+", ""):gsub("%s+$", "")) end
  local why = M.too_open(path)
  if why then return nil, why end
  return text
end

return M
