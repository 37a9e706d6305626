// How acme operations fail: one error enum, its category, and the result type every fallible
// function in gatehouse::acme returns.
//
// These are failures to build or read a protocol message. What the CA itself refuses arrives as
// a problem document (acme/problem.hpp), which is data, not an error of this kind.
#pragma once

#include <string>
#include <type_traits>

#include <boost/assert/source_location.hpp>
#include <boost/system/error_category.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

namespace gatehouse::acme {

enum class errc {
    // A body that should be a JSON object is not JSON at all, or is JSON of another kind.
    invalid_json = 1,

    // A member the RFC requires (a directory URL, an order's status) is absent.
    missing_field,

    // A member is present with the wrong type, or a status value RFC 8555 does not define.
    invalid_field,

    // A JWS or HMAC could not be computed: the key is not one the algorithm takes (ES256 needs
    // P-256) or OpenSSL failed. The message names which.
    signing_failed,

    // Any other argument out of range, such as an EAB key that is not base64url.
    invalid_argument,

    // The CA could not be reached, or did not answer in time: refused, reset, a TLS
    // certificate that does not verify. The message says which.
    unreachable,
};

// The category of errc values; its name is "gatehouse.acme".
const boost::system::error_category& acme_category() noexcept;

inline boost::system::error_code make_error_code(errc value) noexcept
{
    return {static_cast<int>(value), acme_category()};
}

// A failed acme operation: its kind, and a one-line message naming the message and member at
// fault. Messages never hold key material or JWS bodies, so they may be logged as they are.
struct acme_error {
    errc code = errc::invalid_argument;
    std::string message;
};

// Calling value() on a failed result throws boost::system::system_error carrying the code and
// the message. Found by argument-dependent lookup from boost::system::result.
[[noreturn]] void throw_exception_from_error(const acme_error& error,
                                             const boost::source_location& location);

template <class T>
using result = boost::system::result<T, acme_error>;

} // namespace gatehouse::acme

template <>
struct boost::system::is_error_code_enum<gatehouse::acme::errc> : std::true_type {};
