#include "proxy/forwarding_rules.hpp"

#include "proxy/ascii.hpp"

#include <algorithm>
#include <array>

namespace gatehouse::proxy {

bool is_hop_by_hop(std::string_view field_name)
{
    static constexpr std::array<std::string_view, 9> hop_by_hop = {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    };
    return std::any_of(hop_by_hop.begin(), hop_by_hop.end(),
                       [field_name](std::string_view name) { return iequals(name, field_name); });
}

bool connection_lists(std::string_view connection_value, std::string_view token)
{
    if (token.empty()) {
        return false;
    }
    for (;;) {
        const auto comma = connection_value.find(',');
        if (iequals(trim_ows(connection_value.substr(0, comma)), token)) {
            return true;
        }
        if (comma == std::string_view::npos) {
            return false;
        }
        connection_value.remove_prefix(comma + 1);
    }
}

std::string forwarded_for(std::optional<std::string_view> incoming, std::string_view peer_address,
                          bool peer_is_trusted)
{
    if (peer_is_trusted && incoming && !trim_ows(*incoming).empty()) {
        std::string extended(trim_ows(*incoming));
        extended += ", ";
        extended += peer_address;
        return extended;
    }
    return std::string(peer_address);
}

bool is_trusted_peer(std::string_view peer_address, const std::vector<config::ip_network>& trusted)
{
    return std::any_of(trusted.begin(), trusted.end(), [peer_address](const auto& network) {
        return network.contains(peer_address);
    });
}

} // namespace gatehouse::proxy
