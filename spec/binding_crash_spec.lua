-- A merchant script killed (SIGKILL) after the journal write and before addPaymentMethod's
-- answer, and a new process that finishes the binding from the SQLite journal: identical bytes
-- on every attempt, one binding, BOUND once the notification reaches the example merchant
-- server (OpenResty) that shares the journal file.
-- Tagged #nginx (run under one busted flavour): the processes killed and resumed run under lua5.4
-- whatever the flavour, and the notification is handled inside nginx.
local dws = require "dws"
local nginx = require "dws_sandbox.nginx"
local sandbox = require "helpers.sandbox"

local ROOT = os.getenv("DWS_ROOT")
package.path = ROOT .. "/examples/?.lua;" .. package.path
local merchant_server = require "merchant_server"

-- The pending test card: its notification would come notify_delay seconds after the request,
-- long after the spec ends; the spec has the sandbox send it (admin re-send) once the kill and the
-- resume are done, so the notification comes after both without waiting for a clock.
local CARD = "4000000000000077"
local NOTIFY_DELAY = 3600

local dir, sb, server, journal_spec

local function lua54(args)
  return string.format("LUA_PATH='%s/lua/?.lua;%s/lua/?/init.lua;;' LUA_CPATH='%s/build/5.4/?.so;;' lua5.4 %s",
    ROOT, ROOT, ROOT, args)
end

lazy_setup(function()
  dir = nginx.tmpdir("dws-crash")
  journal_spec = "sqlite:" .. dir .. "/journal.db"
  local merchant_port = nginx.free_ports(1)[1]
  sb = assert(sandbox.start{ notify_url = "http://127.0.0.1:" .. merchant_port .. "/notify",
                             notify_scale = 0.001, notify_delay = NOTIFY_DELAY })
  nginx.write_file(dir .. "/merchant_private.pem", sb.merchant.private_key, "600")
  server = assert(merchant_server.start{
    dir = dir .. "/merchant", port = merchant_port, gateway = sb.http_url, client_id = sb.merchant.client_id,
    private_key_file = dir .. "/merchant_private.pem", dws_public_key_file = sb.dws_public_key_file,
    journal = journal_spec,
  })
  nginx.write_file(dir .. "/child.lua", "return " .. string.format(
    "{ client_id = %q, private_key = %q, dws_public_key = %q, gateway = %q, journal = %q, admin = %q, "
    .. "id_file = %q, card = %q }", sb.merchant.client_id, sb.merchant.private_key, sb.dws_public_key,
    sb.http_url, journal_spec, sb.http_url, dir .. "/request_id", CARD))
end)

lazy_teardown(function()
  if server then server:stop() end
  if sb then sb:stop() end
  nginx.rmdir(dir)
end)

describe("a binding interrupted by SIGKILL #nginx", function()
  it("is resumed by a new process with identical bytes and ends BOUND by the notification", function()
    -- 1. The first process: journal written, request sent, answer held by the sandbox; killed.
    local pid_file = dir .. "/child.pid"
    nginx.write_file(dir .. "/child.sh", "echo $$ > " .. pid_file .. "\nexec env "
      .. lua54(ROOT .. "/spec/helpers/crash_child.lua " .. dir .. "/child.lua") .. "\n")
    os.execute("sh " .. dir .. "/child.sh >" .. dir .. "/child.out 2>&1 &")
    local id = sb:wait(function()
      local held
      for _, r in ipairs(sb:requests()) do
        if r.api == "addPaymentMethod" and r.fault == "never_answer" then held = r.requestId end
      end
      return held
    end, 30)
    assert.is_string(id, nginx.read_file(dir .. "/child.out"))
    local pid = assert(nginx.read_file(pid_file)):match("%d+")
    os.execute("kill -KILL " .. pid)
    assert.is_truthy(sb:wait(function()
      local r = os.execute("kill -0 " .. pid .. " 2>/dev/null") -- true / 0 (LuaJIT) while it lives
      return not (r == true or r == 0)
    end, 10))

    -- What the killed process left: the record, in SENT (reported UNKNOWN), with the bytes.
    local client = dws.client{ client_id = sb.merchant.client_id, private_key = sb.merchant.private_key,
      dws_public_key = sb.dws_public_key, gateway = sb.http_url, journal = journal_spec }
    local left = assert(client:binding(id))
    assert.are.same({ "SENT", "UNKNOWN" }, { left.state, left.status })
    local pending = assert(client:pending_bindings{ older_than = 0 })
    assert.are.equal(id, pending[1] and pending[1].requestId)

    -- 2. A new process resumes it.
    local p = assert(io.popen(lua54(ROOT .. "/spec/helpers/crash_child.lua " .. dir .. "/child.lua resume " .. id)))
    local said = p:read("a")
    p:close()
    assert.are.equal("ACCEPTED", said)

    -- 3. The notification, held until now, reaches the merchant server, which shares the journal.
    assert.are_not.equal("BOUND", client:binding(id).state) -- nothing arrived before it was sent
    sb:admin("POST", "notifications/resend", { requestId = id })
    local bound = sb:wait(function()
      local b = client:binding(id)
      return b and b.state == "BOUND" and b
    end, 20)
    assert.is_table(bound)
    assert.is_string(bound.cardToken)

    -- The sandbox saw every attempt with the same bytes, and bound the card once.
    local hashes, n = {}, 0
    for _, r in ipairs(sb:requests()) do
      if r.api == "addPaymentMethod" and r.requestId == id then
        n = n + 1
        hashes[r.body_sha256] = true
      end
    end
    local distinct = 0
    for _ in pairs(hashes) do distinct = distinct + 1 end
    assert.are.same({ 2, 1 }, { n, distinct })
    local acked = 0
    for _, d in ipairs(sb:deliveries()) do
      if d.requestId == id and d.acknowledged then acked = acked + 1 end
    end
    assert.are.equal(1, acked)
    assert.are.equal(0, #assert(client:pending_bindings{ older_than = 0 }))
    -- No card number in the journal file.
    local db = nginx.read_file(dir .. "/journal.db") .. (nginx.read_file(dir .. "/journal.db-wal") or "")
    assert.is_nil(db:find(CARD, 1, true))
  end)
end)
