#include "config/config.hpp"
#include "config/value_parsers.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <charconv>
#include <string>

namespace gatehouse::config {

namespace {

using address_bytes = std::array<std::uint8_t, 16>;

// IPv4 addresses take the last four bytes after the ::ffff: marker (RFC 4291 section 2.5.5.2).
constexpr unsigned ipv4_mapped_prefix_bits = 96;

std::optional<address_bytes> parse_ipv4(const std::string& text)
{
    std::array<std::uint8_t, 4> ipv4{};
    if (inet_pton(AF_INET, text.c_str(), ipv4.data()) != 1) {
        return std::nullopt;
    }
    address_bytes mapped{};
    mapped[10] = 0xff;
    mapped[11] = 0xff;
    std::copy(ipv4.begin(), ipv4.end(), mapped.begin() + 12);
    return mapped;
}

// Clears every bit after the first `prefix_length`.
address_bytes masked(address_bytes address, unsigned prefix_length)
{
    for (unsigned byte = 0; byte < address.size(); ++byte) {
        const unsigned bits_kept = prefix_length > byte * 8 ? prefix_length - byte * 8 : 0;
        if (bits_kept < 8) {
            address[byte] &= static_cast<std::uint8_t>(0xff00 >> bits_kept);
        }
    }
    return address;
}

std::string format_address(const address_bytes& address, bool ipv4)
{
    std::array<char, INET6_ADDRSTRLEN> text{};
    const void* source = ipv4 ? address.data() + 12 : address.data();
    inet_ntop(ipv4 ? AF_INET : AF_INET6, source, text.data(), text.size());
    return text.data();
}

std::optional<unsigned> parse_prefix_length(std::string_view text, unsigned max_bits)
{
    unsigned bits = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), bits);
    if (text.empty() || error != std::errc{} || end != text.data() + text.size() ||
        bits > max_bits) {
        return std::nullopt;
    }
    return bits;
}

} // namespace

std::optional<address_bytes> parse_ip_address(std::string_view text)
{
    const std::string terminated(text);
    if (auto ipv4 = parse_ipv4(terminated)) {
        return ipv4;
    }
    address_bytes ipv6{};
    if (inet_pton(AF_INET6, terminated.c_str(), ipv6.data()) != 1) {
        return std::nullopt;
    }
    return ipv6;
}

parse_result<ip_network> parse_ip_network(std::string_view text)
{
    const auto slash = text.find('/');
    const std::string_view address_text = text.substr(0, slash);
    const auto address = parse_ip_address(address_text);
    if (!address) {
        return rejection{"invalid IP address \"" + std::string(address_text) + "\""};
    }

    // A bare address is a network of one host.
    const bool ipv4 = parse_ipv4(std::string(address_text)).has_value();
    const unsigned max_bits = ipv4 ? 32 : 128;
    unsigned bits = max_bits;
    if (slash != std::string_view::npos) {
        const auto parsed = parse_prefix_length(text.substr(slash + 1), max_bits);
        if (!parsed) {
            return rejection{"invalid prefix length in \"" + std::string(text) +
                             "\"; expected 0 to " + std::to_string(max_bits)};
        }
        bits = *parsed;
    }

    ip_network network;
    network.prefix_length = ipv4 ? ipv4_mapped_prefix_bits + bits : bits;
    network.address = masked(*address, network.prefix_length);
    network.text = std::string(text);
    if (network.address != *address) {
        return rejection{"\"" + std::string(text) + "\" has host bits set; did you mean " +
                         format_address(network.address, ipv4) + "/" + std::to_string(bits) + "?"};
    }
    return network;
}

bool ip_network::contains(std::string_view ip) const
{
    const auto candidate = parse_ip_address(ip);
    return candidate && masked(*candidate, prefix_length) == address;
}

} // namespace gatehouse::config
