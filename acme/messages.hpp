// The ACME resources a client reads (RFC 8555 section 7.1.2 to 7.1.6): accounts, orders,
// authorizations and challenges, and the two header fields the protocol leans on besides
// Replay-Nonce and Location: Link rel="alternate" (section 7.4.2) and Retry-After (section 8.2).
//
// Parsers keep what gatehouse uses and ignore members they do not know (section 7.1 lets
// servers add them). All functions are pure and may be called from any thread.
#pragma once

#include "acme/error.hpp"
#include "acme/identifier.hpp"
#include "acme/problem.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::acme {

// Section 7.1.6 gives the status values and how each resource moves between them.
enum class account_status { valid, deactivated, revoked };
enum class order_status { pending, ready, processing, valid, invalid };
enum class authorization_status { pending, valid, invalid, deactivated, expired, revoked };
enum class challenge_status { pending, processing, valid, invalid };

// The status names as RFC 8555 spells them ("pending", "valid"), for logs.
std::string_view to_string(account_status status) noexcept;
std::string_view to_string(order_status status) noexcept;
std::string_view to_string(authorization_status status) noexcept;
std::string_view to_string(challenge_status status) noexcept;

// Section 7.1.2.
struct account {
    account_status status = account_status::valid;
    std::vector<std::string> contact;
    std::optional<std::string> orders;
};

// Section 7.1.3. Times stay RFC 3339 text as the server wrote them.
struct order {
    order_status status = order_status::pending;
    std::optional<std::string> expires;
    std::vector<identifier> identifiers;
    std::vector<std::string> authorizations;
    std::string finalize;
    std::optional<std::string> certificate;
    std::optional<problem> error;
};

// Section 7.1.5 and 8.
struct challenge {
    std::string type; // "http-01", "dns-01", "tls-alpn-01", ...
    std::string url;
    std::string token; // empty for challenge types without one
    challenge_status status = challenge_status::pending;
    std::optional<problem> error;
};

// Section 7.1.4.
struct authorization {
    authorization_status status = authorization_status::pending;
    acme::identifier identifier;
    std::optional<std::string> expires;
    std::vector<challenge> challenges;
    bool wildcard = false;
};

// Each parser fails with invalid_json for text that is not a JSON object, missing_field when a
// required member is absent (an account's or order's status, an order's finalize URL, an
// authorization's identifier), and invalid_field for a status RFC 8555 does not define or a
// member of the wrong type. An account without status counts as valid, as some CAs omit it.
result<account> parse_account(std::string_view json);
result<order> parse_order(std::string_view json);
result<authorization> parse_authorization(std::string_view json);
result<challenge> parse_challenge(std::string_view json);

// The URLs of every Link relation "alternate" (RFC 8288) across `link_headers`, each one value
// of a Link header field, which may itself list several links separated by commas. Section
// 7.4.2 uses them for alternate certificate chains. Order is kept; malformed links are skipped.
std::vector<std::string> alternate_links(const std::vector<std::string>& link_headers);

// A Retry-After value (RFC 9110 section 10.2.3) as a wait from `now`: delta-seconds, or an
// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"); a date in the past gives zero. nullopt for
// anything else, the obsolete RFC 850 and asctime date forms included.
std::optional<std::chrono::seconds> parse_retry_after(std::string_view value,
                                                      std::chrono::system_clock::time_point now);

} // namespace gatehouse::acme
