-- Last-level cache misses per operation from a callgrind_annotate listing made with
-- --show=Ir,ILmr,DLmr,DLmw (bench/profile_gap): lines fetched from memory, by shared object and by
-- function; with a second listing (sign + verify counted the same way), the ratio of the two.
--
--   lua5.4 bench/cgmiss.lua listing.txt n [floor-listing.txt m]
local f1, n1, ff, nf = arg[1], tonumber(arg[2]), arg[3], tonumber(arg[4])
assert(f1 and n1 and n1 > 0, "usage: cgmiss.lua listing.txt n [floor-listing.txt m]")

local function num(s) return s == "." and 0 or tonumber((s:gsub(",", ""))) end

local function short(obj)
  return obj and (obj:match("([^/]+)$") or obj):gsub("%.so.*$", "") or "?"
end

-- Each line (callgrind_annotate --show-percs=no): Ir ILmr DLmr DLmw file:function [object];
-- a zero count is ".".
local function parse(path)
  local by_obj, by_fn, tot = {}, {}, { ir = 0, il = 0, dl = 0, dw = 0 }
  local totals
  for line in io.lines(path) do
    local ir, il, dl, dw, rest = line:match("^%s*([%d,.]+)%s+([%d,.]+)%s+([%d,.]+)%s+([%d,.]+)%s+(%S.*)$")
    if ir and rest:find("PROGRAM TOTALS", 1, true) then
      totals = { ir = num(ir), il = num(il), dl = num(dl), dw = num(dw) }
    elseif ir and rest:find(":", 1, true) then
      local miss = num(il) + num(dl) + num(dw)
      local obj = short(rest:match("%[(.-)%]$"))
      local fn = rest:gsub("%s*%[.-%]$", ""):gsub("^.*:", ""):gsub("'%d+$", "")
      by_obj[obj] = (by_obj[obj] or 0) + miss
      local key = obj .. "  " .. fn
      by_fn[key] = (by_fn[key] or 0) + miss
      tot.ir, tot.il, tot.dl, tot.dw = tot.ir + num(ir), tot.il + num(il), tot.dl + num(dl), tot.dw + num(dw)
    end
  end
  return by_obj, by_fn, totals or tot
end

local function sorted(t, n)
  local out = {}
  for k, v in pairs(t) do out[#out + 1] = { name = k, v = v / n } end
  table.sort(out, function(a, b) return a.v > b.v end)
  return out
end

local by_obj, by_fn, t = parse(f1)
local lines = (t.il + t.dl + t.dw) / n1
print(string.format("%.0f instructions, %.0f lines fetched from memory per operation (code %.0f, data read %.0f, "
  .. "data written %.0f): %.0f KiB", t.ir / n1, lines, t.il / n1, t.dl / n1, t.dw / n1, lines * 64 / 1024))
if ff and nf then
  local _, _, f = parse(ff)
  local fl = (f.il + f.dl + f.dw) / nf
  print(string.format("sign + verify counted the same way: %.0f instructions, %.0f lines; the operation is "
    .. "%.2fx its instructions and %.2fx its lines", f.ir / nf, fl, t.ir / n1 / (f.ir / nf), lines / fl))
end
print("\nlines fetched, by object:")
for _, e in ipairs(sorted(by_obj, n1)) do
  if e.v >= 1 then print(string.format("  %8.0f  %5.1f%%  %s", e.v, 100 * e.v / lines, e.name)) end
end
print("\nlines fetched, top functions:")
for i, e in ipairs(sorted(by_fn, n1)) do
  if i > 30 then break end
  print(string.format("  %8.0f  %5.1f%%  %s", e.v, 100 * e.v / lines, e.name))
end
