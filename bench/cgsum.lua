-- Instructions per call from a callgrind_annotate listing of n calls, by shared object and by
-- function; with the floor program's listing (m sign + verify), the ratio of the two.
--
--   lua5.4 bench/cgsum.lua calls.txt n [floor.txt m [label]]
--
-- With a label, the second listing is another client's calls (the C floor client), named so, and
-- the two are compared object by object: where the first's extra instructions are.
local f1, n1, ff, nf, label = arg[1], tonumber(arg[2]), arg[3], tonumber(arg[4]), arg[5]
assert(f1 and n1 and n1 > 0, "usage: cgsum.lua calls.txt n [floor.txt m]")

-- First match wins: lua-cjson's file (liblua5.4-cjson.so) also contains "lua5.4".
local SHORT = {
  { "-cjson.so", "lua-cjson" }, { "libcjson", "libcjson" }, { "/core.so", "dws.core" }, { "/curl.so", "dws.curl" },
  { "libcrypto", "OpenSSL libcrypto" }, { "libssl", "OpenSSL libssl" }, { "libcurl", "libcurl" },
  { "libc.so", "libc" }, { "liblua5.4", "Lua VM" }, { "lua5.4", "Lua VM" }, { "luajit", "LuaJIT" },
  { "ld-linux", "dynamic linker" }, { "libz", "zlib" }, { "libnghttp2", "nghttp2" },
}

local function short(obj)
  if obj == nil then return "?" end
  for _, m in ipairs(SHORT) do
    if obj:find(m[1], 1, true) then return m[2] end
  end
  return (obj:match("([^/]+)$") or obj)
end

local function parse(path)
  local entries, obj_of = {}, {}
  for line in io.lines(path) do
    local count, rest = line:match("^%s*([%d,]+) %(%s*[%d.]+%%%)%s+(.+)$")
    if count and not rest:find("PROGRAM TOTALS", 1, true) then
      local fn, obj = rest:match("^(.-)%s+%[(.+)%]$")
      fn = fn or rest
      local file = fn:match("^(.*):") or fn
      fn = fn:gsub("^.*:", ""):gsub("'%d+$", "")
      obj = short(obj)
      if obj ~= "?" and not fn:find("^0x") then obj_of[fn] = obj end
      -- callgrind_annotate leaves out the object on some lines of files it has sources for.
      entries[#entries + 1] = { n = tonumber((count:gsub(",", ""))), fn = fn, obj = obj,
        csrc = file:find("csrc/", 1, true) ~= nil }
    end
  end
  -- Lines without an object: take it from another line of the same function.
  local by_fn, by_obj, total = {}, {}, 0
  for _, e in ipairs(entries) do
    local obj = e.obj
    if obj == "?" then obj = obj_of[e.fn] or (e.csrc and "dws C modules (csrc)") or "?" end
    local key = obj .. "  " .. e.fn
    by_fn[key] = (by_fn[key] or 0) + e.n
    by_obj[obj] = (by_obj[obj] or 0) + e.n
    total = total + e.n
  end
  return by_fn, by_obj, total
end

local by_fn, by_obj, total = parse(f1)
local per_call = total / n1

local function sorted(t)
  local out = {}
  for k, v in pairs(t) do out[#out + 1] = { name = k, n = v / n1 } end
  table.sort(out, function(x, y) return x.n > y.n end)
  return out
end

print(string.format("%.0f instructions per call", per_call))
local f_by_obj
if ff and nf and label then
  local _, fobj, ftotal = parse(ff)
  f_by_obj = fobj
  print(string.format("%.0f instructions per call of %s: a call is %.3fx that", ftotal / nf, label,
    per_call / (ftotal / nf)))
elseif ff and nf then
  local _, _, ftotal = parse(ff)
  local floor = ftotal / nf
  local crypto = (by_obj["OpenSSL libcrypto"] or 0) / n1
  print(string.format("%.0f instructions per sign + verify in build/bench/floor: a call is %.3fx the floor",
    floor, per_call / floor))
  print(string.format("%.0f of a call's are in libcrypto (%.3fx the floor); the rest, %.0f, is the SDK's overhead",
    crypto, crypto / floor, per_call - crypto))
end
print("\nby object:")
for _, e in ipairs(sorted(by_obj)) do
  if e.n / per_call >= 0.0005 then
    print(string.format("  %12.0f  %5.1f%%  %s", e.n, 100 * e.n / per_call, e.name))
  end
end
if f_by_obj then
  print("\nby object, against " .. label .. " (instructions per call; difference):")
  local names = {}
  for k in pairs(by_obj) do names[k] = true end
  for k in pairs(f_by_obj) do names[k] = true end
  local rows = {}
  for k in pairs(names) do
    local a, b = (by_obj[k] or 0) / n1, (f_by_obj[k] or 0) / nf
    rows[#rows + 1] = { name = k, a = a, b = b }
  end
  table.sort(rows, function(x, y) return x.a - x.b > y.a - y.b end)
  for _, r in ipairs(rows) do
    if math.abs(r.a - r.b) / per_call >= 0.0005 then
      print(string.format("  %12.0f  %12.0f  %+10.0f  %s", r.a, r.b, r.a - r.b, r.name))
    end
  end
end
print("\ntop functions:")
for i, e in ipairs(sorted(by_fn)) do
  if i > 25 then break end
  print(string.format("  %12.0f  %5.1f%%  %s", e.n, 100 * e.n / per_call, e.name))
end
