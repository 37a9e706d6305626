// A byte tunnel between a client and an upstream, used after a 101 Switching Protocols
// response (WebSocket and other upgrades). Internal to proxy/: it exposes Beast.
#pragma once

#include "proxy/client_stream.hpp"
#include "proxy/net.hpp"

#include <chrono>

namespace gatehouse::proxy {

// Copies bytes both ways until either side closes or neither side sends anything for
// `idle_timeout`. Bytes already read into either buffer are delivered first. Both streams are
// closed when it returns. Never throws.
task<void> run_tunnel(client_stream& client, beast::flat_buffer& client_buffer,
                      timed_socket& upstream, beast::flat_buffer& upstream_buffer,
                      std::chrono::milliseconds idle_timeout);

} // namespace gatehouse::proxy
