-- make docs-check (scripts/docs_check.lua) on a fixture project (spec/fixtures/docs): it passes the
-- fixture as written, and fails, naming the item, once one doc comment is taken away. The checker
-- is a Lua 5.4 tool whatever flavour busted runs under; it runs the real ldoc.
local files = require "helpers.files"

local ROOT = os.getenv("DWS_ROOT")
local FIXTURE = files.FIXTURES .. "/docs"
local NAMES = { "config.ld", "docs_fixture.lua", "surface.lua", "fixture-scm-1.rockspec" }

local function sh_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- A copy of the fixture in a fresh directory, `edit(name, text) -> text` applied to each file.
local function fixture_copy(edit)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. sh_quote(dir)))
  for _, name in ipairs(NAMES) do
    local text = files.read(FIXTURE .. "/" .. name)
    if edit then text = edit(name, text) end
    files.write(dir .. "/" .. name, text)
  end
  return dir
end

-- Runs a shell command; returns its exit status and what it wrote (stderr included). The status is
-- echoed: LuaJIT's popen close does not give it.
local function run(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"rc=$?\""))
  local out = p:read("*a")
  p:close()
  local text, status = out:match("^(.*)rc=(%d+)\n$")
  return tonumber(status), text
end

-- Runs the checker on dir.
local function check(dir)
  return run("cd " .. sh_quote(ROOT) .. " && LUA_PATH=" .. sh_quote(dir .. "/?.lua;;")
    .. " lua5.4 scripts/docs_check.lua " .. sh_quote(dir) .. " " .. sh_quote(dir .. "/surface.lua"))
end

-- Removes exactly one occurrence of `block` from the fixture module.
local function without(block)
  return function(name, text)
    if name ~= "docs_fixture.lua" then return text end
    local from, to = text:find(block, 1, true)
    assert(from, "fixture has no " .. block)
    return text:sub(1, from - 1) .. text:sub(to + 1)
  end
end

describe("make docs-check", function()
  local dirs = {}
  local function copy(edit)
    local dir = fixture_copy(edit)
    dirs[#dirs + 1] = dir
    return dir
  end
  lazy_teardown(function()
    for _, dir in ipairs(dirs) do os.execute("rm -rf " .. sh_quote(dir)) end
  end)

  it("passes a module whose every public item has a doc comment", function()
    local status = check(copy())
    assert.are.equal(0, status)
  end)

  it("fails when a module function loses its doc comment, naming it", function()
    local status, out = check(copy(without("--- A function.\n-- @tparam number n\n-- @treturn number\n")))
    assert.are.equal(1, status)
    assert.matches("no doc comment: docs_fixture.twice\n", out, 1, true)
  end)

  it("fails when a constant loses its doc comment, naming it", function()
    local status, out = check(copy(without("--- A constant.\n")))
    assert.are.equal(1, status)
    assert.matches("no doc comment: docs_fixture.LIMIT\n", out, 1, true)
  end)

  it("fails when a method loses its doc comment, naming it", function()
    local status, out = check(copy(without("--- Count one more.\n")))
    assert.are.equal(1, status)
    assert.matches("no doc comment: docs_fixture Thing:bump\n", out, 1, true)
  end)

  it("counts a method tagged @local as documented, and fails once the tag's comment goes", function()
    local status, out = check(copy(without("--- Internal, and said so.\n-- @local\n")))
    assert.are.equal(1, status)
    assert.matches("no doc comment: docs_fixture Thing:reset\n", out, 1, true)
  end)

  it("fails when an installed module is neither documented nor named internal", function()
    local status, out = check(copy(function(name, text)
      if name ~= "surface.lua" then return text end
      return (text:gsub("internal = { docs_fixture_internal = true }", "internal = {}"))
    end))
    assert.are.equal(1, status)
    assert.matches("no doc comment: docs_fixture_internal (module", out, 1, true)
  end)

  it("passes the repository itself (every public item of lua-dws)", function()
    local path = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;"
    local status, out = run("cd " .. sh_quote(ROOT) .. " && LUA_PATH=" .. sh_quote(path)
      .. " LUA_CPATH=" .. sh_quote(ROOT .. "/build/5.4/?.so;;") .. " lua5.4 scripts/docs_check.lua")
    assert.are.equal(0, status, out)
  end)
end)
