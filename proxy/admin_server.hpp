// The admin listener: liveness, readiness, status and metrics for operators and probes.
//
// It runs on the server's main thread, apart from the workers, so a saturated proxy still
// answers its probes. Bind it to loopback (the default) or to a pod address that no Service
// exposes: /status reveals the routes and upstreams. Internal to proxy/: it exposes Asio.
#pragma once

#include "proxy/net.hpp"
#include "proxy/proxy_settings.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace gatehouse::store {
class store;
}

namespace gatehouse::proxy {

class certificate_manager;

// What the admin listener reports. Owned by the server; read and written on the main thread,
// except the two flags, which workers may read.
struct server_status {
    std::atomic<bool> listeners_up{false};
    std::atomic<bool> draining{false};

    std::chrono::system_clock::time_point started_at = std::chrono::system_clock::now();
    std::string config_path;
    unsigned threads = 0;
    std::shared_ptr<const proxy_settings> settings;

    // The certificates behind the HTTPS listener, and the store they are kept in; null
    // without one.
    const certificate_manager* certificates = nullptr;
    const store::store* store = nullptr;

    // The outcome of the most recent SIGHUP reload, if any.
    std::string last_reload_at;
    std::string last_reload_error;

    bool ready() const { return listeners_up.load() && !draining.load(); }
};

class admin_server {
public:
    admin_server(asio::io_context& context, server_status& status);

    // Binds and starts accepting. Throws std::system_error when the address cannot be bound.
    void start(const config::listen_address& address);

    // Closes the listener; connections in progress finish their current answer.
    void stop();

private:
    task<void> accept_loop();
    task<void> serve(tcp_socket socket);

    asio::io_context& context_;
    server_status& status_;
    tcp_acceptor acceptor_;
};

// The JSON document served at /status. Exposed for tests.
std::string render_status_json(const server_status& status);

} // namespace gatehouse::proxy
