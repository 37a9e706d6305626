#include "store/keys.hpp"

#include <cstdint>
#include <cstdio>

namespace gatehouse::store::keys {

namespace {

// Keeps the readable part of an account key well inside a key segment's 200 characters.
constexpr std::size_t max_account_host_chars = 120;

char to_lower_ascii(char c)
{
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// Lower case without a trailing dot: the form config::parse_route_host produces, so a route's
// host and its certificate's key always agree.
std::string normalize_name(std::string_view name)
{
    if (name.ends_with('.')) {
        name.remove_suffix(1);
    }
    std::string normalized;
    normalized.reserve(name.size());
    for (char c : name) {
        normalized.push_back(to_lower_ascii(c));
    }
    return normalized;
}

// FNV-1a, 64 bits: stable across builds and platforms, which std::hash is not.
std::uint64_t fnv1a_64(std::string_view text)
{
    std::uint64_t hash = 14695981039346656037ULL;
    for (char c : text) {
        hash ^= static_cast<unsigned char>(c);
        hash *= 1099511628211ULL;
    }
    return hash;
}

bool is_readable_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == ':';
}

// The host[:port] of a URL such as "https://user@Host:14000/dir?x": "host:14000".
std::string_view url_authority(std::string_view url)
{
    if (const auto scheme_end = url.find("://"); scheme_end != std::string_view::npos) {
        url.remove_prefix(scheme_end + 3);
    }
    url = url.substr(0, url.find_first_of("/?#"));
    if (const auto at = url.rfind('@'); at != std::string_view::npos) {
        url.remove_prefix(at + 1);
    }
    return url;
}

std::string readable_host(std::string_view directory_url)
{
    std::string host;
    for (char c : url_authority(directory_url).substr(0, max_account_host_chars)) {
        const char lowered = to_lower_ascii(c);
        host.push_back(is_readable_char(lowered) ? lowered : '-');
    }
    // A segment may not start with '.', and an empty one is no segment at all.
    if (host.empty() || host.front() == '.') {
        host.insert(host.begin(), '-');
    }
    return host;
}

} // namespace

std::string certificate(std::string_view name)
{
    return certificates_prefix() + normalize_name(name);
}

std::string certificates_prefix()
{
    return "certificates/";
}

std::string internal_ca()
{
    return "ca/internal";
}

std::string account(std::string_view directory_url)
{
    if (directory_url.ends_with('/')) {
        directory_url.remove_suffix(1);
    }
    char hash[17];
    std::snprintf(hash, sizeof hash, "%016llx",
                  static_cast<unsigned long long>(fnv1a_64(directory_url)));
    return "accounts/" + readable_host(directory_url) + "-" + hash;
}

std::string accounts_prefix()
{
    return "accounts/";
}

std::string challenge_token(std::string_view token)
{
    return challenges_prefix() + std::string(token);
}

std::string challenges_prefix()
{
    return "challenges/";
}

std::string lock_for_certificate(std::string_view name)
{
    return certificate(name);
}

std::string lock_for_account(std::string_view directory_url)
{
    return account(directory_url);
}

std::string lock_for_internal_ca()
{
    return internal_ca();
}

} // namespace gatehouse::store::keys
