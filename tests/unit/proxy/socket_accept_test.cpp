// Tests for accept_pending: connections come out non-blocking and close-on-exec, Asio knows
// both that and that the descriptor is not duplicated, and they then work like any other socket.
// Real sockets on 127.0.0.1.
#include "proxy/socket_accept.hpp"

#include <array>
#include <fcntl.h>
#include <string>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>

using gatehouse::proxy::accept_pending;
using gatehouse::proxy::asio_state_of;
using gatehouse::proxy::error_code;
using gatehouse::proxy::tcp;
using gatehouse::proxy::tcp_acceptor;
using gatehouse::proxy::tcp_socket;
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

struct listener {
    asio::io_context context;
    tcp_acceptor acceptor{context.get_executor(),
                          tcp::endpoint(asio::ip::address_v4::loopback(), 0)};

    tcp_socket dial()
    {
        tcp_socket client(context);
        client.connect(acceptor.local_endpoint());
        return client;
    }
};

} // namespace

TEST_CASE("accept_pending reports would_block when no connection waits", "[socket_accept]")
{
    listener server;
    tcp_socket socket(server.context);
    tcp::endpoint peer;
    CHECK(accept_pending(server.acceptor, socket, peer) == asio::error::would_block);
    CHECK_FALSE(socket.is_open());
}

TEST_CASE("an accepted socket is non-blocking, close-on-exec and known as such to Asio",
          "[socket_accept]")
{
    listener server;
    tcp_socket client = server.dial();

    tcp_socket socket(server.context);
    tcp::endpoint peer;
    REQUIRE_FALSE(accept_pending(server.acceptor, socket, peer));
    REQUIRE(socket.is_open());
    CHECK(peer == client.local_endpoint());

    const int fd = socket.native_handle();
    CHECK((::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    const auto state = asio_state_of(socket);
    CHECK_FALSE(state.needs_non_blocking_call);
    CHECK_FALSE(state.deregisters_before_close);
}

TEST_CASE("Asio's own accept leaves both system calls to be made", "[socket_accept]")
{
    // What accept_pending saves: if a later Asio set these flags itself, the adapter would be
    // needless, and this test says so.
    listener server;
    tcp_socket client = server.dial();
    tcp_socket socket(server.context);
    server.acceptor.accept(socket);
    const auto state = asio_state_of(socket);
    CHECK(state.needs_non_blocking_call);
    CHECK(state.deregisters_before_close);
}

TEST_CASE("accepted sockets carry data both ways and their descriptors are reused cleanly",
          "[socket_accept]")
{
    listener server;
    // Twice, so that the second connection gets the descriptor number the first one closed:
    // close() alone must have taken the first out of epoll, or registering the second fails.
    int first_fd = -1;
    for (int round = 0; round < 2; ++round) {
        tcp_socket client = server.dial();
        tcp_socket socket(server.context);
        tcp::endpoint peer;
        REQUIRE_FALSE(accept_pending(server.acceptor, socket, peer));
        if (round == 0) {
            first_fd = socket.native_handle();
        } else {
            CHECK(socket.native_handle() == first_fd);
        }

        asio::write(client, asio::buffer(std::string("ping")));
        std::array<char, 4> got{};
        bool read_done = false;
        asio::async_read(socket, asio::buffer(got), [&](error_code ec, std::size_t n) {
            CHECK_FALSE(ec);
            CHECK(n == got.size());
            read_done = true;
            asio::async_write(
                socket, asio::buffer(std::string_view("pong")),
                [](error_code write_failed, std::size_t) { CHECK_FALSE(write_failed); });
        });
        server.context.restart();
        server.context.run_for(5s);
        REQUIRE(read_done);
        CHECK(std::string(got.data(), got.size()) == "ping");

        std::array<char, 4> answer{};
        asio::read(client, asio::buffer(answer));
        CHECK(std::string(answer.data(), answer.size()) == "pong");
        socket.close();
    }
}
