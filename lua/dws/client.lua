--- The client: signed, verified calls to DWS, the bind-card workflow and notifications.
-- `require("dws").client(opts)` is `dws.client.new(opts)`; every option is in the README's
-- "Client options" table.
-- @module dws.client

-- The client composes the pieces: it checks the options, parses the keys once, makes the
-- transport, the journal and the call pipeline (dws.pipeline: validate -> encode (once) -> [sign ->
-- send -> verify -> classify -> retry?]), and hands each workflow the parts it needs.
--
-- Options (dws.client{...}): client_id, private_key, dws_public_key, gateway (required);
-- key_version ("1"), request_time ("millis" | "iso8601" | function), timeout (15 s),
-- connect_timeout (5 s), max_retries (2), retry_base_delay (0.5 s), max_response_bytes (1 MiB),
-- ca_file, proxy, user_agent, transport, logger, allow_insecure_http (false),
-- notification_tolerance (300 s), notification_store, response_time_tolerance (300 s), server_name,
-- journal, journal_retention (dws.store specs or objects; see docs/stores.md "Stores").
-- Unknown options, wrong types and values out of range (NaN, infinities, ports, control
-- characters in anything that reaches a header or URL) raise.
--
-- A client's fields: client_id, private_key and dws_key (parsed dws.core keys), logger, transport,
-- options (the options with defaults applied, key text removed), journal, pipeline. The logger's
-- events are dws.pipeline's (its header lists them).
local core = require "dws.core"
local api = require "dws.api"
local signature = require "dws.signature"
local pipeline = require "dws.pipeline"
local dtime = require "dws.time"
local url = require "dws.url"

local type, pairs, pcall, tostring, setmetatable, error = type, pairs, pcall, tostring, setmetatable, error
local format = string.format

local M = {}

--- The one version of lua-dws (the rockspec and the user agent carry it too).
M.VERSION = "0.1.0"

-- Option defaults and the backoff cap live in dws.defaults (docs/calls.md "Client options" documents them).
local DEFAULTS = require("dws.defaults").options
local LOG_RANK = pipeline.LOG_RANK

-- Numeric options: { low, high, whole number?, low excluded? }. Every one must be a finite number in
-- its range: NaN compares false with everything and would switch a check off (a NaN tolerance
-- accepts a year-old notification), and an infinite retry count or timeout never returns.
-- The upper bounds keep values meaningful once converted for libcurl and nginx (milliseconds in a
-- C long) and keep replay windows shorter than the notification de-dup memory (2 days).
local NUMERIC_OPTIONS = {
  timeout = { 0, 3600, false, true },
  connect_timeout = { 0, 3600, false, true },
  max_retries = { 0, 10, true },
  max_response_bytes = { 1, 1024 * 1024 * 1024, true },
  retry_base_delay = { 0, 60, false },
  notification_tolerance = { 0, dtime.MAX_TOLERANCE, false },
  response_time_tolerance = { 1, dtime.MAX_TOLERANCE, false },
  -- seconds a final binding is kept; false: forever (a NaN or infinite one would be forever unasked)
  -- (nil: dws.journal's default, dws.defaults.journal_retention)
  journal_retention = { 0, 10 * 365 * 86400, false, true, true },
}

-- Option name -> accepted Lua types (checked in client.new; a wrong type is a programming error).
local OPTION_TYPES = {
  client_id = { string = true },
  private_key = { string = true, userdata = true },
  pkcs11_pin = { string = true },
  dws_public_key = { string = true, userdata = true, table = true },
  gateway = { string = true },
  key_version = { string = true, number = true },
  request_time = { string = true, ["function"] = true },
  timeout = { number = true },
  connect_timeout = { number = true },
  max_retries = { number = true },
  ca_file = { string = true },
  proxy = { string = true },
  user_agent = { string = true },
  transport = { table = true, userdata = true },
  logger = { ["function"] = true },
  log_level = { string = true },
  max_response_bytes = { number = true },
  allow_insecure_http = { boolean = true },
  retry_base_delay = { number = true },
  notification_tolerance = { number = true },
  notification_store = { table = true, string = true },
  server_name = { string = true },
  response_time_tolerance = { number = true },
  journal = { table = true, string = true },
  journal_retention = { number = true, boolean = true },
}

-- String options that reach a header, a URL, a TLS name or a C string: a control character there
-- (CR/LF) could forge a header line, a NUL would cut the value short in C.
local NO_CONTROL_OPTIONS = { "client_id", "gateway", "ca_file", "proxy", "user_agent", "server_name" }

-- Raised at the level of the code that called dws.client (level 3 from client.new itself;
-- helpers one call deeper pass 4).
local function fail_option(name, why, level)
  error("dws.client: option " .. name .. " " .. why, level or 3)
end

local function is_loopback(host)
  host = host:lower()
  if host == "localhost" or host == "[::1]" then return true end
  if host:sub(1, 4) ~= "127." then return false end
  -- Plain dotted decimal only: libcurl reads a leading 0 as octal (0127.0.0.1 is 87.0.0.1).
  local octets = 0
  for part in (host .. "."):gmatch("([^.]*)%.") do
    if not (part == "0" or part:find("^[1-9]%d?%d?$")) or tonumber(part) > 255 then return false end
    octets = octets + 1
  end
  return octets == 4
end

-- "https://host[:port]" (a trailing slash tolerated) -> scheme, host, base URL without the slash.
-- The host is a DNS name or IPv4 address (letters, digits, dots, dashes, underscores) or a bracketed
-- IPv6 address; the port 1 to 65535. Nothing else (no user info, spaces or control characters).
local function parse_gateway(gateway)
  local u, why = url.split(gateway)
  if not u and why == "no host" then
    fail_option("gateway", "has no host, or a host with characters a host name cannot have", 4)
  elseif not u and why ~= "not scheme://host" then
    fail_option("gateway", "has " .. why, 4)
  elseif not u or (u.path ~= "" and u.path ~= "/") or u.query or gateway:find("#", 1, true) then
    fail_option("gateway", "must be scheme://host[:port] with no path (e.g. https://open-sea-global.alipay.com)", 4)
  elseif u.scheme ~= "https" and u.scheme ~= "http" then
    fail_option("gateway", "must use https (or http on loopback)", 4)
  elseif u.userinfo or not url.plain_host(u.host, u.ipv6) then
    fail_option("gateway", "has no host, or a host with characters a host name cannot have", 4)
  end
  local host = u.ipv6 and "[" .. u.host .. "]" or u.host
  return u.scheme, host, u.scheme .. "://" .. u.authority
end

-- Raises (at the caller of dws.client) unless every numeric option is finite and in range.
local function check_numbers(o)
  for name, range in pairs(NUMERIC_OPTIONS) do
    local v, low, high, whole, open, or_false = o[name], range[1], range[2], range[3], range[4], range[5]
    if v == true then fail_option(name, "must be a number or false", 4) end
    -- nil (the default, set where the option is used) or false (no limit) where false is allowed
    if not (or_false and not v) then
      -- written so that NaN fails: every comparison with NaN is false
      if not (v >= low and v <= high) or (open and v == low) then
        fail_option(name, string.format("must be a number %s %s and <= %s%s", open and ">" or ">=", low, high,
          or_false and ", or false" or ""), 4)
      end
      if whole and v ~= math.floor(v) then fail_option(name, "must be a whole number", 4) end
    end
  end
end

-- Raises at the caller of dws.client: an unreadable key option is a programming error.
local function load_key(name, value, kind, pin)
  local key, err = signature.load_key(value, kind, pin and { pin = pin } or nil)
  if not key then error("dws.client: option " .. name .. " " .. err, 3) end
  return key
end

local function millis_time()
  return format("%d", core.time_ms())
end

local function iso8601_time()
  local ms = core.time_ms()
  local seconds = (ms - ms % 1000) / 1000
  return os.date("!%Y-%m-%dT%H:%M:%S", seconds) .. format(".%03d+00:00", ms % 1000)
end

local function time_source(option)
  if option == "millis" then return millis_time end
  if option == "iso8601" then return iso8601_time end
  if type(option) == "function" then
    return function()
      local t = option()
      if type(t) == "number" then return format("%d", t) end
      if type(t) ~= "string" or t == "" or t:find("[%c]") then
        error("dws.client: request_time function must return a string or a number", 0)
      end
      return t
    end
  end
  fail_option("request_time", 'must be "millis", "iso8601" or a function', 4)
end

local inside_nginx = require("dws.runtime").nginx_phase

local function user_agent(transport_kind)
  local lua = _VERSION
  if type(jit) == "table" and jit.version then lua = jit.version end
  local parts = { lua }
  if transport_kind == "curl" then
    local ok, curl = pcall(require, "dws.curl")
    if ok and type(curl) == "table" and curl.version then parts[#parts + 1] = "libcurl " .. curl.version() end
  elseif transport_kind == "ngx" and ngx.config and ngx.config.ngx_lua_version then
    parts[#parts + 1] = "ngx_lua " .. tostring(ngx.config.ngx_lua_version)
  end
  local versions = core.versions()
  if versions and versions.openssl then parts[#parts + 1] = versions.openssl end
  return "lua-dws/" .. M.VERSION .. " (" .. table.concat(parts, "; ") .. ")"
end

local function choose_transport(opts, ua)
  local conf = {
    ca_file = opts.ca_file,
    proxy = opts.proxy,
    user_agent = ua,
    max_response_bytes = opts.max_response_bytes,
    -- nginx checks certificates against DNS names only: an IP gateway needs the name to expect.
    server_name = opts.server_name,
  }
  if inside_nginx() then
    if type(ngx.socket) ~= "table" or type(ngx.socket.tcp) ~= "function" then
      error("dws.client: running inside nginx without cosockets (ngx.socket.tcp); pass opts.transport", 3)
    end
    return require("dws.transport.ngx").new(conf), "ngx"
  end
  return require("dws.transport.curl").new(conf), "curl"
end

local Client = {}
Client.__index = Client

function Client.__tostring(self)
  return "dws.client(" .. self.client_id .. ")"
end

--- Make a client: parses both keys once and keeps one transport (one kept-alive connection).
-- syntax: `client = dws.client(opts)`
-- @tparam table opts `client_id`, `private_key`, `dws_public_key`, `gateway` (required); `key_version`, `pkcs11_pin`,
-- `request_time`, `timeout`, `connect_timeout`, `max_retries`, `retry_base_delay`, `max_response_bytes`,
-- `ca_file`, `proxy`, `user_agent`, `transport`, `logger`, `log_level`, `allow_insecure_http`,
-- `notification_tolerance`, `response_time_tolerance`, `notification_store`, `journal`,
-- `journal_retention`, `server_name` (docs/calls.md "Client options": defaults and ranges)
-- @treturn client the client
-- @raise on an unknown option, a wrong type, a value out of range, an unreadable key, plain http to a
-- host not on loopback, or `dws_public_key` being the public half of `private_key`
function M.new(opts)
  if type(opts) ~= "table" then error("dws.client: expects a table of options", 2) end
  for name, value in pairs(opts) do
    local allowed = OPTION_TYPES[name]
    if not allowed then error("dws.client: unknown option " .. tostring(name), 2) end
    if not allowed[type(value)] then fail_option(name, "has the wrong type (" .. type(value) .. ")") end
  end
  for _, name in ipairs{ "client_id", "private_key", "dws_public_key", "gateway" } do
    if opts[name] == nil or opts[name] == "" then error("dws.client: option " .. name .. " is required", 2) end
  end
  for _, name in ipairs(NO_CONTROL_OPTIONS) do
    if type(opts[name]) == "string" and opts[name]:find("%c") then
      fail_option(name, "must not contain control characters")
    end
  end

  local o = {}
  for name, value in pairs(DEFAULTS) do o[name] = value end
  for name, value in pairs(opts) do o[name] = value end
  local version, verr = signature.key_version(o.key_version)
  if not version then fail_option("key_version", verr) end
  o.key_version = version
  check_numbers(o)
  if o.transport ~= nil and type(o.transport.request) ~= "function" then
    fail_option("transport", "must have a request method")
  end

  local scheme, host, base = parse_gateway(o.gateway)
  if scheme == "http" and not is_loopback(host) and not o.allow_insecure_http then
    error("dws.client: refusing plain http to " .. host .. " (card data would travel unencrypted); use https, "
      .. "or set allow_insecure_http = true for a test gateway", 2)
  end
  o.gateway = base
  if not LOG_RANK[o.log_level] then fail_option("log_level", 'must be "debug", "info", "warn" or "error"') end

  local self = setmetatable({}, Client)
  self.client_id = o.client_id
  self.private_key = load_key("private_key", o.private_key, "private", o.pkcs11_pin)
  -- One key or a ring by keyVersion; the merchant's own public key given as a DWS key is refused there.
  local dws_key, kerr = signature.dws_keys(o.dws_public_key, self.private_key)
  if not dws_key then error("dws.client: option dws_public_key " .. kerr, 2) end
  self.dws_key = dws_key
  o.private_key, o.dws_public_key, o.pkcs11_pin = nil, nil, nil -- keep key text and PIN out of the options
  self.logger = o.logger
  self.options = o
  -- On by default (memory): an UNKNOWN outcome is only worth something if it can be resumed.
  local journal, jerr = require("dws.journal").open(o.journal, { retention = o.journal_retention })
  -- A journal that cannot be opened now would fail every binding later, far from the cause.
  if not journal then error("dws.client: option journal: the store cannot be opened: " .. jerr, 2) end
  self.journal = journal

  local in_nginx = inside_nginx() ~= nil
  o.user_agent = o.user_agent or user_agent(in_nginx and "ngx" or "curl")
  local kind
  if o.transport then
    self.transport = o.transport
  else
    self.transport, kind = choose_transport(o, o.user_agent)
  end

  -- Per API, once: the path as sent and signed (SANDBOX_ client ids use /ams/sandbox/api), the
  -- URL, and the headers that never change.
  local sandbox = o.client_id:sub(1, 8) == "SANDBOX_"
  local apis = {}
  for i = 1, #api.ALL do
    local def = api.ALL[i]
    local path = def.path
    if sandbox then path = path:gsub("^/ams/api/", "/ams/sandbox/api/") end
    apis[def.name] = {
      def = def,
      path = path,
      url = base .. path,
      content_type = "application/json; charset=UTF-8",
    }
  end
  self.pipeline = pipeline.new{
    client_id = self.client_id, private_key = self.private_key, dws_key = self.dws_key, options = o,
    time = time_source(o.request_time), apis = apis, transport = self.transport, logger = o.logger,
    -- No logger: no level is wanted, so every log path is one comparison.
    log_min = o.logger and LOG_RANK[o.log_level] or math.huge,
    in_nginx = kind == "ngx",
  }
  return self
end

--- A client, as `dws.client(opts)` returns it. Calls return the decoded, verified answer (result
-- status `S`), or `nil, err` with an `dws.errors` object for `F`, `U` and every local failure.
-- @type Client

--- The generic signed call behind the three API methods: validate, encode once, sign, send,
-- verify, classify, retry.
-- syntax: `res, err = client:call(api_name, request)`
-- @tparam string api_name as on the API pages: `"consultAddablePaymentMethod"`, `"cacheCard"`,
-- `"addPaymentMethod"`
-- @tparam table request the request, with the API's own field names
-- @treturn table the decoded, verified answer (`res.result.resultStatus == "S"`)
-- @treturn[2] nil
-- @treturn[2] dws.errors.Error err: `F`, `U` after the retries, or a local failure
-- @raise on an unknown API, or inside nginx in a phase without cosockets
function Client:call(api_name, request)
  local p = self.pipeline
  return p:call(p:entry(api_name, 2), request)
end

--- consultAddablePaymentMethod: the payment methods the customer can add.
-- syntax: `res, err = client:consult_addable_payment_method{ customerId =, env = {...}, scenes = {...} }`
-- @function Client:consult_addable_payment_method
-- @tparam table request as on the API page
-- @treturn table the verified answer (`res.paymentOptions`), or `nil, err` as `call`

--- cacheCard: cache a card and get a temporary token for it.
-- syntax: `res, err = client:cache_card{ paymentMethodDetail = {...} }`
-- @function Client:cache_card
-- @tparam table request as on the API page
-- @treturn table the verified answer (`res.paymentMethodDetail`), or `nil, err` as `call`

--- addPaymentMethod: bind the cached card to the customer (idempotent on `requestId`, which is
-- generated when absent and reported on `res.requestId` and `err.request_id`).
-- syntax: `res, err = client:add_payment_method{ requestId =, customerId =, paymentMethodDetail = {...}, env = {...} }`
-- @function Client:add_payment_method
-- @tparam table request as on the API page
-- @treturn table the verified answer, or `nil, err` as `call` (`RESPONSE_MISMATCH` when it names
-- another `requestId`)

for i = 1, #api.ALL do
  local def = api.ALL[i]
  local name = def.name
  Client[def.method] = function(self, request)
    return self:call(name, request)
  end
end

-- Notifications and the bind-card workflow live in their own modules, loaded on first use.

--- Verify a binding notification as received: signature over the raw bytes, the body's required
-- fields, Request-Time within `notification_tolerance` (or outside it for a requestId the journal
-- holds: a late re-send, docs/notifications.md "Notifications"). No de-duplication, no journal change.
-- syntax: `n, err = client:verify_notification(request, opts?)`
-- @tparam table request `{ method = "POST", path = "/notify", headers = {...}, body = raw }`
-- (headers in any letter case)
-- @tparam[opt] table opts `tolerance` (seconds), `now` (milliseconds): instead of the client's option
-- and clock
-- @treturn table the decoded notification
-- @treturn[2] nil
-- @treturn[2] dws.errors.Error err: `METHOD_NOT_SUPPORTED` (405), `PARAM_ILLEGAL` (400),
-- `SIGNATURE_MISSING`, `SIGNATURE_INVALID`, `NOTIFICATION_EXPIRED` (401); `err.http_status` holds the
-- status to answer
-- @raise when `request` is not a table or `request.path` is not a path
function Client:verify_notification(request, opts)
  return require("dws.notification").verify(self, request, opts)
end

--- Verify, de-duplicate, journal and hand a notification to `handler`, and say what to answer.
-- syntax: `status, headers, body = client:handle_notification(request, handler, opts?)`
-- @tparam table request as `verify_notification` takes it
-- @tparam function handler `handler(notification, binding)`: `binding` is the journal's record
-- after the notification (`client:binding`'s shape) or nil; return true (done), `false, reason` (a
-- business failure, acknowledged all the same), or `nil, err` / raise (a system failure: DWS re-sends)
-- @tparam[opt] table opts `store`, `claim_ttl` (60 s), `seen_ttl` (2 days), `tolerance`, `now`
-- @treturn int the HTTP status to answer (200, or 400/401/405 for a refusal, 500 for U)
-- @treturn table the response headers (`Content-Type`)
-- @treturn string the exact body to answer (the acknowledgement, or a fixed refusal)
-- @raise when `handler` is not a function
function Client:handle_notification(request, handler, opts)
  return require("dws.notification").handle(self, request, handler, opts)
end

--- The bind-card workflow: local card checks, consult, cache, journal, add (docs/binding.md "Binding a card").
-- syntax: `outcome, err = client:bind_card{ customerId =, env = {...}, card = {...}, ... }`
-- @tparam table params `customerId`, `env`, `card = { cardNo, securityCode, expiryYear, expiryMonth,
-- instUserName, brand? }`; `referenceCustomerId` or `referenceUserId`, `isTemporary`,
-- `paymentMethodDetailMetadata`, `redirectUrl`, `requestId`
-- @treturn table outcome `{ status, requestId, mask, last4, brand, expiryTime, paymentMethodType,
-- actionForm, redirectUrl, resultCode, error }`; status `ACCEPTED`, `ACTION_REQUIRED`, `UNKNOWN`,
-- `BOUND` or `FAILED`
-- @treturn[2] nil
-- @treturn[2] dws.errors.Error err: an F answer or a failure before sending (`CARD_INVALID`,
-- `PAYMENT_METHOD_NOT_ADDABLE`, `CARD_MISMATCH`, `REQUEST_ID_REUSED`, `JOURNAL_UNAVAILABLE`, ...)
function Client:bind_card(params)
  return require("dws.bind_card").bind(self.pipeline, self.journal, params)
end

--- A binding as the journal has it.
-- syntax: `binding, err = client:binding(requestId)`
-- @tparam string request_id the addPaymentMethod `requestId`
-- @treturn table the record plus `status` (as in an outcome) and `state`; nil when the journal
-- does not know the requestId
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Client:binding(request_id)
  return require("dws.bind_card").binding(self.journal, request_id)
end

--- Wait until a notification has decided a binding (BOUND or FAILED, or UNCONFIRMED: a notification
-- that is neither, for a person to look at), reading the journal every `interval` seconds
-- (ngx.sleep inside nginx, dws.core.sleep elsewhere); the notification reaches the journal through
-- whatever shares it (an nginx endpoint, `dws listen --journal`).
-- syntax: `binding, err = client:wait_binding(requestId, { timeout = 30, interval = 0.25 })`
-- @tparam string request_id the addPaymentMethod `requestId`
-- @tparam[opt] table opts `timeout` (seconds, default 30), `interval` (seconds, default 0.25)
-- @treturn table the binding as the notification left it, as `binding` returns it
-- @treturn[2] nil
-- @treturn[2] dws.errors.Error err: `WAIT_TIMEOUT` (`err.binding`: the record as it was), `BINDING_NOT_FOUND`,
-- `JOURNAL_UNAVAILABLE`
-- @raise on a bad requestId or option
function Client:wait_binding(request_id, opts)
  return require("dws.wait").wait(self, request_id, opts)
end

--- Re-send a binding's journaled bytes (re-signed) when its outcome is unknown.
-- syntax: `outcome, err = client:resume_binding(requestId)`
-- @tparam string request_id the addPaymentMethod `requestId`
-- @treturn table an outcome as `bind_card` returns it
-- @treturn[2] nil
-- @treturn[2] dws.errors.Error err: `BINDING_NOT_FOUND`, `BINDING_FINAL` (`err.binding`), an F answer
-- (`err.reenter_card` when the temporary token expired), `RESUME_INCONSISTENT`
function Client:resume_binding(request_id)
  return require("dws.bind_card").resume(self.pipeline, self.journal, request_id)
end

--- The bindings not yet final, for a sweeper.
-- syntax: `bindings, err = client:pending_bindings{ older_than = seconds }`
-- @tparam[opt] table opts `older_than`: seconds since the last change (default 0)
-- @treturn {table,...} records as `binding` returns them, oldest first
-- @treturn[2] nil
-- @treturn[2] string err when the store cannot answer
function Client:pending_bindings(opts)
  return require("dws.bind_card").pending(self.journal, opts)
end

--- Many calls in flight (plain Lua 5.4 / LuaJIT over libcurl's multi interface; raises inside
-- nginx, where light threads do this). Each request runs the same pipeline as `client:call`.
-- syntax: `results = client:run_all(requests, { concurrency = 32 })`
-- @tparam table requests an array of `{ api, request }` (or `{ api = , request = }`)
-- @tparam[opt] table opts `concurrency` (1 to 1024, default 32)
-- @treturn table `results[i]` is `{ res = answer }` or `{ err = error object }`, in request order
-- @raise on an unknown API name, a bad `concurrency`, or inside nginx
function Client:run_all(requests, opts)
  -- run_all's own connection pool, kept for the next batch and closed with the client
  self.runner = self.runner or require("dws.multi").runner(self.pipeline)
  return self.runner:run(requests, opts)
end

--- Send an event to the configured logger, if any, shielded from its failures (for the
-- notification and bind-card modules too: a failing logger must never break a payment flow).
-- The message and every string field are redacted and have control characters escaped.
-- syntax: `client:log(level, message, fields)`
-- @tparam string level `"debug"`, `"info"`, `"warn"` or `"error"`
-- @tparam string message
-- @tparam[opt] table fields
function Client:log(level, message, fields)
  self.pipeline:log(level, message, fields)
end

--- Release the transport's connection (also done by the garbage collector). Idempotent.
-- syntax: `client:close()`
function Client:close()
  local transport = self.transport
  if transport and type(transport.close) == "function" then transport:close() end
  if self.runner then self.runner:close() end -- run_all's connection pool
end

return M
