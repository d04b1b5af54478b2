-- The `dws` command line (bin/dws): keys, signatures, calls, the bind-card flow, notifications and
-- the sandbox, for merchant scripts and for debugging an integration.
--
-- cli.main(args) returns the exit status. Exit statuses: 0 success (S), 1 failure (F, a signature
-- that does not verify, a notification not acknowledged), 2 unknown outcome (U), 64 usage.
-- Nothing printed carries a card number or security code: request bodies are shown through
-- dws.redact, and `bind` shows only the outcome's mask.
local argparse = require "argparse"
local core = require "dws.core"
local dws = require "dws"
local api = require "dws.api"
local redact = require "dws.redact"
local verify_diag = require "dws.cli.verify"
local util = require "dws.cli.util"

local M = {}

local EXIT_OK, EXIT_F, EXIT_U, EXIT_USAGE = 0, 1, 2, 64
M.EXIT_USAGE = EXIT_USAGE

local out, fail = util.out, util.fail

local function parser()
  local p = argparse("dws", "Alipay+ DWS payment-method binding from the command line (lua-dws "
    .. dws.VERSION .. ").")
  p:command_target("command")
  p:require_command(true)
  p:help_max_width(100)

  local keygen = p:command("keygen", "Make an RSA key pair: private key as PKCS#8 PEM (0600), public key as "
    .. "PEM and as the bare base64 DWS's portal takes.")
  keygen:option("--out", "Directory to write to.", ".")
  keygen:option("--name", "File name prefix.", "merchant")
  keygen:option("--bits", "Key size.", "2048"):convert(tonumber)
  keygen:option("--pkcs11", "Generate inside this PKCS#11 token instead (a pkcs11: URI naming token= and "
    .. "object=, with module-path= and pin-source=file:, or DWS_PKCS11_PIN): only the public half leaves it.")
  keygen:option("--key-version", "keyVersion the pair is for (rotation): files named <name>_v<N>_*, and "
    .. "the key_version to configure with it is printed.")

  local function message_options(c)
    c:option("--client-id", "Client-Id."):args(1)
    c:option("--path", "Request path (as sent), e.g. /ams/api/v1/paymentMethods/cacheCard.")
    c:option("--api", "API name instead of --path (a SANDBOX_ client id gets the sandbox path).")
    c:option("--method", "HTTP method.", "POST")
    c:option("--time", "Request-Time / response-time, verbatim.")
    c:argument("body", "Body file ('-' or absent: stdin)."):args("?")
  end

  local sign = p:command("sign", "Print the exact content that is signed, and the Signature header.")
  message_options(sign)
  sign:option("--private-key", "Merchant private key file (PEM or bare base64)."):count(1)
  sign:option("--key-version", "keyVersion.", "1")

  local verify = p:command("verify", "Verify a signature; on a mismatch, say which part differs.")
  message_options(verify)
  verify:option("--public-key", "The public key to verify with (the DWS key for answers and "
    .. "notifications; yours to check a request you made)."):count(1)
  verify:option("--signature", "The Signature header value, or the signature alone."):count(1)
  verify:option("--private-key", "Your own private key: lets verify recognise it (never printed).")
  verify:option("--try-path", "Candidate path to try (e.g. the path your framework saw)."):count("*")
  verify:option("--try-time", "Candidate time to try."):count("*")
  verify:option("--try-client-id", "Candidate client id to try."):count("*")
  verify:option("--try-body", "Candidate body file (e.g. the bytes actually sent)."):count("*")
  verify:option("--try-key", "Candidate public key file."):count("*")

  local function profile_options(c)
    c:option("--profile", "Profile: a Lua file returning client options, or a JSON object "
      .. "(client_id, private_key[_file], dws_public_key[_file], gateway, ca_file, ...). "
      .. "Environment: DWS_CLIENT_ID, DWS_PRIVATE_KEY[_FILE], DWS_PUBLIC_KEY[_FILE], DWS_GATEWAY, DWS_CA_FILE.")
    c:option("--sandbox", "Act as the merchant of the sandbox running in this directory (its keys, its CA).")
    c:option("--client-id", "With --sandbox: the sandbox client to act as (default: its only client).")
  end

  local call = p:command("call", "Call an API; print the verified answer as JSON (exit 0 S, 1 F, 2 U).")
  call:argument("api", "API name (cacheCard) or method (cache_card).")
  call:argument("request", "Request JSON file ('-' or absent: stdin)."):args("?")
  call:flag("--pretty", "Print the answer indented, one member per line.")
  profile_options(call)

  local bind = p:command("bind", "Bind a test card, printing each step (masked).")
  profile_options(bind)
  bind:option("--customer-id", "customerId.", "2162878776333")
  bind:option("--card", "Card number (default: the sandbox's test VISA); - reads the card number and " ..
    "security code from stdin (a real card: never on a command line, which other users can see).",
    "4111111111111111")
  bind:option("--security-code", "Security code.", "123")
  bind:option("--expiry", "MM/YYYY (default: December of next year).")
  bind:option("--first-name", "Card holder first name.", "Ada")
  bind:option("--last-name", "Card holder last name.", "Lovelace")
  bind:option("--terminal-type", "env.terminalType.", "WEB")
  bind:option("--journal", "The binding journal, a dws.store spec (sqlite:/path/dws.db); with the same "
    .. "--journal, dws listen records the result there.")
  bind:option("--wait", "Seconds to wait for the final result in the journal (client:wait_binding; needs "
    .. "--journal shared with whatever receives the notification, e.g. dws listen).")

  local notify = p:command("notify", "Binding notifications: send one to an endpoint, or have the sandbox "
    .. "send one again.")
  notify:command_target("notify_command")
  local send = notify:command("send", "Post a signed binding notification to a merchant URL; report the ack "
    .. "(exit 0 acknowledged, 1 not).")
  send:argument("url", "The merchant's notify URL (with --sandbox: default the client's notify URL now)."):args("?")
  send:option("--sandbox", "A running sandbox's directory: sign with its DWS key as its client (--client-id "
    .. "when it has several).")
  send:option("--dws-private-key", "The DWS private key that signs (e.g. DIR/keys/dws_private.pem of a "
    .. "sandbox).")
  send:option("--client-id", "client-id header (your Client-Id).")
  send:option("--body", "Notification body file (default: a sample binding result).")
  send:option("--request-id", "requestId of the sample body (default: a new UUID).")
  send:option("--ca-file", "CA bundle for an https URL.")
  send:option("--time", "request-time (default: now, milliseconds).")
  local resend = notify:command("resend", "Ask a running sandbox to send a binding notification again, to the "
    .. "client's notify URL as it is now (e.g. a dws listen started since).")
  resend:argument("request_id", "The addPaymentMethod requestId.")
  resend:option("--sandbox", "The sandbox's directory."):count(1)

  local listen = p:command("listen", "Receive a sandbox client's binding notifications here: points the "
    .. "sandbox's deliveries for the client at this command, verifies, de-duplicates and journals each with "
    .. "client:handle_notification, prints it masked, answers the exact acknowledgement, and forwards it "
    .. "as it came with --forward-to. Runs until Ctrl-C or --count deliveries, then points the client back.")
  listen:option("--sandbox", "The directory of the running sandbox."):count(1)
  listen:option("--journal", "The binding journal and de-dup store, a dws.store spec (sqlite:/path/dws.db): "
    .. "give your script's client the same, and client:wait_binding sees the result. Default: memory.")
  listen:option("--forward-to", "Also send each delivery, same body bytes and signed headers, to this URL "
    .. "(your endpoint); the listening path is its path, which the signature covers.")
  listen:option("--forward-ca-file", "CA bundle for an https --forward-to.")
  listen:option("--client-id", "The sandbox client whose notifications to receive (default: its only client).")
  listen:option("--profile", "Client options (keys) for that client, when the sandbox's own merchant key "
    .. "is not its key: a Lua file or JSON object as for dws call.")
  listen:option("--port", "Loopback port to listen on (default: a free one)."):convert(tonumber)
  listen:option("--count", "Stop after this many deliveries."):convert(math.tointeger)

  local sandbox = p:command("sandbox", "Start, stop or query the local DWS sandbox (dws-sandbox; "
    .. "docs/sandbox.md).")
  sandbox:command_target("sandbox_command")
  local SANDBOX_COMMANDS = {
    { "start", "Start the sandbox (generating what DIR lacks: CA, certificates, keys, a demo client); print "
      .. "http= https= dir= ca_file= client_id=." },
    { "stop", "Stop the sandbox running in DIR." },
    { "status", "Print running pid= http= https= dir= ca_file= client_id=; exit 3 when none runs in DIR." },
  }
  for _, cmd in ipairs(SANDBOX_COMMANDS) do
    local c = sandbox:command(cmd[1], cmd[2])
    c:option("--dir", "Sandbox directory (default: $DWS_SANDBOX_DIR, else /tmp/dws-sandbox-$USER).")
    if cmd[1] == "start" then
      c:option("--http-port", "Port of the admin endpoints and the plain-HTTP APIs (default: "
        .. "$DWS_SANDBOX_HTTP_PORT, else 12080; 0: a free one).")
      c:option("--https-port", "Port of the HTTPS gateway clients use (default: $DWS_SANDBOX_HTTPS_PORT, "
        .. "else 12443; 0: a free one).")
      c:flag("--free-ports", "Listen on free ports chosen at start (several sandboxes at once, as in tests).")
      c:option("--config", "A config file of your own (clients, their keys and notify URLs) instead of "
        .. "DIR/sandbox_config.lua.")
      c:flag("--foreground", "Stay until Ctrl-C or SIGTERM, then stop the sandbox.")
    end
  end

  local gateway = p:command("gateway", "The DWS gateway: lua-dws in nginx for backends in any language "
    .. "(docs/gateway.md).")
  gateway:command_target("gateway_command")
  local gateway_help = {
    start = "Generate the nginx.conf in the config's dir and start nginx; wait until it listens.",
    stop = "Stop the gateway's nginx (QUIT; KILL after 10 s).",
    status = "Say whether the gateway runs (exit 3 when not).",
    reload = "Re-read the configuration: a new nginx.conf, checked, then HUP.",
    config = "Check the configuration file; --print shows the nginx.conf made from it.",
  }
  for _, name in ipairs{ "start", "stop", "status", "reload", "config" } do
    local c = gateway:command(name, gateway_help[name])
    c:option("--config", "The gateway's configuration file (JSON)."):count(1)
    if name == "config" then c:flag("--print", "Print the generated nginx.conf.") end
  end
  return p
end

---------------------------------------------------------------------------------------------------
-- keygen

local function cmd_keygen(a)
  return require("dws.cli.keygen").run(a)
end

---------------------------------------------------------------------------------------------------
-- sign / verify

-- The message parts of sign/verify: method, path, client id, time, body.
local function message_parts(a)
  if not a.client_id then return nil, "--client-id is required" end
  local path = a.path
  if a.api then
    local def = api.by_name[a.api] or api.by_method[a.api]
    if not def then return nil, "unknown API " .. a.api end
    path = def.path
    -- The same rewrite every SDK makes (SIGNING.md): sent and signed.
    if a.client_id:sub(1, 8) == "SANDBOX_" then path = path:gsub("^/ams/api/", "/ams/sandbox/api/") end
  end
  if not path then return nil, "--path or --api is required" end
  local body, err = util.read_input(a.body)
  if not body then return nil, err end
  return { method = a.method, path = path, client_id = a.client_id,
           time = a.time or string.format("%d", core.time_ms()), body = body }
end
M.message_parts = message_parts

local function show_content(m)
  local content = m.method .. " " .. m.path .. "\n" .. m.client_id .. "." .. m.time .. "." .. m.body
  local shown = redact.text(content)
  out("content to sign (", #content, " bytes) between the lines:\n-----\n", shown, "\n-----\n")
  if shown ~= content then out("(card data masked above; the signature covers the real digits)\n") end
end

local function cmd_sign(a)
  local m, err = message_parts(a)
  if not m then return fail(err, EXIT_USAGE) end
  local text, rerr = a.private_key, nil
  if not text:find("^pkcs11:") then text, rerr = require("dws.cli.keyfile").read_private(text, util.read_file) end
  if not text then return fail(rerr) end
  local key, kerr = core.private_key(text)
  if not key then return fail(kerr) end
  local b64 = assert(core.sign(key, m.method, m.path, m.client_id, m.time, m.body))
  show_content(m)
  out("Client-Id: ", m.client_id, "\n")
  out("Request-Time: ", m.time, "\n")
  out("Signature: ", core.signature_header(b64, a.key_version), "\n")
  return EXIT_OK
end

local function cmd_verify(a)
  local m, err = message_parts(a)
  if not m then return fail(err, EXIT_USAGE) end
  if not a.time then return fail("--time is required (the Request-Time or response-time, verbatim)", EXIT_USAGE) end
  local report, verr = verify_diag.run(m, a)
  if not report then return fail(verr) end
  show_content(m)
  for _, line in ipairs(report.lines) do out(line, "\n") end
  return report.verified and EXIT_OK or EXIT_F
end

---------------------------------------------------------------------------------------------------
-- call / bind

local function result_exit(err)
  if err.status == "U" then return EXIT_U end
  return EXIT_F
end

local function cmd_call(a)
  local def = api.by_name[a.api] or api.by_method[a.api]
  if not def then return fail("unknown API " .. a.api .. " (one of consultAddablePaymentMethod, cacheCard, "
    .. "addPaymentMethod)", EXIT_USAGE) end
  local client, cerr = util.client(a)
  if not client then return fail(cerr, EXIT_USAGE) end
  local text, rerr = util.read_input(a.request)
  if not text then return fail(rerr, EXIT_USAGE) end
  local request, jerr = dws.decode_json(text)
  if request == nil then
    return fail("the request " .. (a.request and a.request ~= "-" and a.request or "on stdin") .. " is not JSON: "
      .. util.json_error(text, jerr), EXIT_USAGE)
  end
  if type(request) ~= "table" or getmetatable(request) == core.array_mt then
    return fail("the request is not a JSON object", EXIT_USAGE)
  end
  local res, err = client:call(def.name, request)
  client:close()
  if not res then
    util.err(tostring(err), "\n")
    return result_exit(err)
  end
  -- The answer is verified; masked all the same, so a gateway that echoes a number cannot leak it here.
  local shown = redact.text(assert(core.json_encode(res, false)))
  out(a.pretty and util.pretty_json(shown) or shown, "\n")
  return EXIT_OK
end

local function cmd_bind(a)
  local client, cerr = util.client(a, function(level, _, fields)
    if type(fields) ~= "table" then return end
    if fields.event == "result" then
      out(string.format("%-28s %s %s\n", fields.api, tostring(fields.result_status), tostring(fields.result_code)))
    elseif fields.event == "retry" then
      out(string.format("%-28s retry after %s (%.2f s)\n", fields.api, tostring(fields.code), fields.delay or 0))
    elseif fields.event == "error" and level == "error" then
      out(string.format("%-28s %s %s\n", tostring(fields.api), tostring(fields.status), tostring(fields.code)))
    end
  end)
  if not client then return fail(cerr, EXIT_USAGE) end
  local wait = a.wait and tonumber(a.wait)
  if a.wait and not (wait and wait >= 0) then return fail("--wait must be seconds", EXIT_USAGE) end
  if wait and not a.journal then
    return fail("--wait needs --journal: the result reaches this command only through a journal it shares "
      .. "(with dws listen --journal, or your server)", EXIT_USAGE)
  end
  local month, year = (a.expiry or ""):match("^(%d%d?)/(%d%d%d%d)$")
  if a.expiry and not month then return fail("--expiry must be MM/YYYY", EXIT_USAGE) end
  if not month then month, year = "12", tostring(tonumber(os.date("!%Y")) + 1) end
  if a.card == "-" then
    -- "NUMBER CODE" (one line, or two): read here so the digits never appear in argv (ps, history).
    local number, code = (io.read("a") or ""):match("^%s*(%d+)%s+(%d+)%s*$")
    if not number then return fail("--card -: stdin must hold the card number and the security code", EXIT_USAGE) end
    a.card, a.security_code = number, code
  end
  local card = { cardNo = a.card, securityCode = a.security_code, expiryMonth = string.format("%02d", tonumber(month)),
                 expiryYear = year, instUserName = { firstName = a.first_name, lastName = a.last_name } }
  out("binding ", redact.card_number(a.card), " for customer ", a.customer_id, "\n")
  local outcome, err = client:bind_card{ customerId = a.customer_id, env = { terminalType = a.terminal_type },
                                         card = card }
  if outcome and wait and (outcome.status == "ACCEPTED" or outcome.status == "ACTION_REQUIRED") then
    out("status       ", outcome.status, ": waiting up to ", wait, " s for the notification\n")
    local b, werr = client:wait_binding(outcome.requestId, { timeout = wait })
    if b then
      outcome = b
    else
      util.err(tostring(werr), "\n")
      client:close()
      return EXIT_U
    end
  end
  client:close()
  if not outcome then
    util.err(tostring(err), "\n")
    return result_exit(err)
  end
  for _, k in ipairs{ "status", "requestId", "brand", "mask", "last4", "cardToken", "expiryTime", "redirectUrl" } do
    if outcome[k] ~= nil then out(string.format("%-12s %s\n", k, tostring(outcome[k]))) end
  end
  if outcome.actionForm then out("actionForm   ", redact.text(assert(core.json_encode(outcome.actionForm))), "\n") end
  if outcome.status == "ACCEPTED" or outcome.status == "ACTION_REQUIRED" then
    out("the final result (BOUND or FAILED) comes by notification to the merchant's notify URL; to see it "
      .. "here, run `dws listen --sandbox DIR --journal SPEC` and bind with the same --journal and --wait N\n")
  elseif outcome.status == "UNKNOWN" then
    -- Not an error: DWS may have bound the card. The journal can resume it with the same bytes.
    out("unknown outcome: resume with client:resume_binding(requestId)\n")
    return EXIT_U
  elseif outcome.status == "FAILED" then
    return EXIT_F
  end
  return EXIT_OK
end

---------------------------------------------------------------------------------------------------
-- notify / sandbox

local function cmd_notify(a)
  if a.notify_command == "resend" then
    local control, load_err = util.sandbox_control()
    if not control then return fail(load_err) end
    local st = control.status(a.sandbox)
    if not st then return fail("no sandbox running in " .. a.sandbox) end
    local res, err = util.post("http://127.0.0.1:" .. st.http_port .. "/__sandbox/notifications/resend",
      { ["Content-Type"] = "application/json" }, assert(core.json_encode({ requestId = a.request_id })))
    if not res then return fail(err) end
    if res.status == 200 then
      out("queued: the notification for ", a.request_id, " goes out again, signed afresh\n")
      return EXIT_OK
    end
    local t = dws.decode_json(res.body or "")
    local why = type(t) == "table" and type(t.error) == "string" and t.error
      or ("HTTP " .. res.status .. " " .. tostring(res.body))
    if type(t) == "table" and t.reason == "no_notify_url" then
      why = why .. "\nTo receive it here: `dws listen --sandbox " .. a.sandbox .. "` in another terminal, then this "
        .. "command again."
    end
    return fail(why)
  end
  return require("dws.cli.notify").send(a)
end

local function cmd_sandbox(a)
  -- DIR and the ports default as the launcher defaults them (one place: dws_sandbox.control).
  local args = { a.sandbox_command }
  for _, k in ipairs{ "dir", "http_port", "https_port", "config" } do
    if a[k] then
      args[#args + 1] = "--" .. k:gsub("_", "-")
      args[#args + 1] = a[k]
    end
  end
  for _, k in ipairs{ "free_ports", "foreground" } do
    if a[k] then args[#args + 1] = "--" .. k:gsub("_", "-") end
  end
  -- The launcher's own logic (the dws-sandbox rock): nothing re-implemented here.
  local control, err = util.sandbox_control()
  if not control then return fail(err) end
  return control.main(args)
end

local function cmd_listen(a)
  return require("dws.cli.listen").run(a)
end

local COMMANDS = { keygen = cmd_keygen, sign = cmd_sign, verify = cmd_verify, call = cmd_call, bind = cmd_bind,
                   notify = cmd_notify, listen = cmd_listen, sandbox = cmd_sandbox,
                   gateway = function(a) return require("dws.cli.gateway").main(a) end }

--- Run the command line `args` (an array of strings). Returns the exit status.
function M.main(args)
  local p = parser()
  local ok, a = p:pparse(args)
  if not ok then
    util.err(p:get_usage(), "\n\n", "dws: ", a, "\n")
    return EXIT_USAGE
  end
  return COMMANDS[a.command](a)
end

return M
