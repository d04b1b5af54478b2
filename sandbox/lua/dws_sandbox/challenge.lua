-- The pages a card issuer (the sms challenge) or a wallet provider (GCASH_EBANK) would show the
-- customer after addPaymentMethod, served by the sandbox on both its ports at /challenge/<ticket>:
--   GET  /challenge/<ticket>   an HTML form: a one-time code (otp), or confirm / cancel (redirect)
--   POST /challenge/<ticket>   otp=<code> or decision=confirm|cancel: the right code (testdata.OTP) or
--                              confirm sends the BOUND notification, anything else the FAILED one;
--                              then 303 to the merchant's redirectUrl (a page saying so without one).
-- A ticket is used once (a second POST gets 410) and lives as long as a card token.
-- luacheck: globals ngx (ngx.status and ngx.header are assigned)
local core = require "dws.core"
local store = require "dws_sandbox.store"
local testdata = require "dws_sandbox.testdata"
local notify = require "dws_sandbox.notify"

local M = {}

local function key(ticket) return "challenge:" .. ticket end

-- opts: { kind = "otp" | "redirect", request, bound, failed }; ctx: the API request's.
-- -> the URL of the page, on the scheme and host the merchant reached the sandbox at.
function M.create(ctx, opts)
  local ticket = core.base64_encode(core.random_bytes(18)):gsub("[+/]", { ["+"] = "-", ["/"] = "_" })
  local return_url = opts.request.redirectUrl
  store.set_json(key(ticket), {
    kind = opts.kind, client_id = ctx.client_id, request_id = opts.request.requestId,
    return_url = type(return_url) == "string" and return_url:match("^https?://") and return_url or nil,
    bound = opts.bound, failed = opts.failed,
  }, ctx.conf.token_ttl)
  return ctx.base_url .. "/challenge/" .. ticket
end

local function page(status, title, inner)
  local html = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>" .. title ..
    "</title></head>\n<body><h1>" .. title .. "</h1>\n" .. inner .. "\n</body></html>\n"
  ngx.status = status
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  ngx.header["Content-Length"] = #html
  ngx.print(html)
  return ngx.exit(status)
end

local function form(ticket, rec)
  local action = "/challenge/" .. ticket
  if rec.kind == "otp" then
    return page(200, "Verify your card",
      "<p>Enter the code sent by sms to " .. testdata.CHALLENGE.challengeRenderValue .. ".</p>\n" ..
      "<form id=\"challenge\" method=\"post\" action=\"" .. action .. "\">\n" ..
      "<label for=\"otp\">One-time code</label>\n" ..
      "<input id=\"otp\" name=\"otp\" inputmode=\"numeric\" autocomplete=\"one-time-code\" maxlength=\"8\">\n" ..
      "<button id=\"verify\" type=\"submit\">Verify</button>\n</form>")
  end
  return page(200, "Link your account",
    "<p>Allow the merchant to add this account to your wallet?</p>\n" ..
    "<form id=\"challenge\" method=\"post\" action=\"" .. action .. "\">\n" ..
    "<button id=\"confirm\" type=\"submit\" name=\"decision\" value=\"confirm\">Confirm</button>\n" ..
    "<button id=\"cancel\" type=\"submit\" name=\"decision\" value=\"cancel\">Cancel</button>\n</form>")
end

-- S: the server's state (clients, dws_key, conf).
function M.handle(S)
  local ticket = ngx.var.uri:match("^/challenge/([%w_%-]+)$")
  local rec = ticket and store.get_json(key(ticket))
  if not rec then return page(404, "Unknown or expired verification", "<p>Start again at the merchant.</p>") end
  local method = ngx.req.get_method()
  if method == "GET" then
    if store.dict():get("challenge_done:" .. ticket) then
      return page(410, "Verification already completed", "<p>Return to the merchant.</p>")
    end
    return form(ticket, rec)
  elseif method ~= "POST" then
    return page(405, "Method not allowed", "")
  end
  ngx.req.read_body()
  local args = ngx.req.get_post_args(10) or {}
  local passed
  if rec.kind == "otp" then
    passed = args.otp == testdata.OTP
  else
    passed = args.decision == "confirm"
  end
  -- Once only, even for two submissions racing.
  if not store.dict():add("challenge_done:" .. ticket, passed and "bound" or "failed", S.conf.token_ttl) then
    return page(410, "Verification already completed", "<p>Return to the merchant.</p>")
  end
  local client = S.clients[rec.client_id]
  if client then
    notify.send{ client_id = rec.client_id, url = client.notify_url, request_id = rec.request_id,
      key = require("dws_sandbox.keys").signing_key(), notification = passed and rec.bound or rec.failed,
      scale = S.conf.notify_scale }
  end
  if rec.return_url then
    ngx.header["Location"] = rec.return_url
    return page(303, "Returning to the merchant", "")
  end
  return page(200, passed and "Card verified" or "Verification failed", "<p>You may close this page.</p>")
end

return M
