// Tests for acme::messages: accounts, orders, authorizations and challenges as RFC 8555 section
// 7.1 shows them, Link rel="alternate" (section 7.4.2) and Retry-After (section 8.2).
#include "acme/messages.hpp"
#include "tests/unit/acme/acme_test_support.hpp"

#include <catch2/catch.hpp>

namespace acme = gatehouse::acme;
using acme_test::require_ok;
using namespace std::chrono_literals;

TEST_CASE("an account is read with its status and contacts", "[acme]")
{
    const auto account = require_ok(acme::parse_account(
        R"({"status":"valid","contact":["mailto:ops@example.com"],"orders":"https://ca.test/o"})"));
    CHECK(account.status == acme::account_status::valid);
    CHECK(account.contact == std::vector<std::string>{"mailto:ops@example.com"});
    CHECK(account.orders == std::optional<std::string>("https://ca.test/o"));
    CHECK(require_ok(acme::parse_account("{}")).status == acme::account_status::valid);
    CHECK(acme_test::error_code_of(acme::parse_account(R"({"status":"sleepy"})")) ==
          acme::errc::invalid_field);
}

TEST_CASE("an order is read with its identifiers, authorizations and URLs", "[acme]")
{
    const auto order = require_ok(acme::parse_order(R"({
        "status": "valid", "expires": "2026-01-01T00:00:00Z",
        "identifiers": [{"type": "dns", "value": "example.com"},
                        {"type": "ip", "value": "192.0.2.1"}],
        "authorizations": ["https://ca.test/authZ/1", "https://ca.test/authZ/2"],
        "finalize": "https://ca.test/finalize/1", "certificate": "https://ca.test/certZ/1"})"));
    CHECK(order.status == acme::order_status::valid);
    CHECK(order.expires == std::optional<std::string>("2026-01-01T00:00:00Z"));
    CHECK(order.identifiers ==
          std::vector<acme::identifier>{{"dns", "example.com"}, {"ip", "192.0.2.1"}});
    CHECK(order.authorizations.size() == 2);
    CHECK(order.finalize == "https://ca.test/finalize/1");
    CHECK(order.certificate == std::optional<std::string>("https://ca.test/certZ/1"));
    CHECK_FALSE(order.error.has_value());
}

TEST_CASE("an order without status or finalize URL is refused", "[acme]")
{
    CHECK(acme_test::error_code_of(acme::parse_order(R"({"finalize":"f"})")) ==
          acme::errc::missing_field);
    CHECK(acme_test::error_code_of(acme::parse_order(R"({"status":"ready"})")) ==
          acme::errc::missing_field);
    CHECK(acme_test::error_code_of(acme::parse_order(R"({"status":"done","finalize":"f"})")) ==
          acme::errc::invalid_field);
}

TEST_CASE("an invalid order carries its error as a problem", "[acme]")
{
    const auto order =
        require_ok(acme::parse_order(R"({"status":"invalid","finalize":"f",)"
                                     R"("error":{"type":"urn:ietf:params:acme:error:badCSR"}})"));
    REQUIRE(order.error.has_value());
    CHECK(order.error->kind == acme::problem_kind::bad_csr);
}

TEST_CASE("an authorization is read with its challenges and wildcard flag", "[acme]")
{
    const auto authz = require_ok(acme::parse_authorization(R"({
        "status": "invalid", "identifier": {"type": "dns", "value": "example.com"},
        "wildcard": true,
        "challenges": [
            {"type": "http-01", "url": "https://ca.test/chalZ/1", "token": "tok",
             "status": "invalid",
             "error": {"type": "urn:ietf:params:acme:error:unauthorized", "detail": "404"}},
            {"type": "dns-01", "url": "https://ca.test/chalZ/2", "token": "tok2",
             "status": "pending"}
        ]})"));
    CHECK(authz.status == acme::authorization_status::invalid);
    CHECK(authz.identifier == acme::identifier{"dns", "example.com"});
    CHECK(authz.wildcard);
    REQUIRE(authz.challenges.size() == 2);
    CHECK(authz.challenges[0].type == "http-01");
    CHECK(authz.challenges[0].token == "tok");
    CHECK(authz.challenges[0].status == acme::challenge_status::invalid);
    REQUIRE(authz.challenges[0].error.has_value());
    CHECK(authz.challenges[0].error->kind == acme::problem_kind::unauthorized);
    CHECK(authz.challenges[1].status == acme::challenge_status::pending);
    CHECK_FALSE(authz.challenges[1].error.has_value());
}

TEST_CASE("an authorization without identifier is refused", "[acme]")
{
    CHECK(acme_test::error_code_of(acme::parse_authorization(R"({"status":"valid"})")) ==
          acme::errc::missing_field);
}

TEST_CASE("alternate links are found among other links and across header fields", "[acme]")
{
    const std::vector<std::string> fields{
        R"(<https://ca.test/directory>;rel="index", <https://ca.test/cert/1/1>; rel="alternate")",
        R"(<https://ca.test/cert/1/2>;rel=alternate)",
        R"(<https://ca.test/up>;title="a, b";rel="up", )"
        R"(<https://ca.test/cert/1/3>;REL="up Alternate")",
        "garbage without brackets",
    };
    CHECK(acme::alternate_links(fields) == std::vector<std::string>{"https://ca.test/cert/1/1",
                                                                    "https://ca.test/cert/1/2",
                                                                    "https://ca.test/cert/1/3"});
    CHECK(acme::alternate_links({}).empty());
}

TEST_CASE("Retry-After is read as seconds or as an HTTP date", "[acme]")
{
    // Sun, 06 Nov 1994 08:49:37 GMT, the example of RFC 9110 section 5.6.7.
    const auto now = std::chrono::system_clock::from_time_t(784111777);
    CHECK(acme::parse_retry_after("120", now) == 120s);
    CHECK(acme::parse_retry_after(" 0 ", now) == 0s);
    CHECK(acme::parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now) == 30s);
    CHECK(acme::parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now) == 0s);
    CHECK_FALSE(acme::parse_retry_after("", now).has_value());
    CHECK_FALSE(acme::parse_retry_after("-5", now).has_value());
    CHECK_FALSE(acme::parse_retry_after("soon", now).has_value());
    CHECK_FALSE(acme::parse_retry_after("12345678901", now).has_value());
    CHECK_FALSE(acme::parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now).has_value());
}
