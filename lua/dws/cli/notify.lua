-- `dws notify send URL`: post a binding notification signed as DWS signs it, so a merchant can test
-- their endpoint, and say whether the answer is exactly the acknowledgement the page requires.
local core = require "dws.core"
local redact = require "dws.redact"
local notification = require "dws.notification"
local util = require "dws.cli.util"

local M = {}

local out, fail = util.out, util.fail

-- A binding result as DWS sends it (notifyAddPaymentMethod page): no card number, only a token and mask.
local function sample_body(request_id)
  return assert(core.json_encode({
    referenceCustomerId = "2162878776333",
    requestId = request_id,
    operateSource = "MERCHANT",
    paymentMethodDetail = {
      paymentMethodDetailType = "CARD",
      card = { brand = "VISA", cardToken = "CLI_TEST_TOKEN_" .. request_id:gsub("%-", ""):sub(1, 16),
               mask = "411111******1111" },
    },
  }, false))
end

-- The path that is signed: the URL's path, no host, no query (SIGNING.md).
local function url_path(url)
  local path = url:match("^%a[%w+.-]*://[^/?#]+(/[^?#]*)") or "/"
  return path
end

-- -> "exact" | "same JSON" | nil, why
local function judge_ack(res)
  if res.status ~= 200 then return nil, "HTTP status " .. tostring(res.status) .. ", not 200" end
  local body = res.body or ""
  if body == notification.ACK_BODY then return "exact" end
  local t = core.json_decode(body)
  local result = type(t) == "table" and t.result
  if type(result) ~= "table" then return nil, "the body is not JSON with a result object" end
  if result.resultStatus ~= "S" then
    return nil, "result.resultStatus is " .. tostring(result.resultStatus) .. ", not S: DWS will send it again"
  end
  if result.resultCode ~= "SUCCESS" then return nil, "result.resultCode is not SUCCESS" end
  return "same JSON"
end

-- A 401 from the merchant's endpoint: what it usually means (our reading of SIGNING.md: the
-- signature covers the path, the client-id and the time, and is checked with the DWS public key).
local HINT_401 = [[
hint: the endpoint refused the notification's signature (401). The usual causes:
  - the key: the endpoint verifies with a dws_public_key that is not the public half of the
    --dws-private-key that signed (with --sandbox: the endpoint must use DIR/keys/dws_public.pem);
  - the URL: the signature covers the path; if a proxy or framework rewrites it, the endpoint
    verifies another path than the one signed (compare with `dws verify --try-path`);
  - the client id: the endpoint's client_id differs from --client-id;
  - the time: the endpoint's clock is more than its notification_tolerance from --time.
]]

-- --sandbox DIR: the sandbox's DWS key, its client and (without a URL) that client's notify URL now.
local function from_sandbox(a)
  local s, err = util.sandbox_client(a.sandbox, a.client_id)
  if not s then return nil, err end
  a.dws_private_key = a.dws_private_key or s.status.dws_private_key
  a.client_id = s.client_id
  if not a.url then
    local t, gerr = util.sandbox_admin(s.status.http_port, "GET", "/__sandbox/notify_url?client_id=" .. s.client_id,
      s.token)
    if not t then return nil, gerr end
    if type(t.notify_url) ~= "string" then
      return nil, "client " .. s.client_id .. " has no notify URL: give the URL, or run `dws listen --sandbox "
        .. a.sandbox .. "` (which sets one)"
    end
    a.url = t.notify_url
  end
  return true
end

function M.send(a)
  if a.sandbox then
    local ok, serr = from_sandbox(a)
    if not ok then return fail(serr) end
  end
  for _, o in ipairs{ { "url", "URL" }, { "dws_private_key", "--dws-private-key" }, { "client_id", "--client-id" } } do
    if not a[o[1]] then return fail(o[2] .. " is required (or --sandbox DIR)", 64) end
  end
  local key_text, err = util.read_file(a.dws_private_key)
  if not key_text then return fail(err) end
  local key, kerr = core.private_key(key_text)
  if not key then return fail(kerr) end
  local body
  if a.body then
    body, err = util.read_file(a.body)
    if not body then return fail(err) end
  else
    body = sample_body(a.request_id or core.uuid4())
  end
  local time = a.time or string.format("%d", core.time_ms())
  local path = url_path(a.url)
  local b64 = assert(core.sign(key, "POST", path, a.client_id, time, body))
  key:close()
  local header = core.signature_header(b64, "1")
  local res, perr = util.post(a.url, {
    ["Content-Type"] = "application/json; charset=UTF-8",
    ["client-id"] = a.client_id,
    ["request-time"] = time,
    ["signature"] = header,
  }, body, a.ca_file)
  out("POST ", a.url, " (signed path ", path, ")\n")
  out("client-id: ", a.client_id, "\nrequest-time: ", time, "\nsignature: ", header, "\n")
  out("body: ", redact.text(body), "\n")
  if not res then return fail(perr) end
  local ctype = res.headers and (res.headers["content-type"] or res.headers["Content-Type"])
  out("HTTP ", res.status, " ", tostring(ctype), "\n")
  out("answer: ", redact.text(res.body or ""), "\n")
  local verdict, why = judge_ack(res)
  if not verdict then
    out("acknowledged: no (", why, ")\n")
    if res.status == 401 then util.err(HINT_401) end
    return 1
  end
  if verdict == "exact" and type(ctype) == "string" and ctype:lower():find("^application/json") then
    out("acknowledged: yes, exactly the acknowledgement the page requires\n")
  else
    out("acknowledged: yes (S), but not exactly the page's acknowledgement: ",
      verdict ~= "exact" and "the body differs in bytes from " .. notification.ACK_BODY
        or "Content-Type is not application/json", "\n")
  end
  return 0
end

return M
