// Tests for proxy::route_table and normalize_host: which host entry a request lands on, which
// path prefix wins inside it, and what target the upstream receives.
#include "proxy/route_table.hpp"

#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

using gatehouse::config::path_route;
using gatehouse::config::route;
using gatehouse::config::upstream_url;
using gatehouse::proxy::normalize_host;
using gatehouse::proxy::route_table;

namespace {

// A path whose single upstream is named `upstream_text`, so a test can tell matches apart.
path_route path(std::string prefix, std::string upstream_text, bool strip = false)
{
    path_route result;
    result.prefix = std::move(prefix);
    result.strip_prefix = strip;
    result.upstreams.push_back(upstream_url{"127.0.0.1", 8080, std::move(upstream_text)});
    return result;
}

route host_route(std::string host, std::vector<path_route> paths)
{
    route result;
    result.host = std::move(host);
    result.paths = std::move(paths);
    return result;
}

// The upstream text of the match for (host, target), or "none" when nothing matches.
std::string routed_to(const route_table& table, std::string_view host, std::string_view target)
{
    auto match = table.find(host, target);
    if (!match) {
        return "none";
    }
    REQUIRE(match->target != nullptr);
    REQUIRE(match->target->upstreams.size() == 1);
    return match->target->upstreams.front().text;
}

} // namespace

TEST_CASE("normalize_host drops the port, the case and a trailing dot", "[proxy]")
{
    CHECK(normalize_host("example.com") == "example.com");
    CHECK(normalize_host("Example.COM") == "example.com");
    CHECK(normalize_host("example.com:8080") == "example.com");
    CHECK(normalize_host("example.com.") == "example.com");
    CHECK(normalize_host("EXAMPLE.com.:443") == "example.com");
    CHECK(normalize_host("10.0.0.1:80") == "10.0.0.1");
}

TEST_CASE("normalize_host keeps an IPv6 literal's brackets and drops only its port", "[proxy]")
{
    SECTION("with a port")
    {
        CHECK(normalize_host("[::1]:8080") == "[::1]");
    }
    SECTION("without a port")
    {
        CHECK(normalize_host("[::1]") == "[::1]");
    }
    SECTION("in upper case")
    {
        CHECK(normalize_host("[FD00::AB]:443") == "[fd00::ab]");
    }
    SECTION("with an unbalanced bracket, which is no host at all")
    {
        CHECK(normalize_host("[::1").empty());
        CHECK(normalize_host("[::1:8080").empty());
    }
}

TEST_CASE("an exact host wins over a wildcard that also covers it", "[proxy]")
{
    // Config order must not matter, so try the wildcard both first and last.
    SECTION("wildcard listed first")
    {
        route_table table({host_route("*.example.com", {path("/", "wildcard")}),
                           host_route("app.example.com", {path("/", "exact")})});
        CHECK(routed_to(table, "app.example.com", "/") == "exact");
        CHECK(routed_to(table, "web.example.com", "/") == "wildcard");
    }
    SECTION("wildcard listed last")
    {
        route_table table({host_route("app.example.com", {path("/", "exact")}),
                           host_route("*.example.com", {path("/", "wildcard")})});
        CHECK(routed_to(table, "app.example.com", "/") == "exact");
        CHECK(routed_to(table, "web.example.com", "/") == "wildcard");
    }
}

TEST_CASE("a wildcard host covers exactly one label", "[proxy]")
{
    route_table table({host_route("*.example.com", {path("/", "wildcard")})});

    SECTION("one label is covered")
    {
        CHECK(routed_to(table, "a.example.com", "/") == "wildcard");
        CHECK(routed_to(table, "A.Example.Com.:8080", "/") == "wildcard");
    }
    SECTION("the bare parent domain is not")
    {
        CHECK(routed_to(table, "example.com", "/") == "none");
    }
    SECTION("two labels are not")
    {
        CHECK(routed_to(table, "a.b.example.com", "/") == "none");
    }
    SECTION("an empty label is not")
    {
        CHECK(routed_to(table, ".example.com", "/") == "none");
    }
    SECTION("a different parent domain is not")
    {
        CHECK(routed_to(table, "a.example.org", "/") == "none");
        CHECK(routed_to(table, "a.notexample.com", "/") == "none");
    }
}

TEST_CASE("host lookup ignores the port, the case and a trailing dot", "[proxy]")
{
    route_table table({host_route("app.example.com", {path("/", "app")}),
                       host_route("[::1]", {path("/", "loopback6")})});

    SECTION("DNS names")
    {
        CHECK(routed_to(table, "app.example.com", "/") == "app");
        CHECK(routed_to(table, "APP.Example.COM", "/") == "app");
        CHECK(routed_to(table, "app.example.com:8080", "/") == "app");
        CHECK(routed_to(table, "app.example.com.", "/") == "app");
        CHECK(routed_to(table, "App.Example.Com.:443", "/") == "app");
    }
    SECTION("IPv6 literals")
    {
        CHECK(routed_to(table, "[::1]", "/") == "loopback6");
        CHECK(routed_to(table, "[::1]:8080", "/") == "loopback6");
    }
}

TEST_CASE("the longest matching prefix wins whatever the order of the paths", "[proxy]")
{
    auto check_longest_wins = [](const route_table& table) {
        CHECK(routed_to(table, "app.example.com", "/") == "root");
        CHECK(routed_to(table, "app.example.com", "/static/app.js") == "root");
        CHECK(routed_to(table, "app.example.com", "/api/") == "api");
        CHECK(routed_to(table, "app.example.com", "/api/users") == "api");
        CHECK(routed_to(table, "app.example.com", "/api/v2/users") == "api-v2");
        CHECK(routed_to(table, "app.example.com", "/api/v2/users?page=2") == "api-v2");
    };

    SECTION("shortest first")
    {
        check_longest_wins(
            route_table({host_route("app.example.com", {path("/", "root"), path("/api/", "api"),
                                                        path("/api/v2/", "api-v2")})}));
    }
    SECTION("longest first")
    {
        check_longest_wins(route_table(
            {host_route("app.example.com",
                        {path("/api/v2/", "api-v2"), path("/api/", "api"), path("/", "root")})}));
    }
    SECTION("mixed")
    {
        check_longest_wins(
            route_table({host_route("app.example.com", {path("/api/", "api"), path("/", "root"),
                                                        path("/api/v2/", "api-v2")})}));
    }
}

TEST_CASE("a prefix is a plain string prefix of the path, not of the query", "[proxy]")
{
    route_table table({host_route("app.example.com", {path("/api", "api"), path("/x/", "x")})});

    // docs/configuration.md: "/api" also matches "/apiary".
    CHECK(routed_to(table, "app.example.com", "/apiary") == "api");

    // The query is not part of the path, so "?/x/" does not make "/" match "/x/".
    CHECK(routed_to(table, "app.example.com", "/?/x/") == "none");
    CHECK(routed_to(table, "app.example.com", "/x?a=1") == "none");
}

TEST_CASE("a request matches nothing when its host or its path is not routed", "[proxy]")
{
    route_table table({host_route("app.example.com", {path("/api/", "api")})});

    SECTION("unknown host")
    {
        CHECK_FALSE(table.find("other.example.com", "/api/users").has_value());
    }
    SECTION("empty host")
    {
        CHECK_FALSE(table.find("", "/api/users").has_value());
    }
    SECTION("malformed IPv6 host")
    {
        CHECK_FALSE(table.find("[::1", "/api/users").has_value());
    }
    SECTION("known host, no prefix matches")
    {
        CHECK_FALSE(table.find("app.example.com", "/").has_value());
        CHECK_FALSE(table.find("app.example.com", "/ap").has_value());
        CHECK_FALSE(table.find("app.example.com", "/web/api/").has_value());
    }
    SECTION("an empty table")
    {
        route_table empty(std::vector<route>{});
        CHECK(empty.size() == 0);
        CHECK_FALSE(empty.find("app.example.com", "/").has_value());
    }
}

TEST_CASE("without strip_prefix the upstream receives the target unchanged", "[proxy]")
{
    route_table table({host_route("app.example.com", {path("/api/", "api")})});

    auto match = table.find("app.example.com", "/api/users?id=7&x=%2F");
    REQUIRE(match);
    CHECK(match->upstream_target == "/api/users?id=7&x=%2F");
    CHECK(match->target->prefix == "/api/");
    CHECK(match->target->host_pattern == "app.example.com");
    CHECK_FALSE(match->target->strip_prefix);
}

TEST_CASE("strip_prefix removes the prefix but keeps a leading slash and the query", "[proxy]")
{
    auto stripped = [](std::string prefix, std::string_view target) {
        route_table table({host_route("app.example.com", {path(prefix, "up", true)})});
        auto match = table.find("app.example.com", target);
        REQUIRE(match);
        return match->upstream_target;
    };

    SECTION("prefix ending in a slash")
    {
        CHECK(stripped("/api/", "/api/users") == "/users");
        CHECK(stripped("/api/", "/api/users?id=7") == "/users?id=7");
        CHECK(stripped("/api/", "/api/") == "/");
        CHECK(stripped("/api/", "/api/?q=1") == "/?q=1");
    }
    SECTION("prefix without a trailing slash")
    {
        CHECK(stripped("/api", "/api/users") == "/users");
        CHECK(stripped("/api", "/api") == "/");
        CHECK(stripped("/api", "/api?q=1") == "/?q=1");
        CHECK(stripped("/api", "/apiary") == "/ary");
    }
    SECTION("the root prefix")
    {
        CHECK(stripped("/", "/") == "/");
        CHECK(stripped("/", "/a/b?c=d") == "/a/b?c=d");
    }
}

TEST_CASE("a route table reports one entry per configured host", "[proxy]")
{
    route_table table({host_route("a.example.com", {path("/", "a")}),
                       host_route("*.example.org", {path("/", "b")}),
                       host_route("10.0.0.1", {path("/", "c")})});
    CHECK(table.size() == 3);
    CHECK(routed_to(table, "10.0.0.1:8080", "/") == "c");
}

TEST_CASE("the host pattern for a name is the route that serves it, whatever the path", "[proxy]")
{
    const route_table table({host_route("app.example.com", {path("/api/", "http://api")}),
                             host_route("*.example.com", {path("/", "http://wild")})});
    REQUIRE(table.host_pattern_for("app.example.com") != nullptr);
    CHECK(*table.host_pattern_for("APP.example.com:8443") == "app.example.com");
    REQUIRE(table.host_pattern_for("b.example.com") != nullptr);
    CHECK(*table.host_pattern_for("b.example.com") == "*.example.com");
    CHECK(table.host_pattern_for("a.b.example.com") == nullptr);
    CHECK(table.host_pattern_for("other.test") == nullptr);
}
