// The certificates the TLS listener serves, and how a handshake picks one by SNI.
//
// A tls_table is an immutable snapshot: built once from certificates and TLS settings, then
// shared by pointer. When a certificate changes, a new table is built and handed to every
// worker, whose next handshakes use it; handshakes already running keep the table they started
// with. A handshake therefore reads only data nobody writes, and takes no lock.
//
// This header needs OpenSSL's types only, not Asio, so tests and the certificate manager can
// use it cheaply.
#pragma once

#include "config/config.hpp"

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <openssl/ssl.h>

namespace gatehouse::proxy {

// One certificate chain and its private key, as PEM, and the hosts it is served for.
struct certificate_material {
    // Route hosts, lower case: exact names or one-label wildcards ("*.example.com").
    std::vector<std::string> hosts;

    // Leaf first, then intermediates.
    std::string chain_pem;

    // Never logged, never copied into error messages.
    std::string private_key_pem;
};

// Keys for session tickets (RFC 5077, RFC 8446 section 4.6.1). The first key encrypts new
// tickets; every key decrypts, so tickets issued before a rotation still resume.
struct ticket_key {
    std::array<unsigned char, 16> name{};
    std::array<unsigned char, 32> aes_key{};
    std::array<unsigned char, 32> hmac_key{};
};

// Makes a fresh random key. Throws std::runtime_error when the random generator fails.
ticket_key make_ticket_key();

struct tls_policy {
    // 2 for TLS 1.2, 3 for TLS 1.3.
    int min_version = 2;
    bool session_tickets = true;
    config::unknown_sni_action unknown_sni = config::unknown_sni_action::reject;

    // The host whose certificate answers unknown or missing SNI, with serve_default.
    std::string default_host;
};

class tls_table {
public:
    // Builds one OpenSSL context per certificate, plus the base context every connection
    // starts with. Throws std::runtime_error naming the failing OpenSSL call and the hosts
    // when a chain or key does not parse, or the key does not match the certificate; the
    // message never contains key material.
    tls_table(const tls_policy& policy, const std::vector<certificate_material>& certificates,
              std::vector<ticket_key> ticket_keys);
    ~tls_table();

    tls_table(const tls_table&) = delete;
    tls_table& operator=(const tls_table&) = delete;

    // The context a new connection's SSL object is made from: the default certificate's, or
    // the first certificate's. Its SNI callback switches the connection to the chosen
    // certificate's context when that is another one.
    SSL_CTX* base_context() const noexcept { return start_context_; }

    // Ties `ssl` to this table for the SNI and ticket callbacks. The caller keeps the table
    // alive until the handshake has finished.
    void attach(SSL* ssl) const;

    // Unties `ssl` from any table once its handshake is over, so that a table released later
    // is never reached from a callback; the callbacks then treat the connection as tableless.
    static void detach(SSL* ssl);

    // The context whose certificate answers `server_name`: exact host, then a one-label
    // wildcard, then the default when the policy has one. Null means "refuse the handshake".
    // An empty name (no SNI) goes straight to the default.
    SSL_CTX* select(std::string_view server_name) const;

    std::size_t certificate_count() const noexcept { return contexts_.size(); }
    const std::vector<ticket_key>& ticket_keys() const noexcept { return ticket_keys_; }
    bool session_tickets() const noexcept { return session_tickets_; }

private:
    struct ctx_deleter {
        void operator()(SSL_CTX* context) const { SSL_CTX_free(context); }
    };
    using ctx_ptr = std::unique_ptr<SSL_CTX, ctx_deleter>;

    // A context with no certificate, for a table that has none.
    ctx_ptr base_;
    std::vector<ctx_ptr> contexts_;
    SSL_CTX* start_context_ = nullptr;
    std::unordered_map<std::string, SSL_CTX*> exact_;
    // Keyed by the suffix after "*", e.g. ".example.com".
    std::unordered_map<std::string, SSL_CTX*> wildcard_;
    SSL_CTX* default_ = nullptr;
    std::vector<ticket_key> ticket_keys_;
    bool session_tickets_ = true;
};

} // namespace gatehouse::proxy
