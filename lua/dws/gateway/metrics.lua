--- The gateway's metrics in an ngx.shared dict (every worker counts into it) and their Prometheus
-- text exposition (format 0.0.4). Gauges that describe the store (outbox, pending bindings) are
-- read at scrape time by the caller and passed to `render`.
-- @module dws.gateway.metrics
-- luacheck: globals ngx
local M = {}

--- Latency buckets of `dws_gateway_call_duration_seconds` (seconds).
M.BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 }

M.HELP = {
  dws_gateway_calls_total = { "counter", "Backend requests by api, result status (S/F/U, or REFUSED) and code." },
  dws_gateway_call_duration_seconds = { "histogram", "Time from a backend request to its answer, by api." },
  dws_gateway_retries_total = { "counter", "Attempts re-sent to DWS after a retryable failure, by api." },
  dws_gateway_notifications_total = { "counter",
    "Notifications from DWS by outcome (acknowledged, not_acknowledged, refused)." },
  dws_gateway_forwarded_total = { "counter", "Outbox entries delivered to the backend (2xx)." },
  dws_gateway_forward_failures_total = { "counter", "Forwarding attempts the backend did not accept." },
  dws_gateway_store_errors_total = { "counter", "Store operations that failed, by operation." },
  dws_gateway_resumed_total = { "counter", "Bindings the sweeper resumed, by the outcome status." },
  dws_gateway_outbox_depth = { "gauge", "Outbox entries not yet delivered." },
  dws_gateway_outbox_oldest_age_seconds = { "gauge", "Age of the oldest undelivered outbox entry." },
  dws_gateway_pending_bindings = { "gauge", "Bindings not yet final (BOUND or FAILED)." },
  dws_gateway_pending_oldest_age_seconds = { "gauge", "Age of the oldest pending binding." },
}

local function escape(v)
  return (tostring(v):gsub('[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

-- name{a="x",b="y"} with the labels in the order given (pairs of name, value).
local function series(name, labels)
  if not labels or #labels == 0 then return name end
  local parts = {}
  for i = 1, #labels, 2 do parts[#parts + 1] = labels[i] .. '="' .. escape(labels[i + 1]) .. '"' end
  return name .. "{" .. table.concat(parts, ",") .. "}"
end
M.series = series

local function dict()
  return ngx.shared.dws_gateway_metrics
end

--- Add `n` (default 1) to a counter. Labels: { "api", "cacheCard", "status", "S" }.
function M.inc(name, labels, n)
  dict():incr(series(name, labels), n or 1, 0)
end

-- Per histogram and label set, the keys of its buckets, sum and count, made once.
local histogram_keys = {}

--- Record one observation of a histogram.
function M.observe(name, labels, value)
  local id = series(name, labels)
  local keys = histogram_keys[id]
  if not keys then
    keys = { buckets = {} }
    for i, le in ipairs(M.BUCKETS) do
      local l = { unpack(labels) } -- luacheck: ignore 113
      l[#l + 1], l[#l + 2] = "le", tostring(le)
      keys.buckets[i] = series(name .. "_bucket", l)
    end
    local l = { unpack(labels) } -- luacheck: ignore 113
    l[#l + 1], l[#l + 2] = "le", "+Inf"
    keys.inf = series(name .. "_bucket", l)
    keys.sum, keys.count = series(name .. "_sum", labels), series(name .. "_count", labels)
    histogram_keys[id] = keys
  end
  local d = dict()
  for i, le in ipairs(M.BUCKETS) do
    if value <= le then d:incr(keys.buckets[i], 1, 0) end
  end
  d:incr(keys.inf, 1, 0)
  d:incr(keys.sum, value, 0)
  d:incr(keys.count, 1, 0)
end

local function family(key)
  local name = key:match("^[%w_:]+")
  if M.HELP[name] then return name end
  local base = name:gsub("_bucket$", ""):gsub("_sum$", ""):gsub("_count$", "")
  return base
end

local function number(v)
  if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
  return string.format("%.17g", v)
end

--- The exposition text: every counter and histogram in the dict, then `gauges` ({ name = value }).
function M.render(gauges)
  local keys = dict():get_keys(0)
  table.sort(keys)
  local by_family, order = {}, {}
  for _, k in ipairs(keys) do
    local f = family(k)
    if not by_family[f] then
      by_family[f] = {}
      order[#order + 1] = f
    end
    local t = by_family[f]
    t[#t + 1] = k
  end
  for name in pairs(M.HELP) do
    if not by_family[name] and M.HELP[name][1] == "counter" and name ~= "dws_gateway_resumed_total" then
      by_family[name] = {}
      order[#order + 1] = name
    end
  end
  table.sort(order)
  local out = {}
  for _, f in ipairs(order) do
    local help = M.HELP[f] or { "untyped", f }
    out[#out + 1] = "# HELP " .. f .. " " .. help[2]
    out[#out + 1] = "# TYPE " .. f .. " " .. help[1]
    local ks = by_family[f]
    -- A histogram's buckets in ascending le: the sort above is by text ("10" < "2.5").
    if help[1] == "histogram" then
      local function le_of(k)
        local le = k:match('le="([^"]+)"')
        if le == "+Inf" then return math.huge end
        return tonumber(le) or -1
      end
      table.sort(ks, function(a, b)
        local ga, gb = a:gsub(',?le="[^"]*"', ""):gsub("_bucket", ""), b:gsub(',?le="[^"]*"', ""):gsub("_bucket", "")
        if ga ~= gb then return ga < gb end
        return le_of(a) < le_of(b)
      end)
    end
    for _, k in ipairs(ks) do out[#out + 1] = k .. " " .. number(dict():get(k) or 0) end
  end
  local gnames = {}
  for name in pairs(gauges or {}) do gnames[#gnames + 1] = name end
  table.sort(gnames)
  for _, name in ipairs(gnames) do
    local help = M.HELP[name] or { "gauge", name }
    out[#out + 1] = "# HELP " .. name .. " " .. help[2]
    out[#out + 1] = "# TYPE " .. name .. " gauge"
    out[#out + 1] = name .. " " .. number(gauges[name])
  end
  return table.concat(out, "\n") .. "\n"
end

return M
