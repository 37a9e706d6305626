#include "proxy/tls_stream.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <stdexcept>

#include <boost/asio/ssl/error.hpp>
#include <boost/asio/write.hpp>
#include <openssl/bio.h>
#include <openssl/err.h>

namespace gatehouse::proxy {

namespace {

// The largest TLS record's plaintext (RFC 8446 section 5.1), and what one socket read asks for.
constexpr std::size_t record_bytes = 16 * 1024;

// Output buffers that grew past this for a large response are given back once sent, so an
// idle connection keeps no more than this of them.
constexpr std::size_t kept_output_bytes = 4 * 1024;

} // namespace

// OpenSSL's view of the stream: a BIO that reads from in_ and writes to out_.
struct tls_stream::bio_access {
    static tls_stream& owner(BIO* bio) { return *static_cast<tls_stream*>(BIO_get_data(bio)); }

    static int read(BIO* bio, char* into, std::size_t size, std::size_t* read_bytes)
    {
        BIO_clear_retry_flags(bio);
        auto& in = owner(bio).in_;
        const std::size_t n = std::min(size, in.size());
        if (n == 0) {
            // Not an error: OpenSSL reports SSL_ERROR_WANT_READ and we read the socket.
            BIO_set_retry_read(bio);
            *read_bytes = 0;
            return 0;
        }
        std::memcpy(into, in.data().data(), n);
        in.consume(n);
        *read_bytes = n;
        return 1;
    }

    static int write(BIO* bio, const char* from, std::size_t size, std::size_t* written_bytes)
    {
        BIO_clear_retry_flags(bio);
        owner(bio).out_.append(from, size);
        *written_bytes = size;
        return 1;
    }

    static long control(BIO* bio, int command, long, void*)
    {
        switch (command) {
        case BIO_CTRL_FLUSH:
            // Records are sent by our own flush, once OpenSSL's call returns.
            return 1;
        case BIO_CTRL_PENDING:
            return static_cast<long>(owner(bio).in_.size());
        case BIO_CTRL_WPENDING:
            return static_cast<long>(owner(bio).out_.size());
        default:
            return 0;
        }
    }

    static int create(BIO* bio)
    {
        BIO_set_init(bio, 1);
        return 1;
    }

    // Made once and kept for the life of the process, as OpenSSL's own methods are.
    static BIO_METHOD* method()
    {
        static BIO_METHOD* const made = [] {
            BIO_METHOD* m =
                BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "gatehouse tls_stream");
            if (m == nullptr || BIO_meth_set_read_ex(m, read) != 1 ||
                BIO_meth_set_write_ex(m, write) != 1 || BIO_meth_set_ctrl(m, control) != 1 ||
                BIO_meth_set_create(m, create) != 1) {
                throw std::runtime_error("cannot make the TLS stream's BIO method");
            }
            return m;
        }();
        return made;
    }
};

tls_stream::tls_stream(tcp_socket socket, SSL_CTX* context)
    : socket_(std::move(socket)), ssl_(SSL_new(context))
{
    if (!ssl_) {
        throw std::runtime_error("SSL_new failed");
    }
    BIO* bio = BIO_new(bio_access::method());
    if (bio == nullptr) {
        throw std::runtime_error("BIO_new failed");
    }
    BIO_set_data(bio, this);
    // Room for the server's first flight (certificate chain included) without regrowing.
    out_.reserve(kept_output_bytes);
    // One BIO both ways: SSL_set_bio takes over its single reference.
    SSL_set_bio(ssl_.get(), bio, bio);
    SSL_set_accept_state(ssl_.get());
}

tls_stream::~tls_stream() = default;

error_code tls_stream::failure(int ssl_error) const
{
    switch (ssl_error) {
    case SSL_ERROR_ZERO_RETURN:
        return asio::error::eof;
    case SSL_ERROR_SSL:
        if (const unsigned long code = ERR_get_error(); code != 0) {
            return error_code(static_cast<int>(code), asio::error::get_ssl_category());
        }
        break;
    default:
        break;
    }
    return asio::ssl::error::stream_truncated;
}

// The outcome of a socket read of `n` bytes into in_.prepare(), as the stream reports it.
error_code tls_stream::received(error_code ec, std::size_t n)
{
    if (ec == asio::error::eof) {
        // The peer closed without a close_notify, so what came before may be cut short.
        return asio::ssl::error::stream_truncated;
    }
    in_.commit(n);
    return ec;
}

void tls_stream::flush_now() noexcept
{
    if (flushing_ || out_.empty()) {
        return;
    }
    out_.erase(0, socket_.write_some_now(asio::buffer(out_)));
    if (out_.empty() && out_.capacity() > kept_output_bytes) {
        std::string().swap(out_);
    }
}

task<error_code> tls_stream::flush()
{
    flushing_ = true;
    error_code failed;
    while (!out_.empty() && !failed) {
        // Whatever a concurrent read adds to out_ meanwhile waits for the next round.
        sending_.swap(out_);
        const std::size_t now = socket_.write_some_now(asio::buffer(sending_));
        if (now < sending_.size()) {
            auto [ec, n] = co_await asio::async_write(
                socket_, asio::buffer(sending_.data() + now, sending_.size() - now), use_nothrow);
            failed = ec;
        }
        sending_.clear();
    }
    if (sending_.capacity() > kept_output_bytes) {
        std::string().swap(sending_);
    }
    flushing_ = false;
    co_return failed;
}

task<error_code> tls_stream::handshake()
{
    // The client speaks first: until its hello is in, OpenSSL would only find nothing to read.
    bool needs_input = in_.size() == 0;
    for (;;) {
        if (needs_input) {
            auto [ec, n] = co_await socket_.async_read_some(in_.prepare(record_bytes), use_nothrow);
            if (error_code read_failed = received(ec, n)) {
                co_return read_failed;
            }
        }
        needs_input = true;

        ERR_clear_error();
        const int done = SSL_do_handshake(ssl_.get());
        const int ssl_error = done == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_.get(), done);
        // The error is taken from OpenSSL's queue before anything else can touch it.
        const error_code failed =
            done == 1 || ssl_error == SSL_ERROR_WANT_READ ? error_code{} : failure(ssl_error);

        // Our flight, or the alert that ends a failed handshake, goes out first.
        flush_now();
        if (!out_.empty()) {
            if (error_code ec = co_await flush(); ec && !failed) {
                co_return ec;
            }
        }
        if (done == 1 || failed) {
            co_return failed;
        }
    }
}

task<tls_stream::result> tls_stream::read_some(asio::mutable_buffer into)
{
    if (into.size() == 0) {
        co_return result{error_code{}, 0};
    }
    for (;;) {
        ERR_clear_error();
        std::size_t n = 0;
        const int done = SSL_read_ex(ssl_.get(), into.data(), into.size(), &n);
        const int ssl_error = done == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_.get(), done);
        // A read makes output only to end the connection (an alert); send it if we can.
        flush_now();
        if (done == 1) {
            co_return result{error_code{}, n};
        }
        if (ssl_error != SSL_ERROR_WANT_READ) {
            co_return result{failure(ssl_error), 0};
        }
        auto [ec, got] = co_await socket_.async_read_some(in_.prepare(record_bytes), use_nothrow);
        if (error_code read_failed = received(ec, got)) {
            co_return result{read_failed, 0};
        }
    }
}

task<tls_stream::result> tls_stream::write(pieces data, bool then_close)
{
    // Small pieces (a head and a short body) are staged into one record rather than sent as
    // a record each; a piece that fills a record, or is the last one, goes from its own
    // memory. The staging area is the thread's: it is filled and encrypted with no suspension
    // between, and empty whenever this coroutine waits.
    static thread_local std::array<char, record_bytes> staging;
    std::size_t staged = 0;
    std::size_t total = 0;

    auto encrypt = [this](const void* plaintext, std::size_t size) -> error_code {
        ERR_clear_error();
        std::size_t written = 0;
        const int done = SSL_write_ex(ssl_.get(), plaintext, size, &written);
        return done == 1 ? error_code{} : failure(SSL_get_error(ssl_.get(), done));
    };

    for (std::size_t i = 0; i < data.size(); ++i) {
        asio::const_buffer piece = data[i];
        total += piece.size();
        while (piece.size() > 0) {
            error_code failed;
            if (staged == 0 && (piece.size() >= record_bytes || i + 1 == data.size())) {
                const std::size_t size = std::min(piece.size(), record_bytes);
                failed = encrypt(piece.data(), size);
                piece += size;
            } else {
                const std::size_t size = std::min(piece.size(), record_bytes - staged);
                std::memcpy(staging.data() + staged, piece.data(), size);
                staged += size;
                piece += size;
                if (staged == record_bytes || (i + 1 == data.size() && piece.size() == 0)) {
                    failed = encrypt(staging.data(), staged);
                    staged = 0;
                }
            }
            if (failed) {
                flush_now();
                co_return result{failed, 0};
            }
            // A record at a time reaches the kernel, so out_ never holds much more than one.
            if (staged == 0 && out_.size() >= record_bytes) {
                flush_now();
                if (!out_.empty()) {
                    if (error_code ec = co_await flush()) {
                        co_return result{ec, 0};
                    }
                }
            }
        }
    }
    if (staged > 0) {
        // The last pieces were empty.
        if (error_code failed = encrypt(staging.data(), staged)) {
            co_return result{failed, 0};
        }
    }
    if (then_close) {
        // The first SSL_shutdown only queues our close_notify behind the data; it reads
        // nothing.
        ERR_clear_error();
        SSL_shutdown(ssl_.get());
    }

    flush_now();
    if (!out_.empty()) {
        if (error_code ec = co_await flush()) {
            co_return result{ec, 0};
        }
    }
    co_return result{error_code{}, total};
}

task<error_code> tls_stream::shutdown()
{
    ERR_clear_error();
    SSL_shutdown(ssl_.get());
    flush_now();
    if (!out_.empty()) {
        co_return co_await flush();
    }
    co_return error_code{};
}

} // namespace gatehouse::proxy
