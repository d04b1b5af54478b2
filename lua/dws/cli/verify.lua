-- `dws verify`: verify a signature and, when it does not verify, find out why. Integration failures
-- are nearly always one of: the wrong key (the merchant's own public key configured as the DWS key,
-- or a message signed by the merchant's key), the signature URL-encoded twice or not at all, the body
-- re-serialised between signing and sending (whitespace, key order, escapes, a trailing newline),
-- or the time or path differing (the SANDBOX_ path rewrite). Each is tried, alone and combined, and
-- the smallest set of changes that makes the signature verify is reported.
local core = require "dws.core"
local util = require "dws.cli.util"

local M = {}

local function load_public(path)
  local text, err = util.read_file(path)
  if not text then return nil, err end
  return core.public_key(text)
end

-- The public half of a private key, as a verifying key; only public material leaves the C core.
local function public_half(private)
  return assert(core.public_key(core.base64_encode(assert(private:public_der()))))
end

-- The ways the signature text may decode: { raw =, url_decodes = n }, first the SIGNING.md way.
local function signature_forms(text)
  text = text:gsub("^%s*[Ss]ignature:%s*", ""):gsub("%s+$", "")
  local header = text:find("signature=", 1, true) ~= nil
  local item = header and text:match("signature=([^,]*)") or text
  local forms, v = {}, item
  for n = 0, 3 do
    local raw = core.base64_decode(v)
    if raw then forms[#forms + 1] = { raw = raw, url_decodes = n } end
    local d = core.url_decode(v)
    if not d or d == v then break end
    v = d
  end
  return forms, header
end

-- Whitespace outside JSON strings removed.
local function strip_ws(s)
  local outp, in_str, esc = {}, false, false
  for i = 1, #s do
    local c = s:sub(i, i)
    if in_str then
      outp[#outp + 1] = c
      if esc then esc = false elseif c == "\\" then esc = true elseif c == '"' then in_str = false end
    elseif c == '"' then
      in_str = true
      outp[#outp + 1] = c
    elseif not c:find("^%s$") then
      outp[#outp + 1] = c
    end
  end
  return table.concat(outp)
end

local function keys_in_order(s)
  local keys = {}
  for k in s:gmatch('"([^"\\]*)"%s*:') do keys[#keys + 1] = k end
  return keys
end

local function same_multiset(a, b)
  if #a ~= #b then return false end
  local count = {}
  for _, k in ipairs(a) do count[k] = (count[k] or 0) + 1 end
  for _, k in ipairs(b) do
    if not count[k] or count[k] == 0 then return false end
    count[k] = count[k] - 1
  end
  return true
end

--- How `signed` (the bytes the signature covers) differs from `given`.
function M.body_difference(given, signed)
  local found = {}
  if given:sub(-1) == "\n" and signed:sub(-1) ~= "\n" then
    found[#found + 1] = "a trailing newline that was not signed (an editor saving the file, or a framework adding one)"
    given = given:sub(1, -2)
  end
  if given == signed then -- luacheck: ignore 542 (the newline was the whole difference)
  elseif given:gsub("\r\n", "\n") ~= signed:gsub("\r\n", "\n") then
    local g, s = strip_ws(given), strip_ws(signed)
    local gd, sd = core.json_decode(given), core.json_decode(signed)
    if g == s then
      found[#found + 1] = "whitespace outside strings (pretty-printed or compacted after signing)"
    elseif gd ~= nil and sd ~= nil and core.json_encode(gd) == core.json_encode(sd) then
      if g ~= given or s ~= signed then found[#found + 1] = "whitespace outside strings" end
      local gk, sk = keys_in_order(g), keys_in_order(s)
      if table.concat(gk, "\0") ~= table.concat(sk, "\0") and same_multiset(gk, sk) then
        found[#found + 1] = "key order"
      end
      if #g ~= #s then found[#found + 1] = "escapes (e.g. \\/ or \\u00e9 against the plain character)" end
      if #found == 0 then found[#found + 1] = "the same JSON written differently" end
    else
      local i = 1
      while i <= #given and given:byte(i) == signed:byte(i) do i = i + 1 end
      found[#found + 1] = "the bytes from byte " .. i .. " on (" .. #given .. " bytes given, " .. #signed .. " signed)"
    end
  else
    found[#found + 1] = "line endings (CRLF against LF)"
  end
  return "the body signed differs from yours in: " .. table.concat(found, "; ")
    .. " (sign the exact bytes you send: serialise once)"
end

-- Variants of one part: { value =, note = nil for the given one, or the explanation }.
local function variants(given, extra, describe)
  local list, seen = { { value = given } }, { [given] = true }
  for _, v in ipairs(extra) do
    if v.value ~= nil and not seen[v.value] then
      seen[v.value] = true
      list[#list + 1] = { value = v.value, note = v.note or describe(v.value) }
    end
  end
  return list
end

--- m: { method, path, client_id, time, body }; a: the parsed verify options.
-- Returns { verified = bool, lines = { ... } } or nil, err.
function M.run(m, a)
  local key, err = load_public(a.public_key)
  if not key then return nil, "--public-key: " .. tostring(err) end
  local lines = {}
  local own, own_pub
  if a.private_key then
    local text, rerr = require("dws.cli.keyfile").read_private(a.private_key, util.read_file)
    if not text then return nil, "--private-key: " .. tostring(rerr) end
    own, err = core.private_key(text)
    if not own then return nil, "--private-key: " .. tostring(err) end
    own_pub = public_half(own)
    own:close()
    if own_pub:public_der() == key:public_der() then
      lines[#lines + 1] = "found: the --public-key is the public half of your own private key. Answers and "
        .. "notifications are signed by DWS: verify them with the DWS public key (from the DWS portal); your "
        .. "public key is the one you upload to DWS."
    end
  end

  local forms, header = signature_forms(a.signature)
  if #forms == 0 then
    lines[#lines + 1] = "signature: neither base64 nor URL-encoded base64, however often decoded"
    return { verified = false, lines = lines }
  end
  local expected_decodes = header and 1 or forms[1].url_decodes

  -- Candidates per part.
  local keys = { { value = key } }
  if own_pub and own_pub:public_der() ~= key:public_der() then
    keys[#keys + 1] = { value = own_pub, note = "it was signed by your own key (the merchant private key), "
      .. "not by DWS: a message you signed cannot be verified with the DWS key, nor a DWS answer with yours" }
  end
  for _, f in ipairs(a.try_key or {}) do
    local k, kerr = load_public(f)
    if not k then return nil, "--try-key " .. f .. ": " .. tostring(kerr) end
    keys[#keys + 1] = { value = k, note = "it was signed by the key in " .. f }
  end

  local path_extra = {}
  for _, p in ipairs(a.try_path or {}) do path_extra[#path_extra + 1] = { value = p } end
  if m.path:find("^/ams/api/") then
    path_extra[#path_extra + 1] = { value = (m.path:gsub("^/ams/api/", "/ams/sandbox/api/")),
      note = "the signed path is " .. m.path:gsub("^/ams/api/", "/ams/sandbox/api/") .. ": a SANDBOX_ client id "
        .. "rewrites /ams/api to /ams/sandbox/api, in the path sent and in the path signed" }
  elseif m.path:find("^/ams/sandbox/api/") then
    path_extra[#path_extra + 1] = { value = (m.path:gsub("^/ams/sandbox/api/", "/ams/api/")),
      note = "the signed path is " .. m.path:gsub("^/ams/sandbox/api/", "/ams/api/") .. ": the signer did not "
        .. "apply the SANDBOX_ rewrite (/ams/api to /ams/sandbox/api) that the sender did, or the other way round" }
  end
  local paths = variants(m.path, path_extra, function(v) return "the signed path is " .. v .. ", not " .. m.path end)

  local extra = {}
  for _, c in ipairs(a.try_client_id or {}) do extra[#extra + 1] = { value = c } end
  local ids = variants(m.client_id, extra, function(v)
    return "the signed client id is " .. v .. ", not " .. m.client_id
  end)
  extra = {}
  for _, t in ipairs(a.try_time or {}) do extra[#extra + 1] = { value = t } end
  local times = variants(m.time, extra, function(v)
    return "the signed time is " .. v .. ", not " .. m.time .. " (the time is signed verbatim: the Request-Time "
      .. "or response-time header of the same message, never a clock reading of your own)"
  end)

  extra = {}
  for _, f in ipairs(a.try_body or {}) do
    local b, berr = util.read_file(f)
    if not b then return nil, "--try-body " .. f .. ": " .. tostring(berr) end
    extra[#extra + 1] = { value = b }
  end
  if m.body:sub(-1) == "\n" then extra[#extra + 1] = { value = m.body:sub(1, -2) } end
  local decoded = core.json_decode(m.body)
  if type(decoded) == "table" then
    extra[#extra + 1] = { value = core.json_encode(decoded) }
    extra[#extra + 1] = { value = strip_ws(m.body) }
  end
  local bodies = variants(m.body, extra, function(v) return M.body_difference(m.body, v) end)

  -- Every combination, fewest changes first; each verify is one RSA public operation.
  local best, best_changes
  for _, form in ipairs(forms) do
    for _, k in ipairs(keys) do
      for _, p in ipairs(paths) do
        for _, c in ipairs(ids) do
          for _, t in ipairs(times) do
            for _, b in ipairs(bodies) do
              local changes = (k.note and 1 or 0) + (p.note and 1 or 0) + (c.note and 1 or 0)
                + (t.note and 1 or 0) + (b.note and 1 or 0)
              if not best_changes or changes < best_changes then
                if core.verify(k.value, m.method, p.value, c.value, t.value, b.value, form.raw) then
                  best, best_changes = { form = form, k, p, c, t, b }, changes
                end
              end
            end
          end
        end
      end
    end
  end

  -- A verifier percent-decodes once; base64 that was never encoded survives that (no '%' in it).
  local encoding_ok = best and best.form.url_decodes <= 1
  if best and best.form.url_decodes ~= expected_decodes then
    local n = best.form.url_decodes
    lines[#lines + 1] = "found: the signature is URL-encoded " .. (n == 0 and "not at all" or n == 2 and "twice"
      or n .. " times") .. "; SIGNING.md: base64, then URL-encoded exactly once in the Signature header"
      .. (n > 1 and " (a %25 in it means an encoder ran over an already encoded value; DWS decodes once "
        .. "and rejects it)" or "")
  end
  if best and best_changes == 0 then
    lines[#lines + 1] = encoding_ok and "verified: the signature matches this content"
      or "does not verify as sent: the signature matches this content only once decoded as above"
    return { verified = encoding_ok, lines = lines }
  end
  lines[#lines + 1] = "does not verify over the content given"
  if not best then
    lines[#lines + 1] = "not found: no key, path, client id, time, body or signature encoding tried makes it verify"
      .. (a.private_key and "" or " (give --private-key to check for your own key, --try-* for candidates)")
    return { verified = false, lines = lines }
  end
  for i = 1, 5 do
    if best[i].note then lines[#lines + 1] = "found: " .. best[i].note end
  end
  return { verified = false, lines = lines }
end

return M
