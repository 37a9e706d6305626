// How pki operations fail: one error enum, its category, and the result type every fallible
// function in gatehouse::pki returns.
//
// A failure carries a code, for callers that branch on what went wrong, and a message for
// people. Messages name the OpenSSL call that failed and its queued reasons, never key material,
// so they may be logged as they are.
#pragma once

#include <string>
#include <type_traits>

#include <boost/assert/source_location.hpp>
#include <boost/system/error_category.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

namespace gatehouse::pki {

enum class errc {
    // The text holds no PEM block of the kind asked for, or a block that does not parse.
    invalid_pem = 1,

    // A certificate parses but cannot be used: an extension gatehouse reads is malformed.
    invalid_certificate,

    // The private key is protected by a passphrase; gatehouse only reads unencrypted keys.
    encrypted_key,

    // The key's algorithm, curve or size is not one gatehouse uses (RSA of at least 2048 bits,
    // ECDSA on P-256, P-384 or P-521; some operations accept fewer, as each documents).
    unsupported_key,

    // The private key does not belong to the certificate it was paired with.
    key_mismatch,

    // A certificate offered as a certificate authority may not sign certificates.
    not_a_ca,

    // A name cannot be put in a certificate: empty, malformed, or a wildcard in the wrong place.
    invalid_name,

    // Any other argument out of range: no names at all, a validity that is not positive, a
    // common name that is too long.
    invalid_argument,

    // The certificate authority has expired, so nothing it signs would verify.
    ca_expired,

    // Text that should be base64url (RFC 4648 section 5, unpadded) is not.
    invalid_base64,

    // An OpenSSL call failed for a reason none of the codes above describe (out of memory, a
    // provider missing, an internal error). The message names the call.
    openssl_failure,
};

// The category of errc values; its name is "gatehouse.pki".
const boost::system::error_category& pki_category() noexcept;

inline boost::system::error_code make_error_code(errc value) noexcept
{
    return {static_cast<int>(value), pki_category()};
}

// A failed pki operation: what kind of failure, and a one-line message that says which input or
// which OpenSSL call was at fault.
struct pki_error {
    errc code = errc::openssl_failure;
    std::string message;
};

// Calling value() on a failed result throws boost::system::system_error carrying the code and
// the message. Found by argument-dependent lookup from boost::system::result.
[[noreturn]] void throw_exception_from_error(const pki_error& error,
                                             const boost::source_location& location);

template <class T>
using result = boost::system::result<T, pki_error>;

} // namespace gatehouse::pki

template <>
struct boost::system::is_error_code_enum<gatehouse::pki::errc> : std::true_type {};
