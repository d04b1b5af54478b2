-- Every link between our Markdown files goes somewhere: a relative link names a file that exists,
-- and its #anchor a heading of that file (GitHub's slugs). Run by `make docs-check`, so a section
-- that moves cannot leave a link behind.
--
--   lua5.4 scripts/docs_links.lua [FILE.md ...]   (default: README.md, HACKING.md, docs/*.md, bench/RESULTS.md)
local ROOT = os.getenv("DWS_ROOT") or "."

local function read(path)
  local f = io.open(ROOT .. "/" .. path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- GitHub's heading anchor: lower case, punctuation dropped (but - and _), spaces as dashes.
local function slug(heading)
  return (heading:lower():gsub("[^%w%-_ ]", ""):gsub(" ", "-"))
end

local anchor_cache = {}
local function anchors(path)
  if anchor_cache[path] then return anchor_cache[path] end
  local set, text = {}, read(path) or ""
  local in_code = false
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if line:match("^```") then in_code = not in_code end
    local h = not in_code and line:match("^#+%s+(.-)%s*$")
    if h then set[slug(h)] = true end
  end
  anchor_cache[path] = set
  return set
end

local function dir_of(path)
  return path:match("^(.*)/[^/]*$") or "."
end

local function normalise(path)
  local parts = {}
  for part in path:gmatch("[^/]+") do
    if part == ".." and #parts > 0 and parts[#parts] ~= ".." then
      parts[#parts] = nil
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  return table.concat(parts, "/")
end

local files = { ... }
if #files == 0 then
  files = { "README.md", "HACKING.md", "bench/RESULTS.md" }
  local list = io.popen("cd '" .. ROOT .. "' && ls docs/*.md")
  for f in list:lines() do files[#files + 1] = f end
  list:close()
end

local bad = 0
for _, file in ipairs(files) do
  local text = read(file)
  if not text then
    io.stderr:write("docs links: ", file, ": cannot read it\n")
    bad = bad + 1
  else
    local in_code, n = false, 0
    for line in (text .. "\n"):gmatch("([^\n]*)\n") do
      n = n + 1
      if line:match("^```") then in_code = not in_code end
      if not in_code then
        for target in line:gmatch("%]%(([^)%s]+)%)") do
          if not target:match("^%a[%w+.-]*:") then -- not a URL
            local path, anchor = target:match("^([^#]*)#?(.*)$")
            local resolved = path == "" and file or normalise(dir_of(file) .. "/" .. path)
            local why
            local where = ROOT .. "/" .. resolved
            if path ~= "" and not read(resolved) and not os.rename(where, where) then
              why = "no file " .. resolved
            elseif anchor ~= "" and resolved:match("%.md$") and not anchors(resolved)[anchor] then
              why = "no heading #" .. anchor .. " in " .. resolved
            end
            if why then
              io.stderr:write(string.format("docs links: %s:%d: %s (%s)\n", file, n, target, why))
              bad = bad + 1
            end
          end
        end
      end
    end
  end
end
if bad > 0 then os.exit(1) end
print("docs links: every link in " .. #files .. " files goes somewhere")
