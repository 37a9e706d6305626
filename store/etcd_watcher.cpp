#include "store/etcd_watcher.hpp"

#include "store/watch_registry.hpp"

#include <algorithm>
#include <system_error>
#include <utility>

namespace gatehouse::store::etcd {

namespace {

using namespace std::chrono_literals;

// Reconnection backs off from the first delay, doubling up to the last, so a cluster that is
// down for long is asked every few seconds rather than hammered.
constexpr auto first_retry_delay = 100ms;
constexpr auto max_retry_delay = 5s;

// A stream must have stood this long before its failure counts as new rather than as one more
// failed attempt, so a member that confirms streams and drops them at once is not hammered
// (nor every watch told to resync ten times a second).
constexpr auto stable_stream_time = 1s;

// A confirmed stream with nothing to say for this long is renewed, which also finds a member
// that vanished without closing the connection.
constexpr auto stream_idle_timeout = 60s;

// etcd sends one JSON object per line; a line this long means the stream is not what we think.
constexpr std::size_t max_line_bytes = 64 * 1024 * 1024;

// True when etcd's text says the token was refused, so the next attempt authenticates anew.
bool mentions_auth_failure(std::string_view text)
{
    return text.find("auth token") != std::string_view::npos ||
           text.find("Unauthenticated") != std::string_view::npos;
}

} // namespace

watcher::watcher(client& cluster, std::string store_prefix)
    : cluster_(cluster), store_prefix_(std::move(store_prefix)),
      registry_(std::make_shared<watch_registry>())
{}

watcher::~watcher()
{
    {
        std::lock_guard lock(mutex_);
        if (!thread_.joinable()) {
            return;
        }
        stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
}

result<std::unique_ptr<watch_handle>>
watcher::watch(std::string_view prefix, std::function<void(const change_event&)> callback)
{
    if (!is_valid_prefix(prefix)) {
        return errc::invalid_key;
    }
    // Any range answer carries the cluster's current revision in its header.
    const nlohmann::json probe = {{"key", base64_encode(store_prefix_)}, {"keys_only", true}};
    const auto answer = cluster_.call("/v3/kv/range", probe);
    const bool out_of_reach =
        !answer && (answer.error() == errc::timeout || answer.error() == errc::unavailable);
    if (!answer && !out_of_reach) {
        return errc::io_failed;
    }
    // Out of reach, the watch still stands: its stream starts from whatever revision the
    // cluster is at once it answers (start_revision 0), after a resync, so that whoever reads
    // from a local copy meanwhile catches up.
    std::int64_t revision = -1;
    if (answer) {
        const auto header = answer->find("header");
        revision = header == answer->end() ? 0 : int64_field(*header, "revision");
    }

    auto entry = registry_->add(std::string(prefix), std::move(callback));
    auto handle = std::make_unique<registry_watch_handle>(registry_, entry);
    std::lock_guard lock(mutex_);
    if (!thread_.joinable()) {
        next_revision_ = revision + 1;
        resync_pending_ = resync_pending_ || revision < 0;
        try {
            thread_ = std::thread([this] { run(); });
        } catch (const std::system_error&) {
            return errc::io_failed;
        }
    }
    return std::unique_ptr<watch_handle>(std::move(handle));
}

void watcher::run()
{
    registry_->set_dispatcher(std::this_thread::get_id());
    auto delay = first_retry_delay;
    std::size_t endpoint = cluster_.preferred_endpoint();
    while (!stopping_) {
        bool confirmed = false;
        const auto started = std::chrono::steady_clock::now();
        const auto ended = stream_once(endpoint, confirmed);
        if (ended == stream_end::stopped) {
            return;
        }
        if (confirmed && std::chrono::steady_clock::now() - started >= stable_stream_time) {
            delay = first_retry_delay;
        }
        if (ended == stream_end::idle) {
            continue;
        }
        // Another member may be able to serve us; and whatever happened, read everything
        // again once a stream stands.
        resync_pending_ = true;
        endpoint = (endpoint + 1) % cluster_.endpoint_count();
        if (!pause(delay)) {
            return;
        }
        delay = std::min<std::chrono::milliseconds>(delay * 2, max_retry_delay);
    }
}

// One watch stream on one member, from next_revision_, until it ends.
watcher::stream_end watcher::stream_once(std::size_t endpoint, bool& confirmed)
{
    const nlohmann::json create = {{"create_request",
                                    {{"key", base64_encode(store_prefix_)},
                                     {"range_end", base64_encode(range_end(store_prefix_))},
                                     {"start_revision", std::to_string(next_revision_)}}}};
    auto request = cluster_.stream_request(endpoint, "/v3/watch", create);
    if (!request) {
        return stopping_ ? stream_end::stopped : stream_end::broken;
    }
    // gRPC metadata through the gateway: a member that loses its leader cancels the stream
    // instead of keeping it open and silent, as clientv3's WithRequireLeader does.
    request->headers.push_back({"Grpc-Metadata-Hasleader", "true"});

    std::string pending;
    bool cancelled = false;
    std::int64_t created_revision = 0;
    const auto on_body = [&](std::string_view piece) {
        pending.append(piece);
        std::size_t start = 0;
        for (auto end = pending.find('\n'); end != std::string::npos;
             end = pending.find('\n', start)) {
            const std::string_view line(pending.data() + start, end - start);
            start = end + 1;
            if (!handle_line(line, confirmed, created_revision, cancelled)) {
                return false;
            }
        }
        pending.erase(0, start);
        return pending.size() <= max_line_bytes;
    };
    const auto status = cluster_.stream(*request, on_body, stream_idle_timeout, &stopping_);

    if (stopping_) {
        return stream_end::stopped;
    }
    if (!status && status.error().kind == net::failure_kind::timeout && confirmed && !cancelled) {
        // Silent for a whole idle timeout, so etcd has sent everything up to the revision it
        // was at when it confirmed the stream.
        next_revision_ = std::max(next_revision_, created_revision + 1);
        return stream_end::idle;
    }
    if (status && *status == 401) {
        cluster_.drop_token();
    }
    return stream_end::broken;
}

// Handles one line of the stream; false when the stream must end. A line is one WatchResponse
// ({"result":{...}}) or an error ({"error":{...}}).
bool watcher::handle_line(std::string_view line, bool& confirmed, std::int64_t& created_revision,
                          bool& cancelled)
{
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) {
        return true;
    }
    const auto message = nlohmann::json::parse(line, nullptr, false);
    if (!message.is_object()) {
        return false;
    }
    if (const auto error = message.find("error"); error != message.end()) {
        if (mentions_auth_failure(error->dump())) {
            cluster_.drop_token();
        }
        return false;
    }
    const auto found = message.find("result");
    if (found == message.end() || !found->is_object()) {
        return false;
    }
    const auto& answer = *found;

    if (bool_field(answer, "canceled")) {
        // Compacted: etcd no longer has our revision, so start where its history now begins.
        next_revision_ = std::max(next_revision_, int64_field(answer, "compact_revision"));
        if (mentions_auth_failure(string_field(answer, "cancel_reason"))) {
            cluster_.drop_token();
        }
        cancelled = true;
        return false;
    }
    if (bool_field(answer, "created")) {
        const auto header = answer.find("header");
        created_revision = header == answer.end() ? 0 : int64_field(*header, "revision");
        if (created_revision + 1 < next_revision_) {
            // The cluster is behind the revision we resume from: restored from a backup or
            // rebuilt, so its history is not the one we followed. Start again from where it
            // is, and have everything read again.
            next_revision_ = created_revision + 1;
            resync_pending_ = true;
            cancelled = true;
            return false;
        }
        confirmed = true;
        deliver_resync_if_pending();
    }
    if (const auto events = answer.find("events"); events != answer.end() && events->is_array()) {
        handle_events(*events);
    }
    return true;
}

void watcher::handle_events(const nlohmann::json& events)
{
    std::vector<change_event> batch;
    for (const auto& event : events) {
        const auto kv = event.find("kv");
        if (kv == event.end() || !kv->is_object()) {
            continue;
        }
        next_revision_ = std::max(next_revision_, int64_field(*kv, "mod_revision") + 1);
        const auto key = bytes_field(*kv, "key");
        if (!key || !key->starts_with(store_prefix_)) {
            continue;
        }
        // Lock records and probes start with '.', which no key may: they are not reported.
        std::string relative = key->substr(store_prefix_.size());
        if (!is_valid_key(relative)) {
            continue;
        }
        // Puts omit "type", as the gateway leaves out enum values that are zero.
        const auto kind =
            string_field(event, "type") == "DELETE" ? change_kind::removed : change_kind::put;
        if (!batch.empty() && batch.back().kind == kind && batch.back().key == relative) {
            continue;
        }
        batch.push_back({kind, std::move(relative)});
    }
    if (!batch.empty()) {
        registry_->dispatch(batch);
    }
}

void watcher::deliver_resync_if_pending()
{
    if (resync_pending_) {
        resync_pending_ = false;
        registry_->dispatch({{change_kind::resync, {}}});
    }
}

// Waits `delay` unless the watcher stops first; false when it is stopping.
bool watcher::pause(std::chrono::milliseconds delay)
{
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, delay, [&] { return stopping_.load(); });
    return !stopping_;
}

} // namespace gatehouse::store::etcd
