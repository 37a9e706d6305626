#include "store/file_watcher.hpp"

#include "store/file_layout.hpp"
#include "store/watch_registry.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <condition_variable>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

namespace gatehouse::store {

namespace {

using namespace std::chrono_literals;

// Long enough for a burst of writes (an operator's cp, a rename after a write) to finish
// before the scan; short enough that watchers still hear of a change well within a second.
constexpr auto settle_delay = 20ms;

constexpr std::uint32_t inotify_mask = IN_CREATE | IN_DELETE | IN_CLOSE_WRITE | IN_MOVED_FROM |
                                       IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF |
                                       IN_ONLYDIR;

// Files an operator copied in keep the operator's mode; the store promises 0600 files and 0700
// directories, so it tightens what it owns. Links are left alone: their targets are not ours.
void tighten_mode(const std::filesystem::path& path, mode_t wanted)
{
    struct stat status;
    if (::lstat(path.c_str(), &status) != 0 || S_ISLNK(status.st_mode)) {
        return;
    }
    if ((status.st_mode & 07777) != wanted && status.st_uid == ::geteuid()) {
        ::chmod(path.c_str(), wanted);
    }
}

} // namespace

namespace {

// Appends an event for every key added, removed or changed between two sorted snapshots.
template <typename Snapshot>
void diff(const Snapshot& before, const Snapshot& after, std::vector<change_event>& events)
{
    auto old_it = before.begin();
    auto new_it = after.begin();
    while (old_it != before.end() || new_it != after.end()) {
        if (new_it == after.end() || (old_it != before.end() && old_it->first < new_it->first)) {
            events.push_back({change_kind::removed, old_it->first});
            ++old_it;
        } else if (old_it == before.end() || new_it->first < old_it->first) {
            events.push_back({change_kind::put, new_it->first});
            ++new_it;
        } else {
            if (!(old_it->second == new_it->second)) {
                events.push_back({change_kind::put, new_it->first});
            }
            ++old_it;
            ++new_it;
        }
    }
}

} // namespace

file_watcher::file_watcher(std::filesystem::path root, std::chrono::milliseconds poll_interval)
    : root_(std::move(root)), poll_interval_(poll_interval),
      registry_(std::make_shared<watch_registry>())
{}

file_watcher::~file_watcher()
{
    // The mutex is not held while joining: a callback still running may call watch().
    {
        std::lock_guard lock(start_mutex_);
        if (!thread_.joinable()) {
            return;
        }
        stopping_ = true;
    }
    const std::uint64_t one = 1;
    if (::write(wake_.get(), &one, sizeof one) < 0) {
        // The thread still sees stopping_ at its next poll timeout.
    }
    thread_.join();
}

result<std::unique_ptr<watch_handle>>
file_watcher::watch(std::string_view prefix, std::function<void(const change_event&)> callback)
{
    if (!is_valid_prefix(prefix)) {
        return errc::invalid_key;
    }
    {
        std::lock_guard lock(start_mutex_);
        if (!thread_.joinable()) {
            try {
                start();
            } catch (const std::system_error&) {
                return errc::io_failed;
            }
        }
    }
    auto entry = registry_->add(std::string(prefix), std::move(callback));
    return std::unique_ptr<watch_handle>(
        std::make_unique<registry_watch_handle>(registry_, std::move(entry)));
}

void file_watcher::start()
{
    wake_ = posix::unique_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_.is_open()) {
        throw std::system_error(posix::last_error(), "eventfd");
    }
    // Without inotify (instance limit reached, a kernel without it) polling alone still works,
    // only with poll_interval latency.
    inotify_ = posix::unique_fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));

    auto baseline = scan();
    scan_failed_ = !baseline;
    if (baseline) {
        snapshot_ = std::move(*baseline);
    }
    thread_ = std::thread([this] { run(); });
}

void file_watcher::run()
{
    registry_->set_dispatcher(std::this_thread::get_id());
    auto next_scan = std::chrono::steady_clock::now() + poll_interval_;
    while (wait_for_change(next_scan)) {
        scan_and_dispatch();
        next_scan = std::chrono::steady_clock::now() + poll_interval_;
    }
}

// Returns when something may have changed (true) or the watcher is stopping (false).
bool file_watcher::wait_for_change(std::chrono::steady_clock::time_point deadline)
{
    while (!stopping_) {
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) {
            return true;
        }
        const auto remaining = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
        if (!wait_readable(inotify_.get(), remaining) || stopping_) {
            continue;
        }
        if (drain_inotify()) {
            // Let the burst finish, still waking at once for a stop.
            wait_readable(-1, settle_delay);
            drain_inotify();
            return !stopping_;
        }
    }
    return false;
}

// Waits until `fd` (when not -1) is readable, the wake descriptor is signalled, or `timeout`
// passes. True when `fd` is readable.
bool file_watcher::wait_readable(int fd, std::chrono::milliseconds timeout)
{
    std::array<pollfd, 2> fds{{{wake_.get(), POLLIN, 0}, {fd, POLLIN, 0}}};
    const nfds_t count = fd >= 0 ? 2 : 1;
    const int ready = ::poll(fds.data(), count, static_cast<int>(timeout.count()));
    return ready > 0 && count == 2 && (fds[1].revents & POLLIN) != 0;
}

// Reads every pending inotify event; true when one may concern a value file (any event on a
// name that does not start with '.', or a queue overflow).
bool file_watcher::drain_inotify()
{
    if (!inotify_.is_open()) {
        return false;
    }
    bool relevant = false;
    alignas(inotify_event) std::array<char, 16384> buffer;
    while (true) {
        const ssize_t got = ::read(inotify_.get(), buffer.data(), buffer.size());
        if (got <= 0) {
            return relevant;
        }
        for (ssize_t offset = 0; offset < got;) {
            const auto* event = reinterpret_cast<const inotify_event*>(buffer.data() + offset);
            const bool hidden = event->len > 0 && event->name[0] == '.';
            relevant = relevant || (event->mask & IN_Q_OVERFLOW) != 0 || !hidden;
            offset += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
        }
    }
}

void file_watcher::add_inotify_watch(const std::filesystem::path& dir)
{
    // Adding a watch that exists returns the same one; a directory removed later drops its
    // watch by itself (IN_IGNORED). Failures (the watch limit) leave polling to catch changes.
    if (inotify_.is_open()) {
        ::inotify_add_watch(inotify_.get(), dir.c_str(), inotify_mask);
    }
}

std::optional<file_watcher::snapshot> file_watcher::scan()
{
    snapshot found;
    const auto error = file_layout::walk_entries(
        root_, "",
        [&](const file_layout::found_entry& entry) {
            const auto& status = entry.status;
            found[entry.key] = {status.st_ino, status.st_size,
                                std::int64_t(status.st_mtim.tv_sec) * 1'000'000'000 +
                                    status.st_mtim.tv_nsec};
            if ((status.st_mode & 07777) != 0600) {
                tighten_mode(entry.path, 0600);
            }
        },
        [&](const std::filesystem::path& dir) {
            add_inotify_watch(dir);
            if (dir != root_) {
                tighten_mode(dir, 0700);
            }
        });
    if (error) {
        return std::nullopt;
    }
    return found;
}

void file_watcher::scan_and_dispatch()
{
    auto current = scan();
    if (!current) {
        scan_failed_ = true;
        return;
    }
    std::vector<change_event> events;
    if (scan_failed_) {
        events.push_back({change_kind::resync, {}});
        scan_failed_ = false;
    } else {
        diff(snapshot_, *current, events);
    }
    snapshot_ = std::move(*current);
    if (!events.empty()) {
        registry_->dispatch(events);
    }
}

} // namespace gatehouse::store
