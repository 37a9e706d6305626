// Tests for the server-side TLS stream against a real OpenSSL client on loopback: records both
// ways, several pieces and large writes, and how the stream reports each way a connection ends.
#include "proxy/tls_stream.hpp"
#include "proxy/tls_table.hpp"
#include "tests/unit/proxy/loopback_connection.hpp"
#include "tests/unit/proxy/tcp_counters.hpp"
#include "tests/unit/proxy/test_certificates.hpp"

#include <array>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <vector>

#include <boost/asio/ssl/error.hpp>
#include <catch2/catch.hpp>
#include <openssl/err.h>

using namespace gatehouse;
using proxy::error_code;
using proxy::task;
using proxy::tcp;
using proxy::tls_stream;
namespace asio = boost::asio;

namespace {

constexpr const char* host = "stream.example.test";

// A certificate for `host` in a table of one, whose context the stream under test uses.
const proxy::tls_table& server_table()
{
    static const proxy::tls_table table(proxy::tls_policy{}, {proxy::testing::material_for(host)},
                                        {});
    return table;
}

// Bytes whose position can be checked: byte i is i * 7 mod 251.
std::string pattern(std::size_t size)
{
    std::string bytes(size, '\0');
    for (std::size_t i = 0; i < size; ++i) {
        bytes[i] = static_cast<char>((i * 7) % 251);
    }
    return bytes;
}

// A blocking OpenSSL client on its own thread, the other end of the stream under test.
struct tls_client {
    SSL_CTX* context = SSL_CTX_new(TLS_client_method());
    SSL* ssl = nullptr;
    int fd = -1;

    explicit tls_client(int connected_fd) : fd(connected_fd)
    {
        // A server that goes quiet fails the test instead of hanging it.
        const timeval limit{5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
        ssl = SSL_new(context);
        SSL_set_fd(ssl, fd);
        SSL_set_tlsext_host_name(ssl, const_cast<char*>(host));
    }
    ~tls_client()
    {
        SSL_free(ssl);
        SSL_CTX_free(context);
    }

    bool handshake() { return SSL_connect(ssl) == 1; }

    bool write(const std::string& bytes)
    {
        std::size_t written = 0;
        return SSL_write_ex(ssl, bytes.data(), bytes.size(), &written) == 1 &&
               written == bytes.size();
    }

    // Reads until `size` bytes arrived or the stream ended.
    std::string read(std::size_t size)
    {
        std::string bytes;
        std::vector<char> chunk(16384);
        while (bytes.size() < size) {
            std::size_t n = 0;
            if (SSL_read_ex(ssl, chunk.data(), std::min(chunk.size(), size - bytes.size()), &n) !=
                1) {
                break;
            }
            bytes.append(chunk.data(), n);
        }
        return bytes;
    }

    // The SSL_get_error of the next read: SSL_ERROR_ZERO_RETURN after a close_notify.
    int read_end()
    {
        char byte;
        std::size_t n = 0;
        const int done = SSL_read_ex(ssl, &byte, 1, &n);
        return done == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, done);
    }
};

// A loopback connection with the server end in a tls_stream and the client end a plain fd.
struct tls_pair {
    asio::io_context context;
    proxy::testing::loopback_connection ends = proxy::testing::connect_on_loopback(context);
    proxy::tcp_socket& client_socket = ends.dialed;
    std::unique_ptr<tls_stream> server;

    tls_pair()
    {
        // As every accepted connection has it, from the listener: each write leaves at once.
        ends.accepted.set_option(tcp::no_delay(true));
        server =
            std::make_unique<tls_stream>(std::move(ends.accepted), server_table().select(host));
        // As a session does: the table's certificate callback finds the table through the SSL.
        server_table().attach(server->native_handle());
        server->socket().expires_after(std::chrono::seconds(10));
    }

    // Runs `server_side` on the context while `client_side` runs on a thread of its own. The
    // client side only records what it saw; the test checks it after the thread has ended.
    template <typename ServerSide, typename ClientSide>
    void run(ServerSide server_side, ClientSide client_side)
    {
        std::thread client_thread(client_side);
        bool finished = false;
        asio::co_spawn(context, server_side(), [this, &finished](std::exception_ptr failure) {
            finished = true;
            // The socket's deadline timer is still armed; it would keep run_for() waiting.
            context.stop();
            if (failure) {
                std::rethrow_exception(failure);
            }
        });
        context.run_for(std::chrono::seconds(20));
        client_thread.join();
        REQUIRE(finished);
    }
};

} // namespace

TEST_CASE("a TLS stream carries records both ways, pieces and large writes included",
          "[proxy][tls]")
{
    tls_pair pair;
    tls_client client(pair.client_socket.native_handle());
    const std::string request = pattern(50000);
    const std::string head = "HTTP/1.1 200 OK\r\n\r\n";
    const std::string body = pattern(40000);
    const std::string tail = "end";

    error_code handshake_error;
    error_code read_error;
    error_code write_error;
    std::string received;
    bool client_ok = false;
    std::string client_received;

    pair.run(
        [&]() -> task<void> {
            handshake_error = co_await pair.server->handshake();
            std::array<char, 8192> chunk;
            while (!read_error && received.size() < request.size()) {
                auto [ec, n] = co_await pair.server->read_some(asio::buffer(chunk));
                read_error = ec;
                received.append(chunk.data(), n);
            }
            tls_stream::pieces pieces{asio::buffer(head), asio::buffer(body), asio::buffer(tail)};
            auto [ec, n] = co_await pair.server->write(pieces);
            write_error = ec;
            CHECK(n == head.size() + body.size() + tail.size());
        },
        [&] {
            client_ok = client.handshake() && client.write(request);
            client_received = client.read(head.size() + body.size() + tail.size());
        });

    CHECK_FALSE(handshake_error);
    CHECK(client_ok);
    CHECK_FALSE(read_error);
    CHECK(received == request);
    CHECK_FALSE(write_error);
    CHECK(client_received == head + body + tail);
}

TEST_CASE("a TLS stream's shutdown sends a close_notify the client reads as the end",
          "[proxy][tls]")
{
    tls_pair pair;
    tls_client client(pair.client_socket.native_handle());
    error_code handshake_error;
    error_code shutdown_error;
    bool client_handshake = false;
    int client_end = -1;

    pair.run(
        [&]() -> task<void> {
            handshake_error = co_await pair.server->handshake();
            SSL_set_shutdown(pair.server->native_handle(), SSL_RECEIVED_SHUTDOWN);
            shutdown_error = co_await pair.server->shutdown();
        },
        [&] {
            client_handshake = client.handshake();
            client_end = client.read_end();
        });

    REQUIRE(client_handshake);
    REQUIRE_FALSE(handshake_error);
    CHECK_FALSE(shutdown_error);
    CHECK(client_end == SSL_ERROR_ZERO_RETURN);
}

TEST_CASE("a TLS stream's last write takes the close_notify along in the same segment",
          "[proxy][tls]")
{
    // Without `last`, the response and the close_notify leave in two segments: the same
    // check that way shows that the count can tell the two apart.
    const bool last = GENERATE(true, false);
    tls_pair pair;
    tls_client client(pair.client_socket.native_handle());
    const std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhi\n";

    error_code handshake_error;
    error_code write_error;
    error_code shutdown_error;
    std::uint32_t segments = 0;
    bool client_handshake = false;
    std::string client_received;
    int client_end = -1;

    pair.run(
        [&]() -> task<void> {
            handshake_error = co_await pair.server->handshake();
            const int fd = pair.server->socket().socket().native_handle();
            const std::uint32_t before = proxy::testing::data_segments_sent(fd);
            tls_stream::pieces pieces{asio::buffer(response)};
            auto [ec, n] = co_await pair.server->write(pieces, last);
            write_error = ec;
            // As a session closes any TLS connection; after a last write it sends nothing.
            SSL* ssl = pair.server->native_handle();
            SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_RECEIVED_SHUTDOWN);
            shutdown_error = co_await pair.server->shutdown();
            segments = proxy::testing::data_segments_sent(fd) - before;
        },
        [&] {
            client_handshake = client.handshake();
            client_received = client.read(response.size());
            client_end = client.read_end();
        });

    REQUIRE(client_handshake);
    REQUIRE_FALSE(handshake_error);
    CHECK_FALSE(write_error);
    CHECK_FALSE(shutdown_error);
    CHECK(client_received == response);
    CHECK(client_end == SSL_ERROR_ZERO_RETURN);
    CHECK(segments == (last ? 1u : 2u));
}

TEST_CASE("a TLS stream reads eof after a close_notify and a truncation without one",
          "[proxy][tls]")
{
    const bool with_close_notify = GENERATE(true, false);
    tls_pair pair;
    tls_client client(pair.client_socket.native_handle());
    error_code handshake_error;
    error_code read_error;
    std::string received;
    bool client_ok = false;

    pair.run(
        [&]() -> task<void> {
            handshake_error = co_await pair.server->handshake();
            std::array<char, 64> chunk;
            while (!handshake_error) {
                auto [ec, n] = co_await pair.server->read_some(asio::buffer(chunk));
                if (ec) {
                    read_error = ec;
                    break;
                }
                received.append(chunk.data(), n);
            }
        },
        [&] {
            client_ok = client.handshake() && client.write("last words");
            if (with_close_notify) {
                SSL_shutdown(client.ssl);
            }
            ::shutdown(client.fd, SHUT_WR);
        });

    REQUIRE(client_ok);
    REQUIRE_FALSE(handshake_error);
    CHECK(received == "last words");
    if (with_close_notify) {
        CHECK(read_error == asio::error::eof);
    } else {
        CHECK(read_error == asio::ssl::error::stream_truncated);
    }
}

TEST_CASE("a TLS stream's failed handshake sends the client its alert", "[proxy][tls]")
{
    tls_pair pair;
    tls_client client(pair.client_socket.native_handle());
    // A client that offers only a cipher suite without forward secrecy, which the server
    // refuses (TLS 1.3 has none such, so the client stops at 1.2).
    SSL_set_max_proto_version(client.ssl, TLS1_2_VERSION);
    REQUIRE(SSL_set_cipher_list(client.ssl, "AES128-SHA") == 1);
    error_code handshake_error;
    bool client_handshake = true;
    unsigned long client_error = 0;

    pair.run([&]() -> task<void> { handshake_error = co_await pair.server->handshake(); },
             [&] {
                 client_handshake = client.handshake();
                 client_error = ERR_peek_last_error();
             });

    CHECK(handshake_error);
    CHECK_FALSE(client_handshake);
    // The client failed on the server's alert (handshake_failure), not on a bare close.
    CHECK(ERR_GET_REASON(client_error) == SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE);
}
