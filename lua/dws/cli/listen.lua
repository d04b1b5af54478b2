-- `dws listen --sandbox DIR`: receive a sandbox client's binding notifications on this machine, as
-- `stripe listen` does for webhooks. It points the sandbox's deliveries for the client at itself
-- (the sandbox's admin call POST /__sandbox/notify_url, with the client's admin token from the
-- sandbox's config), listens on loopback, and hands each request to client:handle_notification, so
-- a delivery is verified with the DWS key, de-duplicated and journaled exactly as in a merchant's
-- nginx: with `--journal sqlite:/path`, a script sharing that journal sees its binding become final
-- (client:wait_binding). Each delivery is printed masked, answered with the exact acknowledgement,
-- and, with --forward-to, sent on as it came (same body bytes, same signed headers) to the
-- merchant's own endpoint. The listening path is the forward URL's path, because the signature
-- covers the path: the forwarded request verifies there only if it was signed for that path.
--
-- It runs until Ctrl-C (or --count deliveries), then points the client back where it was. Killed
-- otherwise, the sandbox keeps posting to the closed port, re-sending on its schedule, until
-- another `dws listen` or a restart.
local socket = require "socket"
local core = require "dws.core"
local dws = require "dws"
local redact = require "dws.redact"
local notification = require "dws.notification"
local util = require "dws.cli.util"

local M = {}

local out, fail = util.out, util.fail

-- A notification is a few hundred bytes; anything near this is not one (our choice).
local MAX_BODY = 1024 * 1024
-- How long one connection may take to send its request, and how often the accept loop wakes up
-- (so Ctrl-C, which the lua interpreter turns into an error at the next Lua instruction, is seen).
local IO_TIMEOUT, TICK = 10, 0.5

local REASONS = { [200] = "OK", [400] = "Bad Request", [401] = "Unauthorized", [405] = "Method Not Allowed",
                  [411] = "Length Required", [413] = "Payload Too Large", [500] = "Internal Server Error" }

-- The sandbox in dir, the client whose notifications are wanted, client options for it.
local function sandbox_setup(a)
  local s, err = util.sandbox_client(a.sandbox, a.client_id)
  if not s then return nil, err end
  local o
  if a.profile then
    o, err = util.profile{ profile = a.profile }
    if not o then return nil, err end
  else
    local st = s.status
    local priv, rerr = util.read_file(st.merchant_private_key)
    if not priv then
      return nil, "no merchant key for " .. s.client_id .. " (" .. tostring(rerr)
        .. "): give --profile FILE with its keys"
    end
    local pub, perr = util.read_file(st.dws_public_key)
    if not pub then return nil, perr end
    o = { private_key = priv, dws_public_key = pub, gateway = "https://127.0.0.1:" .. st.https_port, ca_file = st.ca }
  end
  o.client_id = s.client_id
  s.options = o
  return s
end

-- One HTTP/1.x request from conn -> { method, path, headers, body } | nil, status, why
local function read_request(conn)
  local line, err = conn:receive("*l")
  if not line then return nil, nil, err end
  local method, path = line:match("^(%u+) (%S+) HTTP/1%.[01]$")
  if not method then return nil, 400, "not an HTTP/1 request line" end
  local headers, length = {}, nil
  while true do
    local h, herr = conn:receive("*l")
    if not h then return nil, nil, herr end
    if h == "" then break end
    local name, value = h:match("^([^:%s]+):%s*(.-)%s*$")
    if not name then return nil, 400, "malformed header line" end
    local prev = headers[name]
    if prev == nil then
      headers[name] = value
    elseif type(prev) == "table" then
      prev[#prev + 1] = value
    else
      headers[name] = { prev, value } -- kept: handle_notification refuses a duplicated signature header
    end
    local lower = name:lower()
    if lower == "content-length" then length = tonumber(value) end
    if lower == "transfer-encoding" then return nil, 411, "chunked bodies are not taken (DWS sends Content-Length)" end
  end
  local body = ""
  if method == "POST" then
    if not length then return nil, 411, "no Content-Length" end
    if length > MAX_BODY then return nil, 413, "body over " .. MAX_BODY .. " bytes" end
    if length > 0 then
      local berr
      body, berr = conn:receive(length)
      if not body then return nil, nil, berr end
    end
  end
  return { method = method, path = path, headers = headers, body = body }
end

local function respond(conn, status, headers, body)
  local lines = { "HTTP/1.1 " .. status .. " " .. (REASONS[status] or "Status") }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  lines[#lines + 1] = "Content-Length: " .. #body
  lines[#lines + 1] = "Connection: close"
  conn:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. body)
end

local function header(headers, name)
  for k, v in pairs(headers) do
    if k:lower() == name then return v end
  end
end

-- The request as it came, to the merchant's endpoint: the same body bytes and signed headers.
local function forward(url, req, ca_file)
  local headers = {}
  for _, name in ipairs{ "content-type", "client-id", "request-time", "signature" } do
    local v = header(req.headers, name)
    if type(v) == "string" then headers[name] = v end
  end
  local res, err = util.post(url, headers, req.body, ca_file)
  if not res then return "failed: " .. tostring(err) end
  local verdict = res.status == 200 and res.body == notification.ACK_BODY and "acknowledged"
    or "not acknowledged: " .. redact.text((res.body or ""):sub(1, 200))
  return "HTTP " .. res.status .. " " .. verdict
end

local function stamp()
  return os.date("!%H:%M:%S")
end

--- `dws listen`. Returns the exit status.
function M.run(a)
  if a.count and a.count < 1 then return fail("--count must be a whole number from 1", 64) end
  if a.port and (a.port ~= math.floor(a.port) or a.port < 0 or a.port > 65535) then
    return fail("--port must be a port number", 64)
  end
  local path = "/notify"
  if a.forward_to then
    path = a.forward_to:match("^https?://[^/?#]+(/[^#]*)$") or (a.forward_to:match("^https?://[^/?#]+$") and "/")
    if not path then return fail("--forward-to must be an http(s) URL", 64) end
  end
  local s, err = sandbox_setup(a)
  if not s then return fail(err) end
  s.options.journal = a.journal
  s.options.notification_store = a.journal -- de-dup memory shared with the journal's other users
  s.options.logger = function(level, message)
    if level ~= "debug" then util.err("  ", level, ": ", message, "\n") end
  end
  local ok, client = pcall(dws.client, s.options)
  if not ok then return fail((tostring(client):gsub("^[^:]*:%d+: ", "")), 64) end

  local server, berr = socket.bind("127.0.0.1", a.port or 0)
  if not server then return fail("cannot listen on 127.0.0.1:" .. tostring(a.port or 0) .. ": " .. tostring(berr)) end
  server:settimeout(TICK)
  local _, port = server:getsockname()
  local url = "http://127.0.0.1:" .. port .. path
  local http_port = s.status.http_port
  local set, serr = util.sandbox_admin(http_port, "POST", "/__sandbox/notify_url", s.token,
    { client_id = s.client_id, notify_url = url })
  if not set then
    server:close()
    return fail(serr)
  end
  local previous = set.previous ~= core.null and set.previous or nil
  out("listening on ", url, " for ", s.client_id, " (the sandbox's notify URL for it now; was ",
    previous or "none", ")\n")
  out("journal: ", a.journal or "memory (this process only: give --journal to share it with a script)", "\n")
  if a.forward_to then out("forwarding each delivery as it came to ", a.forward_to, "\n") end
  out("ready (Ctrl-C to stop)\n")
  io.stdout:flush()

  local seen, limit = 0, a.count
  local function serve_one(conn)
    conn:settimeout(IO_TIMEOUT)
    local req, status, why = read_request(conn)
    if not req then
      out(stamp(), " refused a request: ", tostring(why), "\n")
      io.stdout:flush()
      if status then respond(conn, status, { ["Content-Type"] = "text/plain" }, tostring(why) .. "\n") end
      return
    end
    local said
    local code, headers, body = client:handle_notification(req, function(n, binding)
      local state, detail = notification.outcome(n)
      said = state .. (detail and (state == "BOUND" and " cardToken=" or " resultCode=") .. detail or "")
        .. (binding and "" or " (not in this journal)")
      return true
    end)
    local n = core.json_decode(req.body)
    local id = type(n) == "table" and type(n.requestId) == "string" and n.requestId or "?"
    -- Acknowledged without the handler running: the de-dup store had it (a repeat).
    if code == 200 and not said then said = "a repeat: already processed, acknowledged again" end
    out(stamp(), " ", req.method, " ", redact.printable(req.path), " requestId=", redact.printable(id), " -> ",
      code, code == 200 and " acknowledged" or (code >= 500 and " not processed (DWS re-sends)" or " refused"),
      said and (" (" .. said .. ")") or "", "\n")
    out("  body: ", redact.printable(req.body), "\n")
    if code ~= 200 and code < 500 then
      out("  refusal: ", body, "\n")
    end
    -- Printed before the answer goes out: whoever sent it can read the line once answered.
    io.stdout:flush()
    respond(conn, code, headers, body)
    if a.forward_to then out("  forwarded: ", forward(a.forward_to, req, a.forward_ca_file), "\n") end
  end

  local loop_ok, loop_err = pcall(function()
    while not limit or seen < limit do
      local conn = server:accept()
      if conn then
        serve_one(conn)
        conn:close()
        seen = seen + 1
        io.stdout:flush()
      end
    end
  end)
  server:close()
  -- Back where it was: the next deliveries go to the client's own URL again (or nowhere).
  local _, rerr = util.sandbox_admin(http_port, "POST", "/__sandbox/notify_url", s.token,
    { client_id = s.client_id, notify_url = previous or core.null })
  if rerr then util.err("dws: could not point ", s.client_id, " back: ", rerr, "\n") end
  out("stopped after ", seen, seen == 1 and " delivery" or " deliveries", "; notify URL back to ", previous or "none",
    "\n")
  client:close()
  if not loop_ok then
    if tostring(loop_err):find("interrupted!", 1, true) then return 130 end
    return fail(loop_err)
  end
  return 0
end

return M
