// Accepting client connections with accept4(), two system calls cheaper per connection than
// Asio's own accept.
//
// Asio accepts with accept(), so every new socket then takes an ioctl(FIONBIO) before its first
// asynchronous operation; and it marks every socket it adopts as possibly duplicated, which makes
// closing it an epoll_ctl(EPOLL_CTL_DEL) before the close(). accept4() makes the socket
// non-blocking (and close-on-exec, so no child process can inherit a client's connection) in
// the same call, and the descriptor it returns is the only one, so close() alone takes it out of
// epoll. adopt_accepted() tells Asio both facts. On a short connection those are two of about
// nineteen system calls.
//
// Internal to proxy/: it exposes Asio, and reaches into Asio 1.81's socket implementation (the
// state flags of reactive_socket_service_base), which the unit tests check.
#pragma once

#include "proxy/net.hpp"

namespace gatehouse::proxy {

// Takes one pending connection off `acceptor`'s queue into `socket`, which must be closed,
// and stores the client's address in `peer`. Returns asio::error::would_block when no
// connection is pending; connections the client gave up on while they waited in the queue are
// skipped. Never waits: the listening socket is put in non-blocking mode first if it is not.
error_code accept_pending(tcp_acceptor& acceptor, tcp_socket& socket, tcp::endpoint& peer);

// Hands the connected, non-blocking descriptor `fd`, which no other descriptor duplicates, to
// `socket` (closed). On failure `fd` is closed.
error_code adopt_accepted(tcp_socket& socket, const tcp& protocol, int fd);

// Asio's state flags for `socket`, for tests: whether Asio will make it non-blocking itself
// before its first asynchronous operation, and whether closing it deregisters it from epoll
// first.
struct asio_socket_state {
    bool needs_non_blocking_call = false;
    bool deregisters_before_close = false;
};
asio_socket_state asio_state_of(tcp_socket& socket);

} // namespace gatehouse::proxy
