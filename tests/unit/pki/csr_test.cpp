// Tests for pki::make_csr_der: the request an ACME client sends to finalize an order.
#include "pki/csr.hpp"
#include "pki/keys.hpp"
#include "tests/unit/pki/pki_test_support.hpp"

#include <arpa/inet.h>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace pki = gatehouse::pki;
using pki::errc;
using pki::key_type;
using pki_test::error_code_of;
using pki_test::require_ok;

namespace {

pki::x509_req_ptr parse_der(const std::string& der)
{
    const auto* cursor = reinterpret_cast<const unsigned char*>(der.data());
    pki::x509_req_ptr request(d2i_X509_REQ(nullptr, &cursor, static_cast<long>(der.size())));
    REQUIRE(request != nullptr);
    CHECK(cursor == reinterpret_cast<const unsigned char*>(der.data()) + der.size());
    return request;
}

std::string ip_text(const ASN1_OCTET_STRING* address)
{
    char buffer[INET6_ADDRSTRLEN] = {};
    const int family = ASN1_STRING_length(address) == 4 ? AF_INET : AF_INET6;
    REQUIRE(inet_ntop(family, ASN1_STRING_get0_data(address), buffer, sizeof(buffer)) != nullptr);
    return buffer;
}

struct requested_names {
    std::vector<std::string> entries; // "DNS:name" or "IP:address"
    bool critical = false;
};

requested_names subject_alt_names(X509_REQ* request)
{
    STACK_OF(X509_EXTENSION)* extensions = X509_REQ_get_extensions(request);
    REQUIRE(extensions != nullptr);
    requested_names names;
    for (int i = 0; i < sk_X509_EXTENSION_num(extensions); ++i) {
        X509_EXTENSION* extension = sk_X509_EXTENSION_value(extensions, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(extension)) != NID_subject_alt_name) {
            continue;
        }
        names.critical = X509_EXTENSION_get_critical(extension) == 1;
        pki::general_names_ptr entries(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(extension)));
        REQUIRE(entries != nullptr);
        for (int j = 0; j < sk_GENERAL_NAME_num(entries.get()); ++j) {
            const GENERAL_NAME* entry = sk_GENERAL_NAME_value(entries.get(), j);
            if (entry->type == GEN_DNS) {
                const auto* data = ASN1_STRING_get0_data(entry->d.dNSName);
                names.entries.push_back("DNS:" + std::string(reinterpret_cast<const char*>(data),
                                                             ASN1_STRING_length(entry->d.dNSName)));
            } else if (entry->type == GEN_IPADD) {
                names.entries.push_back("IP:" + ip_text(entry->d.iPAddress));
            }
        }
    }
    sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
    return names;
}

std::string common_name(X509_REQ* request)
{
    char buffer[256] = {};
    const int length = X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(request), NID_commonName,
                                                 buffer, sizeof(buffer));
    return length < 0 ? std::string() : std::string(buffer, static_cast<std::size_t>(length));
}

} // namespace

TEST_CASE("a CSR requests its names as a SAN, the first as CN, signed by its key", "[pki]")
{
    const auto [type, signature_nid] =
        GENERATE(table<key_type, int>({{key_type::ecdsa_p256, NID_ecdsa_with_SHA256},
                                       {key_type::ecdsa_p384, NID_ecdsa_with_SHA256},
                                       {key_type::rsa2048, NID_sha256WithRSAEncryption}}));
    CAPTURE(pki::to_string(type));
    const auto key = require_ok(pki::generate_private_key(type));

    const std::string der =
        require_ok(pki::make_csr_der(key.get(), {"App.Example.com", "*.example.com", "192.0.2.7"}));
    const auto request = parse_der(der);

    CHECK(X509_REQ_get_version(request.get()) == X509_REQ_VERSION_1);
    CHECK(X509_REQ_verify(request.get(), key.get()) == 1);
    CHECK(EVP_PKEY_eq(X509_REQ_get0_pubkey(request.get()), key.get()) == 1);
    CHECK(X509_REQ_get_signature_nid(request.get()) == signature_nid);
    CHECK(common_name(request.get()) == "app.example.com");
    const auto names = subject_alt_names(request.get());
    CHECK(names.entries ==
          std::vector<std::string>{"DNS:app.example.com", "DNS:*.example.com", "IP:192.0.2.7"});
    CHECK_FALSE(names.critical);
}

TEST_CASE("the openssl command accepts the CSR and reads its names", "[pki]")
{
    const auto key = require_ok(pki::generate_private_key(key_type::ecdsa_p256));
    const std::string der = require_ok(pki::make_csr_der(key.get(), {"a.example.com", "::1"}));
    pki_test::temp_dir dir;
    dir.write("request.der", der);

    const auto result = pki_test::run_command(
        dir.path("."), "openssl req -inform DER -in request.der -noout -verify -text");

    INFO(result.output);
    CHECK(result.exit_code == 0);
    CHECK(result.output.find("verify OK") != std::string::npos);
    CHECK(result.output.find("DNS:a.example.com, IP Address:0:0:0:0:0:0:0:1") != std::string::npos);
}

TEST_CASE("a CSR whose first name is over 64 characters has no CN and a critical SAN", "[pki]")
{
    const auto key = require_ok(pki::generate_private_key(key_type::ecdsa_p256));
    const std::string long_name = std::string(60, 'a') + "." + std::string(20, 'b') + ".example";

    const auto request = parse_der(require_ok(pki::make_csr_der(key.get(), {long_name})));

    CHECK(X509_NAME_entry_count(X509_REQ_get_subject_name(request.get())) == 0);
    const auto names = subject_alt_names(request.get());
    CHECK(names.entries == std::vector<std::string>{"DNS:" + long_name});
    CHECK(names.critical);
}

TEST_CASE("make_csr_der refuses no names, a bad name and keys it cannot use", "[pki]")
{
    const auto key = require_ok(pki::generate_private_key(key_type::ecdsa_p256));
    pki::evp_pkey_ptr ed25519(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
    REQUIRE(ed25519 != nullptr);

    CHECK(error_code_of(pki::make_csr_der(key.get(), {})) == errc::invalid_argument);
    CHECK(error_code_of(pki::make_csr_der(key.get(), {"a..b"})) == errc::invalid_name);
    CHECK(error_code_of(pki::make_csr_der(nullptr, {"a.example.com"})) == errc::invalid_argument);
    CHECK(error_code_of(pki::make_csr_der(ed25519.get(), {"a.example.com"})) ==
          errc::unsupported_key);
    CHECK(ERR_peek_error() == 0);
}
