-- After two cacheCard calls and a full GC, the memory of the process holds no
-- copy of the encoded card fields ("cardNo":"<number>", "securityCode":"<code>"). Found the way the
-- issue found it: a child interpreter of this flavour calls the sandbox over the libcurl transport,
-- collects garbage twice and waits; this process reads the child's readable mappings through
-- /proc/PID/mem (we run as root) and counts the patterns.
local nginx = require "dws_sandbox.nginx"
local sandbox = require "helpers.sandbox"
local core = require "dws.core"

local CARD, CODE = "4111111111111111", "739"

-- The child: the card fields appear in its source only as Lua values, never JSON-encoded.
local CHILD = [[
local dws = require "dws"
local dir = arg[1]
local function read(name)
  local f = assert(io.open(dir .. "/" .. name, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end
local client = dws.client{ client_id = read("client_id"), private_key = read("merchant.pem"),
  dws_public_key = read("dws.pub"), gateway = read("gateway"), max_retries = 0,
  logger = arg[2] == "logger" and function() end or nil }
local number, code = read("number"), read("code")
for _ = 1, 2 do
  local res, err = client:cache_card{ paymentMethodDetail = { paymentMethodDetailType = "card", card = {
    cardNo = number, securityCode = code, expiryYear = tostring(tonumber(os.date("!%Y")) + 2),
    expiryMonth = "06", instUserName = { firstName = "Ann", lastName = "Lee" } } } }
  if not res then io.stderr:write(tostring(err), "\n") os.exit(1) end
end
number, code = nil, nil
collectgarbage()
collectgarbage()
local pid = assert(io.open("/proc/self/stat")):read("*l"):match("^(%d+)")
local f = assert(io.open(dir .. "/pid.tmp", "w"))
f:write(pid)
f:close()
os.rename(dir .. "/pid.tmp", dir .. "/pid")
-- Wait (bounded) until the parent has scanned our memory.
local core = require "dws.core"
for _ = 1, 600 do
  if io.open(dir .. "/done") then break end
  core.sleep(0.05)
end
]]

-- Occurrences of each needle in the readable mappings of pid.
local function scan(pid, needles)
  local counts = {}
  for i = 1, #needles do counts[i] = 0 end
  local mem = assert(io.open("/proc/" .. pid .. "/mem", "rb"))
  local overlap = 64
  for line in io.lines("/proc/" .. pid .. "/maps") do
    local from, to, perms, name = line:match("^(%x+)-(%x+) (%S+) %S+ %S+ %S+%s*(.*)$")
    if perms:sub(1, 1) == "r" and name ~= "[vvar]" and name ~= "[vsyscall]" then
      local a, b = tonumber(from, 16), tonumber(to, 16)
      local tail = ""
      while a < b do
        local n = math.min(1048576, b - a)
        local chunk = mem:seek("set", a) and mem:read(n)
        if not chunk then break end
        local text = tail .. chunk
        for i, needle in ipairs(needles) do
          local at = 1
          while true do
            local s, e = text:find(needle, at, true)
            -- A match inside the carried-over tail was counted with the previous chunk.
            if not s then break end
            if e > #tail then counts[i] = counts[i] + 1 end
            at = s + 1
          end
        end
        tail = chunk:sub(-overlap)
        a = a + n
      end
    end
  end
  mem:close()
  return counts
end

describe("card data in process memory (libcurl transport)", function()
  local sb, dir

  setup(function()
    sb = assert(sandbox.start())
    dir = nginx.tmpdir("dws-card-memory")
    nginx.write_file(dir .. "/child.lua", CHILD)
    nginx.write_file(dir .. "/client_id", sb.merchant.client_id)
    nginx.write_file(dir .. "/merchant.pem", sb.merchant.private_key)
    nginx.write_file(dir .. "/dws.pub", sb.dws_public_key)
    nginx.write_file(dir .. "/gateway", sb.http_url)
    nginx.write_file(dir .. "/number", CARD)
    nginx.write_file(dir .. "/code", CODE)
  end)

  teardown(function()
    if sb then sb:stop() end
    if dir then nginx.rmdir(dir) end
  end)

  local function run_child(mode)
    os.remove(dir .. "/pid")
    os.remove(dir .. "/done")
    local root = os.getenv("DWS_ROOT") or "."
    local flavour = os.getenv("DWS_FLAVOUR") or "5.4"
    local lua = flavour == "jit" and "luajit" or "lua5.4"
    local cpath = os.getenv("LUA_CPATH") or (root .. "/build/" .. flavour .. "/?.so;;")
    local cmd = "LUA_PATH=" .. nginx.sh_quote(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;")
      .. " LUA_CPATH=" .. nginx.sh_quote(cpath) .. " " .. lua .. " " .. nginx.sh_quote(dir .. "/child.lua")
      .. " " .. nginx.sh_quote(dir) .. " " .. mode .. " >" .. nginx.sh_quote(dir .. "/child.log") .. " 2>&1 &"
    assert(os.execute(cmd))
    local pid
    for _ = 1, 600 do
      pid = nginx.read_file(dir .. "/pid")
      if pid or (nginx.read_file(dir .. "/child.log") or "") ~= "" then break end
      core.sleep(0.05)
    end
    assert(pid, "the child did not get ready: " .. tostring(nginx.read_file(dir .. "/child.log")))
    local counts = scan(pid, { '"cardNo":"' .. CARD .. '"', '"securityCode":"' .. CODE .. '"' })
    nginx.write_file(dir .. "/done", "")
    return { cardNo = counts[1], securityCode = counts[2] }
  end

  it("holds no encoded cardNo or securityCode after two cacheCard calls and a full GC", function()
    assert.same({ cardNo = 0, securityCode = 0 }, run_child("plain"))
  end)

  it("holds none with a logger either (the logger sees a redacted copy)", function()
    assert.same({ cardNo = 0, securityCode = 0 }, run_child("logger"))
  end)
end)
