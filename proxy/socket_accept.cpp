#include "proxy/socket_accept.hpp"

#include <cerrno>
#include <sys/socket.h>
#include <unistd.h>

namespace gatehouse::proxy {

namespace {

namespace socket_ops = asio::detail::socket_ops;

// The implementation Asio keeps for a socket (descriptor, state flags, reactor data) is the
// protected member impl_ of basic_socket. A pointer to that member, formed in a derived class
// as the language allows, reaches it from any socket of the type.
struct socket_internals : tcp_socket {
    static auto& of(tcp_socket& socket)
    {
        return (socket.*&socket_internals::impl_).get_implementation();
    }
};

// Errors accept4() reports for a connection that failed before it was taken, not for the
// listening socket; Linux's accept(2) asks callers to treat them like EAGAIN and try again.
bool is_pending_connection_error(int error)
{
    switch (error) {
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
        return true;
    default:
        return false;
    }
}

} // namespace

error_code adopt_accepted(tcp_socket& socket, const tcp& protocol, int fd)
{
    error_code failed;
    socket.assign(protocol, fd, failed);
    if (failed) {
        ::close(fd);
        return failed;
    }
    // assign() registered the descriptor with the reactor and assumed the worst: blocking
    // mode unknown, other descriptors for the same socket possible. Neither is so.
    auto& state = socket_internals::of(socket).state_;
    state = static_cast<socket_ops::state_type>((state | socket_ops::internal_non_blocking) &
                                                ~socket_ops::possible_dup);
    return {};
}

error_code accept_pending(tcp_acceptor& acceptor, tcp_socket& socket, tcp::endpoint& peer)
{
    // A blocking listener would stall the worker in accept4() whenever another worker took
    // the connection first. Asio remembers the mode, so this costs an ioctl once.
    if (!acceptor.non_blocking()) {
        error_code failed;
        acceptor.non_blocking(true, failed);
        if (failed) {
            return failed;
        }
    }
    for (;;) {
        auto length = static_cast<socklen_t>(peer.capacity());
        const int fd =
            ::accept4(acceptor.native_handle(), peer.data(), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            peer.resize(length);
            return adopt_accepted(socket, peer.protocol(), fd);
        }
        const int error = errno;
        if (error == EAGAIN || error == EWOULDBLOCK) {
            return asio::error::would_block;
        }
        if (!is_pending_connection_error(error)) {
            return {error, asio::error::get_system_category()};
        }
    }
}

asio_socket_state asio_state_of(tcp_socket& socket)
{
    const auto state = socket_internals::of(socket).state_;
    return {(state & socket_ops::non_blocking) == 0, (state & socket_ops::possible_dup) != 0};
}

} // namespace gatehouse::proxy
