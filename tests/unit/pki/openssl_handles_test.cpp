// Tests for the OpenSSL handle helpers: error text that names the failing call, and shared
// ownership of keys and certificates.
#include "pki/openssl_handles.hpp"
#include "tests/unit/pki/pki_test_support.hpp"

#include <string>

#include <catch2/catch.hpp>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

using gatehouse::pki::bio_ptr;
using gatehouse::pki::openssl_error_text;
using gatehouse::pki::x509_ptr;

TEST_CASE("openssl_error_text names the failing call and empties the error queue", "[pki]")
{
    ERR_clear_error();
    const std::string garbage = "this is not PEM";
    bio_ptr bio(BIO_new_mem_buf(garbage.data(), static_cast<int>(garbage.size())));
    REQUIRE(bio != nullptr);
    const x509_ptr certificate(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    REQUIRE(certificate == nullptr);
    REQUIRE(ERR_peek_error() != 0);

    const std::string text = openssl_error_text("PEM_read_bio_X509");

    CHECK(text.rfind("PEM_read_bio_X509 failed: error:", 0) == 0);
    CHECK(text.find("no start line") != std::string::npos);
    CHECK(ERR_peek_error() == 0);
}

TEST_CASE("openssl_error_text says so when OpenSSL queued no reason", "[pki]")
{
    ERR_clear_error();

    const std::string text = openssl_error_text("EVP_DigestSign");

    CHECK(text.rfind("EVP_DigestSign failed", 0) == 0);
    CHECK(text.find("no reason") != std::string::npos);
}

TEST_CASE("a shared key stays usable after the original handle is freed", "[pki]")
{
    auto original = pki_test::require_ok(
        gatehouse::pki::generate_private_key(gatehouse::pki::key_type::ecdsa_p256));
    EVP_PKEY* raw = original.get();

    auto shared = gatehouse::pki::share(raw);
    original.reset();

    REQUIRE(shared.get() == raw);
    CHECK(EVP_PKEY_get_bits(shared.get()) == 256);
    CHECK(gatehouse::pki::share(static_cast<EVP_PKEY*>(nullptr)) == nullptr);
}
