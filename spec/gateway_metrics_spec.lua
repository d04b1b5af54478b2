-- The gateway's /metrics: clean for `promtool check metrics`, and scraped by a real Prometheus
-- server (Debian's prometheus), whose queries return the counts of what the spec did.
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local gw = require "helpers.gateway"

local CONSULT = '{"customerId":"2162878776333","env":{"terminalType":"WEB"}}'
local q = nginx.sh_quote

describe("the gateway's /metrics #nginx", function()
  local g, prom_dir, prom_pid, prom_port, text

  local function query(expr)
    -- Prometheus takes a moment to listen: a refused connection is "not yet".
    local ok, status, _, body = pcall(g.request, g, "GET", "/api/v1/query?query=" .. core.url_encode(expr), nil, {},
      "http://127.0.0.1:" .. prom_port)
    if not ok or status ~= 200 then return nil end
    local r = core.json_decode(body)
    local first = r and r.data and r.data.result and r.data.result[1]
    return first and tonumber(first.value[2])
  end

  setup(function()
    g = assert(gw.start{ backend = true })
    for _ = 1, 2 do g:request("POST", "/v1/consultAddablePaymentMethod", CONSULT) end
    g:request("POST", "/v1/cacheCard", "{}", { "Authorization: Bearer " .. gw.LIMITED_TOKEN })
    local p = io.popen("python3 " .. q((os.getenv("DWS_ROOT") or ".") .. "/examples/gateway/backend.py") ..
      " bind " .. g.url .. " " .. gw.TOKEN)
    p:read("*a")
    p:close()
    assert(gw.eventually(function() return #g:events() == 1 end), "no event forwarded")
    local _, _, body = g:request("GET", "/metrics", nil, {}, g.metrics_url)
    text = body
    prom_dir = nginx.tmpdir("dws-prometheus")
    prom_port = nginx.free_ports(1)[1]
    nginx.write_file(prom_dir .. "/prometheus.yml", "global:\n  scrape_interval: 1s\nscrape_configs:\n" ..
      "  - job_name: dws_gateway\n    static_configs:\n      - targets: ['127.0.0.1:" .. g.metrics_port .. "']\n")
    local pp = io.popen("prometheus --config.file=" .. q(prom_dir .. "/prometheus.yml") .. " --storage.tsdb.path=" ..
      q(prom_dir .. "/data") .. " --web.listen-address=127.0.0.1:" .. prom_port .. " >" ..
      q(prom_dir .. "/prometheus.log") .. " 2>&1 & echo $!")
    prom_pid = tonumber(pp:read("*l"))
    pp:close()
  end)

  teardown(function()
    if prom_pid then
      nginx.run("kill -TERM " .. prom_pid .. " 2>/dev/null")
      gw.eventually(function() return not nginx.read_file("/proc/" .. prom_pid .. "/stat") end, 10)
    end
    nginx.rmdir(prom_dir)
    if g then g:stop() end
  end)

  it("passes promtool check metrics", function()
    local path = prom_dir .. "/metrics.txt"
    nginx.write_file(path, text)
    local p = io.popen("promtool check metrics < " .. q(path) .. " 2>&1; echo rc=$?")
    local out = p:read("*a")
    p:close()
    assert.are.equal("rc=0\n", out)
  end)

  it("counts calls by api, status and code", function()
    assert.truthy(text:find('dws_gateway_calls_total{api="consultAddablePaymentMethod",status="S",code="SUCCESS"} 2',
      1, true))
  end)

  it("has the outbox and pending gauges", function()
    assert.truthy(text:find("\ndws_gateway_outbox_depth 0\n", 1, true) and
      text:find("\ndws_gateway_pending_bindings 0\n", 1, true))
  end)

  it("is scraped by Prometheus, whose query returns the calls made", function()
    local v = gw.eventually(function()
      return query('dws_gateway_calls_total{api="consultAddablePaymentMethod",status="S"}')
    end, 30)
    assert.are.equal(2, v)
  end)

  it("shows Prometheus the refusal by its code", function()
    assert.are.equal(1, gw.eventually(function()
      return query('dws_gateway_calls_total{status="REFUSED",code="API_NOT_ALLOWED"}')
    end, 30))
  end)

  it("shows Prometheus the acknowledged notification and the forwarded event", function()
    local v = gw.eventually(function()
      local n, f = query('dws_gateway_notifications_total{outcome="acknowledged"}'),
        query("dws_gateway_forwarded_total")
      return n and f and { n, f }
    end, 30)
    assert.are.same({ 1, 1 }, v)
  end)
end)
