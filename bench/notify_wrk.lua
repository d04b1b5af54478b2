-- wrk script for bench/notify.lua: POSTs pre-signed notifications, cycling through them.
-- DWS_BENCH_NOTIFY_FILE names a file of lines "request-time TAB client-id TAB signature TAB body";
-- the requests are formatted once here, so wrk spends its time sending, not building them.
-- DWS_BENCH_PIPELINE (default 1): requests written at once on a connection (HTTP/1.1 pipelining),
-- each a different notification; wrk writes the next batch when all their answers are in.
local requests = {}
local next_one = 0

function init()
  local file = assert(os.getenv("DWS_BENCH_NOTIFY_FILE"), "DWS_BENCH_NOTIFY_FILE not set")
  local depth = math.floor(tonumber(os.getenv("DWS_BENCH_PIPELINE")) or 1)
  assert(depth >= 1, "DWS_BENCH_PIPELINE must be a positive integer")
  local one = {}
  for line in io.lines(file) do
    local time, client_id, sig, body = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t(.+)$")
    if time then
      one[#one + 1] = wrk.format("POST", nil, {
        ["Content-Type"] = "application/json; charset=UTF-8",
        ["Client-Id"] = client_id,
        ["Request-Time"] = time,
        ["Signature"] = sig,
      }, body)
    end
  end
  assert(#one > 0, "no notifications in " .. file)
  -- Batches of depth consecutive notifications, wrapping round the pool, until a batch would start
  -- at the first one again: every notification is sent as often as any other.
  local start = 1
  repeat
    local batch = {}
    for k = 0, depth - 1 do batch[#batch + 1] = one[(start - 1 + k) % #one + 1] end
    requests[#requests + 1] = table.concat(batch)
    start = (start - 1 + depth) % #one + 1
  until start == 1
end

function request()
  next_one = next_one % #requests + 1
  return requests[next_one]
end
