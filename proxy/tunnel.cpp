#include "proxy/tunnel.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/write.hpp>

namespace gatehouse::proxy {

using namespace asio::experimental::awaitable_operators;

namespace {

constexpr std::size_t tunnel_chunk_bytes = 16 * 1024;

using activity_clock = std::chrono::steady_clock;

// The stream a tunnel reads and writes: the bare socket for TCP, so no per-operation timer
// runs; the TLS stream for a TLS client, whose reads and writes must go through OpenSSL.
tcp_socket& raw(timed_socket& stream)
{
    return stream.socket();
}

client_stream& raw(client_stream& stream)
{
    return stream;
}

// For the bare socket a TCP tunnel uses; client_stream.hpp has the other two.
client_stream::io_result write_all(tcp_socket& socket, asio::const_buffer bytes)
{
    return asio::async_write(socket, bytes, use_nothrow);
}

// Ends both directions of a tunnel. Cancelling the sockets themselves, rather than relying on
// per-operation cancellation, also stops a TLS read wherever in the TLS stream it waits.
struct tunnel_stopper {
    client_stream& client;
    timed_socket& upstream;

    void operator()() const
    {
        error_code ignored;
        client.transport().socket().cancel(ignored);
        upstream.socket().cancel(ignored);
    }
};

// Moves bytes one way until EOF or an error, noting the time of every read, then stops the
// other direction too.
template <typename From, typename To>
task<void> pump(From& from, To& to, activity_clock::time_point& last_activity, tunnel_stopper stop)
{
    std::array<char, tunnel_chunk_bytes> chunk;
    for (;;) {
        auto [read_error, n] = co_await raw(from).async_read_some(asio::buffer(chunk), use_nothrow);
        if (read_error) {
            break;
        }
        last_activity = activity_clock::now();
        auto [write_error, written] =
            co_await write_all(raw(to), asio::const_buffer(chunk.data(), n));
        if (write_error) {
            break;
        }
    }
    stop();
}

// Returns once neither direction has moved a byte for `idle_timeout`. A one-way stream (a
// server pushing events) keeps the tunnel alive, unlike a per-direction read timeout would.
task<void> watch_idle(activity_clock::time_point& last_activity,
                      std::chrono::milliseconds idle_timeout, tunnel_stopper stop)
{
    steady_timer timer(co_await asio::this_coro::executor);
    for (;;) {
        auto quiet_until = last_activity + idle_timeout;
        if (activity_clock::now() >= quiet_until) {
            break;
        }
        timer.expires_at(quiet_until);
        auto [ec] = co_await timer.async_wait(use_nothrow);
        if (ec) {
            co_return;
        }
    }
    stop();
}

template <typename To>
task<bool> flush(beast::flat_buffer& pending, To& to)
{
    if (pending.size() == 0) {
        co_return true;
    }
    auto [ec, n] = co_await write_all(raw(to), pending.data());
    pending.consume(pending.size());
    co_return !ec;
}

} // namespace

task<void> run_tunnel(client_stream& client, beast::flat_buffer& client_buffer,
                      timed_socket& upstream, beast::flat_buffer& upstream_buffer,
                      std::chrono::milliseconds idle_timeout)
{
    client.expires_never();
    upstream.expires_never();

    if (co_await flush(client_buffer, upstream) && co_await flush(upstream_buffer, client)) {
        auto last_activity = activity_clock::now();
        const tunnel_stopper stop{client, upstream};
        co_await (pump(client, upstream, last_activity, stop) ||
                  pump(upstream, client, last_activity, stop) ||
                  watch_idle(last_activity, idle_timeout, stop));
    }

    error_code ignored;
    client.transport().socket().shutdown(tcp::socket::shutdown_both, ignored);
    upstream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    client.transport().close();
    upstream.close();
}

} // namespace gatehouse::proxy
