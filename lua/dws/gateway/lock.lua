--- A lease in a dws.store: at most one holder at a time among every worker of every node sharing
-- the store (the outbox forwarder, the sweeper). A holder renews it; a dead one loses it after ttl.
-- @module dws.gateway.lock
local M = {}

M.PREFIX = "dws:gateway:lock:"

--- Take or renew the lease `name` for `owner`. -> true (held) | false (another holds it) | nil, err
-- syntax: `held, err = lock.acquire(store, name, owner, ttl)`
function M.acquire(store, name, owner, ttl)
  local key = M.PREFIX .. name
  local ok, err = store:add(key, owner, ttl)
  if ok then return true end
  if ok == nil then return nil, err end
  local renewed, rerr = store:cas(key, owner, owner, ttl)
  if renewed == nil then return nil, rerr end
  return renewed
end

--- Give the lease up early (it expires within a few milliseconds) when `owner` holds it.
-- syntax: `lock.release(store, name, owner)`
function M.release(store, name, owner)
  return store:cas(M.PREFIX .. name, owner, owner, 0.01)
end

return M
