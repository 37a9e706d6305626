// Tests for pki::keys: generation, PKCS#8 PEM round trips, the key forms users bring, and
// matching keys to certificates.
#include "pki/certificate.hpp"
#include "pki/keys.hpp"
#include "pki/local_ca.hpp"
#include "tests/unit/pki/pki_test_support.hpp"

#include <string>

#include <catch2/catch.hpp>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

namespace pki = gatehouse::pki;
using pki::errc;
using pki::key_type;
using pki_test::error_code_of;
using pki_test::require_ok;

namespace {

bool starts_with(const std::string& text, std::string_view prefix)
{
    return text.rfind(prefix, 0) == 0;
}

// `key` in OpenSSL's pre-PKCS#8 form ("BEGIN EC PRIVATE KEY"), optionally encrypted.
std::string traditional_pem(EVP_PKEY* key, const EVP_CIPHER* cipher = nullptr)
{
    pki::bio_ptr bio(BIO_new(BIO_s_mem()));
    static unsigned char passphrase[] = "secret";
    REQUIRE(PEM_write_bio_PrivateKey_traditional(bio.get(), key, cipher,
                                                 cipher ? passphrase : nullptr, cipher ? 6 : 0,
                                                 nullptr, nullptr) == 1);
    char* data = nullptr;
    const long length = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(length));
}

std::string encrypted_pkcs8_pem(EVP_PKEY* key)
{
    pki::bio_ptr bio(BIO_new(BIO_s_mem()));
    char passphrase[] = "secret";
    REQUIRE(PEM_write_bio_PKCS8PrivateKey(bio.get(), key, EVP_aes_256_cbc(), passphrase, 6, nullptr,
                                          nullptr) == 1);
    char* data = nullptr;
    const long length = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(length));
}

std::string pem_of_generated(const char* algorithm)
{
    pki::evp_pkey_ptr key(EVP_PKEY_Q_keygen(nullptr, nullptr, algorithm));
    REQUIRE(key != nullptr);
    return require_ok(pki::private_key_to_pem(key.get()));
}

} // namespace

TEST_CASE("generated keys have the requested algorithm and size", "[pki]")
{
    const auto [type, description, bits] =
        GENERATE(table<key_type, std::string, int>({{key_type::ecdsa_p256, "ECDSA P-256", 256},
                                                    {key_type::ecdsa_p384, "ECDSA P-384", 384},
                                                    {key_type::rsa2048, "RSA 2048", 2048}}));
    CAPTURE(pki::to_string(type));

    const auto key = require_ok(pki::generate_private_key(type));

    CHECK(pki::describe_key(key.get()) == description);
    CHECK(EVP_PKEY_get_bits(key.get()) == bits);
}

TEST_CASE("an RSA 4096 key is generated and survives a PEM round trip", "[pki]")
{
    // The only RSA 4096 key in the suite: generating one takes a second or more.
    const auto key = require_ok(pki::generate_private_key(key_type::rsa4096));
    const std::string pem = require_ok(pki::private_key_to_pem(key.get()));
    const auto read = require_ok(pki::private_key_from_pem(pem));

    CHECK(pki::describe_key(key.get()) == "RSA 4096");
    CHECK(EVP_PKEY_eq(key.get(), read.get()) == 1);
}

TEST_CASE("a private key survives a PKCS#8 PEM round trip", "[pki]")
{
    const key_type type = GENERATE(key_type::ecdsa_p256, key_type::ecdsa_p384, key_type::rsa2048);
    CAPTURE(pki::to_string(type));
    const auto key = require_ok(pki::generate_private_key(type));

    const std::string pem = require_ok(pki::private_key_to_pem(key.get()));
    const auto read = require_ok(pki::private_key_from_pem(pem));

    CHECK(starts_with(pem, "-----BEGIN PRIVATE KEY-----\n"));
    CHECK(EVP_PKEY_eq(key.get(), read.get()) == 1);
    // The private half survived too: writing the read key again gives the same text.
    CHECK(require_ok(pki::private_key_to_pem(read.get())) == pem);
}

TEST_CASE("private_key_from_pem reads the traditional RSA and EC key forms", "[pki]")
{
    const auto [type, header] = GENERATE(
        table<key_type, std::string>({{key_type::ecdsa_p256, "-----BEGIN EC PRIVATE KEY-----"},
                                      {key_type::rsa2048, "-----BEGIN RSA PRIVATE KEY-----"}}));
    const auto key = require_ok(pki::generate_private_key(type));
    const std::string pem = traditional_pem(key.get());
    REQUIRE(starts_with(pem, header));

    const auto read = require_ok(pki::private_key_from_pem(pem));

    CHECK(EVP_PKEY_eq(key.get(), read.get()) == 1);
}

TEST_CASE("an encrypted private key is refused without asking for a passphrase", "[pki]")
{
    const auto key = require_ok(pki::generate_private_key(key_type::ecdsa_p256));

    SECTION("encrypted PKCS#8")
    {
        const std::string pem = encrypted_pkcs8_pem(key.get());
        REQUIRE(starts_with(pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        CHECK(error_code_of(pki::private_key_from_pem(pem)) == errc::encrypted_key);
    }
    SECTION("traditional form with a Proc-Type header")
    {
        const std::string pem = traditional_pem(key.get(), EVP_aes_128_cbc());
        REQUIRE(pem.find("ENCRYPTED") != std::string::npos);
        CHECK(error_code_of(pki::private_key_from_pem(pem)) == errc::encrypted_key);
    }
    CHECK(ERR_peek_error() == 0);
}

TEST_CASE("private_key_from_pem refuses text that holds no key", "[pki]")
{
    const auto ca = pki_test::make_ca();
    const std::string texts[] = {"", "not a key at all", ca.certificate_pem(),
                                 "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"};

    for (const std::string& text : texts) {
        CAPTURE(text);
        const auto key = pki::private_key_from_pem(text);
        REQUIRE(error_code_of(key) == errc::invalid_pem);
        CHECK_FALSE(key.error().message.empty());
        CHECK(ERR_peek_error() == 0);
    }
}

TEST_CASE("keys gatehouse does not use are refused", "[pki]")
{
    SECTION("Ed25519")
    {
        const auto key = pki::private_key_from_pem(pem_of_generated("ED25519"));
        REQUIRE(error_code_of(key) == errc::unsupported_key);
        CHECK(key.error().message.find("ED25519") != std::string::npos);
    }
    SECTION("RSA shorter than 2048 bits")
    {
        pki::evp_pkey_ptr small(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{1024}));
        REQUIRE(small != nullptr);
        const auto key =
            pki::private_key_from_pem(require_ok(pki::private_key_to_pem(small.get())));
        REQUIRE(error_code_of(key) == errc::unsupported_key);
        CHECK(key.error().message.find("1024") != std::string::npos);
    }
    SECTION("EC on a curve TLS clients do not offer")
    {
        pki::evp_pkey_ptr k256(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "secp256k1"));
        REQUIRE(k256 != nullptr);
        const auto key = pki::private_key_from_pem(require_ok(pki::private_key_to_pem(k256.get())));
        CHECK(error_code_of(key) == errc::unsupported_key);
    }
}

TEST_CASE("private_key_to_pem refuses a null key", "[pki]")
{
    CHECK(error_code_of(pki::private_key_to_pem(nullptr)) == errc::invalid_argument);
}

TEST_CASE("public_key_matches tells a certificate's own key from any other", "[pki]")
{
    const auto ca = pki_test::make_ca();
    const auto own = require_ok(pki::generate_private_key(key_type::ecdsa_p256));
    const auto other_ec = require_ok(pki::generate_private_key(key_type::ecdsa_p256));
    const auto other_rsa = require_ok(pki::generate_private_key(key_type::rsa2048));
    const auto issued = require_ok(ca.issue({"app.example.com"}, std::chrono::hours(1), own.get()));
    const auto leaf = pki_test::first_certificate(issued.certificate_pem);

    CHECK(pki::public_key_matches(own.get(), leaf.get()));
    CHECK_FALSE(pki::public_key_matches(other_ec.get(), leaf.get()));
    CHECK_FALSE(pki::public_key_matches(other_rsa.get(), leaf.get()));
    CHECK_FALSE(pki::public_key_matches(nullptr, leaf.get()));
    CHECK_FALSE(pki::public_key_matches(own.get(), nullptr));
    CHECK(ERR_peek_error() == 0);
}
