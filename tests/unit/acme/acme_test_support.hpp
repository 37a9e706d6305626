// Helpers shared by the acme tests: unwrapping results, taking a JWS apart, and checking its
// signature with OpenSSL against the public key its header or a JWK names.
#pragma once

#include "acme/error.hpp"
#include "pki/jose.hpp"
#include "pki/openssl_handles.hpp"
#include "tests/unit/pki/pki_test_support.hpp"

#include <string>
#include <string_view>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>

namespace acme_test {

namespace acme = gatehouse::acme;
namespace pki = gatehouse::pki;
using json = nlohmann::json;

// The value of a result that must have succeeded; fails the test with the error's message if not.
template <class T>
T require_ok(acme::result<T> result)
{
    INFO((result ? std::string() : result.error().message));
    REQUIRE(result.has_value());
    return std::move(*result);
}

// The code of a result that must have failed.
template <class T>
acme::errc error_code_of(const acme::result<T>& result)
{
    REQUIRE_FALSE(result.has_value());
    return result.error().code;
}

inline std::string decode(std::string_view text)
{
    auto decoded = pki::base64url_decode(text);
    REQUIRE(decoded.has_value());
    return *decoded;
}

// A flattened JWS taken apart: its decoded protected header and payload, and what was signed.
struct jws_parts {
    json header;
    std::string payload; // decoded; empty for POST-as-GET
    std::string signing_input;
    std::string signature; // decoded
};

inline jws_parts split_jws(const std::string& text)
{
    const json jws = json::parse(text);
    REQUIRE(jws.size() == 3);
    jws_parts parts;
    const std::string protected_b64 = jws.at("protected").get<std::string>();
    const std::string payload_b64 = jws.at("payload").get<std::string>();
    parts.header = json::parse(decode(protected_b64));
    parts.payload = decode(payload_b64);
    parts.signing_input = protected_b64 + "." + payload_b64;
    parts.signature = decode(jws.at("signature").get<std::string>());
    return parts;
}

// The P-256 public key a JWK describes.
inline pki::evp_pkey_ptr key_from_jwk(const json& jwk)
{
    REQUIRE(jwk.at("kty") == "EC");
    REQUIRE(jwk.at("crv") == "P-256");
    return pki_test::ec_public_key("P-256", decode(jwk.at("x").get<std::string>()),
                                   decode(jwk.at("y").get<std::string>()));
}

// A fresh P-256 account key.
inline pki::evp_pkey_ptr make_account_key()
{
    return pki_test::require_ok(pki::generate_private_key(pki::key_type::ecdsa_p256));
}

} // namespace acme_test
