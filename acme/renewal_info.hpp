// ACME Renewal Information (ARI, RFC 9773): a CA that lists "renewalInfo" in its directory
// says when each certificate should be renewed, which lets it spread renewals out or ask for
// early ones before a revocation. gatehouse follows the CA's window when there is one and
// falls back to its own schedule (a share of the lifetime) when there is none.
//
// All functions are pure and may be called from any thread; time and randomness come in as
// arguments so tests can use a simulated clock.
#pragma once

#include "acme/error.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <openssl/types.h>

namespace gatehouse::acme {

// The certificate's identifier in ARI URLs (section 4.1): base64url of its Authority Key
// Identifier's keyIdentifier, ".", base64url of the DER bytes of its serial number. Fails with
// invalid_argument when `leaf` is null or has no Authority Key Identifier.
result<std::string> renewal_certificate_id(X509* leaf);

// The suggested window of a renewalInfo response (section 4.2).
struct renewal_window {
    std::chrono::system_clock::time_point start;
    std::chrono::system_clock::time_point end;
    std::optional<std::string> explanation_url;
};

// Reads a renewalInfo response. Fails with invalid_json, missing_field when suggestedWindow or
// its start or end is absent, and invalid_field when a time is not RFC 3339 or end is not
// after start.
result<renewal_window> parse_renewal_info(std::string_view json);

// When to renew within `window` (section 4.2): a point chosen uniformly from the part of the
// window still ahead of `now`, using `random` as the source; `now` itself when the window has
// passed, so a certificate the CA wants replaced at once is.
std::chrono::system_clock::time_point choose_renewal_time(const renewal_window& window,
                                                          std::chrono::system_clock::time_point now,
                                                          std::uint64_t random);

} // namespace gatehouse::acme
