// The monotonic clock as of the kernel's last tick, for deadlines and cooldowns.
//
// std::chrono::steady_clock reads CLOCK_MONOTONIC, which under load is several reads of the
// time-stamp counter per request. CLOCK_MONOTONIC_COARSE is the same clock as of the kernel's
// last tick, read from memory the kernel updates at each tick: usually one tick (1-4 ms)
// behind, more when ticks arrive late, as they do in a busy virtual machine (5 ms seen on the
// development VM). Timeouts measured in seconds lose nothing by starting a few milliseconds
// early. Durations that get reported (access-log times) still use steady_clock.
#pragma once

#include <chrono>
#include <ctime>

namespace gatehouse::proxy {

struct coarse_clock {
    using duration = std::chrono::steady_clock::duration;
    using time_point = std::chrono::steady_clock::time_point;

    static time_point now() noexcept
    {
        timespec ts{};
        ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        return time_point(as_duration(ts));
    }

    // The kernel's tick: how far behind steady_clock now() usually is.
    static duration resolution() noexcept
    {
        timespec ts{};
        ::clock_getres(CLOCK_MONOTONIC_COARSE, &ts);
        return as_duration(ts);
    }

private:
    static duration as_duration(const timespec& ts) noexcept
    {
        return std::chrono::duration_cast<duration>(std::chrono::seconds(ts.tv_sec) +
                                                    std::chrono::nanoseconds(ts.tv_nsec));
    }
};

} // namespace gatehouse::proxy
