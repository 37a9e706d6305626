// One worker thread: its own io_context, its share of the client connections, and its own
// upstream pools and health state. Nothing on the request path is shared between workers
// except the immutable settings and relaxed counters, so requests take no locks.
// Internal to proxy/: it exposes Asio.
#pragma once

#include "proxy/challenge_responder.hpp"
#include "proxy/net.hpp"
#include "proxy/proxy_settings.hpp"
#include "proxy/relay_buffers.hpp"
#include "proxy/tls_table.hpp"
#include "proxy/upstream_pool.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <boost/asio/ssl/context.hpp>

namespace gatehouse::proxy {

class http_session;

// Counters and flags shared by every worker of one server.
struct shared_server_state {
    std::atomic<std::int64_t> open_connections{0};
    std::atomic<std::uint64_t> next_connection_id{1};

    // Steady-clock seconds of the last "connection limit reached" warning, so a flood of
    // refused connections costs one log line per interval, not one per connection.
    std::atomic<std::int64_t> last_limit_warning{-1'000'000};

    // The ACME http-01 answers the plain-HTTP listener serves.
    challenge_responder challenges;
};

class worker {
public:
    worker(unsigned index, std::shared_ptr<const proxy_settings> settings,
           shared_server_state& shared);
    ~worker();

    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    // Accepts on a duplicate of `listening_fd`, a socket the server has bound and is listening
    // on. Every worker accepts from the same socket; the kernel hands each connection to one.
    // Connections on a `tls` listener start with a handshake using the current certificates.
    void listen_on(int listening_fd, const tcp& protocol, bool tls);

    // Starts the thread. Call once, after listen_on.
    void start();

    // Thread-safe: new requests on this worker use `settings` from now on.
    void apply_settings(std::shared_ptr<const proxy_settings> settings);

    // Thread-safe: new TLS handshakes on this worker pick certificates from `certificates`
    // from now on; connections already open keep theirs. Until the first call, TLS
    // connections are refused.
    void apply_certificates(std::shared_ptr<const tls_table> certificates);

    // Thread-safe: stop accepting, close idle connections, and let the others finish their
    // current request and close.
    void begin_drain();

    // Thread-safe: stops the event loop and joins the thread. Connections still open are cut.
    void stop();

    // Connections this worker is serving now. Thread-safe.
    std::int64_t open_sessions() const noexcept { return open_sessions_.load(); }

    // --- For sessions, on this worker's thread only. ---

    const std::shared_ptr<const proxy_settings>& settings() const noexcept { return settings_; }
    upstream_pool& pool_for(const config::upstream_url& upstream);
    bool draining() const noexcept { return draining_; }
    void add_session(http_session* session);
    void remove_session(http_session* session);
    shared_server_state& shared() noexcept { return shared_; }
    asio::io_context& context() noexcept { return context_; }
    relay_buffers& buffers() noexcept { return buffers_; }

private:
    task<void> accept_loop(tcp_acceptor& acceptor, bool tls);
    void start_session(tcp_socket socket, const tcp::endpoint& peer, bool tls);
    task<void> refuse_connection(tcp_socket socket);
    task<void> sweep_idle_upstreams();
    void warn_connection_limit(std::size_t limit);

    // Declaration order is destruction order in reverse: the io_context must outlive the
    // pools whose sockets it serves, and the session registry must outlive the io_context,
    // whose destruction ends the coroutines (and so the sessions) still pending.
    unsigned index_;
    shared_server_state& shared_;
    std::unordered_set<http_session*> sessions_;
    std::atomic<std::int64_t> open_sessions_{0};
    std::shared_ptr<const proxy_settings> settings_;
    bool draining_ = false;
    relay_buffers buffers_;

    // The current certificates and the Asio context wrapping their base OpenSSL context.
    std::shared_ptr<const tls_table> certificates_;
    std::shared_ptr<asio::ssl::context> tls_context_;

    // One thread runs this context, and only it starts, completes, cancels and closes the
    // socket operations of its connections and pools: other threads reach the worker through
    // post() alone. So the reactor's per-socket lock is left out (the scheduler's stays, for
    // those posts); it cost a lock and an unlock around every read, write and wake-up.
    asio::io_context context_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
    struct listener {
        std::unique_ptr<tcp_acceptor> acceptor;
        bool tls = false;
    };
    std::vector<listener> listeners_;
    std::unordered_map<std::string, std::unique_ptr<upstream_pool>> pools_;
    std::thread thread_;
};

} // namespace gatehouse::proxy
