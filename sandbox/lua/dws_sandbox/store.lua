-- Sandbox state in lua_shared_dict "dws_sandbox": tokens, idempotency records, the armed fault; the
-- request and delivery logs in "dws_sandbox_log", apart, so that a long run evicting old log entries
-- never evicts a token. Values are JSON strings; logs are numbered entries "<kind>:<n>".
local core = require "dws.core"

local M = {}

local function dict()
  return ngx.shared.dws_sandbox
end
M.dict = dict

local function log_dict()
  return ngx.shared.dws_sandbox_log
end

function M.get_json(key)
  local s = dict():get(key)
  if not s then return nil end
  return core.json_decode(s)
end

function M.set_json(key, value, ttl)
  local s = assert(core.json_encode(value, false))
  -- Tokens and idempotency records must not be evicted silently: use safe_set (fails when full).
  local ok, err = dict():safe_set(key, s, ttl or 0)
  if not ok then ngx.log(ngx.ERR, "dws sandbox: shared dict: ", err) end
  return ok
end

-- Append a record to a log; eviction of old log entries under memory pressure is acceptable.
function M.append(kind, record)
  local n = log_dict():incr(kind .. ":n", 1, 0)
  record.seq = n
  log_dict():set(kind .. ":" .. n, assert(core.json_encode(record, false)))
  return n
end

function M.list(kind)
  local d = log_dict()
  local n = d:get(kind .. ":n") or 0
  local out = setmetatable({}, core.array_mt)
  for i = 1, n do
    local s = d:get(kind .. ":" .. i)
    if s then out[#out + 1] = core.json_decode(s) end
  end
  return out
end

function M.flush()
  for _, d in ipairs{ dict(), log_dict() } do
    d:flush_all()
    d:flush_expired()
  end
end

return M
