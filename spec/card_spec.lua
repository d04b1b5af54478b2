local card = require "dws.card"

local NOW = { year = 2026, month = 11, day = 22 }

describe("dws.card", function()
  describe("luhn", function()
    it("accepts the sandbox test numbers", function()
      for _, n in ipairs{ "4111111111111111", "5555555555554444", "4000056655665556", "4000000000000077",
                          "4000000000000101", "378282246310005", "6011111111111117", "3530111333300000" } do
        assert.is_true(card.luhn(n), n)
      end
    end)

    it("refuses a single mistyped digit and a swapped pair", function()
      assert.is_false(card.luhn("4111111111111112"))
      assert.is_false(card.luhn("4111111111111121"))
      assert.is_false(card.luhn("5555555555554445"))
    end)

    it("drops spaces and dashes but refuses other characters and odd lengths", function()
      assert.is_true(card.luhn("4111 1111 1111 1111"))
      assert.is_true(card.luhn("4111-1111-1111-1111"))
      assert.is_false(card.luhn("4111x111111111111"))
      assert.is_false(card.luhn("00000000000"))          -- 11 digits, Luhn-valid but too short
      assert.is_false(card.luhn(("0"):rep(20)))
      assert.is_false(card.luhn(4111111111111111))
      assert.is_false(card.luhn(nil))
    end)
  end)

  describe("brand from the BIN", function()
    local cases = {
      { "4111111111111111", "VISA" },
      { "5105105105105100", "MASTERCARD" },
      { "5555555555554444", "MASTERCARD" },
      { "2221000000000009", "MASTERCARD" },
      { "2720999999999996", "MASTERCARD" },
      { "378282246310005", "AMEX" },
      { "340000000000009", "AMEX" },
      { "3528000000000007", "JCB" },
      { "3589000000000003", "JCB" },
      { "6011111111111117", "DISCOVER" },
      { "6500000000000002", "DISCOVER" },
      { "6200000000000005", "UNIONPAY" },
      { "30569309025904", "DINERS" },
    }
    for _, c in ipairs(cases) do
      it(c[2] .. " for " .. c[1]:sub(1, 4), function()
        assert.are.equal(c[2], card.brand(c[1]))
      end)
    end

    it("knows the edges of the ranges", function()
      assert.are_not.equal("MASTERCARD", card.brand("2220990000000000"))
      assert.are_not.equal("MASTERCARD", card.brand("2721000000000000"))
      assert.are_not.equal("JCB", card.brand("3527000000000000"))
      assert.is_nil(card.brand("9999999999999995"))
    end)
  end)

  it("masks as first six, stars, last four", function()
    assert.are.equal("411111******1111", card.mask("4111111111111111"))
    assert.are.equal("378282*****0005", card.mask("378282246310005"))
    assert.are.equal("1111", card.last4("4111 1111 1111 1111"))
    assert.is_nil(card.mask("not a card"))
  end)

  describe("expiry", function()
    it("is good through the expiry month", function()
      assert.is_false(card.expired(2026, 11, NOW))
      assert.is_true(card.expired(2026, 10, NOW))
      assert.is_true(card.expired(2025, 12, NOW))
      assert.is_false(card.expired(2027, 1, NOW))
    end)

    it("reads 2 and 4 digit years, string or number months", function()
      assert.are.same({ 2030, 7 }, { card.expiry("30", "07") })
      assert.are.same({ 2030, 7 }, { card.expiry(2030, 7) })
      local y, err = card.expiry("2030", "13")
      assert.is_nil(y)
      assert.matches("expiryMonth", err.message)
      assert.are.equal("card.expiryMonth", err.field)
      assert.are.equal("card.expiryYear", select(2, card.expiry("20x0", "1")).field)
    end)
  end)

  describe("check", function()
    local good = { cardNo = "4111 1111 1111 1111", securityCode = "123", expiryYear = "2030", expiryMonth = "7",
                   instUserName = { firstName = "Ann", lastName = "Lee" } }

    it("normalises and fills the brand, leaving the caller's table alone", function()
      local c = assert(card.check(good, NOW))
      assert.are.equal("4111111111111111", c.cardNo)
      assert.are.equal("VISA", c.brand)
      assert.are.equal("2030", c.expiryYear)
      assert.are.equal("07", c.expiryMonth)
      assert.are.equal("Ann", c.instUserName.firstName)
      assert.is_nil(good.brand)
      assert.are.equal("4111 1111 1111 1111", good.cardNo)
    end)

    local function refused(over, field, pattern)
      local c = {}
      for k, v in pairs(good) do c[k] = v end
      for k, v in pairs(over) do c[k] = v end
      local ok, err = card.check(c, NOW)
      assert.is_nil(ok)
      assert.are.same({ "CARD_INVALID", "F", field }, { err.code, err.status, err.field })
      local why = err.message
      assert.matches(pattern, why)
      -- never the number, nor the security code
      assert.is_nil(why:find("4111", 1, true))
      assert.is_nil(why:find("1111", 1, true))
      assert.is_nil(why:find(c.securityCode or "\0", 1, true))
      return why
    end

    it("refuses with a reason and the field, never echoing the card", function()
      refused({ cardNo = "4111111111111112" }, "card.cardNo", "Luhn")
      refused({ cardNo = "41111" }, "card.cardNo", "12 to 19 digits")
      refused({ expiryYear = "2026", expiryMonth = "10" }, "card.expiryYear", "expired %(2026%-10%)")
      refused({ expiryMonth = "0" }, "card.expiryMonth", "1 to 12")
      refused({ brand = "MASTERCARD" }, "card.brand", "does not match")
      refused({ securityCode = "98" }, "card.securityCode", "3 digits")
      refused({ cardNo = "378282246310005", securityCode = "987" }, "card.securityCode", "4 digits")
      assert.are.equal("card", select(2, card.check("4111111111111111", NOW)).field)
    end)

    it("keeps a given brand that agrees with the BIN, in upper case", function()
      local c = assert(card.check({ cardNo = "5555555555554444", brand = "mastercard", expiryYear = "2031",
                                    expiryMonth = "01" }, NOW))
      assert.are.equal("MASTERCARD", c.brand)
    end)
  end)
end)
