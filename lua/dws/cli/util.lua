-- Shared pieces of the `dws` command line: output, files, profiles, a plain HTTP post.
local dws = require "dws"

local M = {}

function M.out(...)
  io.stdout:write(...)
end

function M.err(...)
  io.stderr:write(...)
end

--- Print "dws: message" on stderr; returns the exit status (1 unless given).
function M.fail(message, status)
  io.stderr:write("dws: ", tostring(message), "\n")
  return status or 1
end

function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

function M.read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

--- A file's bytes, or stdin's for nil or "-".
function M.read_input(path)
  if path == nil or path == "-" then return io.stdin:read("a") or "" end
  return M.read_file(path)
end

local function sh_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- Write a file; `private` creates it 0600 before any byte is written (a key is never readable
-- by others, not even for a moment).
function M.write_file(path, data, private)
  if private then
    -- stderr first: the shell's own complaint would be a second, unprefixed error line
    local ok = os.execute("umask 077 && : 2>/dev/null > " .. sh_quote(path))
    if not ok then return nil, "cannot create " .. path end
  end
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(data)
  f:close()
  if not ok then return nil, werr end
  return true
end

--- Make directory `path` (and its parents) when missing, readable by its owner only (it may hold
-- a private key). Returns true, or nil, err.
function M.mkdir_private(path)
  local ok = os.execute("umask 077 && mkdir -p -- " .. sh_quote(path) .. " 2>/dev/null")
  if ok == true or ok == 0 then return true end
  return nil, "cannot create directory " .. path
end

-- Profile keys that name a file holding the option's value.
local FILE_KEYS = { private_key_file = "private_key", dws_public_key_file = "dws_public_key" }

local ENV = {
  { "DWS_CLIENT_ID", "client_id" }, { "DWS_PRIVATE_KEY", "private_key" },
  { "DWS_PRIVATE_KEY_FILE", "private_key_file" }, { "DWS_PUBLIC_KEY", "dws_public_key" },
  { "DWS_PUBLIC_KEY_FILE", "dws_public_key_file" }, { "DWS_GATEWAY", "gateway" }, { "DWS_CA_FILE", "ca_file" },
}

local function load_profile(path)
  local text, err = M.read_file(path)
  if not text then return nil, "profile: " .. tostring(err) end
  if text:find("^%s*{") then
    local t = dws.decode_json(text)
    if type(t) ~= "table" then return nil, "profile " .. path .. ": not a JSON object" end
    return t
  end
  -- A data file: no globals, so a profile cannot reach os or io.
  local chunk, lerr = load(text, "@" .. path, "t", {})
  if not chunk then return nil, "profile: " .. lerr end
  local ok, t = pcall(chunk)
  if not ok or type(t) ~= "table" then return nil, "profile " .. path .. ": must return a table of client options" end
  return t
end

--- The sandbox's control module, from the dws-sandbox rock (a package of its own, which the SDK does
-- not need). Returns it or nil, err.
function M.sandbox_control()
  local ok, control = pcall(require, "dws_sandbox.control")
  if ok then return control end
  return nil, "the sandbox commands need the dws-sandbox rock (dws_sandbox.control not found): " ..
    "luarocks --lua-version 5.4 install dws-sandbox"
end

--- Client options from --sandbox DIR, --profile FILE and the environment (which fills what the
-- profile leaves out). Returns the options or nil, err.
function M.profile(a)
  local o = {}
  if a.sandbox then
    local control, err = M.sandbox_control()
    if not control then return nil, err end
    local st = control.status(a.sandbox)
    if not st then return nil, "no sandbox running in " .. a.sandbox end
    o = { client_id = st.client_id, private_key_file = st.merchant_private_key,
          dws_public_key_file = st.dws_public_key, gateway = "https://127.0.0.1:" .. st.https_port,
          ca_file = st.ca }
  elseif a.profile then
    local t, err = load_profile(a.profile)
    if not t then return nil, err end
    o = t
  end
  for _, e in ipairs(ENV) do
    local v = os.getenv(e[1])
    if v and v ~= "" and o[e[2]] == nil then o[e[2]] = v end
  end
  for file_key, key in pairs(FILE_KEYS) do
    if o[file_key] ~= nil then
      if o[key] == nil then
        -- a private key file is refused when others can read it (dws.cli.keyfile)
        local read = key == "private_key" and require("dws.cli.keyfile").read_private or M.read_file
        local text, err = read(o[file_key], M.read_file)
        if not text then return nil, file_key .. ": " .. tostring(err) end
        o[key] = text
      end
      o[file_key] = nil
    end
  end
  for _, k in ipairs{ "client_id", "private_key", "dws_public_key", "gateway" } do
    if o[k] == nil then
      return nil, "no " .. k .. ": give --profile FILE, --sandbox DIR or the DWS_* environment variables"
    end
  end
  return o
end

--- A client from the profile; option errors (dws.client raises on them) come back as nil, err.
function M.client(a, logger)
  local o, err = M.profile(a)
  if not o then return nil, err end
  o.logger = logger
  local ok, client = pcall(dws.client, o)
  if not ok then return nil, (tostring(client):gsub("^[^:]*:%d+: ", "")) end
  return client
end

--- One POST over the SDK's libcurl transport. -> { status, headers, body } | nil, err
function M.post(url, headers, body, ca_file)
  local t = require("dws.transport.curl").new{ ca_file = ca_file, user_agent = "lua-dws-cli/" .. dws.VERSION }
  local res, kind, message = t:request{ method = "POST", url = url, headers = headers, body = body,
                                        timeout = 15, connect_timeout = 5 }
  t:close()
  if not res then return nil, tostring(kind) .. ": " .. tostring(message) end
  return res
end

return M
