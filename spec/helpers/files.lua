-- File helpers the specs share, and where the shared API folder sits (CI clones the repository
-- with shared/ beside it, so the worked example is found relative to DWS_ROOT).
local M = {}

M.EXAMPLE = os.getenv("DWS_ROOT") .. "/../shared/dws-api/example"

function M.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

function M.write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

return M
