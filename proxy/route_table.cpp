#include "proxy/route_table.hpp"

#include <algorithm>

namespace gatehouse::proxy {

namespace {

char to_lower_ascii(char c)
{
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// Does `path` (the part of a target before '?') start with `prefix`?
bool path_has_prefix(std::string_view path, std::string_view prefix)
{
    return path.size() >= prefix.size() && path.compare(0, prefix.size(), prefix) == 0;
}

std::string strip_path_prefix(std::string_view target, std::string_view prefix)
{
    std::string_view rest = target.substr(prefix.size());

    // The upstream always receives an origin-form target, so keep (or restore) the slash that
    // a prefix such as "/api/" swallowed.
    if (rest.empty() || rest.front() != '/') {
        return "/" + std::string(rest);
    }
    return std::string(rest);
}

// The Strict-Transport-Security value for a policy (RFC 6797 section 6.1), or "" for none.
std::string hsts_header_value(const config::hsts_policy& policy)
{
    if (!policy.enabled) {
        return {};
    }
    std::string value = "max-age=" + std::to_string(policy.max_age.count());
    if (policy.include_subdomains) {
        value += "; includeSubDomains";
    }
    if (policy.preload) {
        value += "; preload";
    }
    return value;
}

} // namespace

std::string normalize_host(std::string_view host_header)
{
    std::string_view host = host_header;

    // An IPv6 literal keeps its brackets and loses only what follows them.
    if (!host.empty() && host.front() == '[') {
        auto close = host.find(']');
        if (close == std::string_view::npos) {
            return {};
        }
        host = host.substr(0, close + 1);
    } else if (auto colon = host.rfind(':'); colon != std::string_view::npos) {
        host = host.substr(0, colon);
    }

    if (!host.empty() && host.back() == '.') {
        host.remove_suffix(1);
    }

    std::string lowered(host.size(), '\0');
    std::transform(host.begin(), host.end(), lowered.begin(), to_lower_ascii);
    return lowered;
}

route_table::route_table(const std::vector<config::route>& routes)
{
    for (const auto& route : routes) {
        host_entry entry;
        for (const auto& path : route.paths) {
            auto target = std::make_shared<path_target>();
            target->host_pattern = route.host;
            target->prefix = path.prefix;
            target->strip_prefix = path.strip_prefix;
            target->upstreams = path.upstreams;
            target->has_tls = route.tls.source != config::tls_source::off;
            target->redirect_http = target->has_tls && route.redirect_http;
            target->hsts_header = hsts_header_value(route.hsts);
            entry.paths.push_back(std::move(target));
        }
        std::stable_sort(entry.paths.begin(), entry.paths.end(), [](const auto& a, const auto& b) {
            return a->prefix.size() > b->prefix.size();
        });

        hosts_.push_back(route.host);
        for (const auto& extra : route.tls.extra_names) {
            exact_.emplace(extra, entry);
        }
        if (route.host.starts_with("*.")) {
            wildcard_.emplace(route.host.substr(1), std::move(entry));
        } else {
            exact_.emplace(route.host, std::move(entry));
        }
    }
}

const std::string* route_table::host_pattern_for(std::string_view host) const
{
    const host_entry* entry = find_host(host);
    return entry != nullptr && !entry->paths.empty() ? &entry->paths.front()->host_pattern
                                                     : nullptr;
}

const route_table::host_entry* route_table::find_host(std::string_view host) const
{
    std::string name = normalize_host(host);
    if (name.empty()) {
        return nullptr;
    }

    if (auto exact = exact_.find(name); exact != exact_.end()) {
        return &exact->second;
    }

    // A wildcard covers exactly one label: "*.example.com" serves "a.example.com" only.
    auto first_dot = name.find('.');
    if (first_dot == std::string::npos || first_dot == 0) {
        return nullptr;
    }
    if (auto wild = wildcard_.find(name.substr(first_dot)); wild != wildcard_.end()) {
        return &wild->second;
    }
    return nullptr;
}

std::optional<route_match> route_table::find(std::string_view host, std::string_view target) const
{
    const host_entry* entry = find_host(host);
    if (entry == nullptr) {
        return std::nullopt;
    }

    std::string_view path = target.substr(0, target.find('?'));
    for (const auto& candidate : entry->paths) {
        if (!path_has_prefix(path, candidate->prefix)) {
            continue;
        }
        route_match match;
        match.target = candidate.get();
        match.upstream_target = candidate->strip_prefix
                                    ? strip_path_prefix(target, candidate->prefix)
                                    : std::string(target);
        return match;
    }
    return std::nullopt;
}

} // namespace gatehouse::proxy
