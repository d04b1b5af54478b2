-- #nginx (child processes: lua5.4 bin/dws and the sandbox) docs/cli.md's promises that no other
-- spec holds, and its console session run as written: read from docs/cli.md when the spec runs, so
-- the two cannot drift.
local dws = require "dws"
local core = require "dws.core"
local nginx = require "dws_sandbox.nginx"
local sandbox = require "helpers.sandbox"
local files = require "helpers.files"

local ROOT = os.getenv("DWS_ROOT")
local DOC = files.read(ROOT .. "/docs/cli.md")
local q = nginx.sh_quote

-- The one fenced block of docs/cli.md of `lang` that contains `marker` (plain text).
local function block(lang, marker)
  local found
  for body in DOC:gmatch("\n *```" .. lang .. "\n(.-)\n *```") do
    if body:find(marker, 1, true) then
      assert(not found, "docs/cli.md: more than one " .. lang .. " block holds " .. marker)
      found = body
    end
  end
  return assert(found, "docs/cli.md: no " .. lang .. " block holds " .. marker)
end

-- Runs a shell command -> exit status, stdout and stderr (os.execute's results differ between 5.4
-- and LuaJIT).
local function sh(cmd)
  local dir = nginx.tmpdir("dws-doc-sh")
  os.execute("(" .. cmd .. ") >" .. dir .. "/out 2>&1 </dev/null; echo $? >" .. dir .. "/rc")
  local status, out = tonumber(files.read(dir .. "/rc")), files.read(dir .. "/out")
  nginx.rmdir(dir)
  return status, out
end

local function card(number)
  return { cardNo = number, securityCode = "123", expiryMonth = "12",
           expiryYear = tostring(tonumber(os.date("!%Y")) + 2),
           instUserName = { firstName = "Ada", lastName = "Lovelace" } }
end

describe("docs/cli.md #nginx", function()
  local sb, CLIENT_ID, private_pem
  setup(function()
    sb = assert(sandbox.start{ notify_scale = 0.001 })
    CLIENT_ID, private_pem = sb.merchant.client_id, sb.merchant.private_key
  end)
  teardown(function() if sb then sb:stop() end end)

  describe("promises", function()
    local d
    before_each(function() d = nginx.tmpdir("dws-doc-cli") end)
    after_each(function() nginx.rmdir(d) end)

    local function dws_cli(args)
      return sh("lua5.4 " .. q(ROOT .. "/bin/dws") .. " " .. args)
    end

    it("keygen --out makes the directory, owner-only, when it does not exist", function()
      local status = dws_cli("keygen --out " .. q(d .. "/keys/new") .. " --name shop --bits 3072")
      local mode = select(2, sh("stat -c %a " .. q(d .. "/keys/new") .. " " .. q(d .. "/keys/new/shop_private.pem")))
      local key = core.private_key(files.read(d .. "/keys/new/shop_private.pem"))
      assert.are.same({ 0, "700\n600\n", 3072 }, { status, mode, key:bits() })
    end)

    -- A profile: client options, the keys as files.
    local function profile(ext)
      files.write(d .. "/merchant_private.pem", private_pem)
      sh("chmod 600 " .. q(d .. "/merchant_private.pem")) -- dws refuses a key file others can read
      files.write(d .. "/dws_public.pem", sb.dws_public_key_pem)
      local opts = { client_id = CLIENT_ID, private_key_file = d .. "/merchant_private.pem",
        dws_public_key_file = d .. "/dws_public.pem", gateway = sb.https_url, ca_file = sb.ca_file }
      local path = d .. "/profile." .. ext
      if ext == "json" then
        files.write(path, assert(core.json_encode(opts)))
      else
        local lines = { "return {" }
        for k, v in pairs(opts) do lines[#lines + 1] = string.format("  %s = %q,", k, v) end
        files.write(path, table.concat(lines, "\n") .. "\n}\n")
      end
      return path
    end

    local function call_cache_card(profile_path)
      files.write(d .. "/req.json", assert(core.json_encode{ paymentMethodDetail = { paymentMethodDetailType = "card",
        card = card("4111111111111111") } }))
      local status, out = dws_cli("call cache_card " .. q(d .. "/req.json") .. " --profile " .. q(profile_path))
      local res = dws.decode_json(out)
      return { status, res and res.paymentMethodDetail.card.mask }
    end

    it("call takes the method's name and a Lua profile with the keys as files", function()
      assert.are.same({ 0, "411111******1111" }, call_cache_card(profile("lua")))
    end)

    it("call takes a JSON profile", function()
      assert.are.same({ 0, "411111******1111" }, call_cache_card(profile("json")))
    end)

    it("notify resend of a requestId no notification was sent for fails, saying why: exit 1", function()
      local status, out = dws_cli("notify resend never-sent-1 --sandbox " .. q(sb.dir))
      assert.are.same({ 1, true }, { status, out:find("no binding with this requestId has a result", 1, true) ~= nil })
    end)
  end)

  describe("the console session", function()
    -- What differs from run to run, the same in the README's text and in a run's output.
    local function normalize(text)
      return (text:gsub("%x+%-%x+%-%x+%-%x+%-%x+", "<uuid>")
        :gsub("MII[%w+/=]+%.*", "<key>")
        :gsub("%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d[+-]%d%d:%d%d", "<time>")
        :gsub("=%d+", "=<port>"))
    end

    -- The session as { { command, expected output }, ... }.
    local function session()
      local steps = {}
      for line in (block("console", "$ dws keygen") .. "\n"):gmatch("(.-)\n") do
        local last = steps[#steps]
        if line:sub(1, 2) == "$ " then
          steps[#steps + 1] = { line:sub(3), {} }
        elseif last and #last[2] == 0 and last[1]:sub(-1) == "\\" then
          last[1] = last[1]:sub(1, -2) .. line -- a command continued on the next line
        else
          local out = steps[#steps][2]
          out[#out + 1] = line
        end
      end
      return steps
    end

    it("runs as shown, up to the first elided output", function()
      local d = nginx.tmpdir("dws-doc-console")
      -- free ports rather than the sandbox's documented defaults: other specs run at the same time
      local script, expected = { "dws() { lua5.4 " .. q(ROOT .. "/bin/dws") .. " \"$@\"; }", "cd " .. q(d),
        "export DWS_SANDBOX_HTTP_PORT=0 DWS_SANDBOX_HTTPS_PORT=0" }, {}
      for i, step in ipairs(session()) do
        -- verify and notify send are shown with their output elided (cli_spec runs them)
        if step[2][1] == "..." then break end
        script[#script + 1] = step[1]:gsub("/tmp/sb", d .. "/sb")
        -- a marker after each output, keeping $? for the session's `echo $?`
        script[#script + 1] = "st=$?; echo @@" .. i .. "; (exit $st)"
        expected[#expected + 1] = table.concat(step[2], "\n") .. "\n@@" .. i
      end
      script[#script + 1] = "dws sandbox stop --dir " .. q(d .. "/sb")
      files.write(d .. "/session.sh", table.concat(script, "\n") .. "\n")
      local _, out = sh("sh " .. q(d .. "/session.sh"))
      nginx.rmdir(d)
      out = out:gsub(d:gsub("%p", "%%%0") .. "/sb", "/tmp/sb"):gsub("\n$", "")
      assert.are.equal(normalize(table.concat(expected, "\n")), normalize(out))
    end)
  end)
end)
