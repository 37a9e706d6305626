#include "store/caching_store.hpp"

#include "store/keys.hpp"

namespace gatehouse::store {

caching_store::caching_store(std::unique_ptr<store> backend, std::unique_ptr<store> cache)
    : backend_(std::move(backend)), cache_(std::move(cache))
{}

bool caching_store::is_cached(std::string_view key)
{
    return !key.starts_with(keys::challenges_prefix());
}

bool caching_store::is_outage(const boost::system::error_code& error)
{
    return error == errc::unavailable || error == errc::timeout;
}

result<std::optional<std::string>> caching_store::get(std::string_view key)
{
    auto fresh = backend_->get(key);
    if (fresh) {
        from_cache_ = false;
        if (is_cached(key)) {
            // Keeping the copy current is best effort: a failed cache write costs nothing now.
            auto held = cache_->get(key);
            if (*fresh && (!held || *held != *fresh)) {
                (void)cache_->put(key, **fresh);
            } else if (!*fresh && held && *held) {
                (void)cache_->remove(key);
            }
        }
        return fresh;
    }
    if (!is_outage(fresh.error()) || !is_cached(key)) {
        return fresh;
    }
    from_cache_ = true;
    return cache_->get(key);
}

result<void> caching_store::put(std::string_view key, std::string_view value)
{
    auto written = backend_->put(key, value);
    if (written && is_cached(key)) {
        (void)cache_->put(key, value);
    }
    return written;
}

result<void> caching_store::remove(std::string_view key)
{
    auto removed = backend_->remove(key);
    if (removed && is_cached(key)) {
        (void)cache_->remove(key);
    }
    return removed;
}

result<std::vector<std::string>> caching_store::list(std::string_view prefix)
{
    auto listed = backend_->list(prefix);
    if (listed || !is_outage(listed.error()) || !is_cached(prefix)) {
        return listed;
    }
    from_cache_ = true;
    return cache_->list(prefix);
}

result<std::optional<lock_lease>> caching_store::try_lock(std::string_view name,
                                                          std::chrono::seconds ttl)
{
    return backend_->try_lock(name, ttl);
}

result<void> caching_store::refresh(const lock_lease& lease)
{
    return backend_->refresh(lease);
}

result<void> caching_store::unlock(const lock_lease& lease)
{
    return backend_->unlock(lease);
}

result<std::unique_ptr<watch_handle>>
caching_store::watch(std::string_view prefix, std::function<void(const change_event&)> callback)
{
    return backend_->watch(prefix, std::move(callback));
}

std::string caching_store::describe() const
{
    return backend_->describe() + " (cache: " + cache_->describe() + ")";
}

} // namespace gatehouse::store
