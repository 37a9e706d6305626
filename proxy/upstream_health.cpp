#include "proxy/upstream_health.hpp"

namespace gatehouse::proxy {

bool upstream_health_state::record_failure(health_clock::time_point now,
                                           const config::upstream_health& policy)
{
    ++consecutive_failures_;
    if (consecutive_failures_ < policy.max_fails) {
        return false;
    }
    bool newly_ejected = !is_ejected(now);
    ejected_until_ = now + policy.cooldown;
    consecutive_failures_ = 0;
    return newly_ejected;
}

std::size_t pick_upstream(std::span<const upstream_health_state* const> states, unsigned start,
                          health_clock::time_point now)
{
    const std::size_t count = states.size();
    std::size_t soonest = start % count;
    for (std::size_t step = 0; step < count; ++step) {
        std::size_t index = (start + step) % count;
        if (!states[index]->is_ejected(now)) {
            return index;
        }
        if (states[index]->ejected_until() < states[soonest]->ejected_until()) {
            soonest = index;
        }
    }
    return soonest;
}

} // namespace gatehouse::proxy
