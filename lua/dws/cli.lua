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
    c:option("--sandbox", "Use the demo merchant of the sandbox running in this directory.")
  end

  local call = p:command("call", "Call an API; print the verified answer as JSON (exit 0 S, 1 F, 2 U).")
  call:argument("api", "API name (cacheCard) or method (cache_card).")
  call:argument("request", "Request JSON file ('-' or absent: stdin)."):args("?")
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

  local notify = p:command("notify", "Notifications.")
  notify:command_target("notify_command")
  local send = notify:command("send", "Post a signed binding notification to a merchant URL; report the ack.")
  send:argument("url", "The merchant's notify URL.")
  send:option("--dws-private-key", "The DWS private key that signs (e.g. DIR/keys/dws_private.pem of a "
    .. "sandbox)."):count(1)
  send:option("--client-id", "client-id header (your Client-Id)."):count(1)
  send:option("--body", "Notification body file (default: a sample binding result).")
  send:option("--request-id", "requestId of the sample body (default: a new UUID).")
  send:option("--ca-file", "CA bundle for an https URL.")
  send:option("--time", "request-time (default: now, milliseconds).")
  local resend = notify:command("resend", "Ask a running sandbox to send a binding notification again.")
  resend:argument("request_id", "The addPaymentMethod requestId.")
  resend:option("--sandbox", "The sandbox's directory."):count(1)

  local sandbox = p:command("sandbox", "Start, stop or query the local DWS sandbox (dws-sandbox).")
  sandbox:command_target("sandbox_command")
  for _, name in ipairs{ "start", "stop", "status" } do
    local c = sandbox:command(name)
    c:option("--dir", "Sandbox directory (default: $DWS_SANDBOX_DIR)."):default(os.getenv("DWS_SANDBOX_DIR"))
    if name == "start" then
      c:option("--http-port")
      c:option("--https-port")
      c:option("--config")
    end
  end
  return p
end

---------------------------------------------------------------------------------------------------
-- keygen

local function cmd_keygen(a)
  if not a.bits then return fail("--bits must be a number") end
  local ok, priv, pub
  if a.pkcs11 then -- made in the token: priv is the key's URI, only the public half comes out
    ok, priv, pub = true, require("dws.cli.pkcs11").keygen(a, util)
  else
    ok, priv, pub = pcall(core.generate_key, a.bits)
  end
  if not ok then return fail(tostring(priv):gsub("^bad argument #1 to '%?'", "--bits")) end
  if not priv then return fail(pub) end
  local version = a.key_version and require("dws.signature").key_version(a.key_version)
  if a.key_version and not version then return fail("--key-version must be letters, digits, '.-_'") end
  local base = a.out .. "/" .. a.name .. (version and "_v" .. version or "")
  local files = {
    { base .. (a.pkcs11 and "_private.uri" or "_private.pem"), priv, true },
    { base .. "_public.pem", "-----BEGIN PUBLIC KEY-----\n" .. pub:gsub("(" .. ("."):rep(64) .. ")", "%1\n")
      :gsub("\n$", "") .. "\n-----END PUBLIC KEY-----\n" },
    { base .. "_public.b64", pub .. "\n" },
  }
  for _, f in ipairs(files) do
    if util.exists(f[1]) then return fail(f[1] .. " exists; refusing to overwrite a key") end
  end
  local dok, derr = util.mkdir_private(a.out)
  if not dok then return fail(derr) end
  for _, f in ipairs(files) do
    local wok, werr = util.write_file(f[1], f[2], f[3])
    if not wok then return fail(werr) end
  end
  out(a.pkcs11 and "private key (in the token; its URI):  " or "private key (PKCS#8 PEM, mode 0600): ", files[1][1],
    "\n")
  out("public key (PEM):                    ", files[2][1], "\n")
  out("public key (base64, for the portal): ", files[3][1], "\n")
  out(pub, "\n")
  if version then out("keyVersion ", version, ": upload the public key as version ", version,
    ", then sign with key_version = \"", version, "\"\n") end
  return EXIT_OK
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
  local request = dws.decode_json(text)
  if type(request) ~= "table" then return fail("the request is not a JSON object", EXIT_USAGE) end
  local res, err = client:call(def.name, request)
  client:close()
  if not res then
    util.err(tostring(err), "\n")
    return result_exit(err)
  end
  -- The answer is verified; masked all the same, so a gateway that echoes a number cannot leak it here.
  out(redact.text(assert(core.json_encode(res, false))), "\n")
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
    out("the final result (BOUND or FAILED) comes by notification to the merchant's notify URL\n")
  elseif outcome.status == "UNKNOWN" then
    -- Not an error: DWS may have bound the card. The journal can resume it with the same bytes.
    out("unknown outcome: resume with client:resume_binding(requestId)\n")
    return EXIT_U
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
    out("HTTP ", res.status, " ", res.body, "\n")
    return res.status == 200 and EXIT_OK or EXIT_F
  end
  return require("dws.cli.notify").send(a)
end

local function cmd_sandbox(a)
  if not a.dir then return fail("--dir is required (or set DWS_SANDBOX_DIR)", EXIT_USAGE) end
  local args = { a.sandbox_command, "--dir", a.dir }
  for _, k in ipairs{ "http_port", "https_port", "config" } do
    if a[k] then
      args[#args + 1] = "--" .. k:gsub("_", "-")
      args[#args + 1] = a[k]
    end
  end
  -- The launcher's own logic (the dws-sandbox rock): nothing re-implemented here.
  local control, err = util.sandbox_control()
  if not control then return fail(err) end
  return control.main(args)
end

local COMMANDS = { keygen = cmd_keygen, sign = cmd_sign, verify = cmd_verify, call = cmd_call, bind = cmd_bind,
                   notify = cmd_notify, sandbox = cmd_sandbox }

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
