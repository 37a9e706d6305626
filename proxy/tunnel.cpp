#include "proxy/tunnel.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/write.hpp>

namespace gatehouse::proxy {

using namespace asio::experimental::awaitable_operators;

namespace {

constexpr std::size_t tunnel_chunk_bytes = 16 * 1024;

using activity_clock = std::chrono::steady_clock;

// Moves bytes one way until EOF or an error, noting the time of every read.
asio::awaitable<void> pump(beast::tcp_stream& from, beast::tcp_stream& to,
                           activity_clock::time_point& last_activity)
{
    std::array<char, tunnel_chunk_bytes> chunk;
    for (;;) {
        auto [read_error, n] =
            co_await from.socket().async_read_some(asio::buffer(chunk), use_nothrow);
        if (read_error) {
            co_return;
        }
        last_activity = activity_clock::now();
        auto [write_error, written] =
            co_await asio::async_write(to.socket(), asio::buffer(chunk.data(), n), use_nothrow);
        if (write_error) {
            co_return;
        }
    }
}

// Returns once neither direction has moved a byte for `idle_timeout`. A one-way stream (a
// server pushing events) keeps the tunnel alive, unlike a per-direction read timeout would.
asio::awaitable<void> watch_idle(activity_clock::time_point& last_activity,
                                 std::chrono::milliseconds idle_timeout)
{
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (;;) {
        auto quiet_until = last_activity + idle_timeout;
        if (activity_clock::now() >= quiet_until) {
            co_return;
        }
        timer.expires_at(quiet_until);
        auto [ec] = co_await timer.async_wait(use_nothrow);
        if (ec) {
            co_return;
        }
    }
}

asio::awaitable<bool> flush(beast::flat_buffer& pending, beast::tcp_stream& to)
{
    if (pending.size() == 0) {
        co_return true;
    }
    auto [ec, n] = co_await asio::async_write(to.socket(), pending.data(), use_nothrow);
    pending.consume(pending.size());
    co_return !ec;
}

} // namespace

asio::awaitable<void> run_tunnel(beast::tcp_stream& client, beast::flat_buffer& client_buffer,
                                 beast::tcp_stream& upstream, beast::flat_buffer& upstream_buffer,
                                 std::chrono::milliseconds idle_timeout)
{
    client.expires_never();
    upstream.expires_never();

    if (co_await flush(client_buffer, upstream) && co_await flush(upstream_buffer, client)) {
        auto last_activity = activity_clock::now();
        co_await (pump(client, upstream, last_activity) || pump(upstream, client, last_activity) ||
                  watch_idle(last_activity, idle_timeout));
    }

    error_code ignored;
    client.socket().shutdown(tcp::socket::shutdown_both, ignored);
    upstream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    client.close();
    upstream.close();
}

} // namespace gatehouse::proxy
