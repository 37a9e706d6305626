// The JOSE pieces an ACME client needs (RFC 8555 section 6.2): base64url, SHA-256, ES256
// signatures in JWS form, public keys as JWKs, and JWK thumbprints for key authorizations.
//
// Byte strings are carried in std::string. This file builds no JSON documents beyond the
// canonical JWK; assembling a JWS is the ACME client's job. Every function may be called from
// any thread; keys passed in are only read and stay the caller's.
#pragma once

#include "pki/error.hpp"
#include "pki/openssl_handles.hpp"

#include <string>
#include <string_view>

namespace gatehouse::pki {

// Base64 with the URL-safe alphabet and no padding (RFC 7515 section 2, RFC 4648 section 5).
std::string base64url_encode(std::string_view bytes);

// The inverse of base64url_encode. Fails with invalid_base64 on padding, characters outside the
// URL-safe alphabet (whitespace included) and lengths no encoding produces.
result<std::string> base64url_decode(std::string_view text);

// The 32-byte SHA-256 digest of `data`. Fails with openssl_failure only.
result<std::string> sha256(std::string_view data);

// An ES256 signature over `data` (RFC 7518 section 3.4): ECDSA on P-256 with SHA-256, as the
// 64 bytes r || s, each left-padded to 32, not the DER form OpenSSL produces. Fails with
// unsupported_key unless `key` is a P-256 private key. Thread-safe; the caller keeps `key`.
//
// TODO: only ES256 can sign; an ACME account key on P-384 or RSA needs ES384 or RS256, which
// would let this become one jws_sign that picks the algorithm from the key.
result<std::string> es256_sign(EVP_PKEY* key, std::string_view data);

// The public members of a JWK (RFC 7517, RFC 7518 section 6). An EC key fills kty, crv, x and y;
// an RSA key fills kty, n and e. Values other than kty and crv are base64url.
struct jwk {
    std::string kty; // "EC" or "RSA"
    std::string crv; // "P-256" or "P-384"
    std::string x;
    std::string y;
    std::string n;
    std::string e;

    // The required members in lexicographic order without whitespace (RFC 7638 section 3.2):
    // the input to the thumbprint, and also a valid "jwk" value for a JWS protected header.
    std::string canonical_json() const;
};

// The public JWK of `key`: an EC key on P-256 or P-384 (coordinates padded to the field size, 32
// or 48 bytes) or an RSA key (n and e without leading zero bytes). Fails with unsupported_key
// for anything else.
result<jwk> public_jwk(EVP_PKEY* key);

// The RFC 7638 thumbprint of `key`'s public JWK: base64url(SHA-256(canonical_json())). ACME
// appends it to a challenge token to form the key authorization (RFC 8555 section 8.1).
result<std::string> jwk_thumbprint(EVP_PKEY* key);

} // namespace gatehouse::pki
