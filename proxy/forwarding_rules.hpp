// Header rules applied when a request or response crosses the proxy, independent of the wire
// protocol on either side.
//
// Hop-by-hop headers describe one connection, not the message, so they stop at the proxy
// (RFC 9110 section 7.6.1). The X-Forwarded-* headers tell the upstream who the client was.
#pragma once

#include "config/config.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::proxy {

// True for the fields that never cross a proxy: Connection, Keep-Alive, Proxy-Connection, TE,
// Trailer, Transfer-Encoding, Upgrade, and the proxy authentication pair. Case-insensitive.
bool is_hop_by_hop(std::string_view field_name);

// True when the Connection header value `connection_value`, a comma-separated list of tokens
// with optional whitespace (RFC 9110 section 7.6.1), lists `token`, ignoring case. Empty list
// elements name nothing. Scans in place: no list is built.
bool connection_lists(std::string_view connection_value, std::string_view token);

// The X-Forwarded-For value to send upstream. A trusted peer (another proxy in front of us)
// may have recorded the real client already, so its list is extended; anyone else could have
// forged the header, so it is replaced by the address we saw.
std::string forwarded_for(std::optional<std::string_view> incoming, std::string_view peer_address,
                          bool peer_is_trusted);

// True when `peer_address` is inside any of `trusted` networks.
bool is_trusted_peer(std::string_view peer_address, const std::vector<config::ip_network>& trusted);

} // namespace gatehouse::proxy
