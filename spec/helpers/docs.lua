-- The user documentation as one text: README.md, then every guide under docs/, so a spec that
-- holds the docs to their word finds a block or a claim wherever the section lives now.
local files = require "helpers.files"

local M = {}

function M.text()
  local root = os.getenv("DWS_ROOT") or "."
  local parts = { files.read(root .. "/README.md") }
  local list = io.popen("ls '" .. root .. "'/docs/*.md")
  for path in list:lines() do parts[#parts + 1] = files.read(path) end
  list:close()
  return table.concat(parts, "\n")
end

return M
