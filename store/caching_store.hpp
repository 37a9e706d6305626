// A networked store with a local copy: reads that the network backend cannot answer (it is
// unreachable, or too slow) are answered from a cache kept in a local store, so an instance
// that starts while etcd is down still serves the certificates it last saw.
//
// Everything else goes to the backend alone. Writes succeed only when the backend took them,
// then reach the cache too. Locks are never taken from the cache: an instance that cannot
// reach the backend cannot hold a lock, so it never orders a certificate while it is cut off.
// Watches are the backend's; once it is reachable again they report a resync, and the readers
// that follow refresh the cache.
//
// The cache mirrors what this instance read or wrote, key by key: a value read from the
// backend is written to the cache when it differs, and a key the backend says is absent is
// removed from it. Challenge answers (challenges/) are short-lived and never cached. The cache
// holds the same bytes as the backend, so with encryption at rest (encrypted_store wrapped
// around this one) it holds no private key in the clear either.
#pragma once

#include "store/store.hpp"

#include <atomic>
#include <memory>

namespace gatehouse::store {

class caching_store final : public store {
public:
    // Takes ownership of both. `cache` should be a local store (a file store).
    caching_store(std::unique_ptr<store> backend, std::unique_ptr<store> cache);

    result<std::optional<std::string>> get(std::string_view key) override;
    result<void> put(std::string_view key, std::string_view value) override;
    result<void> remove(std::string_view key) override;
    result<std::vector<std::string>> list(std::string_view prefix) override;
    result<std::optional<lock_lease>> try_lock(std::string_view name,
                                               std::chrono::seconds ttl) override;
    result<void> refresh(const lock_lease& lease) override;
    result<void> unlock(const lock_lease& lease) override;
    result<std::unique_ptr<watch_handle>>
    watch(std::string_view prefix, std::function<void(const change_event&)> callback) override;

    // "etcd:http://...(cache: file:/var/lib/...)".
    std::string describe() const override;

    // Whether the last read had to be answered from the cache: the backend is out of reach.
    bool serving_from_cache() const noexcept { return from_cache_.load(); }

    std::optional<std::string> degraded() const override
    {
        if (from_cache_.load()) {
            return "the backend is out of reach; reads come from the local copy";
        }
        return backend_->degraded();
    }

private:
    static bool is_cached(std::string_view key);
    static bool is_outage(const boost::system::error_code& error);

    std::unique_ptr<store> backend_;
    std::unique_ptr<store> cache_;
    std::atomic<bool> from_cache_{false};
};

} // namespace gatehouse::store
