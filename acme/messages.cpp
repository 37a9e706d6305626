#include "acme/messages.hpp"

#include "acme/internal.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <utility>

namespace gatehouse::acme {

namespace {

using internal::json;
using internal::make_error;

template <class Status, std::size_t N>
using status_names = std::array<std::pair<Status, std::string_view>, N>;

constexpr status_names<account_status, 3> account_names{{
    {account_status::valid, "valid"},
    {account_status::deactivated, "deactivated"},
    {account_status::revoked, "revoked"},
}};
constexpr status_names<order_status, 5> order_names{{
    {order_status::pending, "pending"},
    {order_status::ready, "ready"},
    {order_status::processing, "processing"},
    {order_status::valid, "valid"},
    {order_status::invalid, "invalid"},
}};
constexpr status_names<authorization_status, 6> authorization_names{{
    {authorization_status::pending, "pending"},
    {authorization_status::valid, "valid"},
    {authorization_status::invalid, "invalid"},
    {authorization_status::deactivated, "deactivated"},
    {authorization_status::expired, "expired"},
    {authorization_status::revoked, "revoked"},
}};
constexpr status_names<challenge_status, 4> challenge_names{{
    {challenge_status::pending, "pending"},
    {challenge_status::processing, "processing"},
    {challenge_status::valid, "valid"},
    {challenge_status::invalid, "invalid"},
}};

template <class Status, std::size_t N>
std::string_view name_of(const status_names<Status, N>& names, Status status) noexcept
{
    for (const auto& [candidate, name] : names) {
        if (candidate == status) {
            return name;
        }
    }
    return "unknown";
}

// The "status" member read through `names`; `what` names the resource in errors.
template <class Status, std::size_t N>
result<Status> status_of(const json& object, const status_names<Status, N>& names,
                         std::string_view what)
{
    auto text = internal::required_string(object, "status", what);
    if (!text) {
        return text.error();
    }
    for (const auto& [status, name] : names) {
        if (name == *text) {
            return status;
        }
    }
    return make_error(errc::invalid_field,
                      std::string(what) + " has an unknown status \"" + *text + "\"");
}

std::optional<problem> optional_problem(const json& object)
{
    const auto member = object.find("error");
    if (member == object.end() || !member->is_object()) {
        return std::nullopt;
    }
    return internal::problem_from_json(*member);
}

result<identifier> identifier_from_json(const json& object, std::string_view what)
{
    if (!object.is_object()) {
        return make_error(errc::invalid_field, std::string(what) + " is not an object");
    }
    auto type = internal::required_string(object, "type", what);
    auto value = internal::required_string(object, "value", what);
    if (!type || !value) {
        return !type ? type.error() : value.error();
    }
    return identifier{std::move(*type), std::move(*value)};
}

result<std::vector<identifier>> identifiers_from_json(const json& object)
{
    std::vector<identifier> identifiers;
    const auto member = object.find("identifiers");
    if (member == object.end() || !member->is_array()) {
        return identifiers;
    }
    for (const auto& element : *member) {
        auto id = identifier_from_json(element, "order identifier");
        if (!id) {
            return id.error();
        }
        identifiers.push_back(std::move(*id));
    }
    return identifiers;
}

result<challenge> challenge_from_json(const json& object)
{
    if (!object.is_object()) {
        return make_error(errc::invalid_field, "challenge is not an object");
    }
    challenge result;
    auto type = internal::required_string(object, "type", "challenge");
    auto url = internal::required_string(object, "url", "challenge");
    auto status = status_of(object, challenge_names, "challenge");
    if (!type || !url || !status) {
        return !type ? type.error() : !url ? url.error() : status.error();
    }
    result.type = std::move(*type);
    result.url = std::move(*url);
    result.status = *status;
    result.token = internal::optional_string(object, "token").value_or("");
    result.error = optional_problem(object);
    return result;
}

result<std::vector<challenge>> challenges_from_json(const json& object)
{
    std::vector<challenge> challenges;
    const auto member = object.find("challenges");
    if (member == object.end() || !member->is_array()) {
        return challenges;
    }
    for (const auto& element : *member) {
        auto one = challenge_from_json(element);
        if (!one) {
            return one.error();
        }
        challenges.push_back(std::move(*one));
    }
    return challenges;
}

std::string_view trim(std::string_view text)
{
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
        text.remove_prefix(1);
    }
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
        text.remove_suffix(1);
    }
    return text;
}

std::string lower(std::string_view text)
{
    std::string out(text);
    for (char& c : out) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return out;
}

// Whether the parameters after a link's "<url>" (";rel=alternate", ";rel=\"up alternate\"")
// name the relation "alternate". RFC 8288 section 3.3: rel may hold several space-separated
// types, compared case-insensitively.
bool has_alternate_rel(std::string_view params)
{
    const std::string text = lower(params);
    std::size_t at = 0;
    while ((at = text.find("rel", at)) != std::string::npos) {
        std::string_view rest = trim(std::string_view(text).substr(at + 3));
        at += 3;
        if (rest.empty() || rest.front() != '=') {
            continue;
        }
        rest = trim(rest.substr(1));
        const bool quoted = !rest.empty() && rest.front() == '"';
        rest = quoted ? rest.substr(1, rest.find('"', 1) - 1) : rest.substr(0, rest.find(';'));
        for (std::size_t start = 0; start < rest.size();) {
            const std::size_t end = std::min(rest.find(' ', start), rest.size());
            if (rest.substr(start, end - start) == "alternate") {
                return true;
            }
            start = end + 1;
        }
    }
    return false;
}

// The links in one Link field value, appending the alternate ones' URLs to `urls`.
void collect_alternates(std::string_view field, std::vector<std::string>& urls)
{
    while (true) {
        const std::size_t open = field.find('<');
        const std::size_t close = field.find('>', open);
        if (open == std::string_view::npos || close == std::string_view::npos) {
            return;
        }
        const std::string_view url = field.substr(open + 1, close - open - 1);
        field.remove_prefix(close + 1);

        // The parameters run to the next link; a comma inside a quoted string is not one.
        std::size_t end = 0;
        bool in_quotes = false;
        while (end < field.size() && (in_quotes || field[end] != ',')) {
            in_quotes = field[end] == '"' ? !in_quotes : in_quotes;
            ++end;
        }
        if (has_alternate_rel(field.substr(0, end))) {
            urls.emplace_back(url);
        }
        field.remove_prefix(end);
    }
}

// An IMF-fixdate (RFC 9110 section 5.6.7) as a time point.
std::optional<std::chrono::system_clock::time_point> parse_imf_fixdate(std::string_view text)
{
    static constexpr std::array<std::string_view, 12> months{
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const std::string copy(text);
    char weekday[4] = {};
    char month[4] = {};
    char zone[4] = {};
    std::tm parts{};
    if (std::sscanf(copy.c_str(), "%3s, %d %3s %d %d:%d:%d %3s", weekday, &parts.tm_mday, month,
                    &parts.tm_year, &parts.tm_hour, &parts.tm_min, &parts.tm_sec, zone) != 8 ||
        std::string_view(zone) != "GMT" || std::string_view(weekday).size() != 3) {
        return std::nullopt;
    }
    parts.tm_mon = -1;
    for (std::size_t i = 0; i < months.size(); ++i) {
        parts.tm_mon = months[i] == month ? static_cast<int>(i) : parts.tm_mon;
    }
    if (parts.tm_mon < 0) {
        return std::nullopt;
    }
    parts.tm_year -= 1900;
    const std::time_t seconds = timegm(&parts);
    return std::chrono::system_clock::from_time_t(seconds);
}

} // namespace

std::string_view to_string(account_status status) noexcept
{
    return name_of(account_names, status);
}

std::string_view to_string(order_status status) noexcept
{
    return name_of(order_names, status);
}

std::string_view to_string(authorization_status status) noexcept
{
    return name_of(authorization_names, status);
}

std::string_view to_string(challenge_status status) noexcept
{
    return name_of(challenge_names, status);
}

result<account> parse_account(std::string_view text)
{
    auto object = internal::parse_object(text, "account");
    if (!object) {
        return object.error();
    }
    account result;
    if (object->contains("status")) {
        auto status = status_of(*object, account_names, "account");
        if (!status) {
            return status.error();
        }
        result.status = *status;
    }
    result.contact = internal::string_array(*object, "contact");
    result.orders = internal::optional_string(*object, "orders");
    return result;
}

result<order> parse_order(std::string_view text)
{
    auto object = internal::parse_object(text, "order");
    if (!object) {
        return object.error();
    }
    auto status = status_of(*object, order_names, "order");
    auto finalize = internal::required_string(*object, "finalize", "order");
    auto identifiers = identifiers_from_json(*object);
    if (!status || !finalize || !identifiers) {
        return !status ? status.error() : !finalize ? finalize.error() : identifiers.error();
    }
    order result;
    result.status = *status;
    result.finalize = std::move(*finalize);
    result.identifiers = std::move(*identifiers);
    result.expires = internal::optional_string(*object, "expires");
    result.authorizations = internal::string_array(*object, "authorizations");
    result.certificate = internal::optional_string(*object, "certificate");
    result.error = optional_problem(*object);
    return result;
}

result<authorization> parse_authorization(std::string_view text)
{
    auto object = internal::parse_object(text, "authorization");
    if (!object) {
        return object.error();
    }
    auto status = status_of(*object, authorization_names, "authorization");
    if (!status) {
        return status.error();
    }
    const auto id_member = object->find("identifier");
    if (id_member == object->end()) {
        return make_error(errc::missing_field, "authorization has no \"identifier\" member");
    }
    auto id = identifier_from_json(*id_member, "authorization identifier");
    auto challenges = challenges_from_json(*object);
    if (!id || !challenges) {
        return !id ? id.error() : challenges.error();
    }
    authorization result;
    result.status = *status;
    result.identifier = std::move(*id);
    result.challenges = std::move(*challenges);
    result.expires = internal::optional_string(*object, "expires");
    const auto wildcard = object->find("wildcard");
    result.wildcard = wildcard != object->end() && wildcard->is_boolean() && wildcard->get<bool>();
    return result;
}

result<challenge> parse_challenge(std::string_view text)
{
    auto object = internal::parse_object(text, "challenge");
    if (!object) {
        return object.error();
    }
    return challenge_from_json(*object);
}

std::vector<std::string> alternate_links(const std::vector<std::string>& link_headers)
{
    std::vector<std::string> urls;
    for (const auto& field : link_headers) {
        collect_alternates(field, urls);
    }
    return urls;
}

std::optional<std::chrono::seconds> parse_retry_after(std::string_view value,
                                                      std::chrono::system_clock::time_point now)
{
    value = trim(value);
    if (value.empty()) {
        return std::nullopt;
    }
    if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        // More than nine digits is over 31 years: nonsense, and a risk of overflow.
        if (value.size() > 9) {
            return std::nullopt;
        }
        return std::chrono::seconds(std::stol(std::string(value)));
    }
    const auto date = parse_imf_fixdate(value);
    if (!date) {
        return std::nullopt;
    }
    const auto wait = std::chrono::ceil<std::chrono::seconds>(*date - now);
    return std::max(wait, std::chrono::seconds(0));
}

} // namespace gatehouse::acme
