-- The merchant key rotation runbook of docs/keys.md, run as written against the real sandbox: a
-- new pair from `dws keygen --key-version 2`, its public half registered beside the old one, then
-- two nginx merchant nodes switched one after the other (new key file, `nginx -s reload`) while
-- binding calls keep running through both. No call may fail (the nodes do not retry), and every
-- request must verify against the key of the version it names: the sandbox checks each against
-- the merchant's registered set, and the openssl command line checks the consult requests again.
-- Tagged #nginx: the nodes run inside nginx; the busted process drives the load over curl.multi.
local core = require "dws.core"
local curl = require "dws.curl"
local dws = require "dws"
local nginx = require "dws_sandbox.nginx"
local sandbox = require "helpers.sandbox"
local files = require "helpers.files"

local ROOT = os.getenv("DWS_ROOT")
local q = nginx.sh_quote
local CUSTOMER = "2162878776333"
local SLOTS = 8

local NODE = [[
events { worker_connections 256; }
http {
  %s
  access_log off;
  init_by_lua_block {
    local function read(p) local f = assert(io.open(p)); local s = f:read("*a"); f:close(); return s end
    -- The node's key settings, re-read on every reload: the runbook's switch is this file and a reload.
    local keys = dofile("%s/keys.lua")
    package.loaded.node_client = require("dws").client{
      client_id = "%s", gateway = "%s", dws_public_key = read("%s"),
      private_key = read(keys.private_key_file), key_version = keys.key_version,
      max_retries = 0,
    }
  }
  server {
    listen 127.0.0.1:@PORT@;
    location = /bind {
      content_by_lua_block {
        local client = package.loaded.node_client
        local outcome, err = client:bind_card{ customerId = "%s", env = { terminalType = "WEB" },
          referenceCustomerId = "rotation-" .. (ngx.var.arg_i or "0"),
          card = { cardNo = "4111111111111111", securityCode = "123", expiryMonth = "06",
                   expiryYear = tostring(tonumber(os.date("!%%Y")) + 2),
                   instUserName = { firstName = "Ann", lastName = "Lee" } } }
        ngx.print((outcome and outcome.status or ("ERROR " .. tostring(err))) .. " " .. client.options.key_version)
      }
    }
  }
}
]]

local sb, dir, nodes, v2_pub_b64
local answers = {}       -- { node =, text = }
local switched_under_load = {} -- calls in flight when each node was told to reload

local function dws_cmd(args)
  local out = dir .. "/cmd.out"
  local ok = os.execute("lua5.4 " .. q(ROOT .. "/bin/dws") .. " " .. args .. " >" .. q(out) .. " 2>&1")
  return (ok == true or ok == 0), files.read(out)
end

local function write_keys(node, private_key_file, version)
  files.write(node.prefix .. "/keys.lua", string.format("return { private_key_file = %q, key_version = %q }\n",
    private_key_file, version))
end

local function start_node(i, private_key_file)
  local prefix = dir .. "/node" .. i
  nginx.mkdir(prefix)
  local node = { prefix = prefix }
  write_keys(node, private_key_file, "1")
  local ports, why = nginx.start_on_free_ports(prefix, 1, function(p)
    return nginx.preamble(prefix):gsub("worker_processes 1", "worker_processes 2") ..
      string.format(NODE, nginx.lua_paths(), prefix, sb.merchant.client_id, sb.http_url, sb.dws_public_key_file,
        CUSTOMER):gsub("@PORT@", tostring(p[1]))
  end)
  node.port = assert(ports, why)[1]
  return node
end

-- The load: SLOTS binding calls in flight at all times, alternating between the nodes, until
-- done() says so (the calls stay in flight), or, with `drain`, until every call has answered.
-- Every answer is kept.
local multi, sent, in_flight = nil, 0, {}
local function load_until(done, deadline, drain)
  local stop = false
  while true do
    while not stop and multi:running() < SLOTS do
      sent = sent + 1
      local n = sent % 2 + 1
      local slot = assert(multi:start("http://127.0.0.1:" .. nodes[n].port .. "/bind?i=" .. sent, {}, nil, 30, 5))
      in_flight[slot] = n
    end
    if not stop and (done() or core.monotonic() > deadline) then
      if not drain then return end
      stop = true
    end
    if stop and multi:running() == 0 then return end
    for _, slot in ipairs{ multi:perform(0.05) } do
      local status, _, body = multi:take(slot)
      answers[#answers + 1] = { node = in_flight[slot], text = status == 200 and body or ("HTTP " .. tostring(status)) }
      in_flight[slot] = nil
    end
  end
end

-- Answers from node n naming keyVersion v since answer number `from`.
local function count(n, v, from)
  local c = 0
  for i = from, #answers do
    if answers[i].node == n and answers[i].text:match(" (%S+)$") == v then c = c + 1 end
  end
  return c
end

-- Switch node n to the new key: its key file, then a graceful reload (old workers finish their
-- calls with the old key; new workers sign with the new one).
local function switch(n, private_key_file)
  write_keys(nodes[n], private_key_file, "2")
  local before = #answers + 1
  switched_under_load[n] = multi:running()
  assert(os.execute("kill -HUP " .. nginx.pid_of(nodes[n].prefix)))
  return before
end

lazy_setup(function()
  dir = nginx.tmpdir("dws-rotation")
  sb = assert(sandbox.start())
  local v1_file = dir .. "/merchant_private.pem"
  files.write(v1_file, sb.merchant.private_key)
  -- Runbook step 1: the new pair, made for keyVersion 2.
  local ok, out = dws_cmd("keygen --out " .. q(dir .. "/keys") .. " --key-version 2")
  assert(ok, out)
  v2_pub_b64 = files.read(dir .. "/keys/merchant_v2_public.b64"):gsub("%s", "")
  -- Step 2: upload the public half; DWS then holds both versions.
  sb:admin("POST", "merchant-keys", { client_id = sb.merchant.client_id,
    keys = { ["1"] = sb.merchant.public_key, ["2"] = v2_pub_b64 } })
  nodes = { start_node(1, v1_file), start_node(2, v1_file) }
  multi = curl.multi{ slots = SLOTS, max_response_bytes = 65536, multiplex = false }
  -- Step 3 under load: switch node 1, then node 2, each once its new workers answer.
  local v2_file = dir .. "/keys/merchant_v2_private.pem"
  local deadline = core.monotonic() + 60
  load_until(function() return #answers >= 30 end, deadline)
  for n = 1, 2 do
    local from = switch(n, v2_file)
    load_until(function() return count(n, "2", from) >= 15 end, deadline)
  end
  load_until(function() return count(1, "2", 1) + count(2, "2", 1) >= 60 end, deadline, true)
end)

lazy_teardown(function()
  if multi then multi:close() end
  for _, n in ipairs(nodes or {}) do nginx.stop(n.prefix) end
  if sb then sb:stop() end
  if dir then nginx.rmdir(dir) end
end)

describe("dws keygen --key-version #nginx", function()
  it("names the pair's files after the version", function()
    assert.is_truthy(core.public_key(v2_pub_b64))
  end)
end)

describe("two nodes switched to a new key under load #nginx", function()
  it("fails no binding call", function()
    local failed = {}
    for _, a in ipairs(answers) do
      if not a.text:find("^ACCEPTED ") then failed[#failed + 1] = a.text end
    end
    assert.are.same({}, failed)
  end)

  it("switched each node with the load's calls in flight", function()
    assert.are.same({ SLOTS, SLOTS }, switched_under_load)
  end)

  it("ended with both nodes signing with keyVersion 2", function()
    local last = {}
    for _, a in ipairs(answers) do last[a.node] = a.text:match(" (%S+)$") end
    assert.are.same({ "2", "2" }, last)
  end)

  it("had the sandbox verify every request against the key of the version it names", function()
    local bad, seen = {}, {}
    for _, r in ipairs(sb:requests()) do
      local v = r.signature and r.signature:match("keyVersion=([^,]*)")
      seen[v or "none"] = true
      if not r.verified then bad[#bad + 1] = tostring(v) .. " " .. tostring(r.resultCode) end
    end
    assert.are.same({ {}, { ["1"] = true, ["2"] = true } }, { bad, seen })
  end)

  it("verifies every consult request with openssl, by the version it names", function()
    -- The consult bytes bind_card sends (dws.core's encoder is deterministic).
    local local_client = dws.client(sb:client_options())
    local body = assert(local_client:encode_request("consultAddablePaymentMethod",
      { customerId = CUSTOMER, env = { terminalType = "WEB" } }))
    local pem = { ["1"] = dir .. "/merchant_public.pem", ["2"] = dir .. "/keys/merchant_v2_public.pem" }
    files.write(pem["1"], sb.merchant.public_key)
    local script, n = {}, 0
    for _, r in ipairs(sb:requests()) do
      if r.api == "consultAddablePaymentMethod" then
        n = n + 1
        local v = r.signature:match("keyVersion=([^,]*)")
        local b64 = core.url_decode(r.signature:match("signature=([^,]*)"))
        files.write(dir .. "/c" .. n, "POST " .. r.path .. "\n" .. r.client_id .. "." .. r.request_time .. "." .. body)
        files.write(dir .. "/s" .. n, core.base64_decode(b64))
        script[#script + 1] = "openssl dgst -sha256 -verify " .. q(pem[v]) .. " -signature " .. q(dir .. "/s" .. n)
          .. " " .. q(dir .. "/c" .. n)
      end
    end
    local p = io.popen("{ " .. table.concat(script, "; ") .. "; } 2>&1 | grep -c '^Verified OK$'")
    local verified = tonumber(p:read("*a"))
    p:close()
    assert.are.same({ n, true }, { verified, n >= 60 })
  end)
end)
