#include "acme/jws.hpp"

#include "acme/internal.hpp"
#include "pki/jose.hpp"

#include <array>

#include <openssl/evp.h>

namespace gatehouse::acme {

namespace {

using internal::json;
using internal::make_error;

acme_error signing_error(const pki::pki_error& error)
{
    return make_error(errc::signing_failed, error.message);
}

// The account key's public JWK as a JSON value, for a protected header or a payload.
result<json> jwk_json(EVP_PKEY* key)
{
    auto jwk = pki::public_jwk(key);
    if (!jwk) {
        return signing_error(jwk.error());
    }
    return result<json>(boost::system::in_place_value, json::parse(jwk->canonical_json()));
}

// The flattened serialization of RFC 7515 section 7.2.2, signed ES256 by `key`.
result<std::string> es256_jws(EVP_PKEY* key, const json& protected_header,
                              std::string_view payload_b64)
{
    const std::string protected_b64 = pki::base64url_encode(protected_header.dump());
    auto signature = pki::es256_sign(key, protected_b64 + "." + std::string(payload_b64));
    if (!signature) {
        return signing_error(signature.error());
    }
    return json{{"protected", protected_b64},
                {"payload", std::string(payload_b64)},
                {"signature", pki::base64url_encode(*signature)}}
        .dump();
}

result<std::string> hmac_sha256(std::string_view key, std::string_view data)
{
    std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
    std::size_t length = 0;
    const auto* key_bytes = reinterpret_cast<const unsigned char*>(key.data());
    const auto* data_bytes = reinterpret_cast<const unsigned char*>(data.data());
    if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key_bytes, key.size(), data_bytes,
                  data.size(), mac.data(), mac.size(), &length) == nullptr) {
        return make_error(errc::signing_failed, pki::openssl_error_text("EVP_Q_mac(HMAC-SHA256)"));
    }
    return std::string(reinterpret_cast<const char*>(mac.data()), length);
}

} // namespace

result<std::string> sign_jws(EVP_PKEY* account_key, std::string_view url, std::string_view nonce,
                             std::optional<std::string_view> kid,
                             std::optional<std::string_view> payload_json)
{
    // Section 6.2: "jwk" and "kid" are mutually exclusive.
    json header{{"alg", "ES256"}, {"nonce", std::string(nonce)}, {"url", std::string(url)}};
    if (kid) {
        header["kid"] = std::string(*kid);
    } else {
        auto jwk = jwk_json(account_key);
        if (!jwk) {
            return jwk.error();
        }
        header["jwk"] = std::move(*jwk);
    }

    // Section 6.3: a POST-as-GET carries the empty string as payload, not "{}".
    const std::string payload = payload_json ? pki::base64url_encode(*payload_json) : "";
    return es256_jws(account_key, header, payload);
}

result<std::string> sign_eab(std::string_view eab_kid, std::string_view hmac_key_b64url,
                             EVP_PKEY* account_key, std::string_view new_account_url)
{
    auto mac_key = pki::base64url_decode(hmac_key_b64url);
    if (!mac_key || mac_key->empty()) {
        return make_error(errc::invalid_argument, "EAB MAC key is empty or not base64url");
    }
    auto jwk = pki::public_jwk(account_key);
    if (!jwk) {
        return signing_error(jwk.error());
    }

    // Section 7.3.4: the payload is the account's JWK, the header names the MAC key and the
    // newAccount URL, and there is no nonce.
    const json header{
        {"alg", "HS256"}, {"kid", std::string(eab_kid)}, {"url", std::string(new_account_url)}};
    const std::string protected_b64 = pki::base64url_encode(header.dump());
    const std::string payload_b64 = pki::base64url_encode(jwk->canonical_json());
    auto mac = hmac_sha256(*mac_key, protected_b64 + "." + payload_b64);
    if (!mac) {
        return mac.error();
    }
    return json{{"protected", protected_b64},
                {"payload", payload_b64},
                {"signature", pki::base64url_encode(*mac)}}
        .dump();
}

result<std::string> sign_key_change(EVP_PKEY* new_key, EVP_PKEY* old_key,
                                    std::string_view account_url, std::string_view key_change_url)
{
    auto new_jwk = jwk_json(new_key);
    auto old_jwk = jwk_json(old_key);
    if (!new_jwk || !old_jwk) {
        return !new_jwk ? new_jwk.error() : old_jwk.error();
    }

    // Section 7.3.5: the inner JWS has the new key's jwk, the same url as the outer one, and
    // no nonce; its payload binds the account to the old key.
    const json header{{"alg", "ES256"}, {"jwk", *new_jwk}, {"url", std::string(key_change_url)}};
    const json payload{{"account", std::string(account_url)}, {"oldKey", *old_jwk}};
    return es256_jws(new_key, header, pki::base64url_encode(payload.dump()));
}

result<std::string> key_authorization(std::string_view token, EVP_PKEY* account_key)
{
    auto thumbprint = pki::jwk_thumbprint(account_key);
    if (!thumbprint) {
        return signing_error(thumbprint.error());
    }
    return std::string(token) + "." + *thumbprint;
}

} // namespace gatehouse::acme
