// Helpers shared by the pki/*.cpp files. Not part of the library's interface: nothing outside
// pki/ includes this header.
#pragma once

#include "pki/error.hpp"
#include "pki/openssl_handles.hpp"

#include <chrono>
#include <string>
#include <string_view>

namespace gatehouse::pki::internal {

inline pki_error make_error(errc code, std::string message)
{
    return pki_error{code, std::move(message)};
}

// The error for a failed OpenSSL call, with the call's name and the queued reasons.
inline pki_error openssl_failure(std::string_view failing_call, errc code = errc::openssl_failure)
{
    return pki_error{code, openssl_error_text(failing_call)};
}

std::string to_lower_ascii(std::string_view text);

// Upper-case hex, two digits a byte, no separators.
std::string hex_upper(std::string_view bytes);

// A read-only memory BIO over `text`; `text` must outlive it.
result<bio_ptr> read_bio(std::string_view text);

// A writable memory BIO; with `secure` its buffer comes from OpenSSL's secure heap when one is
// configured, for private key material.
result<bio_ptr> write_bio(bool secure = false);

// Everything written to a memory BIO so far.
std::string bio_text(BIO* bio);

// A PEM passphrase callback that refuses to give one, so OpenSSL never prompts on the terminal.
// `flag` must point to a bool, which it sets to record that a passphrase was asked for.
int refuse_passphrase(char* buffer, int size, int rwflag, void* flag);

// The NID of an EC key's named curve; NID_undef for anything else.
int ec_curve_nid(EVP_PKEY* key);

// unsupported_key unless `key` is RSA of at least 2048 bits or ECDSA on P-256, P-384 or P-521.
result<void> check_supported_key(EVP_PKEY* key);

// A positive 16-byte serial number with 126 random bits (RFC 5280 section 4.1.2.2 allows up to
// 20 bytes; the CA/Browser Forum asks for at least 64 random bits).
result<asn1_string_ptr> random_serial();

result<void> set_validity(X509* certificate, std::chrono::system_clock::time_point not_before,
                          std::chrono::system_clock::time_point not_after);

// A certificate time as a UTC time point.
result<std::chrono::system_clock::time_point> to_time_point(const ASN1_TIME* time);

} // namespace gatehouse::pki::internal
