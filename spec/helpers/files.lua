-- File helpers the specs share, and the fixtures: copies of the API pages' worked example and
-- samples, kept in the repository (spec/fixtures) so that the suite reads nothing outside it.
local M = {}

M.FIXTURES = os.getenv("DWS_ROOT") .. "/spec/fixtures"
M.EXAMPLE = M.FIXTURES .. "/example"
M.PAGES = M.FIXTURES .. "/pages"

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
