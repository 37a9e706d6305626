// Tests for acme::jws: every JWS is taken apart and its signature checked with OpenSSL against
// the public key, as a CA would (RFC 8555 section 6.2).
#include "acme/jws.hpp"
#include "pki/jose.hpp"
#include "pki/keys.hpp"
#include "tests/unit/acme/acme_test_support.hpp"

#include <array>

#include <catch2/catch.hpp>
#include <openssl/evp.h>

namespace acme = gatehouse::acme;
namespace pki = gatehouse::pki;
using acme_test::json;
using acme_test::require_ok;

namespace {

constexpr const char* new_account_url = "https://ca.test/sign-me-up";

std::string hmac_sha256(const std::string& key, const std::string& data)
{
    std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
    std::size_t length = 0;
    REQUIRE(EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.data(), key.size(),
                      reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac.data(),
                      mac.size(), &length) != nullptr);
    return std::string(reinterpret_cast<const char*>(mac.data()), length);
}

json jwk_of(EVP_PKEY* key)
{
    return json::parse(pki_test::require_ok(pki::public_jwk(key)).canonical_json());
}

} // namespace

TEST_CASE("a newAccount JWS carries the account's jwk and verifies with it", "[acme]")
{
    const auto key = acme_test::make_account_key();
    const std::string payload = R"({"termsOfServiceAgreed":true})";
    const auto parts = acme_test::split_jws(
        require_ok(acme::sign_jws(key.get(), new_account_url, "nonce-1", std::nullopt, payload)));

    CHECK(parts.header.at("alg") == "ES256");
    CHECK(parts.header.at("nonce") == "nonce-1");
    CHECK(parts.header.at("url") == new_account_url);
    CHECK_FALSE(parts.header.contains("kid"));
    CHECK(parts.header.at("jwk") == jwk_of(key.get()));
    CHECK(parts.payload == payload);

    // Verify with the key the header names, as the CA does for newAccount.
    const auto public_key = acme_test::key_from_jwk(parts.header.at("jwk"));
    CHECK(pki_test::es256_verifies(public_key.get(), parts.signing_input, parts.signature));
}

TEST_CASE("a JWS from an existing account names it by kid instead of jwk", "[acme]")
{
    const auto key = acme_test::make_account_key();
    const std::string kid = "https://ca.test/my-account/7";
    const auto parts = acme_test::split_jws(require_ok(
        acme::sign_jws(key.get(), "https://ca.test/order-plz", "n", kid, std::string("{}"))));

    CHECK(parts.header.at("kid") == kid);
    CHECK_FALSE(parts.header.contains("jwk"));
    CHECK(pki_test::es256_verifies(key.get(), parts.signing_input, parts.signature));
}

TEST_CASE("a POST-as-GET JWS has an empty payload", "[acme]")
{
    const auto key = acme_test::make_account_key();
    const std::string text =
        require_ok(acme::sign_jws(key.get(), "https://ca.test/authZ/1", "n", "kid", std::nullopt));

    // Section 6.3: the payload member is the empty string, not base64url("{}").
    CHECK(json::parse(text).at("payload") == "");
    const auto parts = acme_test::split_jws(text);
    CHECK(pki_test::es256_verifies(key.get(), parts.signing_input, parts.signature));
}

TEST_CASE("a JWS cannot be signed with a key other than P-256", "[acme]")
{
    const auto rsa = pki_test::require_ok(pki::generate_private_key(pki::key_type::rsa2048));
    const auto signed_jws = acme::sign_jws(rsa.get(), "https://ca.test/x", "n", std::nullopt, "{}");
    CHECK(acme_test::error_code_of(signed_jws) == acme::errc::signing_failed);
}

TEST_CASE("an external account binding is an HS256 JWS over the account key", "[acme]")
{
    const auto key = acme_test::make_account_key();
    const std::string mac_key = "a secret mac key of 32 bytes....";
    const std::string binding = require_ok(
        acme::sign_eab("kid-1", pki::base64url_encode(mac_key), key.get(), new_account_url));
    const auto parts = acme_test::split_jws(binding);

    // Section 7.3.4: the header names the MAC key and URL, with no nonce.
    CHECK(parts.header == json{{"alg", "HS256"}, {"kid", "kid-1"}, {"url", new_account_url}});
    CHECK(json::parse(parts.payload) == jwk_of(key.get()));
    CHECK(parts.signature == hmac_sha256(mac_key, parts.signing_input));
}

TEST_CASE("an external account binding refuses a MAC key that is not base64url", "[acme]")
{
    const auto key = acme_test::make_account_key();
    SECTION("not base64url")
    {
        const auto binding = acme::sign_eab("kid", "not base64!", key.get(), new_account_url);
        CHECK(acme_test::error_code_of(binding) == acme::errc::invalid_argument);
    }
    SECTION("empty")
    {
        const auto binding = acme::sign_eab("kid", "", key.get(), new_account_url);
        CHECK(acme_test::error_code_of(binding) == acme::errc::invalid_argument);
    }
}

TEST_CASE("a key change inner JWS is signed by the new key and names the old one", "[acme]")
{
    const auto old_key = acme_test::make_account_key();
    const auto new_key = acme_test::make_account_key();
    const std::string account = "https://ca.test/my-account/1";
    const std::string url = "https://ca.test/rollover-account-key";
    const auto parts = acme_test::split_jws(
        require_ok(acme::sign_key_change(new_key.get(), old_key.get(), account, url)));

    // Section 7.3.5: jwk of the new key, the outer request's URL, and no nonce.
    CHECK(parts.header == json{{"alg", "ES256"}, {"jwk", jwk_of(new_key.get())}, {"url", url}});
    CHECK(json::parse(parts.payload) ==
          json{{"account", account}, {"oldKey", jwk_of(old_key.get())}});
    CHECK(pki_test::es256_verifies(new_key.get(), parts.signing_input, parts.signature));
    CHECK_FALSE(pki_test::es256_verifies(old_key.get(), parts.signing_input, parts.signature));
}

TEST_CASE("a key authorization is the token, a dot, and the account key's thumbprint", "[acme]")
{
    const auto key = acme_test::make_account_key();
    const std::string thumbprint = pki_test::require_ok(pki::jwk_thumbprint(key.get()));
    CHECK(require_ok(acme::key_authorization("tok_en-1", key.get())) == "tok_en-1." + thumbprint);
}
