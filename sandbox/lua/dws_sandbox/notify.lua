-- Binding-result notifications (notifyAddPaymentMethod.txt), posted from ngx.timer callbacks, never
-- inside the API request. Each attempt is signed afresh with the DWS key (a new Request-Time) over
-- "POST <notify path>\n<client-id>.<request-time>.<body>". Anything but the acknowledgement
-- SIGNING.md gives (dws_sandbox.strict.acknowledgement: HTTP 200, application/json, the SUCCESS body)
-- is re-sent on Antom's schedule times notify_scale, 8 attempts in all; the delivery log says why an
-- answer was not one (`refused`).
local core = require "dws.core"
local store = require "dws_sandbox.store"
local strict = require "dws_sandbox.strict"

local M = {}

-- Delay before each attempt, in seconds: 0 s, 2 min, 10 min, 10 min, 1 h, 2 h, 6 h, 15 h.
M.SCHEDULE = { 0, 120, 600, 600, 3600, 7200, 21600, 54000 }

local TIMEOUT_MS = 5000
local MAX_ANSWER = 65536

-- Bumped by reset: timers of an older generation stop re-sending. One worker, so a Lua upvalue is
-- shared by every timer (see config.lua: worker_processes 1).
local generation = 0
function M.reset()
  generation = generation + 1
end

local function parse_url(url)
  local scheme, host, port, path = url:match("^(https?)://([^/:]+):?(%d*)(.*)$")
  if not scheme then return nil end
  if path == "" then path = "/" end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  return { scheme = scheme, host = host, port = port, path = path, sign_path = path:match("^[^?#]*") }
end
M.parse_url = parse_url

-- The answer's Content-Type: its value, a table of values when given more than once, or nil.
local function content_type(head)
  local found
  for name, value in head:gmatch("\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
    if name:lower() == "content-type" then
      if found == nil then
        found = value
      elseif type(found) == "table" then
        found[#found + 1] = value
      else
        found = { found, value }
      end
    end
  end
  return found
end

-- One HTTP/1.0 POST over a cosocket (1.0: the answer is never chunked and ends with the connection).
-- -> status, body, Content-Type (as content_type gives it) | nil, err
local function post(u, headers, body)
  local sock = ngx.socket.tcp()
  sock:settimeout(TIMEOUT_MS)
  local ok, err = sock:connect(u.host, u.port)
  if not ok then return nil, "connect: " .. tostring(err) end
  if u.scheme == "https" then
    -- A test tool posting to the merchant's own test server: certificates are not checked here.
    ok, err = sock:sslhandshake(nil, u.host, false)
    if not ok then sock:close() return nil, "tls: " .. tostring(err) end
  end
  local lines = { "POST " .. u.path .. " HTTP/1.0", "Host: " .. u.host .. ":" .. u.port,
                  "Content-Length: " .. #body, "Connection: close" }
  for _, h in ipairs(headers) do lines[#lines + 1] = h[1] .. ": " .. h[2] end
  ok, err = sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. body)
  if not ok then sock:close() return nil, "send: " .. tostring(err) end
  local data, rerr, partial = sock:receive("*a")
  sock:close()
  data = data or partial
  if not data or data == "" then return nil, "receive: " .. tostring(rerr) end
  local status = tonumber(data:match("^HTTP/%d%.%d (%d%d%d)"))
  if not status then return nil, "receive: not an HTTP answer" end
  local answer = data:match("\r\n\r\n(.*)$") or ""
  return status, answer:sub(1, MAX_ANSWER), content_type(data:match("^(.-\r\n)\r\n") or "")
end

local deliver

local function schedule(job, attempt, delay)
  local ok, err = ngx.timer.at(delay, deliver, job, attempt)
  if not ok then ngx.log(ngx.ERR, "dws sandbox: notification timer: ", err) end
end

-- job: { client_id, url, body (JSON text), request_id, scale, key, gen }
deliver = function(premature, job, attempt)
  if premature or job.gen ~= generation then return end
  local u = parse_url(job.url)
  local time = tostring(core.time_ms())
  local sig = core.sign(job.key, "POST", u.sign_path, job.client_id, time, job.body)
  local headers = {
    { "Content-Type", "application/json; charset=UTF-8" },
    { "Client-Id", job.client_id },
    { "Request-Time", time },
    { "Signature", core.signature_header(sig, require("dws_sandbox.keys").version_of(job.key)) },
  }
  local status, answer, answer_type = post(u, headers, job.body)
  local ack, refused = false, nil
  if status then ack, refused = strict.acknowledgement(status, answer_type, answer) end
  -- The request as sent (method, path, headers, body): what a merchant's handler is given, so a
  -- spec can hand it to client:handle_notification as it stands.
  local sent = {}
  for _, h in ipairs(headers) do sent[h[1]] = h[2] end
  store.append("delivery", {
    requestId = job.request_id, client_id = job.client_id, url = job.url, attempt = attempt,
    status = status, acknowledged = ack, refused = refused, error = (not status) and answer or nil,
    answer = status and answer:sub(1, 512) or nil,
    request_time = time, time = core.time_ms(), body = job.body,
    method = "POST", path = u.path, headers = sent,
  })
  if not ack and attempt < #M.SCHEDULE then
    schedule(job, attempt + 1, M.SCHEDULE[attempt + 1] * job.scale)
  end
end

local function queue(job, delay)
  job.gen = generation
  schedule(job, 1, (delay or 0) + M.SCHEDULE[1] * job.scale)
end

-- Queue a notification; the first attempt runs after `delay` seconds (0: as soon as the request ends).
-- The last one per requestId is kept (without the key) for M.resend, also when the client has no
-- notify_url yet (nothing is sent then; a re-send once it has one delivers it).
function M.send(opts)
  local job = {
    client_id = opts.client_id, url = opts.url, request_id = opts.request_id,
    body = assert(core.json_encode(opts.notification, false)), scale = opts.scale,
  }
  store.set_json("notification:" .. opts.request_id, job)
  if not opts.url or not parse_url(opts.url) then return false end
  job.key = opts.key
  queue(job, opts.delay)
  return true
end

-- The admin re-send: the same body, signed afresh, on a new schedule of 8 attempts, to `url_of(client_id)`
-- (the client's notify_url now, which may have changed since).
-- -> true | nil, "unknown" (no binding notification for this requestId) | nil, "no_url", client_id
function M.resend(request_id, key, url_of)
  local job = store.get_json("notification:" .. request_id)
  if not job then return nil, "unknown" end
  job.url = url_of(job.client_id)
  if not job.url then return nil, "no_url", job.client_id end
  job.key = key
  queue(job, 0)
  return true
end

return M
