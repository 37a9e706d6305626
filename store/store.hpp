// The store: one interface for everything gatehouse must keep across a restart or share with
// other instances later (certificate bundles, ACME accounts, challenge tokens), plus named
// locks with a time to live and change notification.
//
// Values are opaque byte strings under '/'-separated keys; keys are built in store/keys.hpp and
// nowhere else. The interface is written for a networked backend as much as for the file one:
// every call can fail (the error says how), a lock is only a lease that runs out unless it is
// refreshed, and a watch can lose track and ask its consumer to read everything again.
//
// Every backend is thread-safe: any member may be called from any thread at the same time.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

namespace gatehouse::store {

// Why a store operation failed. Compare an error_code against these by value.
enum class errc {
    // Reading or writing the backing storage failed (disk full, I/O error, permission
    // changed under us). The operation may be retried; the old value is still in place.
    io_failed = 1,

    // The store's location cannot be written. Reported when a store is opened, so gatehouse
    // refuses to start rather than lose certificates later.
    not_writable,

    // The lock named by a lease is no longer held by it: the lease ran past its time to live
    // and another holder took the lock, or the lock was released. Work done under the lock
    // must stop, because someone else may be doing it now.
    lock_lost,

    // The backend did not answer in time. The outcome of a write is unknown: it may or may
    // not have taken effect.
    timeout,

    // The backend cannot be reached at all (a networked store whose servers are down).
    unavailable,

    // A stored value or lock record could not be understood.
    corrupt,

    // A key, key prefix or lock name does not follow the rules of is_valid_key().
    invalid_key,

    // An argument other than a key is out of range, such as a lock time to live below one
    // second.
    invalid_argument,
};

} // namespace gatehouse::store

// Lets an errc convert to boost::system::error_code, so `return errc::corrupt;` builds a result.
namespace boost::system {

template <>
struct is_error_code_enum<gatehouse::store::errc> : std::true_type {};

} // namespace boost::system

namespace gatehouse::store {

// The category of errc values; its name is "gatehouse.store". Thread-safe, never destroyed.
const boost::system::error_category& store_category() noexcept;

boost::system::error_code make_error_code(errc value) noexcept;

// The outcome of a store operation: a value, or an error_code that is usually an errc.
template <typename T>
using result = boost::system::result<T>;

// True when `key` may name a value or a lock. A key is one or more segments joined by '/';
// each segment is 1 to 200 characters from [A-Za-z0-9._*@:+-], does not start with '.' (names
// starting with a dot belong to the backend: temporary files, lock records) and does not end
// in ".entry" (the file backend's suffix). '*' is allowed so that wildcard host names
// ("*.example.com") are keys as they are. A key is at most 1024 characters. Pure, thread-safe.
bool is_valid_key(std::string_view key);

// True when `prefix` may be passed to list() or watch(): empty (everything), a valid key
// ("certificates/exa" lists "certificates/example.com"), or a valid key followed by '/'.
bool is_valid_prefix(std::string_view prefix);

// Proof of holding a named lock, returned by store::try_lock. Plain data: copy it freely, but
// only the holder that took the lock should refresh or release it.
struct lock_lease {
    // The lock's name, as passed to try_lock.
    std::string name;

    // A random 128-bit value in hex, unique to this acquisition; it is what the backend
    // compares to tell this holder from any other.
    std::string token;

    // How long the lock lasts after the last acquire or refresh.
    std::chrono::seconds ttl{0};
};

// What a watch reports.
enum class change_kind {
    // The key was written (created or replaced); read it again to see its value.
    put = 1,

    // The key no longer exists.
    removed,

    // The backend may have missed changes (the store was unreachable, the watch was
    // re-established). Every key under the watched prefix must be read again.
    resync,
};

struct change_event {
    change_kind kind = change_kind::put;

    // The key that changed; empty for change_kind::resync.
    std::string key;
};

// Keeps a watch alive. Destroying it stops the callbacks: once the destructor returns, the
// callback will not run again and is not running. When the callback is running on the
// store's thread at that moment, the destructor waits for it to return, so do not destroy a
// handle while holding a mutex that the callback takes. Destroying the handle from inside its
// own callback is allowed and does not wait. A handle may outlive its store (it then does
// nothing), and may be destroyed from any thread.
class watch_handle {
public:
    watch_handle() = default;
    watch_handle(const watch_handle&) = delete;
    watch_handle& operator=(const watch_handle&) = delete;
    virtual ~watch_handle() = default;
};

// The store interface. See the file comment for the contract every backend keeps.
class store {
public:
    store() = default;
    store(const store&) = delete;
    store& operator=(const store&) = delete;
    virtual ~store() = default;

    // The value under `key`, or an empty optional when there is none (absence is not an
    // error). Never returns a partially written value. Fails with invalid_key, io_failed,
    // timeout or unavailable.
    virtual result<std::optional<std::string>> get(std::string_view key) = 0;

    // Creates or replaces the value under `key` atomically: a reader, or a crash at any
    // moment, sees either the old value or the new one, never a mix or a truncation. When it
    // returns success the value is durable. Fails with invalid_key, io_failed, timeout or
    // unavailable; on timeout the write may or may not have happened.
    virtual result<void> put(std::string_view key, std::string_view value) = 0;

    // Removes `key`; removing a key that does not exist succeeds. Fails with invalid_key,
    // io_failed, timeout or unavailable.
    virtual result<void> remove(std::string_view key) = 0;

    // Every key that starts with `prefix` (see is_valid_prefix), at any depth, sorted. Fails
    // with invalid_key, io_failed, timeout or unavailable.
    virtual result<std::vector<std::string>> list(std::string_view prefix) = 0;

    // Takes the lock `name` (a valid key; locks and values do not share a namespace) for
    // `ttl`, which must be at least one second. Returns a lease, or an empty optional when
    // another holder has the lock and its time to live has not run out. A lock whose holder
    // stopped refreshing it is taken over once its ttl has passed, so a holder that dies
    // loses its lock. Two callers, in this process or any other, never both get a lease for
    // the same lock at the same time. Locks are not re-entrant: a second try_lock by the same
    // holder gets an empty optional too. Fails with invalid_key, invalid_argument, io_failed,
    // timeout, unavailable or corrupt.
    virtual result<std::optional<lock_lease>> try_lock(std::string_view name,
                                                       std::chrono::seconds ttl) = 0;

    // Extends the lease to now + lease.ttl. Call it well inside the ttl (lock_heartbeat does
    // it every ttl/3). Fails with lock_lost when the lease no longer holds the lock; with
    // io_failed, timeout or unavailable when the backend could not be asked, in which case the
    // lease still stands until its ttl runs out.
    virtual result<void> refresh(const lock_lease& lease) = 0;

    // Releases the lock so another holder may take it at once. Fails with lock_lost when the
    // lease no longer held it (nothing is released then; callers cleaning up may ignore
    // that), or with io_failed, timeout or unavailable.
    virtual result<void> unlock(const lock_lease& lease) = 0;

    // Calls `callback` for every change to a key starting with `prefix` made from now on, by
    // this process or any other, and with a resync event when changes may have been missed.
    // Changes may be coalesced (two quick puts can be one event) and an event does not carry
    // the value: read the key again. To mirror the store, start the watch first and then read
    // what you need, so nothing falls between the two.
    //
    // Callbacks run one at a time on a thread the store owns, never on the caller's; they
    // should return quickly and must not destroy the store. An exception escaping a callback
    // is dropped so it cannot stop the events of other watches. The returned handle owns the
    // watch (see watch_handle). Fails with invalid_key for a bad prefix, or with io_failed or
    // unavailable when the watch cannot be set up at all.
    virtual result<std::unique_ptr<watch_handle>>
    watch(std::string_view prefix, std::function<void(const change_event&)> callback) = 0;

    // Where the data lives, for logs and /status: "file:/var/lib/gatehouse". Never contains
    // credentials.
    virtual std::string describe() const = 0;

    // Why the store works only in part right now, for /status, or nullopt when it works as it
    // should: a networked store answering reads from a local copy, say. Cheap: it reports what
    // the last calls saw and asks no server.
    virtual std::optional<std::string> degraded() const { return std::nullopt; }
};

} // namespace gatehouse::store
