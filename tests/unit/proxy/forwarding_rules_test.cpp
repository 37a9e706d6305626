// Tests for the header rules applied at the proxy: which fields stop at the hop, how the
// Connection header is read, and how X-Forwarded-For is built for trusted and untrusted peers.
#include "config/config_loader.hpp"
#include "config/value_parsers.hpp"
#include "proxy/forwarding_rules.hpp"

#include <cctype>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

using gatehouse::config::ip_network;
using gatehouse::proxy::connection_lists;
using gatehouse::proxy::forwarded_for;
using gatehouse::proxy::is_hop_by_hop;
using gatehouse::proxy::is_trusted_peer;

namespace {

ip_network network(std::string_view text)
{
    auto parsed = gatehouse::config::parse_ip_network(text);
    INFO(text << ": " << parsed.error());
    REQUIRE(parsed.ok());
    return parsed.value();
}

} // namespace

TEST_CASE("the hop-by-hop fields are recognised in any case", "[proxy]")
{
    // RFC 9110 section 7.6.1 names Connection, Proxy-Connection, Keep-Alive, TE, Transfer-Encoding
    // and Upgrade; Trailer and the Proxy-Authenticate/-Authorization pair are per-hop as well
    // (RFC 9110 sections 6.6.2 and 11.7).
    for (std::string_view name :
         {"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding",
          "Upgrade", "Proxy-Authenticate", "Proxy-Authorization"}) {
        INFO("field: " << name);
        std::string lower(name);
        std::string upper(name);
        for (auto& c : lower) {
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        for (auto& c : upper) {
            c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        }
        CHECK(is_hop_by_hop(name));
        CHECK(is_hop_by_hop(lower));
        CHECK(is_hop_by_hop(upper));
    }
}

TEST_CASE("end-to-end fields are not hop-by-hop", "[proxy]")
{
    for (std::string_view name :
         {"Host", "Content-Length", "Content-Type", "Authorization", "Cookie", "Set-Cookie",
          "Trailers", "TE2", "Connections", "X-Forwarded-For", "Via", "",
          "Upgrade-Insecure-Requests", "Proxy-Authentication-Info", "Keep-Alive-Timeout"}) {
        INFO("field: " << name);
        CHECK_FALSE(is_hop_by_hop(name));
    }
}

TEST_CASE("a Connection header lists trimmed, non-empty tokens", "[proxy]")
{
    // RFC 9110 section 7.6.1: Connection = #connection-option, a comma list with optional spaces.
    SECTION("a single token")
    {
        CHECK(connection_lists("close", "close"));
        CHECK_FALSE(connection_lists("close", "keep-alive"));
    }
    SECTION("several tokens with spaces and tabs")
    {
        for (std::string_view token : {"keep-alive", "Upgrade", "X-Custom"}) {
            CHECK(connection_lists(" keep-alive ,\tUpgrade,X-Custom ", token));
        }
        CHECK_FALSE(connection_lists(" keep-alive ,\tUpgrade,X-Custom ", "close"));
    }
    SECTION("empty list elements are dropped")
    {
        CHECK(connection_lists(",, close ,,", "close"));
        CHECK(connection_lists("a,,b,", "a"));
        CHECK(connection_lists("a,,b,", "b"));
        CHECK_FALSE(connection_lists("a,,b,", ""));
    }
    SECTION("nothing but separators")
    {
        CHECK_FALSE(connection_lists("", ""));
        CHECK_FALSE(connection_lists(" , ,\t", ""));
        CHECK_FALSE(connection_lists(" , ,\t", "close"));
    }
}

TEST_CASE("a Connection option is found ignoring case, as a whole token", "[proxy]")
{
    CHECK(connection_lists("Keep-Alive, UPGRADE", "keep-alive"));
    CHECK(connection_lists("Keep-Alive, UPGRADE", "upgrade"));
    CHECK(connection_lists("Keep-Alive, UPGRADE", "Upgrade"));
    CHECK_FALSE(connection_lists("Keep-Alive, UPGRADE", "close"));
    CHECK_FALSE(connection_lists("Keep-Alive, UPGRADE", "keep"));
    CHECK_FALSE(connection_lists("Keep-Alive, UPGRADE", "upgrade, keep-alive"));
    CHECK_FALSE(connection_lists("", "close"));
}

TEST_CASE("X-Forwarded-For from an untrusted peer is replaced by the peer's address", "[proxy]")
{
    // Anyone can send the header, so what an untrusted client claims is discarded.
    SECTION("no incoming header")
    {
        CHECK(forwarded_for(std::nullopt, "203.0.113.7", false) == "203.0.113.7");
    }
    SECTION("a forged incoming header")
    {
        CHECK(forwarded_for("1.2.3.4", "203.0.113.7", false) == "203.0.113.7");
        CHECK(forwarded_for("1.2.3.4, 5.6.7.8", "2001:db8::1", false) == "2001:db8::1");
    }
}

TEST_CASE("X-Forwarded-For from a trusted peer is extended with the peer's address", "[proxy]")
{
    SECTION("one address recorded before")
    {
        CHECK(forwarded_for("198.51.100.1", "10.0.0.2", true) == "198.51.100.1, 10.0.0.2");
    }
    SECTION("a list recorded before, with surrounding whitespace")
    {
        CHECK(forwarded_for("  198.51.100.1, 10.0.0.9\t", "10.0.0.2", true) ==
              "198.51.100.1, 10.0.0.9, 10.0.0.2");
    }
    SECTION("an IPv6 peer")
    {
        CHECK(forwarded_for("198.51.100.1", "fd00::2", true) == "198.51.100.1, fd00::2");
    }
}

TEST_CASE("X-Forwarded-For from a trusted peer without a usable list is just the peer", "[proxy]")
{
    CHECK(forwarded_for(std::nullopt, "10.0.0.2", true) == "10.0.0.2");
    CHECK(forwarded_for("", "10.0.0.2", true) == "10.0.0.2");
    CHECK(forwarded_for(" \t ", "10.0.0.2", true) == "10.0.0.2");
}

TEST_CASE("a peer is trusted when an IPv4 or IPv6 trusted network contains it", "[proxy]")
{
    const std::vector<ip_network> trusted = {network("10.0.0.0/8"), network("192.168.1.10"),
                                             network("fd00::/8"), network("2001:db8:1::/48")};

    SECTION("IPv4 peers")
    {
        CHECK(is_trusted_peer("10.0.0.1", trusted));
        CHECK(is_trusted_peer("10.255.255.255", trusted));
        CHECK(is_trusted_peer("192.168.1.10", trusted));
        CHECK_FALSE(is_trusted_peer("11.0.0.1", trusted));
        CHECK_FALSE(is_trusted_peer("9.255.255.255", trusted));
        CHECK_FALSE(is_trusted_peer("192.168.1.11", trusted));
    }
    SECTION("IPv4 peers seen as IPv4-mapped IPv6 addresses")
    {
        // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d (RFC 4291 section
        // 2.5.5.2); they must be judged by the IPv4 networks.
        CHECK(is_trusted_peer("::ffff:10.1.2.3", trusted));
        CHECK(is_trusted_peer("::ffff:192.168.1.10", trusted));
        CHECK_FALSE(is_trusted_peer("::ffff:11.1.2.3", trusted));
    }
    SECTION("IPv6 peers")
    {
        CHECK(is_trusted_peer("fd12:3456::1", trusted));
        CHECK(is_trusted_peer("FD00::1", trusted));
        CHECK(is_trusted_peer("2001:db8:1:ffff::1", trusted));
        CHECK_FALSE(is_trusted_peer("fe80::1", trusted));
        CHECK_FALSE(is_trusted_peer("2001:db8:2::1", trusted));
        CHECK_FALSE(is_trusted_peer("::1", trusted));
    }
    SECTION("unparsable peers")
    {
        CHECK_FALSE(is_trusted_peer("", trusted));
        CHECK_FALSE(is_trusted_peer("10.0.0.1:8080", trusted));
        CHECK_FALSE(is_trusted_peer("[fd00::1]", trusted));
        CHECK_FALSE(is_trusted_peer("not-an-address", trusted));
    }
}

TEST_CASE("no peer is trusted when no network is configured", "[proxy]")
{
    CHECK_FALSE(is_trusted_peer("10.0.0.1", {}));
    CHECK_FALSE(is_trusted_peer("::1", {}));

    // The catch-all networks show that the empty list, not the address, made the difference.
    CHECK(is_trusted_peer("10.0.0.1", {network("0.0.0.0/0")}));
    CHECK(is_trusted_peer("::1", {network("::/0")}));
}

TEST_CASE("trusted_proxies read from a configuration decide who is trusted", "[proxy]")
{
    const auto config = gatehouse::config::parse_config(
        "trusted_proxies:\n  - 172.16.0.0/12\n  - \"2001:db8::/32\"\n", "test.yaml");
    REQUIRE(config.trusted_proxies.size() == 2);

    CHECK(is_trusted_peer("172.31.255.1", config.trusted_proxies));
    CHECK_FALSE(is_trusted_peer("172.32.0.1", config.trusted_proxies));
    CHECK(is_trusted_peer("2001:db8:abcd::7", config.trusted_proxies));
    CHECK_FALSE(is_trusted_peer("2001:db9::7", config.trusted_proxies));

    // End to end: the configured networks decide whether a client's list survives.
    const bool trusted = is_trusted_peer("172.20.0.5", config.trusted_proxies);
    CHECK(forwarded_for("198.51.100.1", "172.20.0.5", trusted) == "198.51.100.1, 172.20.0.5");
    const bool untrusted = is_trusted_peer("198.18.0.5", config.trusted_proxies);
    CHECK(forwarded_for("198.51.100.1", "198.18.0.5", untrusted) == "198.18.0.5");
}
