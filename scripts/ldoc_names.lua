-- An LDoc filter (`ldoc --filter ldoc_names.print`): one line per documented item,
-- "<module>\t<name>\t<kind>\t<local>", for scripts/docs-check.lua. Runs inside LDoc's own Lua (5.1).
local M = {}

function M.print(module_list)
  for mod in module_list:iter() do
    -- topics (the Markdown guides) are not modules: nothing of theirs is loaded or checked
    if mod.type ~= "topic" then
      io.write(mod.name, "\t", "", "\tmodule\t", "\n")
      for item in mod.items:iter() do
        io.write(mod.name, "\t", item.name, "\t", tostring(item.type), "\t",
          (item.tags["local"] or item["local"]) and "local" or "", "\n")
      end
    end
  end
end

return M
