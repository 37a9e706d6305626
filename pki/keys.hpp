// Private keys: generating them, and moving them to and from PEM.
//
// Keys are stored as unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY"); the store's file permissions
// protect them, not a passphrase, since gatehouse must start unattended. Nothing here logs, and
// no error message ever contains key material. Every function may be called from any thread.
#pragma once

#include "pki/error.hpp"
#include "pki/openssl_handles.hpp"

#include <string>
#include <string_view>

namespace gatehouse::pki {

// The kinds of key gatehouse creates. ECDSA P-256 is the default: small, fast and accepted by
// every TLS client and ACME CA; RSA is there for clients that still need it.
enum class key_type { ecdsa_p256, ecdsa_p384, rsa2048, rsa4096 };

// "ecdsa-p256", "ecdsa-p384", "rsa2048" or "rsa4096", for logs and the status page.
std::string_view to_string(key_type type) noexcept;

// A new key pair from OpenSSL's default random generator. RSA 4096 takes a second or more; the
// others are quick. Fails with openssl_failure only. Thread-safe.
result<evp_pkey_ptr> generate_private_key(key_type type);

// `key` as unencrypted PKCS#8 PEM. The returned string holds the secret; keep it out of logs.
// Fails with invalid_argument for a null key and openssl_failure otherwise.
result<std::string> private_key_to_pem(EVP_PKEY* key);

// Reads the first private key in `pem`: PKCS#8 ("BEGIN PRIVATE KEY") or the older
// "BEGIN RSA PRIVATE KEY" and "BEGIN EC PRIVATE KEY" forms, so user-supplied files work as they
// come. Other PEM blocks (certificates) before the key are skipped.
//
// Fails with invalid_pem when there is no key or it does not parse, encrypted_key when it is
// passphrase-protected (never prompting for one), and unsupported_key unless it is RSA of at
// least 2048 bits or ECDSA on P-256, P-384 or P-521.
result<evp_pkey_ptr> private_key_from_pem(std::string_view pem);

// True when `key` is the private half of the public key in `certificate`. False when either is
// null. Thread-safe.
bool public_key_matches(EVP_PKEY* key, X509* certificate);

// "ECDSA P-256", "RSA 3072" and the like, for logs and the status page. Never key material.
std::string describe_key(EVP_PKEY* key);

} // namespace gatehouse::pki
