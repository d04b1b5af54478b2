-- dws.retry.should_retry: the one rule for "worth another attempt?", case by case.
local should_retry = require("dws.retry").should_retry

-- { what, detail, code, retry? }
local CASES = {
  { "transport", "timeout", nil, true },
  { "transport", "connect", nil, true },
  { "transport", "protocol", nil, true },
  { "transport", "error", nil, true },
  { "transport", "tls", nil, false },
  { "transport", "too_large", nil, false },
  { "http", 429, nil, true },
  { "http", 500, nil, true },
  { "http", 502, nil, true },
  { "http", 503, nil, true },
  { "http", 599, nil, true },
  { "http", 400, nil, false },
  { "http", 401, nil, false },
  { "http", 404, nil, false },
  { "http", 302, nil, false },
  { "result", "U", "UNKNOWN_EXCEPTION", true },
  { "result", "U", "REQUEST_TRAFFIC_EXCEED_LIMIT", true },
  { "result", "U", "SOMETHING_ELSE", false },
  { "result", "F", "UNKNOWN_EXCEPTION", false },
  { "result", "F", "RISK_REJECT", false },
  { "result", "F", "REQUEST_TRAFFIC_EXCEED_LIMIT", false },
  { "verification", "signature", nil, false },
  { "verification", "response-time", nil, false },
  { "verification", "unsigned", nil, false },
  { "verification", "requestId", nil, false },
  { "response", "no result.resultStatus", nil, false },
  { "response", "body over max_response_bytes", nil, false },
  { "signing", "out of memory", nil, false },
  { "signing", "token", nil, true },
}

describe("dws.retry.should_retry", function()
  for _, case in ipairs(CASES) do
    local what, detail, code, want = case[1], case[2], case[3], case[4]
    local name = what .. " " .. tostring(detail) .. (code and " " .. code or "")
    it(name .. (want and ": retried" or ": not retried"), function()
      assert.are.equal(want, (should_retry(what, detail, code)))
    end)
    it(name .. ": says why", function()
      local _, reason = should_retry(what, detail, code)
      assert.matches("%S", reason)
    end)
  end

  it("treats a transport kind it does not know as a connection failure", function()
    assert.is_true((should_retry("transport", "weird")))
  end)

  it("raises on a failure kind it does not know (a caller's bug)", function()
    assert.has_error(function() should_retry("network", "timeout") end,
      "dws.retry.should_retry: unknown failure kind network")
  end)
end)
