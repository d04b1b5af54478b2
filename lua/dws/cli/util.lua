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
    local t, jerr = dws.decode_json(text)
    if t == nil then return nil, "profile " .. path .. ": " .. M.json_error(text, jerr) end
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

--- A call to a sandbox's admin API on its HTTP port, with a client's admin token.
-- -> decoded answer | nil, err (the sandbox's own explanation when it gave one)
function M.sandbox_admin(port, method, path, token, value)
  local headers = { ["X-Sandbox-Admin-Token"] = token }
  local body
  if value ~= nil then
    headers["Content-Type"] = "application/json"
    body = assert(require("dws.core").json_encode(value, false))
  end
  local t = require("dws.transport.curl").new{ user_agent = "lua-dws-cli/" .. dws.VERSION }
  local res, kind, message = t:request{ method = method, url = "http://127.0.0.1:" .. port .. path,
    headers = headers, body = body, timeout = 10, connect_timeout = 5 }
  t:close()
  if not res then return nil, tostring(kind) .. ": " .. tostring(message) end
  local decoded = dws.decode_json(res.body or "")
  if res.status ~= 200 then
    local why = type(decoded) == "table" and decoded.error or res.body
    return nil, "sandbox " .. method .. " " .. path .. ": HTTP " .. res.status .. ": " .. tostring(why), decoded
  end
  return decoded
end

--- The running sandbox in `dir` and one of its clients (`client_id`, or its only one), with that
-- client's admin token from the sandbox's config (whose path the sandbox's health answer gives).
-- `without_token`: the admin token is not needed (and may be missing).
-- -> { status = control.status(dir), client_id =, token =, config = path } | nil, err
function M.sandbox_client(dir, client_id, without_token)
  local control, cerr = M.sandbox_control()
  if not control then return nil, cerr end
  local st = control.status(dir)
  if not st then return nil, "no sandbox running in " .. dir .. " (dws sandbox start --dir " .. dir .. ")" end
  local health = M.sandbox_admin(st.http_port, "GET", "/__sandbox/health")
  local conf_path = type(health) == "table" and type(health.config) == "string" and health.config
    or (st.dir .. "/sandbox_config.lua")
  local conf, lerr = require("dws_sandbox.config").load(conf_path)
  if not conf then return nil, lerr end
  local id = client_id
  if not id then
    local ids = {}
    for k in pairs(conf.clients) do ids[#ids + 1] = k end
    table.sort(ids)
    if #ids ~= 1 then
      return nil, "the sandbox serves " .. #ids .. " clients (" .. table.concat(ids, ", ")
        .. "): name one with --client-id"
    end
    id = ids[1]
  end
  local c = conf.clients[id]
  if not c then return nil, "the sandbox's config " .. conf_path .. " has no client " .. id end
  if not c.admin_token and not without_token then
    return nil, "client " .. id .. " has no admin_token in " .. conf_path .. ": add one (16+ characters) and restart"
  end
  return { status = st, client_id = id, token = c.admin_token, config = conf_path }
end

--- Where JSON text went wrong, for a person: "near byte 17 (line 2, column 7)". `err` is
-- dws.decode_json's message ("invalid JSON near byte N").
function M.json_error(text, err)
  local byte = tonumber(tostring(err):match("near byte (%d+)"))
  if not byte then return tostring(err) end
  local before = text:sub(1, byte - 1)
  local line = select(2, before:gsub("\n", "")) + 1
  local column = byte - (before:match(".*\n()") or 1) + 1
  return string.format("%s (line %d, column %d)", tostring(err), line, column)
end

--- JSON text laid out for reading: two-space indent, one member per line. Works on the encoder's
-- compact output (strings are copied as they are, so the bytes inside them do not change).
function M.pretty_json(text)
  local parts, depth, i, n = {}, 0, 1, #text
  local function newline() parts[#parts + 1] = "\n" .. ("  "):rep(depth) end
  while i <= n do
    local c = text:sub(i, i)
    if c == '"' then
      local j = i + 1
      while true do
        local k = text:find('["\\]', j)
        if not k then j = n break end
        if text:sub(k, k) == "\\" then j = k + 2 else j = k break end
      end
      parts[#parts + 1] = text:sub(i, j)
      i = j
    elseif c == "{" or c == "[" then
      local close = c == "{" and "}" or "]"
      if text:sub(i + 1, i + 1) == close then
        parts[#parts + 1] = c .. close
        i = i + 1
      else
        parts[#parts + 1] = c
        depth = depth + 1
        newline()
      end
    elseif c == "}" or c == "]" then
      depth = depth - 1
      newline()
      parts[#parts + 1] = c
    elseif c == "," then
      parts[#parts + 1] = ","
      newline()
    elseif c == ":" then
      parts[#parts + 1] = ": "
    else
      parts[#parts + 1] = c
    end
    i = i + 1
  end
  return table.concat(parts)
end

--- Client options from --sandbox DIR, --profile FILE and the environment (which fills what the
-- profile leaves out). Returns the options or nil, err.
function M.profile(a)
  local o = {}
  if a.sandbox then
    -- The client the sandbox serves (its config's only one, or --client-id), with the key the
    -- sandbox made for its merchant.
    local s, err = M.sandbox_client(a.sandbox, a.client_id, true)
    if not s then return nil, err end
    local st = s.status
    o = { client_id = s.client_id, private_key_file = st.merchant_private_key,
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
  if a.journal then o.journal = a.journal end
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
