// The server side of a TLS connection, on a timed_socket.
//
// Asio's ssl::stream (and Beast's ssl_stream around it) moves every record through a BIO pair,
// runs each read and write as a state machine that completes through the scheduler once per
// step, and keeps two timers per connection as wait lists. On keep-alive HTTPS that machinery
// cost more user CPU than OpenSSL's own work. Here OpenSSL reads ciphertext from `in_`, filled
// by plain socket reads, and writes it to `out_`, which goes to the kernel at once whenever
// the send buffer takes it, as with the plain-TCP path.
//
// At most one read and one write may be in flight at a time (a WebSocket tunnel runs both);
// handshake and shutdown run alone. Deadlines are the socket's: set them on socket().
//
// Internal to proxy/: it exposes Asio, and is included by .cpp files only.
#pragma once

#include "proxy/net.hpp"
#include "proxy/timed_socket.hpp"

#include <cstddef>
#include <memory>
#include <string>
#include <tuple>

#include <boost/container/small_vector.hpp>
#include <openssl/ssl.h>

namespace gatehouse::proxy {

class tls_stream {
public:
    using result = std::tuple<error_code, std::size_t>;
    using pieces = boost::container::small_vector<asio::const_buffer, 4>;

    // A server-side connection whose SSL object comes from `context`; nothing is sent yet.
    // Throws std::runtime_error when OpenSSL cannot make the SSL object.
    tls_stream(tcp_socket socket, SSL_CTX* context);
    ~tls_stream();

    tls_stream(const tls_stream&) = delete;
    tls_stream& operator=(const tls_stream&) = delete;

    timed_socket& socket() noexcept { return socket_; }
    SSL* native_handle() noexcept { return ssl_.get(); }

    // Runs the handshake to its end. A failure's alert is sent before the error is returned.
    task<error_code> handshake();

    // Some decrypted bytes, at most `into.size()`. eof after the client's close_notify;
    // ssl::error::stream_truncated when the connection ends without one.
    task<result> read_some(asio::mutable_buffer into);

    // Encrypts and sends all of `data`, in records of up to 16 KiB. With `then_close`, the
    // data is the connection's last: our close_notify follows it in the same send, which
    // saves the client a segment and us a system call, and shutdown() has nothing left to do.
    task<result> write(pieces data, bool then_close = false);

    // Sends our close_notify; the caller decides whether the client's is awaited.
    task<error_code> shutdown();

private:
    struct bio_access;

    // Sends everything in out_. Only one flush runs at a time: a read that makes output
    // while a write is flushing leaves it in out_ for that flush to pick up.
    task<error_code> flush();
    // Sends what the kernel takes of out_ now, unless a flush is running.
    void flush_now() noexcept;
    // Takes the outcome of a socket read of `n` bytes into in_.prepare().
    error_code received(error_code ec, std::size_t n);
    // The error for a failed SSL call whose SSL_get_error was `ssl_error`.
    error_code failure(int ssl_error) const;

    struct ssl_free {
        void operator()(SSL* ssl) const noexcept { SSL_free(ssl); }
    };

    timed_socket socket_;
    std::unique_ptr<SSL, ssl_free> ssl_;
    // Ciphertext received and not yet taken by OpenSSL.
    beast::flat_buffer in_;
    // Ciphertext made by OpenSSL and not yet handed to the kernel; while a flush waits on the
    // socket, `sending_` holds what it is sending.
    std::string out_;
    std::string sending_;
    bool flushing_ = false;
};

} // namespace gatehouse::proxy
