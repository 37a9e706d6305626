// Apart from the tests themselves: <linux/tcp.h>, which has tcpi_data_segs_out, cannot share a
// translation unit with glibc's <netinet/tcp.h>, which Asio includes and which lacks it.
#include "tests/unit/proxy/tcp_counters.hpp"

#include <cstddef>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stdexcept>
#include <sys/socket.h>

namespace gatehouse::proxy::testing {

std::uint32_t data_segments_sent(int fd)
{
    tcp_info info{};
    socklen_t size = sizeof info;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &size) != 0 ||
        size < offsetof(tcp_info, tcpi_data_segs_out) + sizeof info.tcpi_data_segs_out) {
        throw std::runtime_error("TCP_INFO has no tcpi_data_segs_out on this kernel");
    }
    return info.tcpi_data_segs_out;
}

} // namespace gatehouse::proxy::testing
