-- Per-call instruction counts from two callgrind_annotate listings (runs with n1 and n2 calls):
-- (run2 - run1) / (n2 - n1), by shared object and by function.
--
--   lua5.4 bench/cgsum.lua run1.txt n1 run2.txt n2
local f1, n1, f2, n2 = arg[1], tonumber(arg[2]), arg[3], tonumber(arg[4])
assert(f1 and n1 and f2 and n2 and n2 > n1, "usage: cgsum.lua run1.txt n1 run2.txt n2")

-- First match wins: lua-cjson's file name also contains "lua5.4".
local SHORT = {
  { "cjson.so", "lua-cjson" }, { "libcjson", "libcjson" }, { "/core.so", "dws.core" }, { "/curl.so", "dws.curl" },
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

local fn1, obj1, t1 = parse(f1)
local fn2, obj2, t2 = parse(f2)
local calls = n2 - n1
local per_call = (t2 - t1) / calls

local function diff(a, b)
  local out = {}
  for k, v in pairs(b) do
    local d = (v - (a[k] or 0)) / calls
    if d > 0 then out[#out + 1] = { name = k, n = d } end
  end
  table.sort(out, function(x, y) return x.n > y.n end)
  return out
end

print(string.format("%.0f instructions per call", per_call))
print("\nby object:")
for _, e in ipairs(diff(obj1, obj2)) do
  if e.n / per_call >= 0.002 then
    print(string.format("  %12.0f  %5.1f%%  %s", e.n, 100 * e.n / per_call, e.name))
  end
end
print("\ntop functions:")
for i, e in ipairs(diff(fn1, fn2)) do
  if i > 25 then break end
  print(string.format("  %12.0f  %5.1f%%  %s", e.n, 100 * e.n / per_call, e.name))
end
