// Keep-alive connections to one upstream server, owned by one worker thread.
//
// Opening a TCP connection per request would double the work of every proxied request, so
// finished connections wait here for the next request to the same upstream. Each worker keeps
// its own pools, which is why nothing here takes a lock. Internal to proxy/: it exposes Asio.
#pragma once

#include "config/config.hpp"
#include "proxy/net.hpp"
#include "proxy/timed_socket.hpp"
#include "proxy/upstream_health.hpp"

#include <chrono>
#include <deque>
#include <memory>

namespace gatehouse::proxy {

// One TCP connection to an upstream, with the bytes read from it but not yet parsed.
struct upstream_connection {
    explicit upstream_connection(const executor& executor) : stream(executor) {}

    timed_socket stream;
    beast::flat_buffer buffer;

    // True when the connection came out of the pool: the upstream may have closed it in the
    // meantime, so a failure before any response byte is worth one retry on a new connection.
    bool reused = false;

    health_clock::time_point idle_since{};
};

class upstream_pool {
public:
    // How long an idle connection is kept. Below the keep-alive timeouts of common servers
    // (nginx 75 s, Apache 5 s is the outlier) so we rarely reuse one the upstream just closed.
    static constexpr std::chrono::seconds idle_timeout{4};

    // Idle connections kept per upstream and worker; more are closed when returned.
    static constexpr std::size_t max_idle_connections = 64;

    upstream_pool(executor executor, config::upstream_url upstream);

    const config::upstream_url& upstream() const noexcept { return upstream_; }

    upstream_health_state& health() noexcept { return health_; }

    // An idle connection that still looks open, or nullptr. Connections the upstream closed
    // while they were idle are dropped here.
    std::unique_ptr<upstream_connection> take_idle(health_clock::time_point now);

    // Opens a new connection, resolving the upstream's name each time so DNS changes (a
    // Kubernetes Service moving) are followed. Fails with the connect error or timeout.
    task<std::pair<error_code, std::unique_ptr<upstream_connection>>>
    connect(std::chrono::milliseconds timeout);

    // Returns a connection whose last exchange completed cleanly and left no unread bytes.
    void give_back(std::unique_ptr<upstream_connection> connection, health_clock::time_point now);

    // Closes idle connections older than idle_timeout.
    void close_expired(health_clock::time_point now);

private:
    executor executor_;
    config::upstream_url upstream_;
    upstream_health_state health_;

    // Most recently returned at the back: reuse the warmest connection first.
    std::deque<std::unique_ptr<upstream_connection>> idle_;
};

} // namespace gatehouse::proxy
