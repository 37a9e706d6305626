// Tests for pki::certificate: reading and writing PEM chains, describing a certificate for the
// status page, name matching per RFC 6125, fingerprints, and when to renew.
#include "pki/certificate.hpp"
#include "pki/keys.hpp"
#include "pki/local_ca.hpp"
#include "pki/names.hpp"
#include "tests/unit/pki/pki_test_support.hpp"

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <openssl/err.h>

namespace pki = gatehouse::pki;
using namespace std::chrono_literals;
using pki::errc;
using pki_test::error_code_of;
using pki_test::require_ok;

namespace {

// A leaf for `names` from `ca`, as PEM.
std::string issue_pem(const pki::local_ca& ca, const std::vector<std::string>& names,
                      std::chrono::system_clock::time_point now = pki_test::now_in_seconds(),
                      std::chrono::seconds validity = 24h)
{
    const auto key = require_ok(pki::generate_private_key(pki::key_type::ecdsa_p256));
    return require_ok(ca.issue(names, validity, key.get(), now)).certificate_pem;
}

std::string serial_of(X509* certificate)
{
    return require_ok(pki::describe_certificate(certificate)).serial_hex;
}

// The value after "=" on the one line an `openssl x509 -noout -<field>` command prints.
std::string openssl_field(const pki_test::temp_dir& dir, const std::string& file,
                          const std::string& option)
{
    const auto result = pki_test::run_command(dir.path("."), "openssl x509 -noout " + option +
                                                                 " -in '" + file + "'");
    INFO(result.output);
    REQUIRE(result.exit_code == 0);
    std::string value = result.output.substr(result.output.find('=') + 1);
    value.erase(std::remove(value.begin(), value.end(), '\n'), value.end());
    return value;
}

pki::certificate_info info_with_names(std::vector<std::string> dns, std::vector<std::string> ips)
{
    pki::certificate_info info;
    info.dns_names = std::move(dns);
    info.ip_addresses = std::move(ips);
    return info;
}

} // namespace

TEST_CASE("a PEM chain is read leaf first, then the intermediates in order", "[pki]")
{
    const auto ca = pki_test::make_ca();
    const std::string leaf = issue_pem(ca, {"leaf.example.com"});
    const std::string second = issue_pem(ca, {"second.example.com"});
    const std::string key = require_ok(pki::private_key_to_pem(
        require_ok(pki::generate_private_key(pki::key_type::ecdsa_p256)).get()));

    // Comments between blocks and a key in a combined file are skipped, as OpenSSL does.
    const std::string pem = "# served chain\n" + leaf + key + ca.certificate_pem() + second;
    const auto chain = require_ok(pki::parse_certificate_chain(pem));

    REQUIRE(chain.intermediates.size() == 2);
    CHECK(serial_of(chain.leaf.get()) == serial_of(pki_test::first_certificate(leaf).get()));
    CHECK(serial_of(chain.intermediates[0].get()) == ca.info().serial_hex);
    CHECK(serial_of(chain.intermediates[1].get()) ==
          serial_of(pki_test::first_certificate(second).get()));
    CHECK(ERR_peek_error() == 0);
}

TEST_CASE("parse_certificate_chain refuses text without a certificate", "[pki]")
{
    const std::string key = require_ok(pki::private_key_to_pem(
        require_ok(pki::generate_private_key(pki::key_type::ecdsa_p256)).get()));
    for (const std::string& text : {std::string(), std::string("garbage\n"), key}) {
        CAPTURE(text.substr(0, 30));
        const auto chain = pki::parse_certificate_chain(text);
        REQUIRE(error_code_of(chain) == errc::invalid_pem);
        CHECK(chain.error().message.find("BEGIN CERTIFICATE") != std::string::npos);
        CHECK(ERR_peek_error() == 0);
    }
}

TEST_CASE("a damaged certificate block is refused, naming which one", "[pki]")
{
    const auto ca = pki_test::make_ca();
    std::string damaged = issue_pem(ca, {"app.example.com"});
    // Cut the base64 body short so the DER inside is truncated.
    damaged.erase(damaged.find('\n') + 1, 40);

    const auto chain = pki::parse_certificate_chain(ca.certificate_pem() + damaged);

    REQUIRE(error_code_of(chain) == errc::invalid_pem);
    CHECK(chain.error().message.find("certificate 2") != std::string::npos);
    CHECK(chain.error().message.find("PEM_read_bio_X509 failed") != std::string::npos);
    CHECK(ERR_peek_error() == 0);
}

TEST_CASE("chain_to_pem writes back exactly the chain that was read", "[pki]")
{
    const auto ca = pki_test::make_ca();
    const std::string pem = issue_pem(ca, {"app.example.com"}) + ca.certificate_pem();

    const auto chain = require_ok(pki::parse_certificate_chain(pem));
    const std::string written = require_ok(pki::chain_to_pem(chain));

    CHECK(written == pem);
    CHECK(error_code_of(pki::chain_to_pem(pki::certificate_chain{})) == errc::invalid_argument);
}

TEST_CASE("describe_certificate reports names, subject, issuer, serial and validity", "[pki]")
{
    const auto ca = pki_test::make_ca();
    const auto now = pki_test::now_in_seconds();
    const std::string pem = issue_pem(
        ca, {"App.Example.com", "*.api.example.com", "192.0.2.7", "2001:DB8:0::1"}, now, 48h);
    const auto leaf = pki_test::first_certificate(pem);

    const auto info = require_ok(pki::describe_certificate(leaf.get()));

    CHECK(info.dns_names == std::vector<std::string>{"app.example.com", "*.api.example.com"});
    CHECK(info.ip_addresses == std::vector<std::string>{"192.0.2.7", "2001:db8::1"});
    CHECK(info.subject == "CN=app.example.com");
    CHECK(info.issuer == ca.info().subject);
    CHECK(info.issuer.rfind("CN=gatehouse local CA ", 0) == 0);
    CHECK(info.not_before == now - 1min);
    CHECK(info.not_after == now + 48h);

    // The serial as the openssl command prints it, an independent reading of the same field.
    pki_test::temp_dir dir;
    const std::string file = dir.write("leaf.pem", pem);
    CHECK(info.serial_hex == openssl_field(dir, file, "-serial"));
    CHECK(info.serial_hex.size() == 32);
}

TEST_CASE("SAN names are lower-cased and the common name counts only without a SAN", "[pki]")
{
    pki_test::temp_dir dir;
    const std::string make = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                             "-nodes -keyout key.pem -out cert.pem -days 1 "
                             "-subj /O=Legacy/CN=Old.Example.COM";

    SECTION("with a SAN the common name is ignored")
    {
        const auto made = pki_test::run_command(
            dir.path("."), make + " -addext subjectAltName=DNS:Mixed.Example.COM,IP:10.0.0.1");
        INFO(made.output);
        REQUIRE(made.exit_code == 0);
        const auto chain = require_ok(pki::parse_certificate_chain(dir.read("cert.pem")));
        const auto info = require_ok(pki::describe_certificate(chain.leaf.get()));
        CHECK(info.dns_names == std::vector<std::string>{"mixed.example.com"});
        CHECK(info.ip_addresses == std::vector<std::string>{"10.0.0.1"});
        CHECK(info.subject == "CN=Old.Example.COM,O=Legacy");
    }
    SECTION("without a SAN the common name stands in")
    {
        const auto made = pki_test::run_command(dir.path("."), make);
        INFO(made.output);
        REQUIRE(made.exit_code == 0);
        const auto leaf = pki_test::first_certificate(dir.read("cert.pem"));
        const auto info = require_ok(pki::describe_certificate(leaf.get()));
        CHECK(info.dns_names == std::vector<std::string>{"old.example.com"});
        CHECK(info.ip_addresses.empty());
    }
}

TEST_CASE("covers_name matches exact names and wildcards for one label (RFC 6125)", "[pki]")
{
    const auto info =
        info_with_names({"example.com", "*.apps.example.com"}, {"192.0.2.7", "2001:db8::1"});

    CHECK(pki::covers_name(info, "example.com"));
    CHECK(pki::covers_name(info, "EXAMPLE.com."));
    CHECK(pki::covers_name(info, "a.apps.example.com"));
    CHECK(pki::covers_name(info, "A-1.Apps.Example.Com"));
    CHECK(pki::covers_name(info, "192.0.2.7"));
    CHECK(pki::covers_name(info, "[2001:db8::1]"));
    CHECK(pki::covers_name(info, "2001:0DB8:0:0::0001"));

    CHECK_FALSE(pki::covers_name(info, "apps.example.com"));
    CHECK_FALSE(pki::covers_name(info, "a.b.apps.example.com"));
    CHECK_FALSE(pki::covers_name(info, ".apps.example.com"));
    CHECK_FALSE(pki::covers_name(info, "www.example.com"));
    CHECK_FALSE(pki::covers_name(info, "example.com.evil.test"));
    CHECK_FALSE(pki::covers_name(info, "192.0.2.8"));
    CHECK_FALSE(pki::covers_name(info, ""));
}

TEST_CASE("a wildcard never covers an IP address or a whole top-level domain", "[pki]")
{
    CHECK_FALSE(pki::name_matches("*.0.2.7", "192.0.2.7"));
    CHECK_FALSE(pki::name_matches("*.com", "example.com"));
    CHECK_FALSE(pki::covers_name(info_with_names({"*.com"}, {}), "example.com"));
    CHECK(pki::name_matches("*.example.com", "www.example.com"));
}

TEST_CASE("sha256_fingerprint_hex agrees with the openssl command", "[pki]")
{
    const auto ca = pki_test::make_ca();
    const std::string pem = issue_pem(ca, {"app.example.com"});
    pki_test::temp_dir dir;
    const std::string file = dir.write("leaf.pem", pem);

    std::string expected = openssl_field(dir, file, "-fingerprint -sha256");
    expected.erase(std::remove(expected.begin(), expected.end(), ':'), expected.end());
    const std::string fingerprint =
        require_ok(pki::sha256_fingerprint_hex(pki_test::first_certificate(pem).get()));

    CHECK(fingerprint.size() == 64);
    CHECK(fingerprint == expected);
    CHECK(fingerprint != require_ok(pki::sha256_fingerprint_hex(ca.certificate())));
}

TEST_CASE("a certificate needs renewal once two thirds of its lifetime have passed", "[pki]")
{
    // A simulated clock: nothing here reads the real time.
    pki::certificate_info info;
    info.not_before = std::chrono::sys_days{std::chrono::year{2030} / 1 / 1};
    info.not_after = info.not_before + std::chrono::days(90);

    CHECK(pki::renewal_due(info) == info.not_before + std::chrono::days(60));
    CHECK_FALSE(pki::needs_renewal(info, info.not_before));
    CHECK_FALSE(pki::needs_renewal(info, info.not_before + std::chrono::days(60) - 1s));
    CHECK(pki::needs_renewal(info, info.not_before + std::chrono::days(60)));
    CHECK(pki::needs_renewal(info, info.not_after + 1h));
}

TEST_CASE("describe_certificate and the PEM writers refuse a null certificate", "[pki]")
{
    CHECK(error_code_of(pki::describe_certificate(nullptr)) == errc::invalid_argument);
    CHECK(error_code_of(pki::certificate_to_pem(nullptr)) == errc::invalid_argument);
    CHECK(error_code_of(pki::sha256_fingerprint_hex(nullptr)) == errc::invalid_argument);
}
