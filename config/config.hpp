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

// Where a route's certificate comes from.
enum class tls_source {
    // Plain HTTP only: no certificate, no redirect.
    off = 1,
    // gatehouse's own local CA issues and renews a short-lived certificate for the host.
    internal,
    // A certificate chain and key kept by the operator in two PEM files, watched for changes.
    files,
    // An ACME CA (RFC 8555) such as Let's Encrypt issues it, validating each name with an
    // HTTP-01 challenge (section 8.3) answered on the plain-HTTP listener; see acme_settings.
    // Never for a wildcard host, which HTTP-01 cannot validate.
    acme,
};

struct route_tls {
    tls_source source = tls_source::off;

    // For tls_source::files: absolute paths (relative ones are resolved against the
    // configuration file's folder by the loader).
    std::string certificate_file;
    std::string key_file;

    // For tls_source::acme only: DNS names the route's certificate covers besides the route's
    // host, lower-cased without a trailing dot. None is a wildcard or the route's host, and no
    // name is on two routes' certificates or is another route's host.
    std::vector<std::string> extra_names;
};

// HTTP Strict Transport Security (RFC 6797), sent on HTTPS responses only.
struct hsts_policy {
    bool enabled = false;
    std::chrono::seconds max_age{std::chrono::hours(24 * 365)};
    bool include_subdomains = false;
    bool preload = false;
};

// Every request whose host matches `host` is routed by the longest matching path prefix.
struct route {
    // Lower case. Either an exact name ("app.example.com") or a wildcard covering exactly one
    // label ("*.example.com" matches "a.example.com" but neither "example.com" nor
    // "a.b.example.com").
    std::string host;

    std::vector<path_route> paths;

    struct route_tls tls;

    // When the route has TLS, plain-HTTP requests for it are answered with a 308 redirect to
    // the same URL over HTTPS (the health path and ACME challenges excepted).
    bool redirect_http = true;

    struct hsts_policy hsts;
};

// What the TLS listener does when a client names a host we hold no certificate for, or names
// none at all.
enum class unknown_sni_action {
    // Abort the handshake with an unrecognized_name alert (RFC 6066 section 3).
    reject = 1,
    // Serve the certificate of `tls_settings::default_certificate`.
    serve_default,
};

struct tls_settings {
    unknown_sni_action unknown_sni = unknown_sni_action::reject;

    // The host of a route with TLS whose certificate answers unknown or missing SNI; required
    // when unknown_sni is serve_default.
    std::string default_certificate;

    // 2 for TLS 1.2, 3 for TLS 1.3. Older versions are never offered.
    int min_version = 2;

    // Stateless session resumption (RFC 8446 section 4.6.1, RFC 5077) with keys that rotate.
    bool session_tickets = true;

    // Lifetime of the certificates the internal CA issues; each is renewed once a third of it
    // remains.
    std::chrono::seconds internal_certificate_lifetime{std::chrono::hours(24 * 7)};
};

// The key type of certificates obtained from an ACME CA.
enum class acme_key_type {
    ecdsa_p256 = 1,
    ecdsa_p384,
    rsa2048,
    rsa4096,
};

// The credentials of an External Account Binding (RFC 8555 section 7.3.4), which some CAs
// require to tie a new ACME account to an account the operator holds with them.
struct external_account_binding_settings {
    std::string key_id;

    // The MAC key exactly as the CA gave it: non-empty base64url without padding. A secret: it
    // is never logged nor shown in an error message.
    std::string hmac_key;
};

// How certificates for routes with tls_source::acme are obtained and renewed. Applies to all of
// them; gatehouse keeps one ACME account per directory.
struct acme_settings {
    // The account's contact address, sent as a "mailto:" URL; empty means none. Stored as
    // written.
    std::string email;

    // Directory URLs (RFC 8555 section 7.1.1), all https://, without duplicates, never empty.
    // An order is tried with each in turn until one succeeds.
    std::vector<std::string> directories{"https://acme-v02.api.letsencrypt.org/directory"};

    // Certificates trusted for HTTPS to the CA in addition to the system's, e.g. a private CA's
    // root. An absolute path after loading; empty means the system's trust store alone.
    std::string ca_bundle_file;

    std::optional<external_account_binding_settings> eab;

    // The key type of certificates; the account key is always ECDSA P-256 (ES256).
    acme_key_type key_type = acme_key_type::ecdsa_p256;

    // Renew once the remaining lifetime falls below this share of the whole lifetime, or below
    // renew_before when that is set (then the share is not used). The share lies in [0.01, 0.99].
    double renew_remaining_fraction = 1.0 / 3.0;
    std::optional<std::chrono::seconds> renew_before;

    // How often every ACME certificate is checked for renewal; at least one second.
    std::chrono::seconds check_every{std::chrono::minutes(10)};

    // A failed attempt is retried after retry_min, each further failure doubling the wait up
    // to retry_max. retry_min is at least one second and retry_max at least retry_min.
    std::chrono::seconds retry_min{std::chrono::minutes(1)};
    std::chrono::seconds retry_max{std::chrono::hours(6)};

    // Orders sent per minute across all certificates, at least 1: a local cap so a burst of
    // routes or failures stays well inside the CA's own rate limits.
    unsigned orders_per_minute = 10;

    // The common name of the root (the issuer of the chain's last certificate) to prefer when
    // the CA offers alternate chains (RFC 8555 section 7.4.2), as Let's Encrypt did for its
    // cross-signed roots. Empty: serve the CA's default chain.
    std::string preferred_chain;

    // The time to live of the store lock an order holds (proxy/acme_worker.cpp): an instance
    // that dies mid-order frees the certificate after this, and one cut off from the store
    // gives up at two thirds of it. The deadlines of requests to the CA shrink with it, so that
    // a holder that gave up has heard the last of the CA before the lock can pass on. At least
    // min_order_lock_ttl.
    std::chrono::seconds order_lock_ttl{150};
};

// Below this the CA deadlines derived from acme_settings::order_lock_ttl (a thirtieth of it
// to connect, two fifteenths to answer) would leave a request under a second, too little even
// for a CA on the local network.
inline constexpr std::chrono::seconds min_order_lock_ttl{6};

// Where certificates, keys and the internal CA are kept.
// An etcd cluster that holds the store instead of a folder (store/etcd_store.hpp), so that many
// instances share it.
struct etcd_store_settings {
    // Client URLs of the members, "http://host:port" or "https://host:port" without a path, in
    // the order tried; never empty, without duplicates.
    std::vector<std::string> endpoints;

    // Every key lives below this; it starts and ends with '/'.
    std::string prefix = "/gatehouse/";

    // For https:// endpoints: the CA bundle the members' certificates chain to, and a client
    // certificate and key for mutual TLS (both or neither). Absolute after loading, readable
    // when loaded; empty when not set.
    std::string ca_file;
    std::string certificate_file;
    std::string key_file;

    // etcd's own authentication; empty username means none. The password, set only with a
    // username, is a secret: it is never logged nor shown in an error message.
    std::string username;
    std::string password;

    // A local copy of what this instance read from and wrote to etcd (store/caching_store.hpp),
    // so it starts and serves its last known certificates while etcd is out of reach. Absolute
    // after loading; empty turns the copy off, and then gatehouse refuses to start without etcd.
    std::string cache_dir = "/var/lib/gatehouse/etcd-cache";
};

struct store_settings {
    // The file store's folder (absolute after loading). Not used when etcd is set.
    std::string file_directory = "/var/lib/gatehouse";

    // When set, the store lives in this etcd cluster rather than in file_directory.
    std::optional<etcd_store_settings> etcd;

    // The key ring that seals private keys at rest in whichever backend is used
    // (store/encrypted_store.hpp): absolute after loading, and readable when loaded; empty means
    // values are stored as they are.
    std::string encryption_key_file;
};

// A program gatehouse runs after a certificate is obtained or renewed (proxy/certificate_hook.hpp
// runs it), to copy it to where something else reads it, say.
struct certificate_hook_settings {
    // The program and its arguments, run as they are, without a shell; never empty. The first
    // is an absolute path or a program name, looked up in PATH when the hook runs.
    std::vector<std::string> command;

    // How long one run may take before its process group is killed; at least one second.
    std::chrono::seconds timeout{std::chrono::seconds(60)};
};

// Programs run when something happens to a certificate; each is optional.
struct hook_settings {
    std::optional<certificate_hook_settings> certificate_updated;
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

    // The TLS listener; routes with tls other than off are served here. Absent means no TLS.
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

    struct tls_settings tls;
    struct acme_settings acme;
    struct store_settings store;
    struct hook_settings hooks;

    std::vector<route> routes;

    // The file this configuration was read from, or the name given to parse_config.
    std::string source_file;
};

} // namespace gatehouse::config
