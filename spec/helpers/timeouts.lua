-- The timeouts of specs that provoke a fault by letting a timeout fire. Such a spec is about what
-- follows the timeout (the error code, the attempts, nothing resent, no data), not about its
-- length, so the client or transport waits a fraction of a second, and whatever holds the request
-- (a hanging gateway, a sandbox fault, a slow location) holds it many times longer, so that the
-- timeout always fires first. The time a spec spends waiting is then mostly this one number.
local M = {}

-- A client or transport timeout that is meant to fire: well over a loopback answer (a signed
-- answer over a fresh TLS connection on a loaded machine), and a third of a second at most.
M.FIRE = 0.3

-- How long a peer holds a request that must time out: over six times FIRE, and short enough that a
-- server stopped right after the spec (nginx finishes what it holds before it quits) is not waited on.
M.HOLD = 2

return M
