-- make docs-check: fail when a public function or value has no LDoc comment.
--
--   lua5.4 scripts/docs_check.lua [CONFIG_DIR [SURFACE_FILE]]   (defaults: . and docs/surface.lua;
--   the surface file names the rockspec relative to CONFIG_DIR)
--
-- LDoc itself cannot tell: it documents what has a `---` comment and says nothing about what has
-- none. So this loads the modules and compares what they really export with what LDoc read:
--   * every module the rockspec installs is in the reference (config.ld) or named internal in the
--     surface file;
--   * every key of a documented module's table (functions, constants, tables) has a doc comment;
--   * every method of each class the surface file names has one.
-- Items tagged @local count as documented (they are hidden from the reference on purpose).
-- LDoc runs in its own Lua (5.1); it reports through scripts/ldoc_names.lua.
local config_dir = arg[1] or "."
local surface_file = arg[2] or "docs/surface.lua"

-- LDoc runs in CONFIG_DIR and needs this script's directory for its filter.
local here = arg[0]:match("^(.*)/[^/]*$") or "."
if here:sub(1, 1) ~= "/" then here = assert(os.getenv("PWD"), "docs-check: PWD unset") .. "/" .. here end

local function sh_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- module name -> { [item name] = true }, from LDoc run with --all so @local items show.
local function documented_items()
  local cmd = "cd " .. sh_quote(config_dir) .. " && LUA_PATH=" .. sh_quote(here .. "/?.lua;;")
    .. " ldoc --all --quiet --filter ldoc_names.print . 2>&1"
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok = p:close()
  local modules, order = {}, {}
  for line in out:gmatch("[^\n]+") do
    local mod, name = line:match("^([^\t]+)\t([^\t]*)\t")
    if not mod then
      io.stderr:write("docs-check: ldoc: ", line, "\n")
      ok = false
    else
      if not modules[mod] then modules[mod] = {}; order[#order + 1] = mod end
      if name ~= "" then modules[mod][name] = true end
    end
  end
  if not ok then
    io.stderr:write("docs-check: ldoc failed\n")
    os.exit(2)
  end
  return modules, order
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    if type(k) == "string" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  return keys
end

-- LDoc names an item as written: "array" or "dws.array" (the module's own name in front), or for a
-- class "Client:call" or "Memory.close".
local function has_item(items, key, module, class)
  if class then return items[class .. ":" .. key] or items[class .. "." .. key] end
  return items[key] or items[module .. "." .. key] or items[module:match("[^.]*$") .. "." .. key]
end

local surface = dofile(surface_file)
local modules, order = documented_items()
local missing = {}
local function miss(what) missing[#missing + 1] = what end

-- Every installed module is documented or deliberately internal.
if surface.rockspec then
  local spec = {}
  assert(loadfile(config_dir .. "/" .. surface.rockspec, "t", spec))()
  local installed = {}
  for _, name in ipairs(sorted_keys(spec.build.modules)) do
    local source = spec.build.modules[name]
    if type(source) == "string" then installed[source] = true end
    if not modules[name] and not (surface.internal or {})[name] then
      miss(name .. " (module: not in config.ld, not internal in " .. surface_file .. ")")
    end
  end
  -- Every Lua file of the SDK is installed: one left out works from the checkout and fails in a rock.
  if surface.lua_dir then
    local list = io.popen("cd " .. config_dir .. " && find " .. surface.lua_dir .. " -name '*.lua' | sort")
    for file in list:lines() do
      if not installed[file] then miss(file .. " (a Lua file the rockspec does not install)") end
    end
    list:close()
  end
end

-- Keys starting with "_" are private by convention (metamethods, caches).
for _, name in ipairs(order) do
  local items = modules[name]
  local loaded, m = pcall(require, name)
  if not loaded then
    miss(name .. " (LDoc module name that require cannot load: the file needs its @module line)")
  elseif type(m) == "table" then
    for _, key in ipairs(sorted_keys(m)) do
      local generated = (surface.generated or {})[name]
      if key:sub(1, 1) ~= "_" and not has_item(items, key, name) and not (generated and generated(key)) then
        miss(name .. "." .. key)
      end
    end
  end
end

-- A class's method table is found where its constructor keeps it: the upvalue of that name (so no
-- object is made, no key parsed, no connection opened); for C userdata, on an object made.
local function class_table(spec)
  if spec.instance then
    local mt = getmetatable(spec.instance())
    if type(mt) == "table" and type(mt.__index) == "table" then return mt.__index end
    io.stderr:write("docs-check: the ", spec.class, " object of ", spec.module, " has no method table\n")
    os.exit(2)
  end
  local ctor = require(spec.module)[spec.constructor]
  for i = 1, math.huge do
    local name, value = debug.getupvalue(ctor, i)
    if name == nil then break end
    if name == spec.class and type(value) == "table" then return value end
  end
  io.stderr:write("docs-check: ", spec.module, ".", spec.constructor, " does not hold a table ", spec.class,
    " (renamed? update ", surface_file, ")\n")
  os.exit(2)
end

for _, spec in ipairs(surface.classes or {}) do
  local items = modules[spec.module]
  if not items then
    miss(spec.module .. " (module of class " .. spec.class .. ": not in config.ld)")
  else
    local methods = class_table(spec)
    for _, key in ipairs(sorted_keys(methods)) do
      if key:sub(1, 1) ~= "_" and type(methods[key]) == "function"
        and not has_item(items, key, spec.module, spec.class) then
        miss(spec.module .. " " .. spec.class .. ":" .. key)
      end
    end
  end
end

if #missing > 0 then
  for _, what in ipairs(missing) do io.stderr:write("docs-check: no doc comment: ", what, "\n") end
  io.stderr:write("docs-check: ", #missing, " public item(s) without a doc comment\n")
  os.exit(1)
end
print("docs-check: every public item of " .. #order .. " modules has a doc comment")
