// Tests for pki::local_ca: what a new CA looks like, which material loads, and that issued
// certificates verify, both in process and with the openssl command a user would run.
#include "pki/certificate.hpp"
#include "pki/keys.hpp"
#include "pki/local_ca.hpp"
#include "tests/unit/pki/pki_test_support.hpp"

#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

namespace pki = gatehouse::pki;
using namespace std::chrono_literals;
using pki::errc;
using pki::key_type;
using pki_test::error_code_of;
using pki_test::require_ok;
using std::chrono::days;

namespace {

pki::evp_pkey_ptr new_key(key_type type = key_type::ecdsa_p256)
{
    return require_ok(pki::generate_private_key(type));
}

// The leaf certificate issued by `ca` for `names` over a fresh key.
pki::x509_ptr issue_leaf(const pki::local_ca& ca, const std::vector<std::string>& names,
                         key_type type = key_type::ecdsa_p256)
{
    const auto key = new_key(type);
    const auto issued = require_ok(ca.issue(names, 24h, key.get()));
    return pki_test::first_certificate(issued.certificate_pem);
}

bool extension_is_critical(X509* certificate, int nid)
{
    const int index = X509_get_ext_by_NID(certificate, nid, -1);
    REQUIRE(index >= 0);
    return X509_EXTENSION_get_critical(X509_get_ext(certificate, index)) == 1;
}

// X509_verify_cert's verdict on `leaf` for `host` with `ca` as the only trusted root.
int verify_in_process(X509* ca, X509* leaf, const std::string& host)
{
    pki::x509_store_ptr store(X509_STORE_new());
    REQUIRE(X509_STORE_add_cert(store.get(), ca) == 1);
    pki::x509_store_ctx_ptr context(X509_STORE_CTX_new());
    REQUIRE(X509_STORE_CTX_init(context.get(), store.get(), leaf, nullptr) == 1);
    REQUIRE(X509_STORE_CTX_set_purpose(context.get(), X509_PURPOSE_SSL_SERVER) == 1);
    X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(context.get());
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_X509_STRICT);
    REQUIRE(X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size()) == 1);
    const int verified = X509_verify_cert(context.get());
    const int error = X509_STORE_CTX_get_error(context.get());
    ERR_clear_error();
    return verified == 1 ? X509_V_OK : error;
}

} // namespace

TEST_CASE("a new local CA is a self-signed P-256 root that signs only end entities", "[pki]")
{
    const auto now = pki_test::now_in_seconds();
    const auto material = require_ok(pki::create_local_ca("gatehouse local CA", days(3650), now));
    const auto certificate = pki_test::first_certificate(material.certificate_pem);
    const auto key = require_ok(pki::private_key_from_pem(material.private_key_pem));
    X509* ca = certificate.get();

    CHECK(material.private_key_pem.rfind("-----BEGIN PRIVATE KEY-----", 0) == 0);
    CHECK(pki::describe_key(key.get()) == "ECDSA P-256");
    CHECK(pki::public_key_matches(key.get(), ca));
    CHECK(X509_get_version(ca) == X509_VERSION_3);
    CHECK(X509_check_issued(ca, ca) == X509_V_OK);
    CHECK(X509_verify(ca, key.get()) == 1);
    CHECK(X509_get_signature_nid(ca) == NID_ecdsa_with_SHA256);

    CHECK(extension_is_critical(ca, NID_basic_constraints));
    CHECK((X509_get_extension_flags(ca) & EXFLAG_CA) != 0);
    CHECK(X509_get_pathlen(ca) == 0);
    CHECK(extension_is_critical(ca, NID_key_usage));
    CHECK(X509_get_key_usage(ca) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
    CHECK(X509_get0_subject_key_id(ca) != nullptr);

    const auto info = require_ok(pki::describe_certificate(ca));
    CHECK(info.not_before == now - 1h);
    CHECK(info.not_after == now + days(3650));
    CHECK(info.subject.size() == std::string("CN=gatehouse local CA ").size() + 8);
    CHECK(info.subject.rfind("CN=gatehouse local CA ", 0) == 0);
    CHECK(info.issuer == info.subject);

    pki::bignum_ptr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(ca), nullptr));
    CHECK(BN_num_bytes(serial.get()) == 16);
    CHECK_FALSE(BN_is_negative(serial.get()));
}

TEST_CASE("two local CAs are told apart by name, serial and key", "[pki]")
{
    const auto first = pki_test::make_ca();
    const auto second = pki_test::make_ca();

    CHECK(first.info().subject != second.info().subject);
    CHECK(first.info().serial_hex != second.info().serial_hex);
    CHECK(EVP_PKEY_eq(X509_get0_pubkey(first.certificate()),
                      X509_get0_pubkey(second.certificate())) != 1);
    ERR_clear_error();
}

TEST_CASE("create_local_ca refuses an empty or overlong name and a non-positive validity", "[pki]")
{
    CHECK(error_code_of(pki::create_local_ca("", days(365))) == errc::invalid_argument);
    CHECK(error_code_of(pki::create_local_ca(std::string(56, 'x'), days(365))) ==
          errc::invalid_argument);
    CHECK(error_code_of(pki::create_local_ca("gatehouse local CA", days(0))) ==
          errc::invalid_argument);
    CHECK(pki::create_local_ca(std::string(55, 'x'), days(365)).has_value());
}

TEST_CASE("local_ca::from_material refuses material that cannot act as a CA", "[pki]")
{
    const auto material = require_ok(pki::create_local_ca("gatehouse local CA", days(365)));
    const auto other = require_ok(pki::create_local_ca("gatehouse local CA", days(365)));

    SECTION("a key from another CA")
    {
        const pki::ca_material mixed{material.certificate_pem, other.private_key_pem};
        CHECK(error_code_of(pki::local_ca::from_material(mixed)) == errc::key_mismatch);
    }
    SECTION("a server certificate with its own key")
    {
        const auto ca = require_ok(pki::local_ca::from_material(material));
        const auto key = new_key();
        const auto leaf = require_ok(ca.issue({"app.example.com"}, 1h, key.get()));
        const pki::ca_material not_ca{leaf.certificate_pem,
                                      require_ok(pki::private_key_to_pem(key.get()))};
        CHECK(error_code_of(pki::local_ca::from_material(not_ca)) == errc::not_a_ca);
    }
    SECTION("two certificates where one is expected")
    {
        const pki::ca_material two{material.certificate_pem + other.certificate_pem,
                                   material.private_key_pem};
        CHECK(error_code_of(pki::local_ca::from_material(two)) == errc::invalid_pem);
    }
    SECTION("garbage in either field")
    {
        CHECK(error_code_of(pki::local_ca::from_material({"garbage", material.private_key_pem})) ==
              errc::invalid_pem);
        CHECK(error_code_of(pki::local_ca::from_material({material.certificate_pem, ""})) ==
              errc::invalid_pem);
    }
    CHECK(ERR_peek_error() == 0);
}

TEST_CASE("an issued certificate verifies against its CA and matches its names in process", "[pki]")
{
    const auto ca = pki_test::make_ca();
    const auto other_ca = pki_test::make_ca();
    const auto leaf = issue_leaf(ca, {"app.example.com", "*.wild.example.com", "192.0.2.7"});

    CHECK(verify_in_process(ca.certificate(), leaf.get(), "app.example.com") == X509_V_OK);
    CHECK(verify_in_process(ca.certificate(), leaf.get(), "x.wild.example.com") == X509_V_OK);
    CHECK(verify_in_process(ca.certificate(), leaf.get(), "other.example.com") ==
          X509_V_ERR_HOSTNAME_MISMATCH);
    CHECK(verify_in_process(other_ca.certificate(), leaf.get(), "app.example.com") ==
          X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);

    CHECK(X509_check_host(leaf.get(), "app.example.com", 0, 0, nullptr) == 1);
    CHECK(X509_check_host(leaf.get(), "y.wild.example.com", 0, 0, nullptr) == 1);
    CHECK(X509_check_host(leaf.get(), "a.b.wild.example.com", 0, 0, nullptr) == 0);
    CHECK(X509_check_ip_asc(leaf.get(), "192.0.2.7", 0) == 1);
    CHECK(X509_check_ip_asc(leaf.get(), "192.0.2.8", 0) == 0);
}

TEST_CASE("the openssl command verifies an issued certificate and checks its names", "[pki]")
{
    const auto ca = pki_test::make_ca();
    const auto other_ca = pki_test::make_ca();
    const auto key = new_key();
    const auto issued =
        require_ok(ca.issue({"app.example.com", "*.wild.example.com", "::1"}, 1h, key.get()));
    pki_test::temp_dir dir;
    dir.write("ca.pem", issued.ca_certificate_pem);
    dir.write("other-ca.pem", other_ca.certificate_pem());
    dir.write("leaf.pem", issued.certificate_pem);
    const auto run = [&dir](const std::string& command) {
        return pki_test::run_command(dir.path("."), command);
    };

    const auto verified = run("openssl verify -x509_strict -purpose sslserver -CAfile ca.pem "
                              "leaf.pem");
    INFO(verified.output);
    CHECK(verified.exit_code == 0);
    CHECK(verified.output == "leaf.pem: OK\n");

    CHECK(run("openssl verify -CAfile other-ca.pem leaf.pem").exit_code != 0);

    const std::string check = "openssl x509 -in leaf.pem -noout ";
    CHECK(run(check + "-checkhost app.example.com").output.find("does match") != std::string::npos);
    CHECK(run(check + "-checkhost z.wild.example.com").output.find("does match") !=
          std::string::npos);
    CHECK(run(check + "-checkhost nope.example.com").output.find("does NOT match") !=
          std::string::npos);
    CHECK(run(check + "-checkip ::1").output.find("does match") != std::string::npos);
}

TEST_CASE("an issued certificate carries the extensions of a TLS server certificate", "[pki]")
{
    const auto ca = pki_test::make_ca();
    const auto [type, key_usage] = GENERATE(table<key_type, std::uint32_t>(
        {{key_type::ecdsa_p256, KU_DIGITAL_SIGNATURE},
         {key_type::rsa2048, KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT}}));
    CAPTURE(pki::to_string(type));

    const auto leaf = issue_leaf(ca, {"app.example.com"}, type);

    CHECK(X509_get_version(leaf.get()) == X509_VERSION_3);
    CHECK(X509_get_signature_nid(leaf.get()) == NID_ecdsa_with_SHA256);
    CHECK(extension_is_critical(leaf.get(), NID_basic_constraints));
    CHECK((X509_get_extension_flags(leaf.get()) & EXFLAG_BCONS) != 0);
    CHECK((X509_get_extension_flags(leaf.get()) & EXFLAG_CA) == 0);
    CHECK(extension_is_critical(leaf.get(), NID_key_usage));
    CHECK(X509_get_key_usage(leaf.get()) == key_usage);
    CHECK(X509_get_extended_key_usage(leaf.get()) == XKU_SSL_SERVER);
    CHECK_FALSE(extension_is_critical(leaf.get(), NID_subject_alt_name));
    REQUIRE(X509_get0_subject_key_id(leaf.get()) != nullptr);
    REQUIRE(X509_get0_authority_key_id(leaf.get()) != nullptr);
    CHECK(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(leaf.get()),
                                X509_get0_subject_key_id(ca.certificate())) == 0);
}

TEST_CASE("an issued certificate starts a minute early and never outlives its CA", "[pki]")
{
    const auto now = pki_test::now_in_seconds();
    const auto ca = pki_test::make_ca(days(2), now);
    const auto key = new_key();

    SECTION("a lifetime inside the CA's")
    {
        const auto issued = require_ok(ca.issue({"app.example.com"}, 6h, key.get(), now));
        const auto info = require_ok(
            pki::describe_certificate(pki_test::first_certificate(issued.certificate_pem).get()));
        CHECK(info.not_before == now - 1min);
        CHECK(info.not_after == now + 6h);
    }
    SECTION("a lifetime past the CA's is cut at the CA's expiry")
    {
        const auto issued = require_ok(ca.issue({"app.example.com"}, 30 * 24h, key.get(), now));
        const auto info = require_ok(
            pki::describe_certificate(pki_test::first_certificate(issued.certificate_pem).get()));
        CHECK(info.not_after == ca.info().not_after);
    }
    SECTION("an expired CA issues nothing")
    {
        CHECK(error_code_of(ca.issue({"app.example.com"}, 1h, key.get(), now + 3 * 24h)) ==
              errc::ca_expired);
    }
}

TEST_CASE("a first name over 64 characters leaves the subject empty and the SAN critical", "[pki]")
{
    const auto ca = pki_test::make_ca();
    const std::string long_name = std::string(60, 'a') + "." + std::string(20, 'b') + ".example";
    const auto leaf = issue_leaf(ca, {long_name, "short.example.com"});

    CHECK(X509_NAME_entry_count(X509_get_subject_name(leaf.get())) == 0);
    CHECK(extension_is_critical(leaf.get(), NID_subject_alt_name));
    CHECK(verify_in_process(ca.certificate(), leaf.get(), long_name) == X509_V_OK);
}

TEST_CASE("local_ca::issue refuses no names, no key and a lifetime that is not positive", "[pki]")
{
    const auto ca = pki_test::make_ca();
    const auto key = new_key();
    pki::evp_pkey_ptr small(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{1024}));

    CHECK(error_code_of(ca.issue({}, 1h, key.get())) == errc::invalid_argument);
    CHECK(error_code_of(ca.issue({"app.example.com"}, 0s, key.get())) == errc::invalid_argument);
    CHECK(error_code_of(ca.issue({"app.example.com"}, 1h, nullptr)) == errc::invalid_argument);
    CHECK(error_code_of(ca.issue({"app.example.com"}, 1h, small.get())) == errc::unsupported_key);
}

TEST_CASE("local_ca::issue refuses a name that cannot go in a certificate", "[pki]")
{
    const auto ca = pki_test::make_ca();
    const auto key = new_key();
    const std::string bad_name = GENERATE(values<std::string>(
        {"", "a..example.com", "*.com", "f*.example.com", "a.*.example.com", "-a.example.com",
         "a b.example.com", "1.2.3.256", std::string(64, 'a') + ".example.com"}));
    CAPTURE(bad_name);
    const auto issued = ca.issue({"good.example.com", bad_name}, 1h, key.get());
    REQUIRE(error_code_of(issued) == errc::invalid_name);
    CHECK(issued.error().message.find("certificate name") != std::string::npos);
}

TEST_CASE("a local CA issues from several threads at once", "[pki]")
{
    const auto ca = pki_test::make_ca();
    const auto key = new_key();
    constexpr int threads = 4;
    constexpr int per_thread = 5;
    std::vector<std::vector<std::string>> issued_pems(threads);

    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            for (int i = 0; i < per_thread; ++i) {
                auto issued = ca.issue({"app.example.com"}, 1h, key.get());
                issued_pems[t].push_back(issued ? issued->certificate_pem : std::string());
            }
        });
    }
    for (std::thread& worker : workers) {
        worker.join();
    }

    std::set<std::string> distinct;
    for (const auto& list : issued_pems) {
        for (const std::string& pem : list) {
            REQUIRE_FALSE(pem.empty());
            const auto leaf = pki_test::first_certificate(pem);
            CHECK(verify_in_process(ca.certificate(), leaf.get(), "app.example.com") == X509_V_OK);
            distinct.insert(require_ok(pki::describe_certificate(leaf.get())).serial_hex);
        }
    }
    CHECK(distinct.size() == threads * per_thread);
}
