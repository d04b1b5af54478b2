-- The require graph of lua/dws: every `require "dws..."` in code (comments and strings of
-- documentation left out), checked against the layers below. A module may require its own layer or
-- a lower one, never a higher one, and no set of modules may require each other in a circle (a
-- require inside a function counts as much as one at the top: it is a dependency all the same).
--
--   lua5.4 scripts/require_graph.lua          check; print the edges that break the rules
--   lua5.4 scripts/require_graph.lua --dot    the graph in Graphviz's dot language
--
-- Run by `make lint`. A new module must be given a layer here, so its place is a decision.
local ROOT = os.getenv("DWS_ROOT") or "."

-- Layer of each module, lowest first: what a module may rely on is below it.
local LAYERS = {
  -- 0: C, and data and rules that need nothing but C
  ["dws.core"] = 0, ["dws.curl"] = 0, ["dws.redis"] = 0, ["dws.abi"] = 0, ["dws.codes"] = 0,
  ["dws.defaults"] = 0, ["dws.time"] = 0, ["dws.runtime"] = 0, ["dws.api"] = 0, ["dws.url"] = 0,
  -- 1: core rules
  ["dws.redact"] = 1, ["dws.retry"] = 1,
  ["dws.errors"] = 2, ["dws.validate"] = 3, ["dws.card"] = 3, ["dws.signature"] = 3,
  -- 4: transports and stores
  ["dws.transport.curl"] = 4, ["dws.transport.ngx"] = 4,
  ["dws.store"] = 4, ["dws.store.sqlite"] = 5, ["dws.store.redis"] = 5, ["dws.store.shared_dict"] = 5,
  -- 6: the binding journal; 7: the workflows over it
  ["dws.journal"] = 6,
  ["dws.notification"] = 7, ["dws.bind_card"] = 7, ["dws.multi"] = 7, ["dws.wait"] = 7,
  -- 8: the client composes them; 9: what users and tools require
  ["dws.client"] = 8,
  ["dws"] = 9, ["dws.testing"] = 10, ["dws.cli.util"] = 10,
  ["dws.cli.notify"] = 11, ["dws.cli.verify"] = 11, ["dws.cli.listen"] = 11, ["dws.cli.gateway"] = 11,
  ["dws.cli.keygen"] = 11, ["dws.cli.keyfile"] = 10, ["dws.cli.pkcs11"] = 10,
  ["dws.cli"] = 12,
  -- the gateway: its parts over the core (the outbox over notification's outcome rule), its nginx
  -- side over the whole SDK
  ["dws.gateway.config"] = 1, ["dws.gateway.hmac"] = 1, ["dws.gateway.lock"] = 1, ["dws.gateway.metrics"] = 1,
  ["dws.gateway.outbox"] = 8, ["dws.gateway.server"] = 10,
}

local function module_of(file)
  local m = file:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
  return m
end

-- Code only: comments (line and block) and long strings out, so a `require "dws"` shown in a doc
-- comment is not an edge.
local function code_of(text)
  text = text:gsub("%-%-%[(=*)%[.-%]%1%]", "")
  text = text:gsub("%-%-[^\n]*", "")
  return text
end

local files = {}
local list = assert(io.popen("cd '" .. ROOT .. "' && find lua/dws -name '*.lua' | sort"))
for f in list:lines() do files[#files + 1] = f end
list:close()

local edges, problems = {}, {}
for _, file in ipairs(files) do
  local from = module_of(file)
  local f = assert(io.open(ROOT .. "/" .. file, "rb"))
  local text = code_of(f:read("a"))
  f:close()
  if not LAYERS[from] then problems[#problems + 1] = from .. ": no layer (give it one in scripts/require_graph.lua)" end
  local seen = {}
  for to in text:gmatch("require%s*%(?%s*[\"']([%w_.]+)[\"']") do
    -- "dws" or "dws.<name>" (a name built at run time, "dws.store." .. scheme, is not an edge)
    if (to == "dws" or to:match("^dws%.[%w_.]*[%w_]$")) and to ~= from and not seen[to] then
      seen[to] = true
      edges[#edges + 1] = { from, to }
    end
  end
end

for _, e in ipairs(edges) do
  local a, b = LAYERS[e[1]], LAYERS[e[2]]
  if a and not b then
    problems[#problems + 1] = e[2] .. ": required by " .. e[1] .. " but has no layer"
  elseif a and b and b > a then
    problems[#problems + 1] = e[1] .. " (layer " .. a .. ") requires " .. e[2] .. " (layer " .. b .. "): upward"
  end
end

-- Cycles, found by a depth-first walk.
local out = {}
for _, e in ipairs(edges) do
  out[e[1]] = out[e[1]] or {}
  table.insert(out[e[1]], e[2])
end
local state, stack = {}, {}
local function walk(m)
  state[m] = "open"
  stack[#stack + 1] = m
  for _, n in ipairs(out[m] or {}) do
    if state[n] == "open" then
      local cycle, on = {}, false
      for _, s in ipairs(stack) do
        if s == n then on = true end
        if on then cycle[#cycle + 1] = s end
      end
      cycle[#cycle + 1] = n
      problems[#problems + 1] = "cycle: " .. table.concat(cycle, " -> ")
    elseif not state[n] then
      walk(n)
    end
  end
  stack[#stack] = nil
  state[m] = "done"
end
local names = {}
for m in pairs(out) do names[#names + 1] = m end
table.sort(names)
for _, m in ipairs(names) do
  if not state[m] then walk(m) end
end

if arg[1] == "--dot" then
  print("digraph dws {")
  for _, e in ipairs(edges) do print(string.format('  "%s" -> "%s";', e[1], e[2])) end
  print("}")
end
if #problems > 0 then
  for _, p in ipairs(problems) do io.stderr:write("require graph: ", p, "\n") end
  os.exit(1)
end
if arg[1] ~= "--dot" then
  print(string.format("require graph: %d modules, %d edges, nothing upward, no cycle", #files, #edges))
end
