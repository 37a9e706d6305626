// Keeps a certificate for every route with TLS and hands the TLS listener a fresh tls_table
// whenever one changes.
//
// Where a certificate comes from depends on the route:
// - tls: internal. gatehouse's own CA, created on first start and kept in the store, issues a
//   short-lived certificate for the route's host; it is stored, and renewed once two thirds
//   of its lifetime have passed. A bundle that another instance or an operator puts in the
//   store for the host is picked up and served as it is, as long as it is valid for the host.
// - tls: acme. An ACME CA (Let's Encrypt by default) issues a certificate for the route's host
//   and extra names; the acme_worker orders it on its own thread, answering http-01 through the
//   store and the challenge responder, and it is renewed once the configured share of its
//   lifetime remains, or when the CA's renewal window (ARI) says. Until the first one arrives,
//   handshakes for the name fail; a failed renewal keeps the old one.
// - tls: {cert, key}. Two PEM files kept by the operator, checked every second; a change is
//   loaded when the pair parses and the key matches, and otherwise logged while the previous
//   pair keeps serving.
//
// A failed issue, renewal or reload never removes a certificate that is serving: it is logged,
// counted, shown on /status, and tried again later with a growing delay.
//
// The manager runs on a thread of its own and never blocks a worker. Its public members are
// thread-safe.
#pragma once

#include "config/config.hpp"
#include "proxy/tls_table.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gatehouse::store {
class store;
}

namespace gatehouse::proxy {

// One certificate as /status shows it.
struct certificate_status {
    // The route host the certificate serves.
    std::string host;
    // "internal", "acme" or "files".
    std::string source;

    // For acme: the directory URL of the CA in use.
    std::string ca;

    // Empty until a certificate has been loaded.
    std::vector<std::string> names;
    std::string issuer;
    std::string serial;
    std::chrono::system_clock::time_point not_before{};
    std::chrono::system_clock::time_point not_after{};

    // When it will be replaced; unset for files, which the operator renews.
    std::optional<std::chrono::system_clock::time_point> renew_at;

    // The last failure to obtain or reload it, cleared by the next success, and how many
    // attempts in a row have failed.
    std::string last_error;
    unsigned failed_attempts = 0;
    std::optional<std::chrono::system_clock::time_point> next_attempt;
};

class challenge_responder;

class certificate_manager {
public:
    // Receives every new table, on the manager's thread (or the caller's, during start).
    using publish_function = std::function<void(std::shared_ptr<const tls_table>)>;

    // `store` must outlive the manager, and so must `challenges` when given: it receives the
    // http-01 answers of every instance sharing the store.
    certificate_manager(store::store& store, publish_function publish,
                        challenge_responder* challenges = nullptr);
    ~certificate_manager();

    certificate_manager(const certificate_manager&) = delete;
    certificate_manager& operator=(const certificate_manager&) = delete;

    // Loads or issues a certificate for every TLS route of `config`, publishes the first table
    // and starts the background thread. Throws std::runtime_error, naming the host and the
    // cause, when a certificate cannot be had at all: at start there is nothing older to serve,
    // and failing loudly beats serving handshake errors. Call once.
    void start(std::shared_ptr<const config::gatehouse_config> config);

    // Takes a reloaded configuration: certificates for new hosts are obtained, removed hosts are
    // dropped, and the table is republished, on the manager's thread. Thread-safe.
    void apply(std::shared_ptr<const config::gatehouse_config> config);

    // A copy of every certificate's state, for /status. Thread-safe.
    std::vector<certificate_status> status() const;

    // The internal CA's certificate as PEM, empty when no route uses it yet. Thread-safe.
    std::string internal_ca_pem() const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// Loads the internal CA from `store`, creating and storing it first when there is none, under a
// store lock so that instances sharing a store agree on one CA. Returns the CA certificate and
// key as PEM. Throws std::runtime_error when the store cannot be read or written. Used by the
// manager and by `gatehouse trust`.
struct internal_ca_pem {
    std::string certificate_pem;
    std::string private_key_pem;
};
internal_ca_pem load_or_create_internal_ca(store::store& store);

} // namespace gatehouse::proxy
