// Change notification for the file backend: one thread per store that notices puts and removes
// below the store's directory, whoever made them (this store, another gatehouse, an operator
// with mv), and calls the watches registered on it. Internal to store/.
//
// The truth is a snapshot of (inode, size, modification time) for every value file. The thread
// rescans the tree and diffs it against the snapshot when inotify(7) reports a change (within
// a settling delay of about 20 ms, which lets a burst of writes finish) and, in any case, every
// poll interval, which covers network file systems where inotify sees only local changes and
// the rare change inotify misses. Temporary files and other names starting with '.' are never
// reported. When a scan fails (the directory vanished or became unreadable), no events are
// made up; once scanning works again, every watch gets one change_kind::resync.
#pragma once

#include "store/posix_file.hpp"
#include "store/store.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <thread>
#include <vector>

namespace gatehouse::store {

class watch_registry;

class file_watcher {
public:
    // Watches `root`, which must exist. No thread runs until the first watch() call.
    file_watcher(std::filesystem::path root, std::chrono::milliseconds poll_interval);

    // Stops and joins the thread. Must not be called from a watch callback.
    ~file_watcher();

    file_watcher(const file_watcher&) = delete;
    file_watcher& operator=(const file_watcher&) = delete;

    // As store::watch. The first call scans the tree, so that the changes reported are those
    // made after it returns, and starts the thread. Thread-safe.
    result<std::unique_ptr<watch_handle>> watch(std::string_view prefix,
                                                std::function<void(const change_event&)> callback);

private:
    struct file_identity {
        ino_t inode = 0;
        off_t size = 0;
        std::int64_t modified_ns = 0;

        friend bool operator==(const file_identity&, const file_identity&) = default;
    };
    using snapshot = std::map<std::string, file_identity>;

    void start();
    void run();
    bool wait_for_change(std::chrono::steady_clock::time_point deadline);
    bool wait_readable(int fd, std::chrono::milliseconds timeout);
    bool drain_inotify();
    void add_inotify_watch(const std::filesystem::path& dir);
    std::optional<snapshot> scan();
    void scan_and_dispatch();

    const std::filesystem::path root_;
    const std::chrono::milliseconds poll_interval_;
    const std::shared_ptr<watch_registry> registry_;

    std::mutex start_mutex_;
    std::thread thread_;
    std::atomic<bool> stopping_{false};
    posix::unique_fd wake_;
    posix::unique_fd inotify_;

    // Touched only by the thread once it runs (and by start() before it does).
    snapshot snapshot_;
    bool scan_failed_ = false;
};

} // namespace gatehouse::store
