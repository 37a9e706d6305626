// The configuration model: what gatehouse.yaml says, after it has been parsed and validated.
//
// Everything here is plain data with defaults that match docs/configuration.md. The loader
// (config_loader.hpp) is the only code that builds it from YAML; the rest of the process only
// reads it. A loaded configuration is immutable and shared by pointer, so a reload swaps the
// whole thing at once.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::config {

// A host and port to listen on. An empty host means every local address.
struct listen_address {
    std::string host;
    std::uint16_t port = 0;

    // The address as it was written in the file, for logs and error messages.
    std::string text;
};

// An upstream server, parsed from "http://host:port". Only plain HTTP upstreams exist today.
struct upstream_url {
    std::string host;
    std::uint16_t port = 80;

    // The URL as it was written in the file; it also identifies the upstream in logs and metrics.
    std::string text;
};

// One path prefix inside a route and the upstreams that serve it.
struct path_route {
    std::string prefix = "/";

    // When true the prefix is removed before forwarding; "/api/users" under "/api/" becomes
    // "/users". The forwarded path always keeps a leading slash.
    bool strip_prefix = false;

    // Requests are spread over these round robin; never empty after validation.
    std::vector<upstream_url> upstreams;
};

// Every request whose host matches `host` is routed by the longest matching path prefix.
struct route {
    // Lower case. Either an exact name ("app.example.com") or a wildcard covering exactly one
    // label ("*.example.com" matches "a.example.com" but neither "example.com" nor
    // "a.b.example.com").
    std::string host;

    std::vector<path_route> paths;
};

struct timeouts {
    // From the first byte of a request (or from accept, for the first request) to its last
    // header byte. Slow clients past this are closed.
    std::chrono::milliseconds header_read{std::chrono::seconds(10)};

    // How long a keep-alive connection may wait for its next request, and the longest silence
    // allowed while a body or a WebSocket tunnel is flowing.
    std::chrono::milliseconds idle{std::chrono::seconds(60)};

    std::chrono::milliseconds upstream_connect{std::chrono::seconds(5)};

    // From the last request byte sent upstream to the response header, and the longest silence
    // allowed between two reads of the response body.
    std::chrono::milliseconds upstream_response{std::chrono::seconds(60)};

    // On SIGTERM, how long in-flight requests may run before the process exits anyway.
    std::chrono::milliseconds drain{std::chrono::seconds(30)};
};

struct limits {
    // The whole request header block, request line included. Larger gets 431.
    std::size_t max_header_bytes = 16 * 1024;

    // The request target (path and query). Longer gets 414.
    std::size_t max_uri_bytes = 8 * 1024;

    // The request body; 0 means no limit. Larger gets 413.
    std::uint64_t max_body_bytes = 0;

    // Client connections open at once across all threads. Past it, new connections get a 503
    // and are closed.
    std::size_t max_connections = 10000;
};

// Passive health checking: an upstream that fails `max_fails` times in a row is left out of
// rotation for `cooldown`.
struct upstream_health {
    unsigned max_fails = 1;
    std::chrono::milliseconds cooldown{std::chrono::seconds(10)};
};

// An IPv4 or IPv6 network in CIDR notation. IPv4 networks are stored as IPv4-mapped IPv6
// addresses (::ffff:a.b.c.d) so one comparison covers both families.
struct ip_network {
    std::array<std::uint8_t, 16> address{};

    // Counted over the 16-byte form, so an IPv4 /24 is stored as 96 + 24 = 120.
    unsigned prefix_length = 128;

    // The network as written in the file.
    std::string text;

    // True when `ip` (textual IPv4 or IPv6 address) lies inside this network. An unparsable
    // address is never inside.
    bool contains(std::string_view ip) const;
};

enum class log_format { text, json };

struct log_settings {
    log_format format = log_format::text;

    // One of trace, debug, info, warn, error, critical, off.
    std::string level = "info";

    // One line per request on the "access" logger.
    bool access = true;
};

struct gatehouse_config {
    // The plain-HTTP listener. Always present.
    listen_address http_listener{"", 80, ":80"};

    // The HTTPS listener. TLS termination is not part of this build, so the loader rejects it.
    std::optional<listen_address> https_listener;

    // Health, readiness, status and metrics. Disabled when absent.
    std::optional<listen_address> admin_listener =
        listen_address{"127.0.0.1", 9901, "127.0.0.1:9901"};

    // Answered with 200 on every listener before routing, for load balancer health checks.
    std::string health_path = "/healthz";

    // Worker threads; 0 means one per core.
    unsigned threads = 0;

    struct timeouts timeouts;
    struct limits limits;
    struct upstream_health upstream_health;

    // Peers whose X-Forwarded-For we extend rather than replace.
    std::vector<ip_network> trusted_proxies;

    log_settings log;

    std::vector<route> routes;

    // The file this configuration was read from; empty when parsed from a string.
    std::string source_file;
};

} // namespace gatehouse::config
