// Keeps a lock alive: refreshes a lease on its own thread for as long as the work under the
// lock lasts, and says when the lock was lost so the work can stop.
#pragma once

#include "store/store.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace gatehouse::store {

class lock_heartbeat {
public:
    // Refreshes `lease` through `target` every `interval` (ttl/3 when zero, so two refreshes can
    // fail in a row before the lease runs out). A refresh failing with errc::lock_lost ends the
    // heartbeat at once; any other failure is retried at the next beat, and ends it once no
    // refresh has succeeded for two thirds of the ttl: the lease still stands then, so work
    // that checks lost() stops before the backend can hand the lock to anyone else.
    // `held_since` is when the lock was asked for (a moment no later than the backend's start
    // of the ttl); the two thirds count from it until a refresh succeeds. `target` must outlive
    // the heartbeat. Throws std::system_error if the thread cannot start.
    lock_heartbeat(
        store& target, lock_lease lease,
        std::chrono::milliseconds interval = std::chrono::milliseconds(0),
        std::chrono::steady_clock::time_point held_since = std::chrono::steady_clock::now());

    // Stops refreshing and joins the thread, waiting at most for one refresh in progress. Does
    // not release the lock: call store::unlock after, with lease().
    ~lock_heartbeat();

    lock_heartbeat(const lock_heartbeat&) = delete;
    lock_heartbeat& operator=(const lock_heartbeat&) = delete;

    // True once the heartbeat has given up (see the constructor): the lock must be presumed
    // held by someone else. Also true once two thirds of the ttl have passed since the last
    // refresh known to have succeeded, even while a refresh is still waiting on a store that
    // went silent, since that refresh may never land. Thread-safe.
    bool lost() const noexcept;

    const lock_lease& lease() const noexcept { return lease_; }

private:
    void run();

    store& target_;
    const lock_lease lease_;
    const std::chrono::milliseconds interval_;
    const std::chrono::milliseconds give_up_after_;

    std::atomic<bool> lost_{false};
    // When the last successful refresh was sent (steady clock, in its own ticks): the lease
    // runs at least give_up_after_ from then.
    std::atomic<std::chrono::steady_clock::rep> last_success_;
    std::mutex mutex_;
    std::condition_variable stop_requested_;
    bool stopping_ = false;
    std::thread thread_;
};

} // namespace gatehouse::store
