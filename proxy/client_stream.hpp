// A client connection that is either plain TCP or TLS over TCP, behind one stream type.
//
// HTTP sessions, body relays and tunnels are written once against this type; which of the two
// a connection is was decided by the listener that accepted it. Reads and writes dispatch at run
// time to the TCP stream or the TLS stream, with the same completion handler, so the type meets
// Asio's AsyncReadStream and AsyncWriteStream. Timeouts are set on transport(), whose expiry also
// bounds TLS reads and writes, since those run on top of it.
//
// Internal to proxy/: it exposes Asio and Beast, and is included by .cpp files only.
#pragma once

#include "proxy/net.hpp"
#include "proxy/timed_socket.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <utility>

#include <boost/asio/async_result.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

namespace gatehouse::proxy {

class client_stream {
public:
    using executor_type = timed_socket::executor_type;
    using tls_stream = beast::ssl_stream<timed_socket>;

    // A plain-HTTP connection.
    explicit client_stream(tcp_socket socket) : plain_(std::in_place, std::move(socket)) {}

    // A TLS connection whose SSL object is made from `context`; the handshake has not run.
    client_stream(tcp_socket socket, asio::ssl::context& context)
        : tls_(std::make_unique<tls_stream>(std::move(socket), context))
    {}

    executor_type get_executor() noexcept { return transport().get_executor(); }

    bool is_tls() const noexcept { return tls_ != nullptr; }

    // The TCP layer: timeouts, the socket and its peer address.
    timed_socket& transport() noexcept { return tls_ ? tls_->next_layer() : *plain_; }

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

    // See timed_socket::write_some_now. Over TLS it writes nothing: a record has to be made and
    // may be sent only in part, which the TLS stream's own write takes care of.
    template <typename ConstBuffers>
    std::size_t write_some_now(const ConstBuffers& buffers) noexcept
    {
        return tls_ ? 0 : plain_->write_some_now(buffers);
    }

    template <typename MutableBuffers, typename Token>
    auto async_read_some(const MutableBuffers& buffers, Token&& token)
    {
        return asio::async_initiate<Token, void(error_code, std::size_t)>(
            [this](auto handler, const MutableBuffers& to) {
                if (tls_) {
                    tls_->async_read_some(to, std::move(handler));
                } else {
                    plain_->async_read_some(to, std::move(handler));
                }
            },
            token, buffers);
    }

    template <typename ConstBuffers, typename Token>
    auto async_write_some(const ConstBuffers& buffers, Token&& token)
    {
        return asio::async_initiate<Token, void(error_code, std::size_t)>(
            [this](auto handler, const ConstBuffers& from) {
                if (tls_) {
                    tls_->async_write_some(from, std::move(handler));
                } else {
                    plain_->async_write_some(from, std::move(handler));
                }
            },
            token, buffers);
    }

private:
    std::optional<timed_socket> plain_;
    std::unique_ptr<tls_stream> tls_;
};

} // namespace gatehouse::proxy
