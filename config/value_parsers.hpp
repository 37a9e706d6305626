// Parsers for the single values a configuration file holds: listen addresses, upstream URLs,
// route hosts, path prefixes, networks, and the values of the acme section.
//
// They know nothing of YAML. Each takes the text as written and returns either the value or a
// message saying what is wrong with it, phrased to follow "file:line:col: key.path: ". The
// loader attaches the position; tests call these directly. All are pure and thread-safe.
#pragma once

#include "config/config.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace gatehouse::config {

// Why a piece of text was not accepted.
struct rejection {
    std::string message;
};

// Either a parsed value or the reason it could not be parsed.
template <typename T>
class parse_result {
public:
    parse_result(T value) : value_(std::move(value)) {}
    parse_result(rejection why) : error_(std::move(why.message)) {}

    bool ok() const noexcept { return value_.has_value(); }

    // Only valid when ok().
    const T& value() const { return *value_; }

    // Only meaningful when !ok().
    const std::string& error() const noexcept { return error_; }

private:
    std::optional<T> value_;
    std::string error_;
};

// "host:port", where host is empty (every address), an IPv4 address, a bracketed IPv6 address
// or a host name. The port is required; 0 asks the kernel for a free port, which tests use.
// The stored host has no brackets.
parse_result<listen_address> parse_listen_address(std::string_view text);

// "http://host:port" or "http://host" (port 80), optionally followed by a single "/". Anything
// else is rejected: other schemes, userinfo, paths, queries, fragments and port 0. The host is
// stored lower-cased and without brackets.
parse_result<upstream_url> parse_upstream_url(std::string_view text);

// A route's host: a DNS name or IPv4 address, or "*." followed by one. Returned lower-cased
// without a trailing dot, the form proxy::route_table matches against.
parse_result<std::string> parse_route_host(std::string_view text);

// A request path prefix or the health path: starts with '/', and holds no whitespace, control
// characters, '?' or '#', which can never be part of a request path.
parse_result<std::string> parse_path_prefix(std::string_view text);

// "a.b.c.d/n", "v6::addr/n" or a bare address (a single host). Host bits below the prefix must be
// zero, so a typo does not silently widen or narrow the network.
parse_result<ip_network> parse_ip_network(std::string_view text);

// The 16-byte form of a textual IPv4 (as ::ffff:a.b.c.d) or IPv6 address; nothing when the text
// is neither. No brackets, zone ids or ports.
std::optional<std::array<std::uint8_t, 16>> parse_ip_address(std::string_view text);

// An ACME directory: "letsencrypt", "letsencrypt-staging", or an https:// URL with a host, an
// optional port from 1 to 65535, and optionally a path and query. Names become their URLs; a
// URL is returned as written. Other schemes (http:// too: the ACME client speaks only HTTPS to
// a CA), user names, fragments, spaces and control characters are rejected.
parse_result<std::string> parse_acme_directory(std::string_view text);

// The URL behind "letsencrypt", the default directory.
inline constexpr std::string_view letsencrypt_directory =
    "https://acme-v02.api.letsencrypt.org/directory";

// The URL behind "letsencrypt-staging", for tests against untrusted certificates.
inline constexpr std::string_view letsencrypt_staging_directory =
    "https://acme-staging-v02.api.letsencrypt.org/directory";

// An ACME account's contact: one '@' with a local part before it and a host name after it, and
// no spaces or control characters. "mailto:" is not written; the ACME client adds it. Returned
// as written.
parse_result<std::string> parse_email_address(std::string_view text);

// ecdsa-p256, ecdsa-p384, rsa2048 or rsa4096.
parse_result<acme_key_type> parse_acme_key_type(std::string_view text);

// A percentage from 1% to 99%, such as "33%" or "12.5%": digits, optionally '.' and more
// digits, then '%'. Returned as a fraction (0.125 for "12.5%").
parse_result<double> parse_percentage(std::string_view text);

// A secret in base64url without padding (RFC 4648 section 5), such as an EAB MAC key: not
// empty, only A-Z, a-z, 0-9, '-' and '_', and a length that encodes whole bytes. Returned as
// written. The rejection never quotes the text, so the secret stays out of logs.
parse_result<std::string> parse_base64url_secret(std::string_view text);

// Why no wildcard can have a certificate from an ACME CA: gatehouse answers only HTTP-01
// challenges, and a CA validates a wildcard through DNS alone (RFC 8555 section 8.4).
inline constexpr std::string_view acme_wildcard_rejection =
    "HTTP-01 cannot validate wildcard names; use tls: internal or tls: {cert, key}";

// A DNS name for a certificate from an ACME CA: a host name as is_valid_host_name accepts it,
// but neither an IP address nor a wildcard (HTTP-01 cannot validate wildcards). Returned
// lower-cased without a trailing dot.
parse_result<std::string> parse_acme_dns_name(std::string_view text);

// True for a DNS name (letters, digits and '-' in labels of 1 to 63 characters, no label
// starting or ending with '-', 253 characters at most) or a valid dotted IPv4 address. A
// trailing dot is allowed. `allow_underscore` admits '_' in labels, which container DNS names
// use even though RFC 1123 does not.
bool is_valid_host_name(std::string_view name, bool allow_underscore = false);

} // namespace gatehouse::config
