#include "proxy/upstream_pool.hpp"

#include "proxy/metrics.hpp"

#include <cerrno>
#include <sys/socket.h>

namespace gatehouse::proxy {

namespace {

// Connections that went idle less than this long ago are reused without asking the kernel
// whether the upstream closed them: under load that question is a system call per request, and
// upstreams close idle connections after seconds, not milliseconds. A connection closed in that
// window anyway fails its request, which is retried on a new connection when nothing of a body
// was sent (see http_session::exchange_with_upstream).
constexpr std::chrono::milliseconds recently_idle{1000};

// An idle upstream connection should have nothing to read. EOF means the upstream closed it;
// unexpected bytes mean it is out of step with us. Either way it must not carry a request.
bool looks_reusable(upstream_connection& connection, health_clock::time_point now)
{
    if (connection.buffer.size() != 0) {
        return false;
    }
    if (now - connection.idle_since < recently_idle) {
        return true;
    }
    char byte;
    auto fd = connection.stream.socket().native_handle();
    ssize_t peeked = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return peeked < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

// The outcome of a connect. Requests and responses are each written whole, so Nagle's
// algorithm could only hold a request back behind the ACK of the one before, as nginx's
// tcp_nodelay (on by default) also avoids.
std::pair<error_code, std::unique_ptr<upstream_connection>>
connected(error_code ec, std::unique_ptr<upstream_connection> connection)
{
    if (ec) {
        return {ec, nullptr};
    }
    error_code ignored;
    connection->stream.socket().set_option(tcp::no_delay(true), ignored);
    return {ec, std::move(connection)};
}

} // namespace

upstream_pool::upstream_pool(executor executor, config::upstream_url upstream)
    : executor_(executor), upstream_(std::move(upstream))
{}

std::unique_ptr<upstream_connection> upstream_pool::take_idle(health_clock::time_point now)
{
    while (!idle_.empty()) {
        auto connection = std::move(idle_.back());
        idle_.pop_back();
        if (now - connection->idle_since < idle_timeout && looks_reusable(*connection, now)) {
            connection->reused = true;
            return connection;
        }
    }
    return nullptr;
}

task<std::pair<error_code, std::unique_ptr<upstream_connection>>>
upstream_pool::connect(std::chrono::milliseconds timeout)
{
    auto connection = std::make_unique<upstream_connection>(executor_);
    process_metrics().upstream_connects.fetch_add(1, std::memory_order_relaxed);

    // An IP literal needs no resolver round trip.
    error_code parse_error;
    auto literal = asio::ip::make_address(upstream_.host, parse_error);
    connection->stream.expires_after(timeout);
    if (!parse_error) {
        auto [ec] = co_await connection->stream.async_connect(
            tcp::endpoint(literal, upstream_.port), use_nothrow);
        co_return connected(ec, std::move(connection));
    }

    // The resolver has no deadline of its own: a timer cancels it. The timer's handler owns a
    // reference to the resolver because it may run after this coroutine has moved on.
    auto resolver = std::make_shared<tcp_resolver>(executor_);
    steady_timer deadline(executor_, timeout);
    deadline.async_wait([resolver](error_code ec) {
        if (!ec) {
            resolver->cancel();
        }
    });
    auto [resolve_error, endpoints] = co_await resolver->async_resolve(
        upstream_.host, std::to_string(upstream_.port), use_nothrow);
    deadline.cancel();
    if (resolve_error) {
        co_return std::pair{resolve_error, nullptr};
    }
    auto [ec, endpoint] = co_await connection->stream.async_connect(endpoints, use_nothrow);
    co_return connected(ec, std::move(connection));
}

void upstream_pool::give_back(std::unique_ptr<upstream_connection> connection,
                              health_clock::time_point now)
{
    if (idle_.size() >= max_idle_connections) {
        return;
    }
    connection->idle_since = now;
    connection->stream.expires_never();
    idle_.push_back(std::move(connection));
}

void upstream_pool::close_expired(health_clock::time_point now)
{
    while (!idle_.empty() && now - idle_.front()->idle_since >= idle_timeout) {
        idle_.pop_front();
    }
}

} // namespace gatehouse::proxy
