// Tests for the certificate bundle's JSON form: what is written reads back the same, what an
// operator writes by hand is accepted, and anything else is refused as corrupt.
#include "store/certificate_bundle.hpp"
#include "tests/unit/store/result_string_maker.hpp"

#include <chrono>
#include <string>

#include <catch2/catch.hpp>

using gatehouse::store::certificate_bundle;
using gatehouse::store::errc;
using gatehouse::store::parse_bundle;
using gatehouse::store::serialize_bundle;
using std::chrono::system_clock;
using namespace std::chrono_literals;

namespace {

const std::string chain_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
                              "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n";
const std::string key_pem = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

certificate_bundle sample_bundle()
{
    const system_clock::time_point day = std::chrono::sys_days(std::chrono::year(2026) / 3 / 1);
    certificate_bundle bundle;
    bundle.names = {"example.com", "*.example.com"};
    bundle.certificate_chain_pem = chain_pem;
    bundle.private_key_pem = key_pem;
    bundle.issuer = "acme";
    bundle.serial = "04a1b2c3";
    bundle.not_before = day;
    bundle.not_after = day + 90 * 24h;
    bundle.obtained_at = day + 5min;
    return bundle;
}

} // namespace

TEST_CASE("a serialized bundle parses back to the same bundle", "[store]")
{
    const auto bundle = sample_bundle();
    const auto parsed = parse_bundle(serialize_bundle(bundle));
    REQUIRE(parsed);
    CHECK(*parsed == bundle);
}

TEST_CASE("a serialized bundle writes its times as RFC 3339", "[store]")
{
    const auto json = serialize_bundle(sample_bundle());
    CHECK(json.find("\"not_before\": \"2026-03-01T00:00:00Z\"") != std::string::npos);
    CHECK(json.find("\"not_after\": \"2026-05-30T00:00:00Z\"") != std::string::npos);
    CHECK(json.find("\"obtained_at\": \"2026-03-01T00:05:00Z\"") != std::string::npos);
}

TEST_CASE("a bundle with unknown times leaves them out and reads them back unknown", "[store]")
{
    auto bundle = sample_bundle();
    bundle.not_before = {};
    bundle.not_after = {};
    bundle.obtained_at = {};
    const auto json = serialize_bundle(bundle);
    CHECK(json.find("not_before") == std::string::npos);
    const auto parsed = parse_bundle(json);
    REQUIRE(parsed);
    CHECK(*parsed == bundle);
}

TEST_CASE("a hand-written bundle needs only the chain and the key", "[store]")
{
    const auto parsed = parse_bundle(R"({"certificate_chain_pem": "CHAIN", "private_key_pem": "KEY",
                                         "comment": "copied in by ops"})");
    REQUIRE(parsed);
    CHECK(parsed->certificate_chain_pem == "CHAIN");
    CHECK(parsed->private_key_pem == "KEY");
    CHECK(parsed->names.empty());
    CHECK(parsed->not_after == system_clock::time_point{});
}

TEST_CASE("corrupt bundles are refused with errc::corrupt", "[store]")
{
    const char* corrupt_inputs[] = {
        "",
        "not json",
        "{\"certificate_chain_pem\": \"C\", \"private_key_pem\": \"K\"",
        "[]",
        "\"a string\"",
        R"({"private_key_pem": "K"})",
        R"({"certificate_chain_pem": "C"})",
        R"({"certificate_chain_pem": "", "private_key_pem": "K"})",
        R"({"certificate_chain_pem": 5, "private_key_pem": "K"})",
        R"({"certificate_chain_pem": "C", "private_key_pem": "K", "names": "example.com"})",
        R"({"certificate_chain_pem": "C", "private_key_pem": "K", "names": [1]})",
        R"({"certificate_chain_pem": "C", "private_key_pem": "K", "not_after": "tomorrow"})",
        R"({"certificate_chain_pem": "C", "private_key_pem": "K", "not_after": 1700000000})",
        R"({"certificate_chain_pem": "C", "private_key_pem": "K", "format": 2})",
        "{\"certificate_chain_pem\": \"C\xff\", \"private_key_pem\": \"K\"}",
    };
    for (const char* input : corrupt_inputs) {
        INFO(input);
        const auto parsed = parse_bundle(input);
        REQUIRE_FALSE(parsed);
        CHECK(parsed.error() == errc::corrupt);
    }
}

TEST_CASE("a truncated bundle is refused, at every length", "[store]")
{
    const auto json = serialize_bundle(sample_bundle());
    // The closing brace and newline are the last two bytes: any shorter prefix is not JSON.
    std::size_t accepted = 0;
    for (std::size_t length = 0; length + 2 < json.size(); ++length) {
        if (parse_bundle(std::string_view(json).substr(0, length))) {
            ++accepted;
        }
    }
    CHECK(accepted == 0);
}
