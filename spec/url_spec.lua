-- dws.url: the one splitter behind the gateway option, cosocket request URLs and redis:// specs.
local url = require "dws.url"

describe("dws.url.split", function()
  it("splits every part", function()
    local u = assert(url.split("HTTPS://user:pw@example.com:8443/a/b?x=1#frag"))
    assert.are.same({ "https", "user:pw", "example.com", false, 8443, "/a/b", "x=1", "user:pw@example.com:8443" },
      { u.scheme, u.userinfo, u.host, u.ipv6, u.port, u.path, u.query, u.authority })
  end)

  it("takes an IPv6 host without its brackets", function()
    local u = assert(url.split("http://[::1]:9/"))
    assert.are.same({ "::1", true, 9 }, { u.host, u.ipv6, u.port })
  end)

  it("leaves the port nil when absent", function()
    assert.is_nil(assert(url.split("https://example.com")).port)
  end)

  for _, bad in ipairs{ "https://example.com:0", "https://example.com:65536", "https://example.com:123456" } do
    it("refuses the port of " .. bad, function()
      assert.are.same({ nil, "a port that is not 1 to 65535" }, { url.split(bad) })
    end)
  end

  it("refuses a URL without a host", function()
    assert.are.same({ nil, "no host" }, { url.split("https:///path") })
  end)

  it("refuses text that is not scheme://", function()
    assert.are.same({ nil, "not scheme://host" }, { url.split("example.com") })
  end)
end)

describe("dws.url.plain_host", function()
  it("takes names and addresses", function()
    assert.are.same({ true, true, true }, { url.plain_host("dws.example"), url.plain_host("127.0.0.1"),
      url.plain_host("::1", true) })
  end)

  it("refuses spaces, control characters and percent signs", function()
    assert.are.same({ false, false, false }, { url.plain_host("a b"), url.plain_host("a\r\nb"),
      url.plain_host("a%2eb") })
  end)
end)
