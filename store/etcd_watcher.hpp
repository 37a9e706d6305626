// Change notification for the etcd backend: one thread per store holds one etcd watch on the
// whole prefix (a streaming POST to /v3/watch) and calls the watches registered on it, each
// with the events under its own prefix. Internal to store/.
//
// etcd numbers every change with a revision and replays from any revision it still keeps, so
// the thread resumes a broken stream from the revision after the last event it delivered.
// Changes may still have been missed (etcd compacted that revision away, or the cluster was
// rebuilt from a backup), so after any break, once a stream is re-established, every watch
// gets one change_kind::resync. A stream that only stayed silent for a long time is renewed
// without one. Reconnection waits 100 ms after the first failure, doubling to 5 s, and moves
// on to the next member each time.
#pragma once

#include "store/etcd_client.hpp"
#include "store/store.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace gatehouse::store {
class watch_registry;
}

namespace gatehouse::store::etcd {

class watcher {
public:
    // Watches every key below `store_prefix` through `cluster`, which must outlive the
    // watcher. No thread runs until the first watch() call.
    watcher(client& cluster, std::string store_prefix);

    // Stops and joins the thread, which notices within about 100 ms. Must not be called from a
    // watch callback.
    ~watcher();

    watcher(const watcher&) = delete;
    watcher& operator=(const watcher&) = delete;

    // As store::watch. Asks etcd for its current revision first, so that every change made
    // after this returns is reported, and so that an unreachable cluster fails the call with
    // errc::unavailable (errc::io_failed when etcd refuses). Starts the thread on the first
    // call. Thread-safe.
    result<std::unique_ptr<watch_handle>> watch(std::string_view prefix,
                                                std::function<void(const change_event&)> callback);

private:
    // How one stream ended.
    enum class stream_end {
        // The store is being destroyed.
        stopped,
        // Nothing arrived for stream_idle_timeout on a stream etcd had confirmed: renewed at
        // once and without a resync, as etcd replays from the next revision.
        idle,
        // Anything else: the stream broke, etcd ended or cancelled it, or it never started.
        broken,
    };

    void run();
    stream_end stream_once(std::size_t endpoint, bool& confirmed);
    bool handle_line(std::string_view line, bool& confirmed, std::int64_t& created_revision,
                     bool& cancelled);
    void handle_events(const nlohmann::json& events);
    void deliver_resync_if_pending();
    bool pause(std::chrono::milliseconds delay);

    client& cluster_;
    const std::string store_prefix_;
    const std::shared_ptr<watch_registry> registry_;

    std::mutex mutex_;
    std::condition_variable wake_;
    std::thread thread_;
    std::atomic<bool> stopping_{false};

    // Touched only by the thread once it runs (and by watch() before it starts it).
    std::int64_t next_revision_ = 0;
    bool resync_pending_ = false;
};

} // namespace gatehouse::store::etcd
