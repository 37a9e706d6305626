// Named locks with a time to live, kept as lock records in files: the file backend's half of
// store::try_lock, refresh and unlock. Internal to store/.
//
// A lock "a/b" is the file <locks dir>/a/b.lock holding JSON: the holder's random token, the
// expiry in Unix milliseconds (plus the same time as RFC 3339 and the holder's host and pid,
// for people reading it). The lock is held while that file exists, names the token and its
// expiry lies in the future. Lock records are replaced atomically, so no reader sees half of
// one.
//
// Taking over an expired lock is a compare-and-swap: read the record, see that it expired,
// replace it. Two processes doing that at once could both succeed, so every change to a lock
// record (take, take over, refresh, release) happens while holding an exclusive flock(2) on
// <locks dir>/.guard, for the few milliseconds the read-check-write lasts. The kernel drops a
// flock when its process dies, so a crash can never wedge the guard; the lock's own lifetime is
// the TTL in the record, which works across machines sharing the directory as long as their
// clocks agree to well within the TTL. A fresh lock is also created with link(2), which fails
// when the record exists, so even a writer that ignored the guard could not be overwritten.
//
// Thread-safe: each call opens its own descriptor on the guard, and a process-wide mutex is
// taken around the flock, because on NFS flock(2) becomes a POSIX record lock, which does not
// exclude threads of one process from each other.
#pragma once

#include "store/store.hpp"

#include <chrono>
#include <filesystem>
#include <optional>
#include <string_view>

namespace gatehouse::store {

class file_locks {
public:
    // `locks_dir` must exist. A call that cannot get the guard within `guard_timeout` (another
    // process is stuck inside its critical section, e.g. stopped with SIGSTOP) fails with
    // errc::timeout.
    file_locks(std::filesystem::path locks_dir, std::chrono::milliseconds guard_timeout);

    // As store::try_lock, store::refresh and store::unlock.
    result<std::optional<lock_lease>> try_lock(std::string_view name, std::chrono::seconds ttl);
    result<void> refresh(const lock_lease& lease);
    result<void> unlock(const lock_lease& lease);

private:
    std::filesystem::path locks_dir_;
    std::chrono::milliseconds guard_timeout_;
};

} // namespace gatehouse::store
