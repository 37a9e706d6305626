// A client connection that is either plain TCP or TLS over TCP, behind one stream type.
//
// HTTP sessions, body relays and tunnels are written once against this type; which of the two
// a connection is was decided by the listener that accepted it. Reads and writes are awaited
// with use_nothrow and dispatch at run time to the TCP socket or the TLS stream; both kinds
// give the same awaitable type. Timeouts are set on transport(), whose expiry also bounds TLS
// reads and writes, since those run on top of it.
//
// Internal to proxy/: it exposes Asio, and is included by .cpp files only.
#pragma once

#include "proxy/net.hpp"
#include "proxy/timed_socket.hpp"
#include "proxy/tls_stream.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <tuple>
#include <utility>

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/write.hpp>

namespace gatehouse::proxy {

class client_stream {
public:
    using executor_type = timed_socket::executor_type;
    using io_result = asio::awaitable<std::tuple<error_code, std::size_t>, executor>;

    // A plain-HTTP connection.
    explicit client_stream(tcp_socket socket) : plain_(std::in_place, std::move(socket)) {}

    // A TLS connection whose SSL object is made from `context`; the handshake has not run.
    client_stream(tcp_socket socket, asio::ssl::context& context)
        : tls_(std::make_unique<tls_stream>(std::move(socket), context.native_handle()))
    {}

    executor_type get_executor() noexcept { return transport().get_executor(); }

    bool is_tls() const noexcept { return tls_ != nullptr; }

    // The TCP layer: timeouts, the socket and its peer address.
    timed_socket& transport() noexcept { return tls_ ? tls_->socket() : *plain_; }

    // Deadlines for the next reads and writes, TLS ones included.
    void expires_after(std::chrono::steady_clock::duration timeout)
    {
        transport().expires_after(timeout);
    }
    void expires_at(std::chrono::steady_clock::time_point deadline)
    {
        transport().expires_at(deadline);
    }
    void expires_never() { transport().expires_never(); }

    // Only for a TLS connection.
    tls_stream& tls() noexcept { return *tls_; }

    // See timed_socket::write_some_now. Over TLS it writes nothing: write_all encrypts and
    // sends at once whatever the kernel takes.
    template <typename ConstBuffers>
    std::size_t write_some_now(const ConstBuffers& buffers) noexcept
    {
        return tls_ ? 0 : plain_->write_some_now(buffers);
    }

    // `co_await stream.async_read_some(buffer, use_nothrow)`, as for a socket.
    io_result async_read_some(asio::mutable_buffer into, decltype(use_nothrow))
    {
        return tls_ ? tls_->read_some(into) : plain_->async_read_some(into, use_nothrow);
    }

    // Writes all of `buffers`: `co_await stream.write_all(buffers)`. `last` says nothing will
    // be written after them: over TLS our close_notify then leaves with them (see
    // tls_stream::write); plain TCP has nothing to add, since close() sends the FIN.
    template <typename ConstBuffers>
    io_result write_all(const ConstBuffers& buffers, bool last = false)
    {
        if (!tls_) {
            return asio::async_write(*plain_, buffers, use_nothrow);
        }
        tls_stream::pieces pieces(asio::buffer_sequence_begin(buffers),
                                  asio::buffer_sequence_end(buffers));
        return tls_->write(std::move(pieces), last);
    }

private:
    std::optional<timed_socket> plain_;
    std::unique_ptr<tls_stream> tls_;
};

// The same call for an upstream socket, so code written for both kinds of stream reads alike.
// `last` changes nothing on plain TCP.
template <typename ConstBuffers>
client_stream::io_result write_all(timed_socket& stream, const ConstBuffers& buffers,
                                   bool /*last*/ = false)
{
    return asio::async_write(stream, buffers, use_nothrow);
}

template <typename ConstBuffers>
client_stream::io_result write_all(client_stream& stream, const ConstBuffers& buffers,
                                   bool last = false)
{
    return stream.write_all(buffers, last);
}

} // namespace gatehouse::proxy
