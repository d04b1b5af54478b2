--- Where lua-dws is running: inside nginx (OpenResty's cosockets, light threads and timers) or
-- in a plain Lua process. The one place that asks.
-- @module dws.runtime
local M = {}

--- The nginx phase when running inside nginx with the Lua module, else nil.
-- syntax: `phase = dws.runtime.nginx_phase()`
function M.nginx_phase()
  if type(ngx) ~= "table" or type(ngx.get_phase) ~= "function" then return nil end
  local ok, phase = pcall(ngx.get_phase)
  if ok and type(phase) == "string" then return phase end
  return nil
end

--- Whether this is a plain Lua process (no nginx around it).
function M.plain()
  return M.nginx_phase() == nil
end

-- Phases in which nginx lets a handler yield (ngx.sleep) and start timers.
local YIELDING = { rewrite = true, access = true, content = true, timer = true, ssl_cert = true,
                   ssl_session_fetch = true, ssl_client_hello = true }

--- Wait `seconds`: ngx.sleep where nginx lets this handler yield, else dws.core.sleep (which
-- blocks the process, or the nginx worker in a phase that cannot yield).
function M.sleep(seconds)
  if YIELDING[M.nginx_phase()] then return ngx.sleep(seconds) end
  return require("dws.core").sleep(seconds)
end

--- Run `fn(premature)` in the background: an nginx timer where one can be started. Returns true,
-- or nil, err when there is no background here (a plain Lua process) or nginx refused the timer.
function M.background(fn)
  if not YIELDING[M.nginx_phase()] or type(ngx.timer) ~= "table" then
    return nil, "no background timers outside nginx"
  end
  return ngx.timer.at(0, fn)
end

return M
