local errors = require "dws.errors"

describe("dws.errors", function()
  it("builds an error with every documented field", function()
    local e = errors.new{ code = errors.HTTP_ERROR, message = "HTTP status 503", http_status = 503,
      retryable = true, request_id = "r-1", attempts = 3, api = "cacheCard" }
    assert.are.equal("U", e.status)
    assert.are.equal("HTTP_ERROR", e.code)
    assert.are.equal("HTTP status 503", e.message)
    assert.is_true(e.retryable)
    assert.are.equal(503, e.http_status)
    assert.are.equal("r-1", e.request_id)
    assert.are.equal(3, e.attempts)
    assert.are.equal("cacheCard", e.api)
    assert.is_nil(e.response)
    assert.is_true(errors.is(e))
    assert.is_false(errors.is({ code = "X" }))
  end)

  it("defaults local input errors to F and everything else to U, not retryable", function()
    assert.are.equal("F", errors.new{ code = errors.PARAM_ILLEGAL }.status)
    assert.are.equal("F", errors.new{ code = errors.CARD_INVALID }.status)
    local e = errors.new{ code = errors.SIGNATURE_INVALID }
    assert.are.equal("U", e.status)
    assert.is_false(e.retryable)
  end)

  it("formats tostring as documented", function()
    local e = errors.param("env.terminalType", "env.terminalType is required", "consultAddablePaymentMethod")
    assert.are.equal("dws: consultAddablePaymentMethod PARAM_ILLEGAL (F): env.terminalType is required"
      .. " field=env.terminalType", tostring(e))
    e = errors.new{ code = errors.HTTP_ERROR, message = "HTTP status 502", http_status = 502, request_id = "abc",
      api = "addPaymentMethod" }
    assert.are.equal("dws: addPaymentMethod HTTP_ERROR (U): HTTP status 502 http=502 requestId=abc", tostring(e))
    assert.are.equal("dws: TIMEOUT (U): TIMEOUT", tostring(errors.new{ code = errors.TIMEOUT }))
  end)

  it("classifies gateway results: only U with a retryable code is retried", function()
    local body = { result = { resultStatus = "U", resultCode = "UNKNOWN_EXCEPTION", resultMessage = "unknown" } }
    local e = errors.from_result(body.result, "cacheCard", body, 200)
    assert.are.equal("U", e.status)
    assert.are.equal("UNKNOWN_EXCEPTION", e.code)
    assert.are.equal("unknown", e.message)
    assert.is_true(e.retryable)
    assert.are.equal(body, e.response)
    assert.is_true(errors.from_result({ resultStatus = "U", resultCode = "REQUEST_TRAFFIC_EXCEED_LIMIT" }).retryable)
    assert.is_false(errors.from_result({ resultStatus = "U", resultCode = "SOMETHING_ELSE" }).retryable)
    local f = errors.from_result({ resultStatus = "F", resultCode = "UNKNOWN_EXCEPTION" })
    assert.are.equal("F", f.status)
    assert.is_false(f.retryable)
    assert.are.equal("UNKNOWN_EXCEPTION", f.message) -- no message given: the code stands in
  end)

  it("redacts card numbers a gateway message might echo", function()
    local e = errors.new{ code = "RISK_REJECT", status = "F", message = "card 4111111111111111 rejected" }
    assert.are.equal("card 411111******1111 rejected", e.message)
    assert.is_nil(tostring(e):find("4111111111111111", 1, true))
  end)

  it("requires a code", function()
    assert.has_error(function() errors.new{} end)
  end)

  it("exposes the SDK code constants", function()
    for _, name in ipairs{ "PARAM_ILLEGAL", "SIGNATURE_INVALID", "SIGNATURE_MISSING", "RESPONSE_MALFORMED",
      "RESPONSE_TOO_LARGE", "TIMEOUT", "CONNECTION_FAILED", "TLS_ERROR", "HTTP_ERROR", "CARD_INVALID",
      "PAYMENT_METHOD_NOT_ADDABLE" } do
      assert.are.equal(name, errors[name])
    end
  end)
end)

describe("dws.codes, the one table of codes", function()
  local codes = require "dws.codes"
  local should_retry = require("dws.retry").should_retry

  it("gives each error its default status", function()
    for _, c in ipairs(codes.LIST) do
      assert.are.equal(c.status, errors.new{ code = c.code }.status, c.code)
    end
  end)

  it("drives the retry decision for the API codes it marks retried", function()
    for _, c in ipairs(codes.LIST) do
      if c.api then
        assert.are.equal(c.retried == "yes", (should_retry("result", c.status, c.code)), c.code)
      end
    end
  end)

  it("drives the retry decision for every transport failure kind it names", function()
    for _, c in ipairs(codes.LIST) do
      for _, kind in ipairs(c.transport or {}) do
        assert.are.equal(c.retried == "yes", (should_retry("transport", kind)), kind)
      end
    end
  end)

  it("is what docs/calls.md's errors table says, byte for byte", function()
    local root = os.getenv("DWS_ROOT") or "."
    local ok = os.execute("cd '" .. root .. "' && LUA_PATH='lua/?.lua;;' lua5.4 scripts/errors_table.lua docs/calls.md")
    assert.is_true(ok == true or ok == 0)
  end)
end)
