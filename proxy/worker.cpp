#include "proxy/worker.hpp"

#include "proxy/http_session.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"
#include "proxy/socket_accept.hpp"

#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

namespace gatehouse::proxy {

namespace {

// How often idle upstream connections past their keep-alive time are closed.
constexpr std::chrono::seconds upstream_sweep_interval{2};

// At most one "connection limit reached" warning per this many seconds.
constexpr std::int64_t limit_warning_interval_s = 10;

constexpr std::string_view over_capacity_response =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Length: 25\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    "server at connection cap\n";

} // namespace

std::string address_text(const asio::ip::address& address)
{
    if (address.is_v6() && address.to_v6().is_v4_mapped()) {
        return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).to_string();
    }
    return address.to_string();
}

std::string endpoint_text(const tcp::endpoint& endpoint)
{
    std::string host = address_text(endpoint.address());
    if (host.find(':') != std::string::npos) {
        host = "[" + host + "]";
    }
    return host + ":" + std::to_string(endpoint.port());
}

worker::worker(unsigned index, std::shared_ptr<const proxy_settings> settings,
               shared_server_state& shared)
    : index_(index), shared_(shared), settings_(std::move(settings))
{}

worker::~worker()
{
    stop();
}

void worker::listen_on(int listening_fd, const tcp& protocol, bool tls)
{
    int own_fd = ::dup(listening_fd);
    if (own_fd < 0) {
        throw std::system_error(errno, std::generic_category(), "dup of listening socket");
    }
    auto acceptor = std::make_unique<tcp_acceptor>(context_);
    acceptor->assign(protocol, own_fd);
    listeners_.push_back({std::move(acceptor), tls});
}

void worker::start()
{
    for (auto& each : listeners_) {
        asio::co_spawn(context_, accept_loop(*each.acceptor, each.tls), asio::detached);
    }
    asio::co_spawn(context_, sweep_idle_upstreams(), asio::detached);
    thread_ = std::thread([this] {
        // A throwing handler must not take the whole process down with an unexplained abort.
        for (;;) {
            try {
                context_.run();
                return;
            } catch (const std::exception& e) {
                log::write(*log::get("proxy"), spdlog::level::err, "worker handler failed",
                           {{"worker", index_}, {"error", e.what()}});
            }
        }
    });
}

void worker::apply_settings(std::shared_ptr<const proxy_settings> settings)
{
    asio::post(context_, [this, settings = std::move(settings)]() mutable {
        settings_ = std::move(settings);
    });
}

void worker::apply_certificates(std::shared_ptr<const tls_table> certificates)
{
    // The Asio wrapper takes a reference of its own on the base context, so either may be
    // released first.
    SSL_CTX* base = certificates->base_context();
    SSL_CTX_up_ref(base);
    auto context = std::make_shared<asio::ssl::context>(base);
    asio::post(context_, [this, certificates = std::move(certificates),
                          context = std::move(context)]() mutable {
        certificates_ = std::move(certificates);
        tls_context_ = std::move(context);
    });
}

void worker::begin_drain()
{
    asio::post(context_, [this] {
        draining_ = true;
        for (auto& each : listeners_) {
            error_code ignored;
            each.acceptor->close(ignored);
        }
        // Copy first: a session may end, and leave the set, while it is being told to drain.
        std::vector<http_session*> current(sessions_.begin(), sessions_.end());
        for (auto* session : current) {
            if (sessions_.contains(session)) {
                session->drain();
            }
        }
    });
}

void worker::stop()
{
    context_.stop();
    if (thread_.joinable()) {
        thread_.join();
    }
}

upstream_pool& worker::pool_for(const config::upstream_url& upstream)
{
    auto found = pools_.find(upstream.text);
    if (found != pools_.end()) {
        return *found->second;
    }
    auto pool = std::make_unique<upstream_pool>(context_.get_executor(), upstream);
    return *pools_.emplace(upstream.text, std::move(pool)).first->second;
}

void worker::add_session(http_session* session)
{
    sessions_.insert(session);
    open_sessions_.fetch_add(1, std::memory_order_relaxed);
}

void worker::remove_session(http_session* session)
{
    sessions_.erase(session);
    open_sessions_.fetch_sub(1, std::memory_order_relaxed);
    shared_.open_connections.fetch_sub(1, std::memory_order_relaxed);
    process_metrics().connections_open.fetch_sub(1, std::memory_order_relaxed);
}

task<void> worker::accept_loop(tcp_acceptor& acceptor, bool tls)
{
    // New sessions start only once this loop lets the worker run other work, and so do the
    // sessions already open. Under a burst of connections it yields after this many accepts,
    // so that established clients and handshakes under way are not held up behind the queue.
    constexpr int accepts_between_yields = 16;
    int accepted_since_yield = 0;
    for (;;) {
        if (accepted_since_yield == accepts_between_yields) {
            accepted_since_yield = 0;
            co_await asio::post(context_, asio::use_awaitable_t<executor>{});
        }
        if (!acceptor.is_open()) {
            co_return;
        }
        // accept4() reports the peer's address, which getpeername() would ask for again.
        tcp::endpoint peer;
        tcp_socket socket(context_);
        const error_code ec = accept_pending(acceptor, socket, peer);
        if (ec == asio::error::would_block) {
            accepted_since_yield = 0;
            // Every worker waits on the same listening socket; the kernel wakes them all, and
            // the ones that find the queue empty come back here.
            auto [waited] = co_await acceptor.async_wait(tcp_acceptor::wait_read, use_nothrow);
            if (waited == asio::error::operation_aborted) {
                co_return;
            }
            continue;
        }
        if (ec) {
            // Running out of descriptors is the usual cause; pause instead of spinning.
            log::write(*log::get("proxy"), spdlog::level::warn, "accept failed",
                       {{"worker", index_}, {"error", ec.message()}});
            steady_timer pause(context_, std::chrono::milliseconds(100));
            co_await pause.async_wait(use_nothrow);
            continue;
        }

        ++accepted_since_yield;
        process_metrics().connections_accepted.fetch_add(1, std::memory_order_relaxed);
        auto limit = settings_->config->limits.max_connections;
        auto open = shared_.open_connections.fetch_add(1, std::memory_order_relaxed);
        if (open >= static_cast<std::int64_t>(limit)) {
            shared_.open_connections.fetch_sub(1, std::memory_order_relaxed);
            process_metrics().connections_refused.fetch_add(1, std::memory_order_relaxed);
            warn_connection_limit(limit);
            if (!tls) {
                // A TLS client could not read a plain answer; it is simply closed.
                asio::co_spawn(context_, refuse_connection(std::move(socket)), asio::detached);
            }
            continue;
        }

        process_metrics().connections_open.fetch_add(1, std::memory_order_relaxed);
        // TCP_NODELAY came with the socket from the listener (see server::open_listener).
        start_session(std::move(socket), peer, tls);
    }
}

void worker::start_session(tcp_socket socket, const tcp::endpoint& peer, bool tls)
{
    auto id = shared_.next_connection_id.fetch_add(1, std::memory_order_relaxed);
    if (!tls) {
        spawn_session(*this, std::make_unique<http_session>(*this, std::move(socket), peer, id));
        return;
    }
    if (!certificates_) {
        // Certificates are loaded before the listener opens, so this is a race at start-up at
        // most; closing is the only honest answer without a certificate.
        process_metrics().tls_handshake_failures.fetch_add(1, std::memory_order_relaxed);
        shared_.open_connections.fetch_sub(1, std::memory_order_relaxed);
        process_metrics().connections_open.fetch_sub(1, std::memory_order_relaxed);
        return;
    }
    spawn_session(*this, std::make_unique<http_session>(*this, std::move(socket), peer, id,
                                                        certificates_, tls_context_));
}

task<void> worker::refuse_connection(tcp_socket socket)
{
    // A polite refusal: a short answer the client can act on, then close. Bounded in time so
    // a client that never reads cannot hold the socket.
    tcp_stream stream(std::move(socket));
    stream.expires_after(std::chrono::seconds(1));
    co_await asio::async_write(stream, asio::buffer(over_capacity_response), use_nothrow);
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

void worker::warn_connection_limit(std::size_t limit)
{
    auto now_s = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::steady_clock::now().time_since_epoch())
                     .count();
    auto last = shared_.last_limit_warning.load(std::memory_order_relaxed);
    if (now_s - last < limit_warning_interval_s) {
        return;
    }
    if (shared_.last_limit_warning.compare_exchange_strong(last, now_s)) {
        log::write(*log::get("proxy"), spdlog::level::warn,
                   "connection limit reached, refusing new connections",
                   {{"max_connections", limit},
                    {"refused_total", process_metrics().connections_refused.load()}});
    }
}

task<void> worker::sweep_idle_upstreams()
{
    steady_timer timer(context_);
    for (;;) {
        timer.expires_after(upstream_sweep_interval);
        auto [ec] = co_await timer.async_wait(use_nothrow);
        if (ec) {
            co_return;
        }
        auto now = health_clock::now();
        for (auto& [name, pool] : pools_) {
            pool->close_expired(now);
        }
    }
}

} // namespace gatehouse::proxy
