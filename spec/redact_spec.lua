local redact = require "dws.redact"

local CARD = "4111111111111111"

describe("dws.redact", function()
  it("masks a card number as first six, stars, last four", function()
    assert.are.equal("411111******1111", redact.card_number(CARD))
    assert.are.equal("378282*****0005", redact.card_number("378282246310005"))
    assert.are.equal("********", redact.card_number("12345678"))
    assert.are.equal("***", redact.security_code("123"))
  end)

  it("redacts a table into a copy, leaving the original alone", function()
    local req = { paymentMethodDetail = { card = { cardNo = CARD, securityCode = "737", brand = "VISA" } } }
    local out = redact.table(req)
    assert.are.equal("411111******1111", out.paymentMethodDetail.card.cardNo)
    assert.are.equal("***", out.paymentMethodDetail.card.securityCode)
    assert.are.equal("VISA", out.paymentMethodDetail.card.brand)
    assert.are.equal(CARD, req.paymentMethodDetail.card.cardNo)
    assert.are.equal("737", req.paymentMethodDetail.card.securityCode)
  end)

  it("matches field names in any letter case and numeric values", function()
    local out = redact.table{ CARDNO = 4111111111111111, SecurityCode = 737 }
    assert.are.equal("411111******1111", out.CARDNO)
    assert.are.equal("***", out.SecurityCode)
  end)

  it("survives cycles and deep nesting", function()
    local t = { card = { cardNo = CARD } }
    t.card.self = t
    local out = redact.table(t)
    assert.are.equal("411111******1111", out.card.cardNo)
    assert.are.equal("<cycle>", out.card.self)
    local deep = {}
    local cur = deep
    for _ = 1, 200 do cur.next = {}; cur = cur.next end
    cur.cardNo = CARD
    assert.has_no.errors(function() redact.table(deep) end)
  end)

  it("redacts JSON text, also JSON carried inside JSON strings", function()
    local json = '{"paymentMethodDetail":{"card":{"cardNo":"' .. CARD .. '","securityCode":"737"}}}'
    local out = redact.text(json)
    assert.are.equal('{"paymentMethodDetail":{"card":{"cardNo":"411111******1111","securityCode":"***"}}}', out)
    local nested = '{"meta":"{\\"cardNo\\":\\"5555555555554444\\",\\"securityCode\\":\\"1234\\"}"}'
    assert.are.equal('{"meta":"{\\"cardNo\\":\\"555555******4444\\",\\"securityCode\\":\\"****\\"}"}',
      redact.text(nested))
    assert.are.equal('{"cardNo": "411111******1111"}', redact.text('{"cardNo": 4111111111111111}'))
  end)

  it("masks Luhn-valid digit runs in free text, and only those", function()
    assert.are.equal("card 411111******1111 declined", redact.text("card " .. CARD .. " declined"))
    -- 13 digits that fail Luhn (a customer id) stay readable
    assert.are.equal("customer 2162878776334", redact.text("customer 2162878776334"))
    assert.are.equal("short 12345", redact.text("short 12345"))
  end)

  it("masks card numbers typed with spaces or dashes, keeping the separators", function()
    assert.are.equal("card 4111 11** **** 1111 exp 2030", redact.text("card 4111 1111 1111 1111 exp 2030"))
    assert.are.equal("3782-82****-*0005", redact.text("3782-822463-10005"))
    assert.are.equal("5555 55** **** 4444 4111 11** **** 1111",
      redact.text("5555 5555 5555 4444 4111 1111 1111 1111"))
    -- dates, times and non-card numbers stay as they are
    for _, keep in ipairs{ "2026-11-22 06:00:01", "call 555 1234 5678", "4111 1111 1111 1112" } do
      assert.are.equal(keep, redact.text(keep))
    end
  end)

  it("redacts strings inside tables as text", function()
    local out = redact.table{ paymentMethodDetailMetadata = '{"cardNo":"' .. CARD .. '"}', note = "x" .. CARD }
    assert.is_nil(out.paymentMethodDetailMetadata:find(CARD, 1, true))
    assert.is_nil(out.note:find(CARD, 1, true))
  end)

  it("masks security codes named in free text in any letter case, and no other digits", function()
    for _, text in ipairs{ "Security Code: 737", "SECURITY_CODE='737'", "cvv2=4567", "CVC 737", "sEcUrItY-cOdE 737" } do
      local out = redact.text("declined: " .. text .. " at 12:00")
      assert.is_nil(out:find("737", 1, true) or out:find("4567", 1, true), out)
    end
    local plain = "requestId bench-00000001-62484013-28fe-4935 at 12:00"
    assert.are.equal(plain, redact.text(plain))
  end)

  it("leaves grouped digits too few for a card alone", function()
    local text = "call 555-123-4567 or 555 123 4567 before 2026-11-30 12:00"
    assert.are.equal(text, redact.text(text))
  end)

  it("passes other values through", function()
    assert.are.equal(42, redact.value(42))
    assert.is_nil(redact.value(nil))
    assert.are.equal(true, redact.value(true))
  end)
  it("masks a 12-digit Luhn-valid run entirely and leaves millisecond timestamps readable", function()
    assert.are.equal("id ************ ok", redact.text("id 411111111117 ok"))
    assert.are.equal("at 1700000000000 ms", redact.text("at 1700000000000 ms"))
  end)

  it("joins groups across at most three separators and at most 19 digits", function()
    assert.are.equal("4111 - 11** - **** - 1111", redact.text("4111 - 1111 - 1111 - 1111"))
    assert.are.equal("4111    1111 1111 1111", redact.text("4111    1111 1111 1111"))
    assert.are.equal("4111 11** **** 1111 1111 1111", redact.text("4111 1111 1111 1111 1111 1111"))
    assert.are.equal("ref 12 4111 11** **** 1111.", redact.text("ref 12 4111 1111 1111 1111."))
    assert.are.equal("411111******1111,555555******4444", redact.text("4111111111111111,5555555555554444"))
  end)

  it("masks a possible card that overlaps one already masked, so masking twice changes nothing", function()
    -- 3782 822463782 is Luhn-valid and masked first; 3782 841111123, sharing the group 3782, is too
    -- (found by the fuzzer, fuzz/redact.c)
    local out = redact.text("3782 - 822463782 - 841111123 ")
    assert.are.equal("3782 - 82***3782 - 84***1123 ", out)
    assert.are.equal(out, redact.text(out))
  end)

  it("masks text longer than the C core's stack buffer", function()
    local long = string.rep("lorem ipsum ", 900) .. CARD
    local out = redact.text(long)
    assert.are.equal(#long, #out)
    assert.are.equal("sum 411111******1111", out:sub(-20))
  end)

  it("escapes every control byte and the Unicode line breaks, nothing else", function()
    assert.are.equal("x\\x00y\\x01z\\x1F\\x7F\\u0085\\u2028\\u2029\194\160\226\130\172\226\128",
      redact.escape("x\0y\1z\31\127\194\133\226\128\168\226\128\169\194\160\226\130\172\226\128"))
    assert.are.equal("a\\nb\\rc\\td", redact.escape("a\nb\rc\td"))
    for c = 0, 31 do
      assert.is_nil(redact.escape("<" .. string.char(c) .. ">"):find("%c"), "byte " .. c)
    end
    assert.are.equal("plain text 123", redact.escape("plain text 123"))
  end)

  describe("the C core's half (csrc/redact.c)", function()
    local core = require "dws.core"

    it("checks Luhn over digit strings only", function()
      assert.is_true(core.luhn(CARD))
      assert.is_false(core.luhn("4111111111111112"))
      assert.is_false(core.luhn(""))
      assert.is_false(core.luhn("4111 1111 1111 1111"))
    end)

    it("hints at security codes only with three digits and a code's name", function()
      local words = { "security", "cvv", "cvc" }
      assert.is_true(core.code_hint("CVV2: 737", words))
      assert.is_true(core.code_hint("Security code 1234", words))
      assert.is_false(core.code_hint("cvv 73", words))
      assert.is_false(core.code_hint("declined 737", words))
    end)

    it("masks every character but the first six and last four, all of a short one", function()
      assert.are.equal("411111******1111", core.mask_card(CARD))
      assert.are.equal("4111-1*********1111", core.mask_card("4111-1111-1111-1111"))
      assert.are.equal("************", core.mask_card("411111111117"))
    end)
  end)
end)

describe("dws.redact.SECRET_FIELDS, the one list of secret names", function()
  for _, f in ipairs(redact.SECRET_FIELDS) do
    local name, kind = f[1], f[2]
    local value = kind == "card" and "4111111111111111" or "737"
    it("masks " .. name .. " as a table field, in any letter case", function()
      local out = redact.table{ [name:upper()] = value }
      assert.are_not.equal(value, out[name:upper()])
    end)
    it("masks " .. name .. " as a JSON key", function()
      assert.is_nil(redact.text('{"' .. name .. '":"' .. value .. '"}'):find(value, 1, true))
    end)
    if kind == "code" then
      it("masks a code named " .. name .. " in free text", function()
        assert.is_nil(redact.text("the " .. name .. ": " .. value):find(value, 1, true))
      end)
    end
  end
end)
