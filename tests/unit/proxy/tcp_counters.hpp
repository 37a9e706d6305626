// What the kernel counts for a TCP socket, for tests that check how a stream uses the network
// rather than only what arrives.
#pragma once

#include <cstdint>

namespace gatehouse::proxy::testing {

// Segments carrying data that the socket `fd` has sent so far (tcpi_data_segs_out).
std::uint32_t data_segments_sent(int fd);

} // namespace gatehouse::proxy::testing
