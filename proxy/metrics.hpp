// Process-wide counters, exported on the admin listener in the Prometheus text format.
//
// Counters are relaxed atomics: they are bumped on the request path by every worker thread
// and read only by the admin listener, where a value a few nanoseconds stale is fine.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace gatehouse::proxy {

struct metrics {
    // Responses sent to clients, by status class: index 1 for 1xx up to 5 for 5xx.
    std::array<std::atomic<std::uint64_t>, 6> responses_by_class{};

    std::atomic<std::uint64_t> connections_accepted{0};
    std::atomic<std::uint64_t> connections_refused{0};
    std::atomic<std::int64_t> connections_open{0};

    std::atomic<std::uint64_t> upstream_connects{0};
    std::atomic<std::uint64_t> upstream_failures{0};
    std::atomic<std::uint64_t> upstream_ejections{0};

    std::atomic<std::uint64_t> request_bytes{0};
    std::atomic<std::uint64_t> response_bytes{0};

    std::atomic<std::uint64_t> config_reloads{0};
    std::atomic<std::uint64_t> config_reload_failures{0};

    std::atomic<std::uint64_t> tls_handshakes{0};
    std::atomic<std::uint64_t> tls_handshake_failures{0};
    std::atomic<std::uint64_t> tls_resumptions{0};
    std::atomic<std::uint64_t> certificate_updates{0};
    std::atomic<std::uint64_t> certificate_failures{0};
    std::atomic<std::uint64_t> acme_orders{0};
    std::atomic<std::uint64_t> acme_order_failures{0};
    std::atomic<std::uint64_t> acme_challenges_answered{0};

    void count_response(unsigned status)
    {
        unsigned status_class = status / 100;
        if (status_class >= 1 && status_class <= 5) {
            responses_by_class[status_class].fetch_add(1, std::memory_order_relaxed);
        }
    }

    // The Prometheus text exposition (version 0.0.4) of every counter.
    std::string render_prometheus() const;
};

// The one instance, shared by every module of the process.
metrics& process_metrics();

} // namespace gatehouse::proxy
