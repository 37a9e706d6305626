// Tests for ACME Renewal Information (RFC 9773): the certificate identifier, reading the CA's
// window, and choosing a renewal time in it on a simulated clock.
#include "acme/renewal_info.hpp"
#include "store/rfc3339.hpp"
#include "tests/unit/acme/acme_test_support.hpp"

#include <chrono>
#include <memory>

#include <catch2/catch.hpp>
#include <openssl/x509v3.h>

namespace acme = gatehouse::acme;
using acme_test::error_code_of;
using acme_test::require_ok;
using namespace std::chrono_literals;

namespace {

using time_point = std::chrono::system_clock::time_point;

time_point at(const char* rfc3339)
{
    auto parsed = gatehouse::store::parse_rfc3339(rfc3339);
    REQUIRE(parsed);
    return *parsed;
}

struct x509_free {
    void operator()(X509* certificate) const { X509_free(certificate); }
};

// A certificate carrying only what ARI reads: a serial and an Authority Key Identifier.
std::unique_ptr<X509, x509_free> certificate_with(const std::string& key_id_hex,
                                                  const char* serial_hex)
{
    std::unique_ptr<X509, x509_free> certificate(X509_new());
    REQUIRE(certificate);
    BIGNUM* serial = nullptr;
    REQUIRE(BN_hex2bn(&serial, serial_hex) > 0);
    ASN1_INTEGER* asn1_serial = BN_to_ASN1_INTEGER(serial, nullptr);
    REQUIRE(X509_set_serialNumber(certificate.get(), asn1_serial) == 1);
    ASN1_INTEGER_free(asn1_serial);
    BN_free(serial);

    if (!key_id_hex.empty()) {
        long length = 0;
        unsigned char* bytes = OPENSSL_hexstr2buf(key_id_hex.c_str(), &length);
        REQUIRE(bytes != nullptr);
        AUTHORITY_KEYID* authority = AUTHORITY_KEYID_new();
        authority->keyid = ASN1_OCTET_STRING_new();
        ASN1_OCTET_STRING_set(authority->keyid, bytes, static_cast<int>(length));
        OPENSSL_free(bytes);
        REQUIRE(X509_add1_ext_i2d(certificate.get(), NID_authority_key_identifier, authority, 0,
                                  X509V3_ADD_DEFAULT) == 1);
        AUTHORITY_KEYID_free(authority);
    }
    return certificate;
}

} // namespace

TEST_CASE("the ARI certificate identifier is keyIdentifier.serial in base64url", "[acme]")
{
    // The example of RFC 9773 section 4.1: a serial whose top bit is set gains a zero byte.
    auto certificate =
        certificate_with("69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4", "87654321");
    CHECK(require_ok(acme::renewal_certificate_id(certificate.get())) ==
          "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");

    // Without the top bit set there is no padding byte.
    auto small = certificate_with("01:02", "7F");
    CHECK(require_ok(acme::renewal_certificate_id(small.get())) == "AQI.fw");

    auto no_key_id = certificate_with("", "01");
    CHECK(error_code_of(acme::renewal_certificate_id(no_key_id.get())) ==
          acme::errc::invalid_argument);
    CHECK(error_code_of(acme::renewal_certificate_id(nullptr)) == acme::errc::invalid_argument);
}

TEST_CASE("a renewalInfo response gives the suggested window", "[acme]")
{
    const auto window = require_ok(acme::parse_renewal_info(R"({
        "suggestedWindow": {"start": "2026-01-02T04:00:00Z", "end": "2026-01-03T04:00:00Z"},
        "explanationURL": "https://ca.test/why"
    })"));
    CHECK(window.start == at("2026-01-02T04:00:00Z"));
    CHECK(window.end == at("2026-01-03T04:00:00Z"));
    CHECK(window.explanation_url == "https://ca.test/why");

    CHECK(error_code_of(acme::parse_renewal_info("[]")) == acme::errc::invalid_json);
    CHECK(error_code_of(acme::parse_renewal_info("{}")) == acme::errc::missing_field);
    CHECK(error_code_of(acme::parse_renewal_info(
              R"({"suggestedWindow": {"start": "2026-01-02T04:00:00Z"}})")) ==
          acme::errc::missing_field);
    CHECK(error_code_of(acme::parse_renewal_info(
              R"({"suggestedWindow": {"start": "soon", "end": "2026-01-03T04:00:00Z"}})")) ==
          acme::errc::invalid_field);
    CHECK(error_code_of(acme::parse_renewal_info(R"({"suggestedWindow":
              {"start": "2026-01-03T04:00:00Z", "end": "2026-01-02T04:00:00Z"}})")) ==
          acme::errc::invalid_field);
}

TEST_CASE("the renewal time is drawn from the part of the window still ahead", "[acme]")
{
    const acme::renewal_window window{at("2026-01-02T00:00:00Z"), at("2026-01-03T00:00:00Z"), {}};

    SECTION("before the window: anywhere in it, spread by the random input")
    {
        const auto now = at("2026-01-01T00:00:00Z");
        CHECK(acme::choose_renewal_time(window, now, 0) == window.start);
        CHECK(acme::choose_renewal_time(window, now, 3600) == window.start + 1h);
        CHECK(acme::choose_renewal_time(window, now, 86'400 + 5) == window.start + 5s);
        for (std::uint64_t random : {1ULL, 12345ULL, 999'999'999ULL, ~0ULL}) {
            const auto chosen = acme::choose_renewal_time(window, now, random);
            CHECK(chosen >= window.start);
            CHECK(chosen < window.end);
        }
    }
    SECTION("inside the window: never in the past")
    {
        const auto now = at("2026-01-02T12:00:00Z");
        CHECK(acme::choose_renewal_time(window, now, 0) == now);
        for (std::uint64_t random : {7ULL, 43'199ULL, 43'200ULL, ~0ULL}) {
            const auto chosen = acme::choose_renewal_time(window, now, random);
            CHECK(chosen >= now);
            CHECK(chosen < window.end);
        }
    }
    SECTION("after the window, as for a certificate the CA wants replaced: at once")
    {
        const auto now = at("2026-01-04T00:00:00Z");
        CHECK(acme::choose_renewal_time(window, now, 12345) == now);
    }
}
