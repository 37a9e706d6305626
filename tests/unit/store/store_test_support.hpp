// Helpers shared by the store tests: a scratch directory, a way to wait for an asynchronous
// condition, and a thread-safe record of watch events.
#pragma once

#include "store/file_store.hpp"
#include "store/store.hpp"
#include "tests/unit/store/result_string_maker.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

namespace gatehouse::store::testing {

// A fresh directory under the system's temporary directory, removed with everything in it.
class temporary_directory {
public:
    temporary_directory()
    {
        std::string pattern = (std::filesystem::temp_directory_path() / "gatehouse-store-XXXXXX");
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path_ = pattern;
    }

    ~temporary_directory()
    {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }

    temporary_directory(const temporary_directory&) = delete;
    temporary_directory& operator=(const temporary_directory&) = delete;

    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

// Opens a file store in `dir`, failing the test with the store's own message if it cannot.
inline std::unique_ptr<store> open_store(const std::filesystem::path& dir,
                                         const file_store_options& options = {})
{
    std::string why;
    auto opened = open_file_store(dir, &why, options);
    INFO(why);
    REQUIRE(opened);
    return std::move(*opened);
}

// Polls `condition` every 5 ms until it holds or `timeout` passes; returns whether it held.
template <typename Condition>
bool wait_until(Condition condition, std::chrono::milliseconds timeout)
{
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!condition()) {
        if (std::chrono::steady_clock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
}

// Collects the events a watch delivers, for the test thread to inspect.
class event_recorder {
public:
    void operator()(const change_event& event)
    {
        std::lock_guard lock(mutex_);
        events_.push_back(event);
    }

    std::vector<change_event> events() const
    {
        std::lock_guard lock(mutex_);
        return events_;
    }

    bool has(change_kind kind, const std::string& key) const
    {
        std::lock_guard lock(mutex_);
        return std::any_of(events_.begin(), events_.end(), [&](const change_event& event) {
            return event.kind == kind && event.key == key;
        });
    }

    bool saw_key(const std::string& key) const
    {
        std::lock_guard lock(mutex_);
        return std::any_of(events_.begin(), events_.end(),
                           [&](const change_event& event) { return event.key == key; });
    }

    std::size_t size() const
    {
        std::lock_guard lock(mutex_);
        return events_.size();
    }

private:
    mutable std::mutex mutex_;
    std::vector<change_event> events_;
};

// Watches all of `target` with a callback that destroys its own handle at its first call, then
// makes three changes, the last once the handle is gone. Returns how many times the callback
// ran, which is 1 when destroying a handle from its own callback works: no deadlock, and no
// call after it.
inline int calls_to_a_watch_that_ends_itself(store& target, std::chrono::milliseconds deadline)
{
    std::unique_ptr<watch_handle> handle;
    std::mutex handle_mutex;
    std::atomic<int> calls{0};
    auto created = target.watch("", [&](const change_event&) {
        ++calls;
        std::lock_guard lock(handle_mutex);
        handle.reset();
    });
    REQUIRE(created);
    {
        std::lock_guard lock(handle_mutex);
        handle = std::move(*created);
    }

    REQUIRE(target.put("a", "1"));
    REQUIRE(target.put("b", "2"));
    REQUIRE(wait_until(
        [&] {
            std::lock_guard lock(handle_mutex);
            return handle == nullptr;
        },
        deadline));
    REQUIRE(target.put("c", "3"));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return calls;
}

} // namespace gatehouse::store::testing
