// A TCP connection on loopback with both ends in one io_context, for tests that put one end
// under test and play the other themselves.
#pragma once

#include "proxy/net.hpp"

#include <utility>

namespace gatehouse::proxy::testing {

struct loopback_connection {
    tcp_socket dialed;
    tcp_socket accepted;
};

inline loopback_connection connect_on_loopback(asio::io_context& context)
{
    tcp_acceptor acceptor(context.get_executor(),
                          tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    tcp_socket dialed(context);
    dialed.connect(acceptor.local_endpoint());
    tcp_socket accepted(context);
    acceptor.accept(accepted);
    return {std::move(dialed), std::move(accepted)};
}

} // namespace gatehouse::proxy::testing
