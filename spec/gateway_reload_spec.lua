-- An nginx reload (HUP, `dws gateway reload`) in the middle of traffic, on two workers sharing the
-- node-local store: every backend call is answered, and every binding's event reaches the backend once.
local nginx = require "dws_sandbox.nginx"
local gw = require "helpers.gateway"

local CONSULT = '{"customerId":"2162878776333","env":{"terminalType":"WEB"}}'
local q = nginx.sh_quote

describe("the gateway reloaded under traffic #nginx", function()
  local g, codes_file, traffic_pid, ids

  setup(function()
    g = assert(gw.start{ backend = true, config = { workers = 2 } })
    codes_file = g.dir .. "/codes.txt"
    -- curl(1) in a shell loop: calls keep arriving while nginx swaps its workers.
    local cmd = "for i in $(seq 60); do curl -s -o /dev/null -w '%{http_code}\\n' -H " ..
      q("Authorization: Bearer " .. gw.TOKEN) .. " -H 'Content-Type: application/json' -d " .. q(CONSULT) .. " " ..
      q(g.url .. "/v1/consultAddablePaymentMethod") .. " >> " .. q(codes_file) .. "; done"
    local p = io.popen("sh -c " .. q(cmd) .. " >/dev/null 2>&1 & echo $!")
    traffic_pid = tonumber(p:read("*l"))
    p:close()
  end)

  teardown(function()
    if traffic_pid then nginx.run("kill " .. traffic_pid .. " 2>/dev/null") end
    if g then g:stop() end
  end)

  local function lines()
    local out = {}
    for line in (nginx.read_file(codes_file) or ""):gmatch("[^\n]+") do out[#out + 1] = line end
    return out
  end

  it("reloads while calls and bindings are under way", function()
    assert(gw.eventually(function() return #lines() >= 5 end), "no traffic")
    ids = g:bind_cards(2)
    local rc = g:dws("gateway", "reload", "--config", g.config_file)
    assert(#lines() < 60, "the traffic ended before the reload")
    local more = g:bind_cards(2)
    ids[3], ids[4] = more[1], more[2]
    assert.are.equal(0, rc)
  end)

  it("was reloaded by nginx (new workers)", function()
    assert.truthy(gw.eventually(function() return g:error_log():find("reconfiguring", 1, true) end))
  end)

  it("answered every call of the traffic with 200", function()
    assert(gw.eventually(function() return #lines() == 60 end, 60), "traffic did not finish")
    local bad = {}
    for _, c in ipairs(lines()) do
      if c ~= "200" then bad[#bad + 1] = c end
    end
    assert.are.same({}, bad)
  end)

  it("forwarded every binding's event once", function()
    assert(gw.eventually(function() return #g:events() >= 4 end), "events missing")
    local got = {}
    for _, e in ipairs(g:events()) do got[#got + 1] = e.event.data.requestId end
    table.sort(got)
    table.sort(ids)
    assert.are.same({ ids, {} }, { got, g:repeats() })
  end)
end)
