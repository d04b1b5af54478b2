-- HACKING.md's layout names every source file of the tree (lua/dws/**.lua, csrc/*.c and *.h, the
-- sandbox's modules), so the map a newcomer reads cannot fall behind the territory. A directory
-- line ("lua/dws/gateway/") covers the files under it. Run by `make docs-check`.
local ROOT = os.getenv("DWS_ROOT") or "."
local f = assert(io.open(ROOT .. "/HACKING.md", "rb"))
local text = f:read("a")
f:close()

local ROOTS = { ["lua/dws/"] = true, ["csrc/"] = true, ["sandbox/lua/"] = true, ["lua/"] = true,
                ["sandbox/"] = true }
local missing = 0
local list = io.popen("cd '" .. ROOT .. "' && find lua/dws csrc sandbox/lua -type f " ..
  "\\( -name '*.lua' -o -name '*.c' " ..
  "-o -name '*.h' \\) | sort")
for path in list:lines() do
  local named = text:find(path, 1, true)
  -- a directory line covers the files under it (not the roots themselves: lua/dws/, csrc/, sandbox/lua/)
  local dir = path:match("^(.*/)[^/]*$")
  while not named and dir and not ROOTS[dir] do
    named = text:find(dir, 1, true)
    dir = dir:match("^(.*/)[^/]*/$")
  end
  if not named then
    io.stderr:write("HACKING.md's layout does not name ", path, "\n")
    missing = missing + 1
  end
end
list:close()
if missing > 0 then os.exit(1) end
print("layout: HACKING.md names every source file")
