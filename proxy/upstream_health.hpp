// Passive health checking and round-robin choice among a path's upstreams.
//
// Gatehouse does not probe upstreams; it learns from the requests it forwards. An upstream that
// fails `max_fails` times in a row (refused, reset, timed out) is skipped for `cooldown`, and
// traffic moves to the others. Time is passed in, so tests run on a simulated clock.
#pragma once

#include "config/config.hpp"

#include <chrono>
#include <cstddef>
#include <span>

namespace gatehouse::proxy {

using health_clock = std::chrono::steady_clock;

// The health of one upstream as one worker thread sees it. Not thread-safe: each worker keeps
// its own, so the request path never takes a lock.
class upstream_health_state {
public:
    void record_success() { consecutive_failures_ = 0; }

    // Counts a failure; at `policy.max_fails` in a row the upstream is ejected until
    // now + cooldown. Returns true when this failure is the one that ejected it.
    bool record_failure(health_clock::time_point now, const config::upstream_health& policy);

    bool is_ejected(health_clock::time_point now) const { return now < ejected_until_; }

    health_clock::time_point ejected_until() const { return ejected_until_; }

private:
    unsigned consecutive_failures_ = 0;
    health_clock::time_point ejected_until_{};
};

// Picks which upstream to try first: the round-robin position `start`, or the next one after
// it that is not ejected. When every upstream is ejected, the one whose cooldown ends first is
// tried anyway, because refusing outright would turn a brief outage into a longer one.
// `states` is never empty.
std::size_t pick_upstream(std::span<const upstream_health_state* const> states, unsigned start,
                          health_clock::time_point now);

} // namespace gatehouse::proxy
