-- #nginx (child processes: lua5.4 bin/dws) Every command and option of `dws` has help text: each
-- `dws ... --help`, walked from the top through every command it lists, describes each command,
-- argument and option it shows.
local cli = require "helpers.cli"

-- The entries of one section ("Options:", ...) of a help text without a description.
local function undescribed(help, section)
  local missing, entries = {}, {}
  local body = help:match("\n" .. section .. ":\n(.-)\n\n") or help:match("\n" .. section .. ":\n(.*)$") or ""
  local lines = {}
  for line in (body .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  for i, line in ipairs(lines) do
    if line:match("^   %S") then
      -- the description starts in column 26 (argparse's layout), or on the next line when the
      -- usage is too long for that
      local described = (line:sub(25, 25) == " " and line:sub(26, 26):match("%S"))
        or (lines[i + 1] or ""):match("^    +%S")
      local name = line:match("^   (%S+)")
      entries[#entries + 1] = name
      if not described then missing[#missing + 1] = name end
    end
  end
  return missing, entries
end

describe("dws help #nginx", function()
  local missing, visited = {}, {}
  setup(function()
    local function walk(path)
      local status, out = cli.run(path .. " --help")
      visited[#visited + 1] = { path, status }
      for _, section in ipairs{ "Arguments", "Options" } do
        for _, name in ipairs((undescribed(out, section))) do missing[#missing + 1] = path .. " " .. name end
      end
      local bare, commands = undescribed(out, "Commands")
      for _, name in ipairs(bare) do missing[#missing + 1] = path .. " (command) " .. name end
      for _, name in ipairs(commands) do walk(path .. " " .. name) end
    end
    walk("")
  end)

  it("reaches every command, including listen and the sandbox's subcommands", function()
    local paths = {}
    for _, v in ipairs(visited) do paths[v[1]] = true end
    assert.are.same({ true, true, true, true }, { paths[" listen"], paths[" sandbox start"], paths[" notify send"],
      paths[" keygen"] })
  end)

  it("describes every command, argument and option", function()
    assert.are.same({}, missing)
  end)

  it("--help exits 0 everywhere", function()
    local bad = {}
    for _, v in ipairs(visited) do
      if v[2] ~= 0 then bad[#bad + 1] = v[1] end
    end
    assert.are.same({}, bad)
  end)
end)
