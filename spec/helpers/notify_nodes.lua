-- Merchant nodes receiving notifications, and a driver that delivers them as DWS does, for specs
-- with several nginx processes (spec/multinode_spec.lua, spec/notification_outage_spec.lua).
--
--   local nodes = require "helpers.notify_nodes"
--   local port = nodes.start(prefix, conf_fmt, ...)      -- conf_fmt's first %s: lua paths; @PORT@
--   local driver = nodes.start_driver(prefix)
--   local file, ids = nodes.sign(dir, dws_key, client_id, tag, n)   -- n signed notifications
--   local tally = nodes.drive(driver, file, { url, ... }, deadline, batch)
--   nodes.counts(redis, "done:tag-*") -> { runs =, ids =, max = }
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"

local M = {}

-- The driver: POST /drive {file=, targets={urls}, deadline=}: for each line of the file (one
-- signed notification), every target gets it at the same moment; each delivery is re-sent while
-- the answer is not S, until deadline seconds have passed. Answers tallied by final status.
local DRIVER = [[
events { worker_connections 4096; }
http {
  %s
  access_log off;
  client_body_buffer_size 64k;
  server {
    listen 127.0.0.1:@PORT@;
    location = /drive {
      content_by_lua_block {
        local core = require "dws.core"
        ngx.req.read_body()
        local job = core.json_decode(ngx.req.get_body_data())
        local http = require("dws.transport.ngx").new{}
        local stop_at = ngx.now() + job.deadline
        local tally = { S = 0, other = 0, sends = 0 }
        local function deliver(url, n)
          while true do
            tally.sends = tally.sends + 1
            local res = http:request{ method = "POST", url = url, body = n.body, timeout = 10, connect_timeout = 5,
              headers = { ["Content-Type"] = "application/json", ["Client-Id"] = n.client_id,
                          ["Request-Time"] = n.time, ["Signature"] = n.signature } }
            if res and res.status == 200 and res.body:find('"resultStatus":"S"', 1, true) then
              tally.S = tally.S + 1
              return
            end
            if ngx.now() > stop_at then tally.other = tally.other + 1; return end
            ngx.sleep(0.05)
          end
        end
        local list = {}
        for line in io.lines(job.file) do list[#list + 1] = core.json_decode(line) end
        local batch = job.batch or 50
        for i = 1, #list, batch do
          local threads = {}
          for j = i, math.min(i + batch - 1, #list) do
            for _, url in ipairs(job.targets) do threads[#threads + 1] = ngx.thread.spawn(deliver, url, list[j]) end
          end
          for _, t in ipairs(threads) do ngx.thread.wait(t) end
        end
        ngx.print(core.json_encode(tally))
      }
    }
  }
}
]]

--- An nginx with two workers on a free port from `conf_fmt` (its first %s gets the Lua paths,
-- the rest `...`; @PORT@ is the port). -> port
function M.start(prefix, conf_fmt, ...)
  local body = string.format(conf_fmt, nginx.lua_paths(), ...)
  local ports, why = nginx.start_on_free_ports(prefix, 1, function(p)
    return nginx.preamble(prefix):gsub("worker_processes 1", "worker_processes 2") ..
      body:gsub("@PORT@", tostring(p[1]))
  end)
  return assert(ports, why)[1]
end

function M.start_driver(prefix)
  return M.start(prefix, DRIVER)
end

--- `n` notifications signed now with `dws_key`, one JSON line each, in a file for the driver.
-- -> file, { requestId, ... }
function M.sign(dir, dws_key, client_id, tag, n)
  local time = tostring(core.time_ms())
  local lines, ids = {}, {}
  for i = 1, n do
    local id = tag .. "-" .. i .. "-" .. core.uuid4()
    local body = assert(core.json_encode{ referenceCustomerId = "customer-" .. i, requestId = id,
      operateSource = "MERCHANT", paymentMethodDetail = { paymentMethodDetailType = "CARD",
      card = { brand = "VISA", cardToken = "PYMT" .. i, mask = "411111******1111" } } })
    local sig = core.signature_header(assert(core.sign(dws_key, "POST", "/notify", client_id, time, body)), "1")
    lines[i] = assert(core.json_encode{ body = body, time = time, client_id = client_id, signature = sig })
    ids[i] = id
  end
  local file = dir .. "/" .. tag .. ".jsonl"
  nginx.write_file(file, table.concat(lines, "\n") .. "\n")
  return file, ids
end

local curl

--- Deliver every notification of `file` to every target, re-sending until S or `deadline` s.
-- -> { S =, other =, sends = }
function M.drive(driver, file, targets, deadline, batch)
  curl = curl or require("dws.transport.curl").new{}
  local res, kind, message = curl:request{ method = "POST", url = "http://127.0.0.1:" .. driver .. "/drive",
    body = core.json_encode{ file = file, targets = targets, deadline = deadline, batch = batch },
    headers = { ["Content-Type"] = "application/json" }, timeout = 600, connect_timeout = 5 }
  assert(res, tostring(kind) .. " " .. tostring(message))
  assert(res.status == 200, res.body)
  return assert(core.json_decode(res.body))
end

--- { runs = total of the counters, ids = how many, max = largest } over keys matching pattern.
function M.counts(redis, pattern)
  local out = redis:cli("EVAL", "local t, n, m = 0, 0, 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do " ..
    "local v = tonumber(redis.call('GET', k)) t = t + v n = n + 1 if v > m then m = v end end return {t, n, m}",
    "0", pattern)
  local t, n, m = out:match("^(%d+)\n(%d+)\n(%d+)$")
  assert(t, out)
  return { runs = tonumber(t), ids = tonumber(n), max = tonumber(m) }
end

function M.url(port) return "http://127.0.0.1:" .. port .. "/notify" end

return M
