-- wrk script for bench/notify.lua: POSTs pre-signed notifications, cycling through them.
-- DWS_BENCH_NOTIFY_FILE names a file of lines "request-time TAB client-id TAB signature TAB body";
-- the requests are formatted once here, so wrk spends its time sending, not building them.
local requests = {}
local next_one = 0

function init()
  local file = assert(os.getenv("DWS_BENCH_NOTIFY_FILE"), "DWS_BENCH_NOTIFY_FILE not set")
  for line in io.lines(file) do
    local time, client_id, sig, body = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t(.+)$")
    if time then
      requests[#requests + 1] = wrk.format("POST", nil, {
        ["Content-Type"] = "application/json; charset=UTF-8",
        ["Client-Id"] = client_id,
        ["Request-Time"] = time,
        ["Signature"] = sig,
      }, body)
    end
  end
  assert(#requests > 0, "no notifications in " .. file)
end

function request()
  next_one = next_one % #requests + 1
  return requests[next_one]
end
