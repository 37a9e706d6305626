// A store that passes every call on to another one: the base for stores that change a few of
// the calls (encrypting values, say) and must pass the rest through unchanged.
#pragma once

#include "store/store.hpp"

#include <memory>
#include <utility>

namespace gatehouse::store {

class forwarding_store : public store {
public:
    explicit forwarding_store(std::unique_ptr<store> backend) : backend_(std::move(backend)) {}

    result<std::optional<std::string>> get(std::string_view key) override
    {
        return backend_->get(key);
    }
    result<void> put(std::string_view key, std::string_view value) override
    {
        return backend_->put(key, value);
    }
    result<void> remove(std::string_view key) override { return backend_->remove(key); }
    result<std::vector<std::string>> list(std::string_view prefix) override
    {
        return backend_->list(prefix);
    }
    result<std::optional<lock_lease>> try_lock(std::string_view name,
                                               std::chrono::seconds ttl) override
    {
        return backend_->try_lock(name, ttl);
    }
    result<void> refresh(const lock_lease& lease) override { return backend_->refresh(lease); }
    result<void> unlock(const lock_lease& lease) override { return backend_->unlock(lease); }
    result<std::unique_ptr<watch_handle>>
    watch(std::string_view prefix, std::function<void(const change_event&)> callback) override
    {
        return backend_->watch(prefix, std::move(callback));
    }
    std::string describe() const override { return backend_->describe(); }
    std::optional<std::string> degraded() const override { return backend_->degraded(); }

protected:
    const std::unique_ptr<store> backend_;
};

} // namespace gatehouse::store
