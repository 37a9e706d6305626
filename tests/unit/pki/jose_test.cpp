// Tests for pki::jose: base64url, SHA-256, ES256 signatures and JWK thumbprints, checked
// against the published vectors of RFC 4648, FIPS 180-2 and RFC 7638.
#include "pki/jose.hpp"
#include "pki/keys.hpp"
#include "tests/unit/pki/pki_test_support.hpp"

#include <set>
#include <string>

#include <catch2/catch.hpp>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

namespace pki = gatehouse::pki;
using pki::errc;
using pki::key_type;
using pki_test::error_code_of;
using pki_test::require_ok;

namespace {

// The example RSA public key of RFC 7638 section 3.1.
constexpr const char* rfc7638_n =
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY3"
    "68QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4"
    "lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
constexpr const char* rfc7638_e = "AQAB";
constexpr const char* rfc7638_thumbprint = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

std::string bytes(std::initializer_list<unsigned char> values)
{
    return std::string(values.begin(), values.end());
}

std::string random_bytes(std::size_t size)
{
    std::string data(size, '\0');
    REQUIRE(RAND_bytes(reinterpret_cast<unsigned char*>(data.data()), static_cast<int>(size)) == 1);
    return data;
}

} // namespace

TEST_CASE("base64url_encode follows RFC 4648's test vectors without padding", "[pki]")
{
    // RFC 4648 section 10, padding removed.
    CHECK(pki::base64url_encode("") == "");
    CHECK(pki::base64url_encode("f") == "Zg");
    CHECK(pki::base64url_encode("fo") == "Zm8");
    CHECK(pki::base64url_encode("foo") == "Zm9v");
    CHECK(pki::base64url_encode("foob") == "Zm9vYg");
    CHECK(pki::base64url_encode("fooba") == "Zm9vYmE");
    CHECK(pki::base64url_encode("foobar") == "Zm9vYmFy");

    // The two characters where the URL-safe alphabet differs: "+/" become "-_".
    CHECK(pki::base64url_encode(bytes({0xFB, 0xFF})) == "-_8");
    CHECK(pki::base64url_encode(bytes({0xFB, 0xEF, 0xBE})) == "----");
    CHECK(pki::base64url_encode(bytes({0xFF, 0xFF, 0xFF})) == "____");
}

TEST_CASE("base64url_decode inverts base64url_encode for every length", "[pki]")
{
    for (std::size_t size = 0; size <= 66; ++size) {
        const std::string data = random_bytes(size);
        const std::string text = pki::base64url_encode(data);
        CAPTURE(size, text);
        CHECK(text.find('=') == std::string::npos);
        CHECK(require_ok(pki::base64url_decode(text)) == data);
    }
    CHECK(require_ok(pki::base64url_decode("Zm9vYmFy")) == "foobar");
    CHECK(require_ok(pki::base64url_decode("-_8")) == bytes({0xFB, 0xFF}));
}

TEST_CASE("base64url_decode refuses padding, foreign characters and impossible lengths", "[pki]")
{
    const std::string text =
        GENERATE(values<std::string>({"Zg==", "Zm9v+", "Zm9v/w", "Zm 9v", "Zm9v\n", "Z", "Zm9vY"}));
    CAPTURE(text);

    CHECK(error_code_of(pki::base64url_decode(text)) == errc::invalid_base64);
}

TEST_CASE("sha256 matches the FIPS 180-2 test vectors", "[pki]")
{
    const auto hex = [](std::string_view data) {
        const std::string digest = require_ok(pki::sha256(data));
        REQUIRE(digest.size() == 32);
        std::string text;
        for (const char byte : digest) {
            static constexpr char digits[] = "0123456789abcdef";
            text += digits[static_cast<unsigned char>(byte) >> 4];
            text += digits[static_cast<unsigned char>(byte) & 0x0F];
        }
        return text;
    };

    CHECK(hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("the thumbprint of RFC 7638's example RSA key is the one the RFC publishes", "[pki]")
{
    const auto key = pki_test::rsa_public_key(require_ok(pki::base64url_decode(rfc7638_n)),
                                              require_ok(pki::base64url_decode(rfc7638_e)));

    const auto jwk = require_ok(pki::public_jwk(key.get()));

    CHECK(jwk.kty == "RSA");
    CHECK(jwk.n == rfc7638_n);
    CHECK(jwk.e == rfc7638_e);
    CHECK(jwk.canonical_json() ==
          std::string(R"({"e":"AQAB","kty":"RSA","n":")") + rfc7638_n + R"("})");
    CHECK(require_ok(pki::jwk_thumbprint(key.get())) == rfc7638_thumbprint);
}

TEST_CASE("an ES256 signature is 64 bytes of r and s that verify with the JWK's key", "[pki]")
{
    const auto key = require_ok(pki::generate_private_key(key_type::ecdsa_p256));
    const auto jwk = require_ok(pki::public_jwk(key.get()));
    // The public key as a verifier would rebuild it from the JWK alone.
    const auto public_key =
        pki_test::ec_public_key("P-256", require_ok(pki::base64url_decode(jwk.x)),
                                require_ok(pki::base64url_decode(jwk.y)));
    REQUIRE(EVP_PKEY_eq(public_key.get(), key.get()) == 1);

    std::set<std::string> signatures;
    for (int i = 0; i < 32; ++i) {
        const std::string data = "eyJhbGciOiJFUzI1NiJ9." + pki::base64url_encode(random_bytes(i));
        const std::string signature = require_ok(pki::es256_sign(key.get(), data));
        CHECK(signature.size() == 64);
        CHECK(pki_test::es256_verifies(public_key.get(), data, signature));
        CHECK_FALSE(pki_test::es256_verifies(public_key.get(), data + "x", signature));
        signatures.insert(signature);
    }
    CHECK(signatures.size() == 32);
}

TEST_CASE("es256_sign refuses keys that are not ECDSA P-256", "[pki]")
{
    const key_type type = GENERATE(key_type::ecdsa_p384, key_type::rsa2048);
    const auto key = require_ok(pki::generate_private_key(type));

    CHECK(error_code_of(pki::es256_sign(key.get(), "data")) == errc::unsupported_key);
    CHECK(error_code_of(pki::es256_sign(nullptr, "data")) == errc::unsupported_key);
}

TEST_CASE("an EC public JWK carries its curve and coordinates of the full field size", "[pki]")
{
    const auto [type, curve, field_bytes] = GENERATE(table<key_type, std::string, std::size_t>(
        {{key_type::ecdsa_p256, "P-256", 32}, {key_type::ecdsa_p384, "P-384", 48}}));
    const auto key = require_ok(pki::generate_private_key(type));

    const auto jwk = require_ok(pki::public_jwk(key.get()));
    const std::string x = require_ok(pki::base64url_decode(jwk.x));
    const std::string y = require_ok(pki::base64url_decode(jwk.y));

    CHECK(jwk.kty == "EC");
    CHECK(jwk.crv == curve);
    CHECK(x.size() == field_bytes);
    CHECK(y.size() == field_bytes);
    CHECK(jwk.canonical_json() ==
          R"({"crv":")" + curve + R"(","kty":"EC","x":")" + jwk.x + R"(","y":")" + jwk.y + R"("})");
    const auto rebuilt = pki_test::ec_public_key(curve.c_str(), x, y);
    CHECK(EVP_PKEY_eq(rebuilt.get(), key.get()) == 1);

    const std::string thumbprint = require_ok(pki::jwk_thumbprint(key.get()));
    CHECK(thumbprint == pki::base64url_encode(require_ok(pki::sha256(jwk.canonical_json()))));
    const auto other = require_ok(pki::generate_private_key(type));
    CHECK(thumbprint != require_ok(pki::jwk_thumbprint(other.get())));
}

TEST_CASE("public_jwk refuses keys that are neither RSA nor EC on P-256 or P-384", "[pki]")
{
    pki::evp_pkey_ptr ed25519(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
    pki::evp_pkey_ptr p521(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-521"));
    REQUIRE(ed25519 != nullptr);
    REQUIRE(p521 != nullptr);

    CHECK(error_code_of(pki::public_jwk(ed25519.get())) == errc::unsupported_key);
    CHECK(error_code_of(pki::public_jwk(p521.get())) == errc::unsupported_key);
    CHECK(error_code_of(pki::public_jwk(nullptr)) == errc::invalid_argument);
    CHECK(error_code_of(pki::jwk_thumbprint(ed25519.get())) == errc::unsupported_key);
}
