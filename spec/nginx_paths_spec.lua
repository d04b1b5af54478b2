-- Every nginx we start names its Lua directories: a shell set up for Lua 5.4 (LUA_PATH and LUA_CPATH
-- holding Lua 5.4 directories, as `eval "$(luarocks --lua-version 5.4 path)"` leaves them) must not
-- reach nginx's LuaJIT through ';;'. The launcher runs as a child lua5.4 in exactly that environment,
-- and nginx opens the SQLite store (luasql, a C module Debian builds for each Lua) inside a request.
-- Tagged #nginx.
local nginx = require "dws_sandbox.nginx"

local ROOT = os.getenv("DWS_ROOT") or "."
local q = nginx.sh_quote

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("*a")
  p:close()
  return out
end

-- What `eval "$(luarocks --lua-version 5.4 --tree T path)"` exports, T being this source tree.
local function lua54_env()
  local dirs = sh("env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 lua5.4 -e " ..
    q('io.write(package.path, "\\n", package.cpath)'))
  local path, cpath = dirs:match("^([^\n]*)\n([^\n]*)")
  return ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;" .. ROOT .. "/sandbox/lua/?.lua;" .. path,
    ROOT .. "/build/5.4/?.so;" .. cpath
end

local LAUNCHER = [[
local nginx = require "dws_sandbox.nginx"
local prefix = arg[1]
local ports, err = nginx.start_on_free_ports(prefix, 1, function(p)
  return nginx.preamble(prefix) .. "events {}\nhttp {\n" .. nginx.lua_paths() ..
    "server { listen 127.0.0.1:" .. p[1] .. ";\n location / { content_by_lua_block {\n" ..
    "  local s = require('dws.store.sqlite').open(ngx.var.arg_db)\n" ..
    "  local ok, e = s:set('k', 'v')\n  ngx.say(tostring(ok), ' ', tostring(e))\n } } }\n}\n"
end)
print(ports and ports[1] or err)
]]

describe("nginx's Lua paths #nginx", function()
  local dir, port

  lazy_setup(function()
    dir = nginx.tmpdir("dws-paths")
    nginx.write_file(dir .. "/launch.lua", LAUNCHER)
    local path, cpath = lua54_env()
    local out = sh("env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 LUA_PATH=" .. q(path) .. " LUA_CPATH=" .. q(cpath) ..
      " lua5.4 " .. q(dir .. "/launch.lua") .. " " .. q(dir .. "/nginx"))
    port = tonumber(out:match("^(%d+)\n$"))
    assert(port, out)
  end)

  lazy_teardown(function()
    if dir then
      nginx.stop(dir .. "/nginx")
      nginx.rmdir(dir)
    end
  end)

  it("neither path ends in ';;' (which adds nginx's LUA_PATH and LUA_CPATH)", function()
    local conf = nginx.read_file(dir .. "/nginx/conf/nginx.conf")
    assert.is_nil(conf:match('lua_package_c?path "[^"]*;;'), conf)
  end)

  it("the cpath names no Lua 5.4 directory", function()
    local conf = nginx.read_file(dir .. "/nginx/conf/nginx.conf")
    assert.is_nil(conf:match('lua_package_cpath "[^"]*/5%.4/'), conf)
  end)

  it("started from a shell set up for Lua 5.4, nginx opens the SQLite store", function()
    local out = sh("curl -s " .. q("http://127.0.0.1:" .. port .. "/?db=" .. dir .. "/j.db"))
    assert.are.equal("true nil\n", out)
  end)
end)

describe("the LuaJIT build of dws.core the launcher hands nginx #nginx", function()
  -- jit_cpath in a child lua5.4 with this environment and package.cpath; -> its two results
  local function jit_cpath(env, cpath)
    return sh("env -u DWS_SANDBOX_JIT_CPATH " .. env .. " LUA_PATH=" .. q(ROOT .. "/lua/?.lua;" .. ROOT ..
      "/sandbox/lua/?.lua;;") .. " lua5.4 -e " .. q("package.cpath = " .. string.format("%q", cpath) ..
      " print(require('dws_sandbox.nginx').jit_cpath())"))
  end

  it("is refused by name when it is built for Lua 5.4", function()
    local out = jit_cpath("DWS_SANDBOX_JIT_CPATH=" .. q(ROOT .. "/build/5.4/?.so"), "")
    assert.matches("^nil\t" .. ROOT:gsub("%p", "%%%0") .. "/build/5%.4/dws/core%.so is built for Lua 5%.2 or later, " ..
      "not LuaJIT", out)
  end)

  it("is found in <tree>/lib/lua/5.1 beside a tree on package.cpath", function()
    local tree = nginx.tmpdir("dws-jit-tree")
    nginx.run("mkdir -p " .. q(tree .. "/lib/lua/5.1/dws") .. " && cp " .. q(ROOT .. "/build/jit/dws/core.so") .. " " ..
      q(tree .. "/lib/lua/5.1/dws/"))
    local out = jit_cpath("", tree .. "/lib/lua/5.4/?.so")
    nginx.rmdir(tree)
    assert.are.equal(tree .. "/lib/lua/5.1/?.so\n", out)
  end)

  it("when missing, is named with the luarocks command that installs it into that tree", function()
    local out = jit_cpath("", "/nonexistent/tree/lib/lua/5.4/?.so")
    assert.matches("no /nonexistent/tree/lib/lua/5.1/dws/core.so%): from the lua%-dws source directory run " ..
      "luarocks %-%-lua%-version 5%.1 %-%-tree /nonexistent/tree make %-%-deps%-mode=none " ..
      "openresty/dws%-openresty%-scm%-1%.rockspec LUA_INCDIR=/usr/include/luajit%-2%.1", out)
  end)
end)
