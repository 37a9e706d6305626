// The watches of one store and the dispatch of their events, shared by the file and etcd
// backends: each keeps one registry, its watcher thread dispatches into it, and every
// watch_handle it returns removes its entry again (see store::watch_handle for the rules).
#pragma once

#include "store/store.hpp"

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace gatehouse::store {

// Whether a watch on `prefix` hears of `event`: a resync reaches every watch.
inline bool watch_matches(std::string_view prefix, const change_event& event)
{
    return event.kind == change_kind::resync || event.key.starts_with(prefix);
}

// The watches of one store and the dispatch of events to them. Shared by the watcher thread and
// every handle, so a handle may outlive the store.
class watch_registry {
public:
    struct entry {
        std::string prefix;
        std::function<void(const change_event&)> callback;
        bool active = true;
    };

    std::shared_ptr<entry> add(std::string prefix,
                               std::function<void(const change_event&)> callback)
    {
        auto added = std::make_shared<entry>(entry{std::move(prefix), std::move(callback)});
        std::lock_guard lock(mutex_);
        entries_.push_back(added);
        return added;
    }

    // Stops `removed`'s callbacks, waiting for one in progress unless called on the dispatching
    // thread itself (from inside a callback), where waiting would never end.
    void remove(const std::shared_ptr<entry>& removed)
    {
        std::unique_lock lock(mutex_);
        removed->active = false;
        std::erase(entries_, removed);
        if (std::this_thread::get_id() != dispatcher_) {
            callback_returned_.wait(lock, [&] { return running_ != removed.get(); });
        }
    }

    void set_dispatcher(std::thread::id id)
    {
        std::lock_guard lock(mutex_);
        dispatcher_ = id;
    }

    // Calls every matching active watch for each event, without holding the mutex while a
    // callback runs, so that callbacks may add or remove watches.
    void dispatch(const std::vector<change_event>& events)
    {
        std::vector<std::shared_ptr<entry>> targets;
        {
            std::lock_guard lock(mutex_);
            targets = entries_;
        }
        for (const auto& event : events) {
            for (const auto& target : targets) {
                if (watch_matches(target->prefix, event)) {
                    call(*target, event);
                }
            }
        }
    }

private:
    void call(entry& target, const change_event& event)
    {
        {
            std::lock_guard lock(mutex_);
            if (!target.active) {
                return;
            }
            running_ = &target;
        }
        try {
            target.callback(event);
        } catch (...) {
            // Dropped, as store::watch documents: one consumer must not silence the others.
        }
        {
            std::lock_guard lock(mutex_);
            running_ = nullptr;
        }
        callback_returned_.notify_all();
    }

    std::mutex mutex_;
    std::condition_variable callback_returned_;
    std::vector<std::shared_ptr<entry>> entries_;
    const entry* running_ = nullptr;
    std::thread::id dispatcher_;
};

// The handle a backend returns from watch(): destroying it removes the watch from the registry.
class registry_watch_handle final : public watch_handle {
public:
    registry_watch_handle(std::shared_ptr<watch_registry> registry,
                          std::shared_ptr<watch_registry::entry> entry)
        : registry_(std::move(registry)), entry_(std::move(entry))
    {}

    ~registry_watch_handle() override { registry_->remove(entry_); }

private:
    std::shared_ptr<watch_registry> registry_;
    std::shared_ptr<watch_registry::entry> entry_;
};

} // namespace gatehouse::store
