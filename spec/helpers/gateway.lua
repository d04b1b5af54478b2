-- The DWS gateway for a spec: the sandbox, the gateway (started with `dws gateway start`, as a user
-- would) on free loopback ports, and optionally the Python example backend receiving forwarded
-- events. Everything is a real process, stopped by pid.
--
--   local g = assert(require("helpers.gateway").start{ backend = true, store = "sqlite:...",
--                                                      config = { extra keys } })
--   g.url, g.notify_url, g.metrics_url, g.token, g.sb (the sandbox), g.dir, g.config_file
--   g:request(method, path, body, headers) -> status, headers, body
--   g:events() -> the events the backend handled (decoded), g:repeats() -> ids it saw again
--   g:dws(args...) -> exit status, output of bin/dws; g:stop()
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local sandbox = require "helpers.sandbox"

local M = {}
local G = {}
G.__index = G

local root = os.getenv("DWS_ROOT") or "."
local q = nginx.sh_quote
M.TOKEN = string.rep("a1", 20)
M.LIMITED_TOKEN = string.rep("b2", 20)
M.SECRET = "whsec_" .. core.base64_encode(string.rep("k", 32))

function G:dws(...) -- luacheck: ignore 212/self
  local args = {}
  for i = 1, select("#", ...) do args[#args + 1] = q(select(i, ...)) end
  local p = io.popen("lua5.4 " .. q(root .. "/bin/dws") .. " " .. table.concat(args, " ") .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc, (out:gsub("rc=%d+%s*$", ""))
end

function G:request(method, path, body, headers, base)
  self.http = self.http or require("dws.curl").new{ max_response_bytes = 1024 * 1024 }
  local h = {}
  for _, line in ipairs(headers or { "Authorization: Bearer " .. M.TOKEN }) do h[#h + 1] = line end
  if body then h[#h + 1] = "Content-Type: application/json" end
  local status, rh, rb = self.http:request((base or self.url) .. path, h, body, 30, 5, method)
  assert(status, "gateway request: " .. tostring(rh) .. " " .. tostring(rb))
  return status, rh, rb
end

local function lines(path)
  local out = {}
  local f = io.open(path, "r")
  if not f then return out end
  for line in f:lines() do out[#out + 1] = line end
  f:close()
  return out
end

function G:events()
  local out = {}
  for i, line in ipairs(lines(self.dir .. "/events.jsonl")) do out[i] = core.json_decode(line) end
  return out
end

function G:repeats()
  return lines(self.dir .. "/events.jsonl.repeats")
end

function G:start_backend()
  local p = io.popen("python3 " .. q(root .. "/examples/gateway/backend.py") .. " listen " .. self.backend_port ..
    " " .. q(M.SECRET) .. " " .. q(self.dir .. "/events.jsonl") .. " >" .. q(self.dir .. "/backend.log") ..
    " 2>&1 & echo $!")
  self.backend_pid = tonumber(p:read("*l"))
  p:close()
  local deadline = core.monotonic() + 10
  while not nginx.port_listening(self.backend_port) and core.monotonic() < deadline do core.sleep(0.02) end
  assert(nginx.port_listening(self.backend_port), "the Python backend did not start")
end

function G:stop_backend()
  if self.backend_pid then
    nginx.run("kill -TERM " .. self.backend_pid .. " 2>/dev/null")
    local deadline = core.monotonic() + 5
    while nginx.port_listening(self.backend_port) and core.monotonic() < deadline do core.sleep(0.02) end
    self.backend_pid = nil
  end
end

function G:error_log()
  return nginx.read_file(self.config.dir .. "/logs/error.log") or ""
end

function G:stop()
  if self.stopped then return end
  self.stopped = true
  for _, node in ipairs(self.nodes or {}) do node:stop() end
  self:stop_backend()
  if self.config_file then self:dws("gateway", "stop", "--config", self.config_file) end
  if self.http then self.http:close() end
  if self.sb and not self.shared then self.sb:stop() end
  nginx.rmdir(self.dir)
end

-- GET /metrics, parsed: { ["name{labels}"] = number }.
function G:metrics()
  local _, _, body = self:request("GET", "/metrics", nil, {}, self.metrics_url)
  local out = {}
  for line in body:gmatch("[^\n]+") do
    local k, v = line:match("^([^#%s][^%s]*) (%S+)$")
    if k then out[k] = tonumber(v) end
  end
  return out
end

-- How many addPaymentMethod bindings of the sandbox's test card the gateway `self` makes, one by one.
function G:bind_cards(n)
  local ids = {}
  for i = 1, n do
    local body = core.json_encode{ customerId = "2162878776333", env = { terminalType = "WEB" },
      card = { cardNo = "4111111111111111", securityCode = "123", expiryMonth = "12",
               expiryYear = tostring(tonumber(os.date("!%Y")) + 1),
               instUserName = { firstName = "Ada", lastName = "Lovelace" } } }
    local status, _, answer = self:request("POST", "/v1/bindings", body)
    assert(status == 202 or status == 200, "bind: HTTP " .. tostring(status) .. " " .. tostring(answer))
    ids[i] = core.json_decode(answer).binding.requestId
  end
  return ids
end

-- Poll fn until it returns a truthy value (no fixed sleeps); nil after `seconds`.
function M.eventually(fn, seconds)
  local deadline = core.monotonic() + (seconds or 20)
  repeat
    local v = fn()
    if v then return v end
    core.sleep(0.03)
  until core.monotonic() > deadline
  return fn()
end

-- opts: backend (start the Python backend), store, config (extra keys), sandbox (its options),
-- notify_to (the node whose notify URL the sandbox posts to: "this", or a port), first (another
-- gateway whose sandbox and backend this one shares: a second node)
function M.start(opts)
  opts = opts or {}
  local g = setmetatable({ dir = nginx.tmpdir("dws-gateway") }, G)
  local ports = nginx.free_ports(4)
  g.port, g.notify_port, g.metrics_port, g.backend_port = ports[1], ports[2], ports[3], ports[4]
  local first = opts.first
  if first then
    g.backend_port, g.shared = first.backend_port, true
    first.nodes = first.nodes or {}
    table.insert(first.nodes, g)
  end
  g.url = "http://127.0.0.1:" .. g.port
  g.notify_url = "http://127.0.0.1:" .. g.notify_port .. "/notify"
  g.metrics_url = "http://127.0.0.1:" .. g.metrics_port
  local sb, err = first and first.sb
  if not sb then
    local sbo = { notify_url = g.notify_url, notify_scale = 0.001 }
    for k, v in pairs(opts.sandbox or {}) do sbo[k] = v end
    sb, err = sandbox.start(sbo)
  end
  if not sb then
    g:stop()
    return nil, err
  end
  g.sb = sb
  nginx.write_file(g.dir .. "/merchant.pem", sb.merchant.private_key, "600")
  local c = {
    dir = g.dir .. "/gw", client_id = sb.merchant.client_id, private_key_file = g.dir .. "/merchant.pem",
    dws_public_key_file = sb.dws_public_key_file, gateway = sb.https_url, ca_file = sb.ca_file,
    server_name = "localhost", listen = "127.0.0.1:" .. g.port, notify_listen = "127.0.0.1:" .. g.notify_port,
    metrics_listen = "127.0.0.1:" .. g.metrics_port, store = opts.store, log_level = "info",
    backends = {
      shop = { token = M.TOKEN, apis = { "consultAddablePaymentMethod", "cacheCard", "addPaymentMethod", "bind_card",
                                         "binding", "resume_binding", "pending_bindings" } },
      reports = { token = M.LIMITED_TOKEN, apis = { "binding", "pending_bindings" } },
    },
    forward_to = "http://127.0.0.1:" .. g.backend_port .. "/events", forward_secret = M.SECRET,
    forward_retry_base = 0.2, forward_retry_max = 1, forward_interval = 0.05, forward_rescan = 1,
  }
  for k, v in pairs(opts.config or {}) do c[k] = v end
  g.config = c
  g.config_file = g.dir .. "/gateway.json"
  nginx.write_file(g.config_file, assert(core.json_encode(c)))
  if opts.backend then g:start_backend() end
  local rc, out = g:dws("gateway", "start", "--config", g.config_file)
  if rc ~= 0 then
    g:stop()
    return nil, "dws gateway start: " .. out
  end
  return g
end

return M
