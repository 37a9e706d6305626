#include "acme/problem.hpp"

#include "acme/internal.hpp"

#include <array>
#include <utility>

namespace gatehouse::acme {

namespace {

using internal::json;

constexpr std::string_view error_namespace = "urn:ietf:params:acme:error:";

// RFC 8555 section 6.7, table of error types, in the enum's order.
constexpr std::array<std::pair<problem_kind, std::string_view>, 22> kind_names{{
    {problem_kind::bad_nonce, "badNonce"},
    {problem_kind::rate_limited, "rateLimited"},
    {problem_kind::unauthorized, "unauthorized"},
    {problem_kind::malformed, "malformed"},
    {problem_kind::server_internal, "serverInternal"},
    {problem_kind::connection, "connection"},
    {problem_kind::dns, "dns"},
    {problem_kind::incorrect_response, "incorrectResponse"},
    {problem_kind::caa, "caa"},
    {problem_kind::rejected_identifier, "rejectedIdentifier"},
    {problem_kind::bad_csr, "badCSR"},
    {problem_kind::account_does_not_exist, "accountDoesNotExist"},
    {problem_kind::external_account_required, "externalAccountRequired"},
    {problem_kind::order_not_ready, "orderNotReady"},
    {problem_kind::user_action_required, "userActionRequired"},
    {problem_kind::bad_revocation_reason, "badRevocationReason"},
    {problem_kind::already_revoked, "alreadyRevoked"},
    {problem_kind::unsupported_identifier, "unsupportedIdentifier"},
    {problem_kind::bad_public_key, "badPublicKey"},
    {problem_kind::bad_signature_algorithm, "badSignatureAlgorithm"},
    {problem_kind::tls, "tls"},
    {problem_kind::compound, "compound"},
}};

std::optional<identifier> identifier_from_json(const json& object)
{
    const auto member = object.find("identifier");
    if (member == object.end() || !member->is_object()) {
        return std::nullopt;
    }
    auto type = internal::optional_string(*member, "type");
    auto value = internal::optional_string(*member, "value");
    if (!type || !value) {
        return std::nullopt;
    }
    return identifier{std::move(*type), std::move(*value)};
}

std::vector<subproblem> subproblems_from_json(const json& object)
{
    std::vector<subproblem> subproblems;
    const auto member = object.find("subproblems");
    if (member == object.end() || !member->is_array()) {
        return subproblems;
    }
    for (const auto& element : *member) {
        if (!element.is_object()) {
            continue;
        }
        subproblem sub;
        sub.type = internal::optional_string(element, "type").value_or("");
        sub.kind = kind_of(sub.type);
        sub.detail = internal::optional_string(element, "detail").value_or("");
        sub.identifier = identifier_from_json(element);
        subproblems.push_back(std::move(sub));
    }
    return subproblems;
}

bool is_retryable_kind(problem_kind kind) noexcept
{
    switch (kind) {
    case problem_kind::bad_nonce:
    case problem_kind::rate_limited:
    case problem_kind::server_internal:
    case problem_kind::order_not_ready:
        return true;
    default:
        return false;
    }
}

// Quotes a detail for a key=value log field, escaping the quote and backslash.
std::string quote_field(std::string_view text)
{
    std::string out = "\"";
    for (const char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
        }
        out += c;
    }
    return out + '"';
}

} // namespace

problem_kind kind_of(std::string_view type) noexcept
{
    if (!type.starts_with(error_namespace)) {
        return problem_kind::other;
    }
    const std::string_view name = type.substr(error_namespace.size());
    for (const auto& [kind, kind_name] : kind_names) {
        if (kind_name == name) {
            return kind;
        }
    }
    return problem_kind::other;
}

std::string_view to_string(problem_kind kind) noexcept
{
    for (const auto& [candidate, name] : kind_names) {
        if (candidate == kind) {
            return name;
        }
    }
    return "other";
}

result<problem> parse_problem(std::string_view text)
{
    auto object = internal::parse_object(text, "problem document");
    if (!object) {
        return object.error();
    }
    return internal::problem_from_json(*object);
}

problem internal::problem_from_json(const json& object)
{
    problem result;
    result.type = optional_string(object, "type").value_or("");
    result.kind = kind_of(result.type);
    result.detail = optional_string(object, "detail").value_or("");
    const auto status = object.find("status");
    if (status != object.end() && status->is_number_integer()) {
        result.status = status->get<int>();
    }
    result.subproblems = subproblems_from_json(object);
    return result;
}

problem make_problem(problem_kind kind, std::string detail, int status)
{
    problem result;
    result.kind = kind;
    result.detail = std::move(detail);
    result.status = status;
    return result;
}

bool is_retryable(const problem& problem) noexcept
{
    if (problem.kind != problem_kind::compound) {
        return is_retryable_kind(problem.kind);
    }
    if (problem.subproblems.empty()) {
        return false;
    }
    for (const auto& sub : problem.subproblems) {
        if (!is_retryable_kind(sub.kind)) {
            return false;
        }
    }
    return true;
}

std::string to_string(const problem& problem)
{
    std::string text(to_string(problem.kind));
    if (problem.kind == problem_kind::other && !problem.type.empty()) {
        text += " type=" + problem.type;
    }
    if (problem.status != 0) {
        text += " status=" + std::to_string(problem.status);
    }
    text += " detail=" + quote_field(problem.detail);
    for (const auto& sub : problem.subproblems) {
        text += " [" + std::string(to_string(sub.kind));
        if (sub.identifier) {
            text += " identifier=" + sub.identifier->type + ":" + sub.identifier->value;
        }
        text += " detail=" + quote_field(sub.detail) + "]";
    }
    return text;
}

} // namespace gatehouse::acme
