// The signed messages of RFC 8555 section 6.2: JWS in flattened JSON serialization (RFC 7515
// section 7.2.2) signed ES256 with the account key, the External Account Binding of section
// 7.3.4, the inner JWS of a key rollover (section 7.3.5), and key authorizations (section 8.1).
//
// Every function may be called from any thread. Keys passed in are only read and stay the
// caller's. The returned text holds signatures, never private keys, but a JWS body should still
// stay out of logs: it carries the account's request payloads.
#pragma once

#include "acme/error.hpp"

#include <optional>
#include <string>
#include <string_view>

#include <openssl/types.h>

namespace gatehouse::acme {

// A request to an ACME server, as the JSON object {"protected","payload","signature"}. The
// protected header holds "alg":"ES256", `nonce`, `url`, and either "kid": `kid` (requests from
// an existing account) or "jwk": the account key's public JWK (newAccount and revokeCert by
// certificate key, section 6.2). The payload is base64url(`payload_json`), or the empty string
// for a POST-as-GET (section 6.3) when payload_json is nullopt; `payload_json` is sent as given,
// unchecked.
//
// Fails with signing_failed unless `account_key` is a P-256 private key.
result<std::string> sign_jws(EVP_PKEY* account_key, std::string_view url, std::string_view nonce,
                             std::optional<std::string_view> kid,
                             std::optional<std::string_view> payload_json);

// The "externalAccountBinding" value of a newAccount request (section 7.3.4), as JSON object
// text: a JWS signed HS256 with the CA-issued MAC key over the account key's public JWK, its
// protected header {"alg":"HS256","kid": eab_kid,"url": new_account_url}, no nonce.
// `hmac_key_b64url` is the key as CAs hand it out, base64url.
//
// Fails with invalid_argument when the MAC key is empty or not base64url, and signing_failed
// when the account key has no JWK or OpenSSL fails.
result<std::string> sign_eab(std::string_view eab_kid, std::string_view hmac_key_b64url,
                             EVP_PKEY* account_key, std::string_view new_account_url);

// The inner JWS of a key rollover (section 7.3.5), as JSON object text: signed by `new_key`,
// protected {"alg":"ES256","jwk": new key's JWK,"url": key_change_url} without a nonce, payload
// {"account": account_url,"oldKey": old_key's JWK}. The caller sends it as the payload of an
// outer sign_jws by the old key with the account's kid. Only `old_key`'s public half is read.
//
// Fails with signing_failed unless `new_key` is a P-256 private key and `old_key` has a JWK.
result<std::string> sign_key_change(EVP_PKEY* new_key, EVP_PKEY* old_key,
                                    std::string_view account_url, std::string_view key_change_url);

// The key authorization for a challenge token (section 8.1): token "." base64url(JWK
// thumbprint of the account key), the text an http-01 responder serves (section 8.3). Fails with
// signing_failed when the key has no JWK.
result<std::string> key_authorization(std::string_view token, EVP_PKEY* account_key);

} // namespace gatehouse::acme
