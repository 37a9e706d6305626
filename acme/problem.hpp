// Problem documents (RFC 8555 section 6.7, RFC 7807): how an ACME server says what went wrong,
// and whether trying again can help.
//
// All functions are pure and may be called from any thread.
#pragma once

#include "acme/error.hpp"
#include "acme/identifier.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::acme {

// The error types of RFC 8555 section 6.7, "urn:ietf:params:acme:error:<name>". `other` stands
// for any type outside that namespace or unknown to gatehouse, and for failures gatehouse
// reports itself (an unexpected status, a response that does not parse).
enum class problem_kind {
    bad_nonce,
    rate_limited,
    unauthorized,
    malformed,
    server_internal,
    connection,
    dns,
    incorrect_response,
    caa,
    rejected_identifier,
    bad_csr,
    account_does_not_exist,
    external_account_required,
    order_not_ready,
    user_action_required,
    bad_revocation_reason,
    already_revoked,
    unsupported_identifier,
    bad_public_key,
    bad_signature_algorithm,
    tls,
    compound,
    other,
};

// The kind for a problem type URI; `other` when it is not one of RFC 8555's.
problem_kind kind_of(std::string_view type) noexcept;

// The RFC's name for a kind ("badNonce", "rateLimited"); "other" for other.
std::string_view to_string(problem_kind kind) noexcept;

// One of several errors behind a compound problem (RFC 8555 section 6.7.1), usually one per
// identifier of an order.
struct subproblem {
    problem_kind kind = problem_kind::other;
    std::string type;
    std::string detail;
    std::optional<acme::identifier> identifier;
};

struct problem {
    problem_kind kind = problem_kind::other;
    std::string type;   // the type URI as sent; empty for problems gatehouse makes itself
    std::string detail; // for people; may be empty
    int status = 0;     // the HTTP status the document repeats; 0 when absent
    std::vector<subproblem> subproblems;
};

// Reads a problem document. Every member is optional in RFC 7807, so only text that is not a
// JSON object fails (invalid_json); members of the wrong type are ignored.
result<problem> parse_problem(std::string_view json);

// A problem gatehouse reports itself, of kind `kind` with an empty type.
problem make_problem(problem_kind kind, std::string detail, int status = 0);

// Whether sending the same request again, unchanged or after a wait, can succeed without anyone
// changing configuration, DNS or the account. Retryable: badNonce (with a fresh nonce, section
// 6.5), rateLimited (after Retry-After, section 6.6), serverInternal, and orderNotReady (once
// the order is ready). A compound problem is retryable when it has subproblems and all of them
// are. Everything else is permanent: validation failures (connection, dns, tls,
// incorrectResponse, unauthorized, caa) report what the CA saw of the world as it is, and
// repeating at once sees the same; the request and account kinds (malformed, badCSR,
// rejectedIdentifier, userActionRequired, externalAccountRequired, ...) need a change on our
// side; `other` is treated as permanent so an unknown failure never hammers a CA. An
// orchestrator may still start a new order later on its slow schedule.
bool is_retryable(const problem& problem) noexcept;

// One line for logs: `rateLimited status=429 detail="too many orders"`, followed by each
// subproblem as `[dns identifier=dns:a.example detail="..."]`.
std::string to_string(const problem& problem);

} // namespace gatehouse::acme
