--- The transport over libcurl (`dws.curl`) that `dws.client` uses outside nginx. The interface a
-- transport of your own (`opts.transport`) implements: `request`, and optionally `sleep`, `stats`,
-- `close`.
-- @module dws.transport.curl

-- Transport over dws.curl (libcurl), for plain Lua 5.4 and LuaJIT.
--
--   local t = require("dws.transport.curl").new{ ca_file =, proxy =, user_agent =, verify =,
--                                                 max_response_bytes =, timeout =, connect_timeout = }
--   t:request{ method =, url =, headers = { Name = value }, body =, timeout =, connect_timeout = }
--     -> { status =, headers =, body = } | nil, kind, message
--
-- One libcurl handle per transport, so sequential calls share one kept-alive connection.
local curl = require "dws.curl"
local defaults = require("dws.defaults").options

local pairs, type, tostring, setmetatable, error = pairs, type, tostring, setmetatable, error
local concat = table.concat

local M = {}

local Transport = {}
Transport.__index = Transport

-- dws.curl sends a dws.buffer body in place: dws.client then keeps request bodies out of Lua strings.
Transport.body_buffers = true

--- A transport: one libcurl handle, so sequential calls share one kept-alive connection.
-- syntax: `t = require("dws.transport.curl").new{ ca_file =, proxy =, user_agent =, verify =,
-- max_response_bytes =, timeout =, connect_timeout = }`
-- @tparam[opt] table opts `verify` defaults to true (peer and host verified, TLS 1.2 at least)
-- @treturn Transport the transport
-- @raise when `opts` is not a table
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("dws.transport.curl.new: opts must be a table", 2) end
  local handle = curl.new{
    ca_file = opts.ca_file,
    proxy = opts.proxy,
    user_agent = opts.user_agent,
    verify = opts.verify,
    max_response_bytes = opts.max_response_bytes or defaults.max_response_bytes,
  }
  return setmetatable({
    handle = handle,
    timeout = opts.timeout or defaults.timeout,
    connect_timeout = opts.connect_timeout or defaults.connect_timeout,
    -- Reused for every call: only its contents change.
    lines = {},
  }, Transport)
end

-- { Name = value | {v1, v2} } -> the reusable array of "Name: value" lines.
local function header_lines(lines, headers)
  local n = 0
  if headers then
    for name, value in pairs(headers) do
      if type(value) == "table" then
        for i = 1, #value do
          n = n + 1
          lines[n] = concat{ name, ": ", tostring(value[i]) }
        end
      else
        n = n + 1
        lines[n] = name .. ": " .. tostring(value)
      end
    end
  end
  for i = #lines, n + 1, -1 do lines[i] = nil end
  return lines
end

--- A transport, as `new` makes it.
-- @type Transport

--- Send one request; libcurl never resends it on its own.
-- syntax: `res, kind, message = transport:request{ method =, url =, headers =, body =, timeout =, connect_timeout = }`
-- @tparam table req `method` ("POST"), `url`, `headers` (name -> value), `body`, `timeout`,
-- `connect_timeout` (seconds)
-- @treturn table `{ status =, headers = { ["lower-name"] = value or {v1, v2} }, body = }`
-- @treturn[2] nil
-- @treturn[2] string kind: `"timeout"`, `"connect"`, `"tls"`, `"too_large"`, `"protocol"` or `"error"`
-- @treturn[2] string message
function Transport:request(req)
  local method, body = req.method, req.body
  if body == nil and method == "POST" then body = "" end
  local lines = header_lines(self.lines, req.headers)
  -- dws.curl sends GET without a body and POST with one: name the method only otherwise.
  if method == nil or (method == "GET" and body == nil) or (method == "POST" and body ~= nil) then
    method = nil
  end
  local status, headers, rbody = self.handle:request(req.url, lines, body,
    req.timeout or self.timeout, req.connect_timeout or self.connect_timeout, method)
  if not status then return nil, headers, rbody end
  return { status = status, headers = headers, body = rbody }
end

local sleep_impl
local function resolve_sleep()
  local ok, core = pcall(require, "dws.core")
  if ok and type(core) == "table" and type(core.sleep) == "function" then
    return core.sleep
  end
  -- Coarse fallback when the C core is unavailable: the shell's sleep, never a busy loop.
  return function(s)
    os.execute("sleep " .. string.format("%.3f", s))
  end
end

--- Wait between retries (`dws.core.sleep`).
-- syntax: `transport:sleep(seconds)`
-- @tparam number seconds
function Transport:sleep(seconds) -- luacheck: ignore 212/self
  if not sleep_impl then sleep_impl = resolve_sleep() end
  if seconds and seconds > 0 then sleep_impl(seconds) end
end

--- Counters since the transport was made.
-- syntax: `stats = transport:stats()`
-- @treturn table `{ connects = <connections opened>, requests = <n> }`
function Transport:stats()
  return self.handle:stats()
end

--- Close the connection and the handle; idempotent.
-- syntax: `transport:close()`
function Transport:close()
  self.handle:close()
end

--- Module functions.
-- @section module

--- The method table of transports (for wrapping them).
-- @table Transport
M.Transport = Transport
--- `{ Name = value | {v1, v2} }` into the array `lines` of "Name: value" strings (reused; extra
-- entries cleared), as dws.curl takes them; dws.multi builds its requests' header lines with it too.
-- syntax: `lines = transport.header_lines(lines, headers)`
-- @tparam table lines the array to fill
-- @tparam table headers
-- @treturn table lines
-- @local
M.header_lines = header_lines

return M
