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

lock_heartbeat::lock_heartbeat(store& target, lock_lease lease, std::chrono::milliseconds interval)
    : target_(target), lease_(std::move(lease)), interval_(beat_interval(lease_, interval)),
      // Two thirds of the ttl: the holder gives up while the lease still stands, so it has
      // stopped before the backend frees the lock for anyone else.
      give_up_after_(std::chrono::duration_cast<std::chrono::milliseconds>(lease_.ttl) * 2 / 3),
      thread_([this] { run(); })
{}

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
    // successful refresh must not jump with the system clock.
    auto last_success = std::chrono::steady_clock::now();
    std::unique_lock lock(mutex_);
    while (!stop_requested_.wait_for(lock, interval_, [this] { return stopping_; })) {
        lock.unlock();
        const auto refreshed = target_.refresh(lease_);
        const auto now = std::chrono::steady_clock::now();
        lock.lock();
        if (refreshed) {
            last_success = now;
        } else if (refreshed.error() == errc::lock_lost || now - last_success >= give_up_after_) {
            lost_ = true;
            return;
        }
    }
}

} // namespace gatehouse::store
