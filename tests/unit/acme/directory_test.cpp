// Tests for acme::directory: URLs are read, never assumed, so Pebble's paths work too (RFC 8555
// section 7.1.1).
#include "acme/directory.hpp"
#include "tests/unit/acme/acme_test_support.hpp"

#include <catch2/catch.hpp>

namespace acme = gatehouse::acme;
using acme_test::require_ok;

namespace {

// What Pebble serves at /dir, with its playful paths.
constexpr const char* pebble_directory = R"({
    "keyChange": "https://localhost:14000/rollover-account-key",
    "meta": {
        "externalAccountRequired": false,
        "termsOfService": "data:text/plain,Do%20what%20thou%20wilt"
    },
    "newAccount": "https://localhost:14000/sign-me-up",
    "newNonce": "https://localhost:14000/nonce-plz",
    "newOrder": "https://localhost:14000/order-plz",
    "renewalInfo": "https://localhost:14000/draft-ietf-acme-ari-03/renewalInfo/",
    "revokeCert": "https://localhost:14000/revoke-cert"
})";

} // namespace

TEST_CASE("Pebble's directory is read URL by URL", "[acme]")
{
    const auto directory = require_ok(acme::parse_directory(pebble_directory));
    CHECK(directory.new_nonce == "https://localhost:14000/nonce-plz");
    CHECK(directory.new_account == "https://localhost:14000/sign-me-up");
    CHECK(directory.new_order == "https://localhost:14000/order-plz");
    CHECK(directory.revoke_cert == "https://localhost:14000/revoke-cert");
    CHECK(directory.key_change == "https://localhost:14000/rollover-account-key");
    CHECK(
        directory.renewal_info ==
        std::optional<std::string>("https://localhost:14000/draft-ietf-acme-ari-03/renewalInfo/"));
    CHECK(directory.meta.terms_of_service ==
          std::optional<std::string>("data:text/plain,Do%20what%20thou%20wilt"));
    CHECK_FALSE(directory.meta.website.has_value());
    CHECK_FALSE(directory.meta.external_account_required);
}

TEST_CASE("a directory's meta lists CAA identities and the EAB requirement", "[acme]")
{
    const auto directory = require_ok(acme::parse_directory(R"({
        "newNonce": "n", "newAccount": "a", "newOrder": "o", "revokeCert": "r", "keyChange": "k",
        "meta": {"website": "https://ca.test", "caaIdentities": ["ca.test", 3, "ca.example"],
                 "externalAccountRequired": true}})"));
    CHECK(directory.meta.website == std::optional<std::string>("https://ca.test"));
    CHECK(directory.meta.caa_identities == std::vector<std::string>{"ca.test", "ca.example"});
    CHECK(directory.meta.external_account_required);
    CHECK_FALSE(directory.renewal_info.has_value());
}

TEST_CASE("a directory without a required URL is refused", "[acme]")
{
    SECTION("missing")
    {
        const auto directory = acme::parse_directory(
            R"({"newNonce": "n", "newAccount": "a", "revokeCert": "r", "keyChange": "k"})");
        CHECK(acme_test::error_code_of(directory) == acme::errc::missing_field);
        CHECK(directory.error().message.find("newOrder") != std::string::npos);
    }
    SECTION("not a string")
    {
        const auto directory = acme::parse_directory(
            R"({"newNonce": 1, "newAccount": "a", "newOrder": "o", "revokeCert": "r",
                "keyChange": "k"})");
        CHECK(acme_test::error_code_of(directory) == acme::errc::invalid_field);
    }
    SECTION("not JSON")
    {
        CHECK(acme_test::error_code_of(acme::parse_directory("<!doctype html>")) ==
              acme::errc::invalid_json);
    }
}
