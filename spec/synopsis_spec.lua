-- The README's OpenResty synopsis (examples/openresty/synopsis.conf), and its Redis variant for
-- several nodes (synopsis_redis.conf, on a real redis-server), each started exactly as written (only
-- its documented ${NAME} placeholders replaced) with the sandbox as the gateway: a card bound
-- through POST /bind, the notification the sandbox sends received on POST /notify, and the binding
-- read back as BOUND from GET /binding.
local dws = require "dws"
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local sandbox = require "helpers.sandbox"
local redis_server = require "helpers.redis"

local root = os.getenv("DWS_ROOT") or "."
local CLIENT_ID = "SANDBOX_SYNOPSIS000001"

local dir, priv, sb, http, ca_file, tree
local servers = {} -- variant name -> { prefix =, url =, redis = }

-- Plain string replacement of the placeholders the file documents; any other ${...} left is an error.
local function fill(template, vars)
  local out = template
  for name, value in pairs(vars) do
    local needle = "${" .. name .. "}"
    assert(out:find(needle, 1, true), "synopsis.conf has no " .. needle)
    local parts, start = {}, 1
    while true do
      local i, j = out:find(needle, start, true)
      if not i then break end
      parts[#parts + 1] = out:sub(start, i - 1) .. value
      start = j + 1
    end
    out = table.concat(parts) .. out:sub(start)
  end
  -- the comment at the top names them all: outside comments, nothing else may be left
  for line in out:gmatch("[^\n]+") do
    assert(line:match("^%s*#") or not line:find("${", 1, true), "unreplaced placeholder: " .. line)
  end
  return out
end

local function request(server, method, path, body)
  local res, kind, message = http:request{ method = method, url = server.url .. path, body = body,
    headers = { ["Content-Type"] = "application/json" }, timeout = 20, connect_timeout = 5 }
  assert(res, "synopsis server: " .. tostring(kind) .. " " .. tostring(message))
  return res.status, dws.decode_json(res.body)
end

lazy_setup(function()
  dir = nginx.tmpdir("dws-synopsis")
  priv = nginx.make_keypair(dir, "merchant")
  sb = assert(sandbox.start{
    bound_notify_delay = 0.5,
    clients = { [CLIENT_ID] = { public_key = nginx.read_file(dir .. "/merchant_public.pem") } },
    notify_scale = 0.001,
  })
  -- Workers run as nobody (the file's user directive) and load the CA bundle themselves: like
  -- /etc/ssl/certs, it must be readable by them. The keys stay 0600: the master reads them.
  ca_file = dir .. "/ca.pem"
  assert(nginx.write_file(ca_file, assert(nginx.read_file(sb.ca_file)), "644"))
  assert(nginx.run("chmod 711 " .. nginx.sh_quote(dir)))
  -- The source tree laid out as the rocks tree the synopsis names: its Lua files and its LuaJIT build.
  -- (spec/install_spec.lua starts the synopsis on a tree the rocks made.)
  tree = dir .. "/tree"
  assert(nginx.run("mkdir -p " .. nginx.sh_quote(tree .. "/share/lua") .. " " .. nginx.sh_quote(tree .. "/lib/lua") ..
    " && ln -s " .. nginx.sh_quote(root .. "/lua") .. " " .. nginx.sh_quote(tree .. "/share/lua/5.1") ..
    " && ln -s " .. nginx.sh_quote(root .. "/build/jit") .. " " .. nginx.sh_quote(tree .. "/lib/lua/5.1")))
  http = require("dws.transport.curl").new{}
end)

-- One variant's nginx, its notify URL the sandbox client's from now on.
local function start(name, file, extra)
  local prefix = dir .. "/" .. name
  local port = nginx.free_ports(1)[1]
  local vars = {
    PORT = tostring(port),
    TREE = tree,
    CLIENT_ID = CLIENT_ID,
    PRIVATE_KEY_FILE = priv,
    DWS_PUBLIC_KEY_FILE = sb.dws_public_key_file,
    GATEWAY = sb.https_url,
    -- the sandbox listens on 127.0.0.1; its certificate names localhost
    GATEWAY_NAME = "localhost",
    CA_FILE = ca_file,
    RESOLVER = "127.0.0.1",
  }
  for k, v in pairs(extra or {}) do vars[k] = v end
  local conf = fill(assert(nginx.read_file(root .. "/examples/openresty/" .. file)), vars)
  assert(nginx.start(prefix, conf, { port }))
  local server = { prefix = prefix, url = "http://127.0.0.1:" .. port }
  sb:notify_url(server.url .. "/notify")
  return server
end

lazy_teardown(function()
  for _, server in pairs(servers) do
    nginx.stop(server.prefix)
    if server.redis then server.redis:stop() end
  end
  if sb then sb:stop() end
  nginx.rmdir(dir)
end)

local VARIANTS = {
  { name = "synopsis", file = "synopsis.conf" },
  { name = "synopsis_redis", file = "synopsis_redis.conf", redis = true },
}

for _, variant in ipairs(VARIANTS) do
  describe("the OpenResty " .. variant.name .. " #nginx", function()
    local server
    lazy_setup(function()
      local extra
      if variant.redis then
        local redis = assert(redis_server.start{ durable = true })
        extra = { REDIS_URL = redis.url }
        server = start(variant.name, variant.file, extra)
        server.redis = redis
      else
        server = start(variant.name, variant.file)
      end
      servers[variant.name] = server
    end)

    it("binds a card, receives the notification and reads the binding BOUND with its final token", function()
      local status, answer = request(server, "POST", "/bind", assert(core.json_encode{
        customerId = "2162878776333", env = { terminalType = "WEB" }, referenceCustomerId = "synopsis-42",
        card = { cardNo = "4111111111111111", securityCode = "731", expiryMonth = "09",
                 expiryYear = tostring(tonumber(os.date("!%Y")) + 2),
                 instUserName = { firstName = "Kim", lastName = "Park" } },
      }))
      -- ACCEPTED: the sandbox holds the notification (bound_notify_delay) until the answer is read.
      assert.are.same({ 200, "ACCEPTED" }, { status, answer.outcome and answer.outcome.status })
      local id = answer.outcome.requestId

      local binding = sb:wait(function()
        local s, b = request(server, "GET", "/binding?requestId=" .. id)
        return s == 200 and b.binding.state == "BOUND" and b.binding
      end, 20)
      assert.is_truthy(binding, "the binding never became BOUND")
      assert.are.same({ "BOUND", true, false }, { binding.status, type(binding.cardToken) == "string",
        (binding.cardToken or "PYMT"):match("^PYMT") ~= nil })
    end)

    it("answers GET /binding for a requestId it does not know with 404", function()
      local status = request(server, "GET", "/binding?requestId=" .. core.uuid4())
      assert.are.equal(404, status)
    end)

    it("refuses a notification signed with another key than DWS's, with the SDK's exact answer", function()
      local body = assert(core.json_encode{ requestId = core.uuid4(), referenceCustomerId = "synopsis-42",
        paymentMethodDetail = { paymentMethodDetailType = "CARD", card = { cardToken = "ALIPAYforged" } } })
      local time = tostring(core.time_ms())
      local h = require("dws.curl").new{ max_response_bytes = 65536 }
      local status, _, answer = h:request(server.url .. "/notify", {
        "Content-Type: application/json", "Client-Id: " .. CLIENT_ID, "Request-Time: " .. time,
        "Signature: " .. assert(dws.signature.sign{ private_key = assert(nginx.read_file(priv)), method = "POST",
          path = "/notify", client_id = CLIENT_ID, time = time, body = body }),
      }, body, 20, 5, "POST")
      h:close()
      assert.are.same({ 401, require("dws.notification").REFUSAL_BODIES.INVALID_SIGNATURE }, { status, answer })
    end)

    it("keeps the card number out of the error log", function()
      local log = assert(nginx.read_file(server.prefix .. "/logs/error.log"))
      assert.is_nil(log:find("4111111111111111", 1, true))
    end)
  end)
end
