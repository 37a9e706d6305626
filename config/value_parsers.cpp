#include "config/value_parsers.hpp"

#include "config/config_loader.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <array>
#include <charconv>
#include <limits>

namespace gatehouse::config {

namespace {

char to_lower_ascii(char c)
{
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string to_lower(std::string_view text)
{
    std::string lowered(text.size(), '\0');
    std::transform(text.begin(), text.end(), lowered.begin(), to_lower_ascii);
    return lowered;
}

bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

bool is_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool is_base64url_char(char c)
{
    return is_letter(c) || is_digit(c) || c == '-' || c == '_';
}

// Spaces, control characters and DEL, none of which a URL or an email address may hold.
bool has_space_or_control(std::string_view text)
{
    return std::any_of(text.begin(), text.end(),
                       [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; });
}

constexpr std::string_view directory_needs_https =
    "an ACME directory must be an https:// URL (the ACME client speaks only HTTPS to a CA)";

constexpr std::string_view base64url_alphabet =
    "must be base64url: only A-Z, a-z, 0-9, '-' and '_' (base64 has '+' and '/' instead)";

std::string quoted(std::string_view text)
{
    return "\"" + std::string(text) + "\"";
}

// Removes the leading digits of `text` and returns their value; nothing when there are none or
// they overflow.
std::optional<std::uint64_t> take_number(std::string_view& text)
{
    const auto digits = std::find_if_not(text.begin(), text.end(), is_digit) - text.begin();
    std::uint64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + digits, value);
    if (digits == 0 || error != std::errc{}) {
        return std::nullopt;
    }
    text.remove_prefix(end - text.data());
    return value;
}

std::string_view take_letters(std::string_view& text)
{
    const auto letters = std::find_if_not(text.begin(), text.end(), is_letter) - text.begin();
    const std::string_view taken = text.substr(0, letters);
    text.remove_prefix(letters);
    return taken;
}

// `value * factor`, or nothing when it does not fit below `limit`.
std::optional<std::uint64_t> checked_multiply(std::uint64_t value, std::uint64_t factor,
                                              std::uint64_t limit)
{
    if (factor != 0 && value > limit / factor) {
        return std::nullopt;
    }
    return value * factor;
}

struct named_factor {
    std::string_view name;
    std::uint64_t factor;
};

// Largest first: a duration must list its units in this order, each at most once, so "30s1m"
// (almost certainly a typo) is rejected rather than read as 90 seconds.
constexpr std::array<named_factor, 5> duration_units{{
    {"d", 86'400'000},
    {"h", 3'600'000},
    {"m", 60'000},
    {"s", 1'000},
    {"ms", 1},
}};

// KB, MB and GB are decimal (SI); KiB, MiB and GiB are binary.
constexpr std::array<named_factor, 14> size_units{{
    {"", 1},
    {"B", 1},
    {"KiB", 1ULL << 10},
    {"MiB", 1ULL << 20},
    {"GiB", 1ULL << 30},
    {"KB", 1'000},
    {"MB", 1'000'000},
    {"GB", 1'000'000'000},
    {"kib", 1ULL << 10},
    {"mib", 1ULL << 20},
    {"gib", 1ULL << 30},
    {"kb", 1'000},
    {"mb", 1'000'000},
    {"gb", 1'000'000'000},
}};

template <std::size_t Size>
const named_factor* find_unit(const std::array<named_factor, Size>& units, std::string_view name)
{
    const auto found = std::find_if(units.begin(), units.end(),
                                    [name](const named_factor& unit) { return unit.name == name; });
    return found == units.end() ? nullptr : &*found;
}

// A port of 1 to 5 digits, at least `minimum` and at most 65535.
parse_result<std::uint16_t> parse_port(std::string_view text, unsigned minimum)
{
    const std::string_view original = text;
    const auto value = take_number(text);
    if (!value || !text.empty() || original.size() > 5) {
        return rejection{"invalid port " + quoted(original) + "; expected a number"};
    }
    if (*value < minimum || *value > 65535) {
        return rejection{"port " + std::to_string(*value) + " is out of range " +
                         std::to_string(minimum) + "-65535"};
    }
    return static_cast<std::uint16_t>(*value);
}

bool is_ipv6_literal(std::string_view text)
{
    std::array<std::uint8_t, 16> bytes{};
    return inet_pton(AF_INET6, std::string(text).c_str(), bytes.data()) == 1;
}

// The pieces of "host", "host:port" or "[v6]:port".
struct host_and_port {
    std::string_view host;
    std::optional<std::string_view> port;
    bool bracketed = false;
};

parse_result<host_and_port> split_host_port(std::string_view text)
{
    host_and_port split;
    if (text.starts_with('[')) {
        const auto close = text.find(']');
        if (close == std::string_view::npos) {
            return rejection{"missing ']' after the IPv6 address in " + quoted(text)};
        }
        split.host = text.substr(1, close - 1);
        split.bracketed = true;
        const std::string_view rest = text.substr(close + 1);
        if (!rest.empty() && !rest.starts_with(':')) {
            return rejection{"unexpected " + quoted(rest) + " after ']' in " + quoted(text)};
        }
        if (!rest.empty()) {
            split.port = rest.substr(1);
        }
        return split;
    }

    const auto colon = text.find(':');
    if (colon != text.rfind(':')) {
        return rejection{"an IPv6 address needs brackets, e.g. [::1]:8080; found " + quoted(text)};
    }
    split.host = text.substr(0, colon);
    if (colon != std::string_view::npos) {
        split.port = text.substr(colon + 1);
    }
    return split;
}

// Checks the host part of a listen address or an upstream URL.
std::optional<rejection> check_host(const host_and_port& split, bool allow_underscore)
{
    if (split.bracketed && !is_ipv6_literal(split.host)) {
        return rejection{"invalid IPv6 address " + quoted(split.host)};
    }
    if (!split.bracketed && !is_valid_host_name(split.host, allow_underscore)) {
        return rejection{"invalid host " + quoted(split.host) +
                         "; expected a host name, an IPv4 address or a bracketed IPv6 address"};
    }
    return std::nullopt;
}

bool is_valid_label(std::string_view label, bool allow_underscore)
{
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
        return false;
    }
    return std::all_of(label.begin(), label.end(), [allow_underscore](char c) {
        return is_letter(c) || is_digit(c) || c == '-' || (allow_underscore && c == '_');
    });
}

bool looks_like_ipv4(std::string_view name)
{
    return std::all_of(name.begin(), name.end(), [](char c) { return is_digit(c) || c == '.'; });
}

// The "host[:port]" of an upstream URL; `url` is the whole URL, kept as its text.
parse_result<upstream_url> parse_upstream_authority(std::string_view authority,
                                                    std::string_view url)
{
    const auto split = split_host_port(authority);
    if (!split.ok()) {
        return rejection{split.error()};
    }
    if (auto bad_host = check_host(split.value(), true)) {
        return *bad_host;
    }

    upstream_url upstream{to_lower(split.value().host), 80, std::string(url)};
    if (split.value().port) {
        const auto port = parse_port(*split.value().port, 1);
        if (!port.ok()) {
            return rejection{port.error()};
        }
        upstream.port = port.value();
    }
    return upstream;
}

// The "host[:port]" of an ACME directory URL.
std::optional<rejection> check_directory_authority(std::string_view authority, std::string_view url)
{
    if (authority.find('@') != std::string_view::npos) {
        return rejection{"an ACME directory URL cannot carry a user name or password"};
    }
    if (authority.empty()) {
        return rejection{"missing host in " + quoted(url)};
    }
    const auto split = split_host_port(authority);
    if (!split.ok()) {
        return rejection{split.error()};
    }
    if (auto bad_host = check_host(split.value(), false)) {
        return bad_host;
    }
    if (split.value().port) {
        const auto port = parse_port(*split.value().port, 1);
        if (!port.ok()) {
            return rejection{port.error()};
        }
    }
    return std::nullopt;
}

} // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text)
{
    if (text.empty()) {
        return std::nullopt;
    }

    constexpr auto limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    std::uint64_t total = 0;
    const named_factor* previous_unit = nullptr;
    while (!text.empty()) {
        const auto number = take_number(text);
        const named_factor* unit = find_unit(duration_units, take_letters(text));
        if (!number || unit == nullptr || (previous_unit != nullptr && unit <= previous_unit)) {
            return std::nullopt;
        }
        const auto part = checked_multiply(*number, unit->factor, limit);
        if (!part || *part > limit - total) {
            return std::nullopt;
        }
        total += *part;
        previous_unit = unit;
    }
    return std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(total));
}

std::optional<std::uint64_t> parse_size(std::string_view text)
{
    const auto number = take_number(text);
    const named_factor* unit = find_unit(size_units, text);
    if (!number || unit == nullptr) {
        return std::nullopt;
    }
    return checked_multiply(*number, unit->factor, std::numeric_limits<std::uint64_t>::max());
}

parse_result<listen_address> parse_listen_address(std::string_view text)
{
    const auto split = split_host_port(text);
    if (!split.ok()) {
        return rejection{split.error()};
    }
    if (!split.value().port) {
        return rejection{"missing port in " + quoted(text) +
                         "; write host:port, e.g. \":8080\" or \"127.0.0.1:8080\""};
    }

    // An empty host means every local address, so only a non-empty one is checked.
    if (!split.value().host.empty() || split.value().bracketed) {
        if (auto bad_host = check_host(split.value(), false)) {
            return *bad_host;
        }
    }
    const auto port = parse_port(*split.value().port, 0);
    if (!port.ok()) {
        return rejection{port.error()};
    }
    return listen_address{std::string(split.value().host), port.value(), std::string(text)};
}

parse_result<upstream_url> parse_upstream_url(std::string_view text)
{
    const auto scheme_end = text.find("://");
    if (scheme_end == std::string_view::npos) {
        return rejection{"expected a URL such as http://127.0.0.1:8080, found " + quoted(text)};
    }
    const std::string scheme = to_lower(text.substr(0, scheme_end));
    if (scheme == "https") {
        return rejection{"https upstreams are not supported in this build; use http://"};
    }
    if (scheme != "http") {
        return rejection{"unsupported scheme " + quoted(scheme) + "; upstreams use http://"};
    }

    // An upstream names a server only: the request path is forwarded as received, rewritten
    // solely by strip_prefix.
    const std::string_view rest = text.substr(scheme_end + 3);
    const auto authority_end = std::min(rest.find_first_of("/?#"), rest.size());
    const std::string_view authority = rest.substr(0, authority_end);
    const std::string_view tail = rest.substr(authority_end);
    if (!tail.empty() && tail != "/") {
        return rejection{"an upstream URL cannot have a path, query or fragment; found " +
                         quoted(tail)};
    }
    if (authority.find('@') != std::string_view::npos) {
        return rejection{"an upstream URL cannot carry a user name or password"};
    }
    if (authority.empty()) {
        return rejection{"missing host in " + quoted(text)};
    }
    return parse_upstream_authority(authority, text);
}

parse_result<std::string> parse_route_host(std::string_view text)
{
    std::string host = to_lower(text);
    if (host.ends_with('.')) {
        host.pop_back();
    }
    if (host.empty()) {
        return rejection{"a route needs a host name"};
    }
    if (host.find(':') != std::string::npos) {
        return rejection{"a route host has no port; write " +
                         quoted(text.substr(0, text.find(':'))) +
                         " and let the listener decide the port"};
    }

    const bool wildcard = host.starts_with("*.");
    const std::string_view name = std::string_view(host).substr(wildcard ? 2 : 0);
    if (name.find('*') != std::string_view::npos) {
        return rejection{
            "invalid wildcard " + quoted(text) +
            "; only a leading \"*.\" covering one label is allowed, e.g. *.example.com"};
    }
    if (!is_valid_host_name(name)) {
        return rejection{"invalid host name " + quoted(text) +
                         "; use letters, digits, '-' and '.', or an IPv4 address"};
    }
    return host;
}

parse_result<std::string> parse_path_prefix(std::string_view text)
{
    if (!text.starts_with('/')) {
        return rejection{"must start with '/'; found " + quoted(text)};
    }
    const auto bad = std::find_if(text.begin(), text.end(), [](char c) {
        return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '?' || c == '#';
    });
    if (bad != text.end()) {
        return rejection{quoted(text) + " cannot contain spaces, control characters, '?' or '#'"};
    }
    return std::string(text);
}

parse_result<std::string> parse_acme_directory(std::string_view text)
{
    if (text == "letsencrypt") {
        return std::string(letsencrypt_directory);
    }
    if (text == "letsencrypt-staging") {
        return std::string(letsencrypt_staging_directory);
    }
    const auto scheme_end = text.find("://");
    if (scheme_end == std::string_view::npos) {
        return rejection{"expected letsencrypt, letsencrypt-staging or an https:// URL, found " +
                         quoted(text)};
    }
    if (to_lower(text.substr(0, scheme_end)) != "https") {
        return rejection{std::string(directory_needs_https) + "; found " + quoted(text)};
    }
    if (has_space_or_control(text)) {
        return rejection{quoted(text) + " cannot contain spaces or control characters"};
    }
    if (text.find('#') != std::string_view::npos) {
        return rejection{"an ACME directory URL cannot have a fragment; found " + quoted(text)};
    }

    const std::string_view rest = text.substr(scheme_end + 3);
    const std::string_view authority =
        rest.substr(0, std::min(rest.find_first_of("/?"), rest.size()));
    if (auto bad = check_directory_authority(authority, text)) {
        return *bad;
    }
    return std::string(text);
}

parse_result<std::string> parse_email_address(std::string_view text)
{
    if (text.starts_with("mailto:")) {
        return rejection{"write the address without \"mailto:\"; gatehouse adds it"};
    }
    if (has_space_or_control(text)) {
        return rejection{"an email address cannot contain spaces or control characters"};
    }
    const auto at = text.find('@');
    const bool one_at = at != std::string_view::npos && at == text.rfind('@');
    if (!one_at || at == 0 || !is_valid_host_name(text.substr(at + 1))) {
        return rejection{"expected an email address such as ops@example.com, found " +
                         quoted(text)};
    }
    return std::string(text);
}

parse_result<acme_key_type> parse_acme_key_type(std::string_view text)
{
    if (text == "ecdsa-p256") {
        return acme_key_type::ecdsa_p256;
    }
    if (text == "ecdsa-p384") {
        return acme_key_type::ecdsa_p384;
    }
    if (text == "rsa2048") {
        return acme_key_type::rsa2048;
    }
    if (text == "rsa4096") {
        return acme_key_type::rsa4096;
    }
    return rejection{"unknown key type " + quoted(text) +
                     "; expected ecdsa-p256, ecdsa-p384, rsa2048 or rsa4096"};
}

parse_result<double> parse_percentage(std::string_view text)
{
    const std::string_view original = text;
    const bool has_percent_sign = text.ends_with('%');
    if (has_percent_sign) {
        text.remove_suffix(1);
    }

    // from_chars alone would also take exponents, so the shape is checked first.
    const auto dot = text.find('.');
    const std::string_view whole = text.substr(0, dot);
    const std::string_view decimals =
        dot == std::string_view::npos ? std::string_view("0") : text.substr(dot + 1);
    const auto all_digits = [](std::string_view part) {
        return !part.empty() && std::all_of(part.begin(), part.end(), is_digit);
    };
    double value = 0;
    if (!has_percent_sign || !all_digits(whole) || !all_digits(decimals) ||
        std::from_chars(text.data(), text.data() + text.size(), value, std::chars_format::fixed)
                .ec != std::errc{}) {
        return rejection{"expected a percentage such as 33% or 12.5%, found " + quoted(original)};
    }
    if (value < 1 || value > 99) {
        return rejection{"must be from 1% to 99%, found " + quoted(original)};
    }
    return value / 100;
}

parse_result<std::string> parse_base64url_secret(std::string_view text)
{
    if (text.empty()) {
        return rejection{"cannot be empty"};
    }
    if (text.find('=') != std::string_view::npos) {
        return rejection{"must be base64url without '=' padding; remove the trailing '='"};
    }
    if (!std::all_of(text.begin(), text.end(), is_base64url_char)) {
        return rejection{std::string(base64url_alphabet)};
    }

    // Four characters carry three bytes; a lone character left over carries none.
    if (text.size() % 4 == 1) {
        return rejection{"is not valid base64url: its length cannot encode whole bytes"};
    }
    return std::string(text);
}

parse_result<std::string> parse_acme_dns_name(std::string_view text)
{
    std::string name = to_lower(text);
    if (name.ends_with('.')) {
        name.pop_back();
    }
    if (name.find('*') != std::string::npos) {
        return rejection{std::string(acme_wildcard_rejection)};
    }
    if (looks_like_ipv4(name) || !is_valid_host_name(name)) {
        return rejection{"invalid DNS name " + quoted(text) +
                         "; use letters, digits, '-' and '.' (no IP addresses or ports)"};
    }
    return name;
}

bool is_valid_host_name(std::string_view name, bool allow_underscore)
{
    if (name.ends_with('.')) {
        name.remove_suffix(1);
    }
    if (name.empty() || name.size() > 253) {
        return false;
    }

    // All digits and dots can only be an IPv4 address; "999.1.1.1" is not a name.
    if (looks_like_ipv4(name)) {
        std::array<std::uint8_t, 4> bytes{};
        return inet_pton(AF_INET, std::string(name).c_str(), bytes.data()) == 1;
    }

    for (std::size_t start = 0;;) {
        const auto dot = name.find('.', start);
        if (!is_valid_label(name.substr(start, dot - start), allow_underscore)) {
            return false;
        }
        if (dot == std::string_view::npos) {
            return true;
        }
        start = dot + 1;
    }
}

} // namespace gatehouse::config
