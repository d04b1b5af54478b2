-- client:run_all against a hostile gateway on raw sockets (ngx.req.socket(true) in a throw-away nginx,
-- spec/helpers/httpd.lua), over plain HTTP and TLS. run_all promises each result exactly as
-- client:call gives it, so every case runs the same hostile answer through both and asserts the
-- same outcome: the error code, the attempts the client counted, the requests the gateway saw, no
-- data from an answer that failed, and the rest of the batch unharmed.
local httpd = require "helpers.httpd"
local curl = require "dws.curl"
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local dws = require "dws"

-- What the gateway does with a request, by name. The mode of a consult is chosen by the first two
-- digits of its customerId (the index in this list); a cacheCard's by /plan?m= (it has no id).
local MODES = {
  "good",          -- a signed S answer echoing the customerId; the connection kept
  "extra_same",    -- the good answer and an unasked-for signed S ("extra") in the same write
  "extra_late",    -- the good answer, then the extra one 0.1 s later
  "bad_sig",       -- signed with another key
  "other_body",    -- a signature over another body
  "other_client",  -- client-id another client's, signed as that client
  "unsigned_s",    -- S without signature and response-time
  "replayed",      -- signed, response-time an hour old
  "dup_sig",       -- two signature headers (the good one and another key's)
  "short_cl",      -- Content-Length 100 over the body sent, then close
  "cut_chunked",   -- a chunked body cut inside a chunk, then close
  "garbage",       -- a status line that is not HTTP, then close
  "big_headers",   -- a header block over dws.curl's 64 KiB limit
  "large_cl",      -- Content-Length over max_response_bytes (and that many bytes)
  "large_chunked", -- chunks adding up to over max_response_bytes, then close
  "hang",          -- reads the request, never answers
  "reset",         -- the head and part of the body, then a TCP reset
  "close_reused",  -- good on a fresh connection; on a reused one, reads the request and closes
  "echo_500",      -- 500 with the request body (card data) echoed back
  "echo_f",        -- an unsigned F whose resultMessage echoes the request body
}
local MODE_INDEX = {}
for i, m in ipairs(MODES) do MODE_INDEX[m] = i end

local MAX_RESPONSE = 65536

local HOSTILE = [==[
local core = require "dws.core"
local conf = require "hostile_conf"
local ffi = require "ffi"

ffi.cdef[[
int getpeername(int fd, void *addr, unsigned int *len);
int setsockopt(int fd, int level, int name, const void *value, unsigned int len);
]]

local M = {}
local keys = {}

local function key(name)
  if not keys[name] then
    local f = assert(io.open(conf[name]))
    keys[name] = assert(core.private_key(f:read("*a")))
    f:close()
  end
  return keys[name]
end

-- The connection's socket (found by the client's port) set to linger 0: closing it sends a RST.
local function arm_reset()
  local port = tonumber(ngx.var.remote_port)
  local sa, len = ffi.new("uint8_t[128]"), ffi.new("unsigned int[1]")
  local linger = ffi.new("int[2]", 1, 0)
  for fd = 3, 4095 do
    len[0] = 128
    -- AF_INET (2, little-endian), then the port in network order
    if ffi.C.getpeername(fd, sa, len) == 0 and sa[0] == 2 and sa[1] == 0 and sa[2] * 256 + sa[3] == port then
      return ffi.C.setsockopt(fd, 1 --[[SOL_SOCKET]], 13 --[[SO_LINGER]], linger, 8) == 0
    end
  end
  return false
end

local function read_request(sock)
  local line = sock:receive("*l")
  if not line then return nil end
  local path = line:match("^%u+ (%S+)")
  local headers = {}
  while true do
    local l = sock:receive("*l")
    if not l then return nil end
    if l == "" then break end
    local k, v = l:match("^([^:]+):%s*(.-)%s*$")
    if k then headers[k:lower()] = v end
  end
  local n = tonumber(headers["content-length"] or "0") or 0
  local body = ""
  if n > 0 then
    body = sock:receive(n)
    if not body then return nil end
  end
  return path, headers["client-id"], body
end

local function response(status_line, headers, body)
  local lines = { status_line, "Content-Type: application/json; charset=UTF-8" }
  for i = 1, #headers do lines[#lines + 1] = headers[i] end
  lines[#lines + 1] = "Content-Length: " .. #body
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. body
end

local function now_ms() return string.format("%d", ngx.now() * 1000) end

-- Signature headers: o.key, o.time, o.client (header and signed), o.body (signed instead of body).
local function signed(path, client_id, body, o)
  o = o or {}
  local time = o.time or now_ms()
  local who = o.client or client_id
  local b64 = assert(core.sign(key(o.key or "dws"), "POST", path, who, time, o.body or body))
  return { "Client-Id: " .. who, "Response-Time: " .. time, "Signature: " .. core.signature_header(b64, "1") }
end

local function s_body(echo)
  return '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"},"paymentOptions":[],'
    .. '"echo":"' .. echo .. '"}'
end

local function good(path, client_id, echo)
  local body = s_body(echo)
  return response("HTTP/1.1 200 OK", signed(path, client_id, body), body)
end

-- One request: -> "keep" (read the next one on this connection) or "done" (close).
local function answer(sock, mode, path, client_id, echo, raw, reused, counter)
  local dict = ngx.shared.hostile
  local body = s_body(echo)
  if mode == "close_reused" then
    if reused then return "done" end
    mode = "good"
  end
  if mode == "good" then
    sock:send(good(path, client_id, echo))
  elseif mode == "extra_same" then
    sock:send(good(path, client_id, echo) .. good(path, client_id, "extra"))
    dict:incr(counter .. ":extra", 1, 0)
  elseif mode == "extra_late" then
    sock:send(good(path, client_id, echo))
    ngx.sleep(0.1)
    sock:send(good(path, client_id, "extra"))
    dict:incr(counter .. ":extra", 1, 0)
  elseif mode == "bad_sig" then
    sock:send(response("HTTP/1.1 200 OK", signed(path, client_id, body, { key = "foreign" }), body))
  elseif mode == "other_body" then
    sock:send(response("HTTP/1.1 200 OK", signed(path, client_id, body, { body = s_body("other") }), body))
  elseif mode == "other_client" then
    sock:send(response("HTTP/1.1 200 OK", signed(path, client_id, body, { client = "SANDBOX_OTHER" }), body))
  elseif mode == "unsigned_s" then
    sock:send(response("HTTP/1.1 200 OK", {}, body))
  elseif mode == "replayed" then
    local old = string.format("%d", ngx.now() * 1000 - 3600 * 1000)
    sock:send(response("HTTP/1.1 200 OK", signed(path, client_id, body, { time = old }), body))
  elseif mode == "dup_sig" then
    local h = signed(path, client_id, body)
    h[#h + 1] = signed(path, client_id, body, { key = "foreign" })[3]
    sock:send(response("HTTP/1.1 200 OK", h, body))
  elseif mode == "short_cl" then
    local r = response("HTTP/1.1 200 OK", signed(path, client_id, body), body)
    sock:send((r:gsub("Content%-Length: %d+", "Content-Length: " .. (#body + 100))))
    return "done"
  elseif mode == "cut_chunked" then
    local h = signed(path, client_id, body)
    sock:send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" .. table.concat(h, "\r\n") .. "\r\n\r\n"
      .. string.format("%x", #body) .. "\r\n" .. body:sub(1, 20))
    return "done"
  elseif mode == "garbage" then
    sock:send("this is not http " .. raw .. "\r\n\r\n")
    return "done"
  elseif mode == "big_headers" then
    local h = signed(path, client_id, body)
    for i = 1, 80 do h[#h + 1] = "X-Big-" .. i .. ": " .. string.rep("h", 1000) end
    sock:send(response("HTTP/1.1 200 OK", h, body))
  elseif mode == "large_cl" then
    local big = string.rep("x", conf.max_response + 1)
    sock:send(response("HTTP/1.1 200 OK", signed(path, client_id, big), big))
  elseif mode == "large_chunked" then
    sock:send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    local piece = string.rep("c", 4096)
    for _ = 1, math.ceil(conf.max_response / 4096) + 2 do
      if not sock:send(string.format("%x\r\n%s\r\n", #piece, piece)) then break end
    end
    sock:send("0\r\n\r\n")
    return "done"
  elseif mode == "hang" then
    ngx.sleep(conf.hang)
    return "done"
  elseif mode == "reset" then
    local r = response("HTTP/1.1 200 OK", signed(path, client_id, body), body)
    sock:send(r:sub(1, #r - 20))
    ngx.sleep(0.05)
    assert(arm_reset(), "no socket to reset")
    return "done"
  elseif mode == "echo_500" then
    sock:send(response("HTTP/1.1 500 " .. raw:gsub("[\r\n]", " "), {}, raw))
  elseif mode == "echo_f" then
    local f = core.json_encode({ result = { resultCode = "PARAM_ILLEGAL", resultStatus = "F", resultMessage = raw } })
    sock:send(response("HTTP/1.1 200 OK", {}, f))
  end
  return "keep"
end

local function mode_of(path, raw)
  local req = core.json_decode(raw)
  local cid = type(req) == "table" and req.customerId
  if type(cid) == "string" then return conf.modes[tonumber(cid:sub(1, 2))] or "good", cid, cid end
  local api = path:match("([^/]+)$")
  return ngx.shared.hostile:get("plan:" .. api) or "good", api, "none"
end

function M.serve()
  ngx.req.read_body()
  local dict = ngx.shared.hostile
  local path, client_id, raw = ngx.var.uri, ngx.req.get_headers()["client-id"], ngx.req.get_body_data() or ""
  local sock = assert(ngx.req.socket(true))
  sock:settimeout(10000)
  local reused = false
  while true do
    local mode, counter, echo = mode_of(path, raw)
    dict:incr(counter, 1, 0)
    if answer(sock, mode, path, client_id, echo, raw, reused, counter) ~= "keep" then break end
    path, client_id, raw = read_request(sock)
    if not path then break end
    reused = true
  end
  ngx.exit(444)
end

return M
]==]

local LOCATIONS = [[
    location /ams/ { content_by_lua_block { require("hostile").serve() } }
    location = /count { content_by_lua_block { ngx.print(ngx.shared.hostile:get(ngx.var.arg_k) or 0) } }
    location = /plan { content_by_lua_block { ngx.shared.hostile:set("plan:" .. ngx.var.arg_api, ngx.var.arg_m) } }
]]

-- Seconds the gateway holds a request it never answers; the client's timeout is well under it.
local HANG = 6
local TIMEOUT = 1.5

local CARD = { cardNo = "4111111111111111", securityCode = "737", expiryYear = "2040", expiryMonth = "12",
  instUserName = { firstName = "Ann", lastName = "Lee" } }

describe("client:run_all against a hostile gateway on raw sockets", function()
  local srv, dir, keys, seq = nil, nil, {}, 0

  setup(function()
    dir = nginx.tmpdir("dws-hostile-multi")
    keys.merchant = nginx.make_keypair(dir, "merchant")
    keys.dws, keys.dws_pub = nginx.make_keypair(dir, "dws")
    keys.foreign = nginx.make_keypair(dir, "foreign")
    local quoted = {}
    for i, m in ipairs(MODES) do quoted[i] = string.format("%q", m) end
    local conf = string.format("return { dws = %q, foreign = %q, max_response = %d, hang = %d, modes = { %s } }",
      keys.dws, keys.foreign, MAX_RESPONSE, HANG, table.concat(quoted, ", "))
    srv = assert(httpd.start{ locations = LOCATIONS, http = "    lua_shared_dict hostile 4m;",
      lua_files = { hostile = HOSTILE, hostile_conf = conf } })
  end)

  teardown(function()
    if srv then srv:stop() end
    if dir then nginx.rmdir(dir) end
  end)

  local function control(path)
    local h = curl.new{ max_response_bytes = MAX_RESPONSE }
    local status, _, body = h:request(srv:url(path), {}, nil, 5, 5)
    h:close()
    assert.equal(200, status)
    return body
  end

  local function count(k) return tonumber(control("/count?k=" .. k)) end

  -- A customerId that makes the gateway answer in `mode`, unique to this run.
  local function cid(mode)
    seq = seq + 1
    return string.format("%02d%08d", MODE_INDEX[mode], seq)
  end

  local function consult(id)
    return { "consultAddablePaymentMethod", { customerId = id, env = { terminalType = "WEB" }, scenes = { "TOPUP" } } }
  end

  local function client_for(scheme, o)
    local logged = {}
    local opts = { client_id = "SANDBOX_HOSTILE", gateway = scheme == "http" and srv:url("") or srv:surl(""),
      ca_file = srv.ca, private_key = nginx.read_file(keys.merchant), dws_public_key = nginx.read_file(keys.dws_pub),
      max_retries = 1, retry_base_delay = 0.01, timeout = TIMEOUT, connect_timeout = TIMEOUT,
      max_response_bytes = MAX_RESPONSE, log_level = "debug",
      logger = function(level, message, fields) logged[#logged + 1] = { level, message, fields } end }
    for k, v in pairs(o or {}) do opts[k] = v end
    return dws.client(opts), logged
  end

  -- What a failed call comes to: its code, its attempts, the requests the gateway saw for it, and
  -- whether any of the answer's data came with it.
  local function outcome(res, err, id)
    if res then return { echo = res.echo } end
    -- the message without its numbers (a timeout names the milliseconds it waited)
    return { code = err.code, attempts = err.attempts, seen = count(id), data = err.response ~= nil,
      message = (err.message:gsub("%d+", "#")) }
  end

  for _, scheme in ipairs{ "http", "https" } do
    describe("(" .. scheme .. ")", function()
      local client

      after_each(function()
        if client then client:close() end
        client = nil
      end)

      -- consult requests in `mode` -> their ids and the batch
      local function batch_of(n, mode)
        local ids, reqs = {}, {}
        for i = 1, n do
          ids[i] = cid(mode)
          reqs[i] = consult(ids[i])
        end
        return ids, reqs
      end

      -- Whether each answer is the one to its own request (else the error code).
      local function own(out, ids)
        local got = {}
        for i = 1, #ids do
          local r = out[i]
          got[i] = r.res and (r.res.echo == ids[i] or "answered with " .. tostring(r.res.echo)) or r.err.code
        end
        return got
      end

      local function call(c)
        return client:call(c[1], c[2])
      end

      -- Until the gateway has sent the extra response after each of ids (on the wire before the next).
      local function extras_sent(ids)
        for _, id in ipairs(ids) do
          local deadline = core.monotonic() + 10
          while count(id .. ":extra") < 1 and core.monotonic() < deadline do core.sleep(0.01) end
        end
      end

      it("never reads an extra response in the same write as the next request's answer", function()
        client = client_for(scheme)
        local ids, single = batch_of(3, "extra_same"), {}
        for i = 1, 3 do
          local res, err = call(consult(ids[i]))
          single[i] = res and res.echo == ids[i] or err.code
        end
        -- 12 at concurrency 4: every connection carries three in turn
        local bids, reqs = batch_of(12, "extra_same")
        local batch = own(client:run_all(reqs, { concurrency = 4 }), bids)
        local twelve = {}
        for i = 1, 12 do twelve[i] = true end
        assert.same({ single = { true, true, true }, batch = twelve }, { single = single, batch = batch })
      end)

      it("never reads an extra response that came later as the next request's answer", function()
        client = client_for(scheme)
        local first = batch_of(1, "extra_late")
        assert(call(consult(first[1])))
        extras_sent(first)
        local res = call(consult(cid("good")))
        local single = res and res.echo
        local ids, reqs = batch_of(4, "extra_late")
        client:run_all(reqs, { concurrency = 4 })
        extras_sent(ids)
        local gids, greqs = batch_of(4, "good")
        local batch = own(client:run_all(greqs, { concurrency = 4 }), gids)
        assert.same({ single = true, batch = { true, true, true, true } },
          { single = single ~= nil and single ~= "extra", batch = batch })
      end)

      it("drops the connection an extra response came on", function()
        client = client_for(scheme)
        local first = batch_of(1, "extra_late")
        assert(call(consult(first[1])))
        extras_sent(first)
        assert(call(consult(cid("good"))))
        local ids, reqs = batch_of(4, "extra_late")
        client:run_all(reqs, { concurrency = 4 })
        extras_sent(ids)
        local _, greqs = batch_of(4, "good")
        client:run_all(greqs, { concurrency = 4 })
        assert.same({ single = 2, batch = 8 }, { single = client.transport:stats().connects,
          batch = client._multi:stats().connects })
      end)

      it("does not resend a cacheCard whose reused connection closed after it was sent", function()
        client = client_for(scheme, { max_retries = 0 })
        local card = { "cacheCard", { paymentMethodDetail = { paymentMethodDetailType = "card", card = CARD } } }
        control("/plan?api=cacheCard&m=good")
        assert(call(card))
        control("/plan?api=cacheCard&m=close_reused")
        local before = count("cacheCard")
        local _, err = call(card)
        local single = { code = err.code, attempts = err.attempts, seen = count("cacheCard") - before,
          message = err.message }
        -- 4 answered leave 4 kept-alive connections; the next 4 go out on them
        control("/plan?api=cacheCard&m=good")
        client:run_all({ card, card, card, card }, { concurrency = 4 })
        control("/plan?api=cacheCard&m=close_reused")
        before = count("cacheCard")
        local out = client:run_all({ card, card, card, card }, { concurrency = 4 })
        local seen = count("cacheCard") - before
        local batch = {}
        for i = 1, 4 do
          local e = out[i].err or {}
          batch[i] = { code = e.code, attempts = e.attempts, seen = seen / 4, message = e.message }
        end
        local want = { code = "CONNECTION_FAILED", attempts = 1, seen = 1, message = single.message }
        assert.same({ single = want, batch = { want, want, want, want } }, { single = single, batch = batch })
        -- (seen: the gateway saw 4 requests for the 4 attempts, none resent by libcurl)
      end)

      -- Every string in v (tables walked, keys too) that holds the card number or security code.
      local function leaks(v, found, seen)
        seen = seen or {}
        if type(v) == "string" then
          if v:find(CARD.cardNo, 1, true) or v:find("securityCode%W*" .. CARD.securityCode) then
            found[#found + 1] = v
          end
        elseif type(v) == "table" and not seen[v] then
          seen[v] = true
          for k, x in pairs(v) do
            leaks(k, found, seen)
            leaks(x, found, seen)
          end
        end
        return found
      end

      it("keeps card data out of every err, tostring(err) and log line when the gateway misbehaves", function()
        local logged
        client, logged = client_for(scheme)
        local card = { "cacheCard", { paymentMethodDetail = { paymentMethodDetailType = "card", card = CARD } } }
        local found = { single = {}, batch = {} }
        for _, mode in ipairs{ "echo_500", "echo_f", "garbage", "bad_sig", "short_cl", "reset", "big_headers" } do
          control("/plan?api=cacheCard&m=" .. mode)
          local _, err = call(card)
          leaks({ err, tostring(err), logged }, found.single)
          for k in pairs(logged) do logged[k] = nil end
          local out = client:run_all({ consult(cid("good")), card, consult(cid("good")) }, { concurrency = 4 })
          leaks({ out, tostring(out[2].err), logged }, found.batch)
          for k in pairs(logged) do logged[k] = nil end
        end
        assert.same({ single = {}, batch = {} }, found)
      end)

      -- mode -> { code, attempts } a single call comes to (retryable failures: max_retries = 1)
      local CASES = {
        { "bad_sig", "SIGNATURE_INVALID", 1 },
        { "other_body", "SIGNATURE_INVALID", 1 },
        { "other_client", "SIGNATURE_INVALID", 1 },
        { "unsigned_s", "SIGNATURE_MISSING", 1 },
        { "replayed", "RESPONSE_TIME_INVALID", 1 },
        { "dup_sig", "SIGNATURE_INVALID", 1 },
        { "short_cl", "CONNECTION_FAILED", 2 },
        { "cut_chunked", "CONNECTION_FAILED", 2 },
        { "garbage", "CONNECTION_FAILED", 2 },
        { "big_headers", "RESPONSE_TOO_LARGE", 1 },
        { "large_cl", "RESPONSE_TOO_LARGE", 1 },
        { "large_chunked", "RESPONSE_TOO_LARGE", 1 },
        { "hang", "TIMEOUT", 2 },
        { "reset", "CONNECTION_FAILED", 2 },
      }
      for _, case in ipairs(CASES) do
        local mode, code, attempts = case[1], case[2], case[3]
        it(mode .. ": run_all gives the single call's " .. code .. " to that request alone", function()
          client = client_for(scheme)
          local id = cid(mode)
          local c = consult(id)
          local res, err = client:call(c[1], c[2])
          local single = outcome(res, err, id)
          -- The hostile request in the middle of a batch of 7 at concurrency 4.
          local reqs, ids = {}, {}
          for i = 1, 7 do
            ids[i] = i == 4 and cid(mode) or cid("good")
            reqs[i] = consult(ids[i])
          end
          local out = client:run_all(reqs, { concurrency = 4 })
          local others = 0
          for i = 1, 7 do
            if i ~= 4 and out[i].res and out[i].res.echo == ids[i] then others = others + 1 end
          end
          local batch = outcome(out[4].res, out[4].err, ids[4])
          local want = { code = code, attempts = attempts, seen = attempts, data = false, message = single.message }
          assert.same({ single = want, batch = want, others = 6 }, { single = single, batch = batch, others = others })
        end)
      end
    end)
  end
end)
