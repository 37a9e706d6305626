#include "store/lock_heartbeat.hpp"

namespace gatehouse::store {

namespace {

std::chrono::milliseconds beat_interval(const lock_lease& lease, std::chrono::milliseconds asked)
{
    if (asked.count() > 0) {
        return asked;
    }
    return std::chrono::duration_cast<std::chrono::milliseconds>(lease.ttl) / 3;
}

} // namespace

lock_heartbeat::lock_heartbeat(store& target, lock_lease lease, std::chrono::milliseconds interval,
                               std::chrono::steady_clock::time_point held_since)
    : target_(target), lease_(std::move(lease)), interval_(beat_interval(lease_, interval)),
      // Two thirds of the ttl: the holder gives up while the lease still stands, so it has
      // stopped before the backend frees the lock for anyone else.
      give_up_after_(std::chrono::duration_cast<std::chrono::milliseconds>(lease_.ttl) * 2 / 3),
      last_success_(held_since.time_since_epoch().count()), thread_([this] { run(); })
{}

bool lock_heartbeat::lost() const noexcept
{
    if (lost_) {
        return true;
    }
    const std::chrono::steady_clock::time_point last_success(
        std::chrono::steady_clock::duration(last_success_.load()));
    return std::chrono::steady_clock::now() - last_success >= give_up_after_;
}

lock_heartbeat::~lock_heartbeat()
{
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    stop_requested_.notify_all();
    thread_.join();
}

void lock_heartbeat::run()
{
    // Steady time: the lease's own expiry is wall-clock, but how long we went without a
    // successful refresh must not jump with the system clock. A refresh counts from when it
    // was sent, not answered: the backend restarted the ttl somewhere in between.
    std::unique_lock lock(mutex_);
    while (!stop_requested_.wait_for(lock, interval_, [this] { return stopping_; })) {
        lock.unlock();
        const auto sent = std::chrono::steady_clock::now();
        const auto refreshed = target_.refresh(lease_);
        lock.lock();
        // Past the give-up point, even a refresh that succeeded late does not count: whoever
        // asked lost() meanwhile has stopped, and a lock once reported lost stays lost.
        if (lost() || (!refreshed && refreshed.error() == errc::lock_lost)) {
            lost_ = true;
            return;
        }
        if (refreshed) {
            last_success_ = sent.time_since_epoch().count();
        }
    }
}

} // namespace gatehouse::store
