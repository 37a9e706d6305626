// Maps a request's host and path to the upstreams that serve it.
//
// Lookup is by host first (exact name, then a one-label wildcard), then by the longest path
// prefix within that host. A host we do not serve matches nothing, so the caller answers 404
// and nothing is forwarded: gatehouse is never an open proxy.
//
// A route_table is built once from a configuration and never changes; a reload builds a new
// one. Lookups are therefore safe from any number of threads at once.
#pragma once

#include "config/config.hpp"

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace gatehouse::proxy {

// One path prefix of one host, with what the forwarder needs to send a request there.
struct path_target {
    std::string host_pattern;
    std::string prefix;
    bool strip_prefix = false;
    std::vector<config::upstream_url> upstreams;

    // The route has a certificate, so it is served on the HTTPS listener.
    bool has_tls = false;

    // Plain-HTTP requests get a 308 to the same URL over HTTPS instead of being forwarded.
    bool redirect_http = false;

    // Strict-Transport-Security for HTTPS responses; empty for none.
    std::string hsts_header;

    // Where the next round-robin pick starts. Shared by every thread; relaxed increments are
    // enough because only the spread matters, not the exact order.
    mutable std::atomic<unsigned> next_upstream{0};
};

struct route_match {
    const path_target* target = nullptr;

    // The path to send upstream, query included; equal to the request's unless the prefix is
    // stripped.
    std::string upstream_target;
};

class route_table {
public:
    explicit route_table(const std::vector<config::route>& routes);

    // Finds where a request goes. `host` is the Host header or the authority of an
    // absolute-form target, possibly with a port and in any case; `target` is the origin-form
    // request target ("/path?query"). Returns nothing when no host or no prefix matches.
    std::optional<route_match> find(std::string_view host, std::string_view target) const;

    // The route host ("app.example.com" or "*.example.com") that serves `host`, whatever the
    // path; null when no route does. Points into the table.
    const std::string* host_pattern_for(std::string_view host) const;

    std::size_t size() const noexcept { return hosts_.size(); }

private:
    struct host_entry {
        // Sorted by descending prefix length, so the first match is the longest. Shared by
        // the route host and the extra names on its certificate, which route the same way.
        std::vector<std::shared_ptr<path_target>> paths;
    };

    const host_entry* find_host(std::string_view host) const;

    std::unordered_map<std::string, host_entry> exact_;

    // Keyed by the suffix after "*", e.g. ".example.com".
    std::unordered_map<std::string, host_entry> wildcard_;

    std::vector<std::string> hosts_;
};

// Lower-cases a Host header value and removes its port and any trailing dot. Returns an empty
// string for a value that is not a plausible host (for example, an unbalanced IPv6 bracket).
std::string normalize_host(std::string_view host_header);

} // namespace gatehouse::proxy
