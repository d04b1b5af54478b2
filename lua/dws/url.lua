--- URLs as lua-dws reads them: the gateway option, the cosocket transport's request URLs and
-- `redis://` store specs are all split here, by one rule, so that what the client accepts is what
-- the transport can reach and the store can connect to.
-- @module dws.url
local M = {}

local byte, lower, tonumber = string.byte, string.lower, tonumber

--- Split `s` into its parts: `scheme://[userinfo@]host[:port][path][?query][#fragment]`.
-- The scheme is lower-cased; an IPv6 host comes without its brackets (and `ipv6 = true`); the port
-- is a number from 1 to 65535 or nil when absent; `path` is what follows the authority up to `?`
-- or `#` (possibly empty); `authority` is the text between `//` and the path, as written.
-- syntax: `parts, err = dws.url.split(s)`
-- @tparam string s
-- @treturn table `{ scheme, userinfo, host, ipv6, port, path, query, authority }`
-- @treturn[2] nil
-- @treturn[2] string what is wrong with it
function M.split(s)
  if type(s) ~= "string" then return nil, "a URL must be a string" end
  local scheme, rest = s:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "not scheme://host" end
  local authority, path, query = rest:match("^([^/?#]*)([^?#]*)%??([^#]*)")
  local userinfo, hostport = authority:match("^(.*)@([^@]*)$")
  if not userinfo then hostport = authority end
  local host, port, ipv6
  if byte(hostport, 1) == 91 then -- "[v6]:port"
    host, port = hostport:match("^%[([%x:.]+)%]:?(%d*)$")
    ipv6 = true
  else
    host, port = hostport:match("^([^:]+):?(%d*)$")
  end
  if not host or host == "" then return nil, "no host" end
  if port ~= "" then
    port = #port <= 5 and tonumber(port) or nil
    if not port or port < 1 or port > 65535 then return nil, "a port that is not 1 to 65535" end
  else
    port = nil
  end
  return { scheme = lower(scheme), userinfo = userinfo, host = host, ipv6 = ipv6 or false, port = port,
           path = path, query = query ~= "" and query or nil, authority = authority }
end

--- Whether `host` (as `split` returns it) is a plain name or address: letters, digits and `._-`,
-- or an IPv6 address. Nothing else (spaces, control characters, `%`) can reach a socket.
-- syntax: `ok = dws.url.plain_host(host, ipv6)`
function M.plain_host(host, ipv6)
  if ipv6 then return host:find("^[%x:.]+$") ~= nil end
  return host:find("^[%w._%-]+$") ~= nil
end

return M
