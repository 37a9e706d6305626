#include "store/file_store.hpp"

#include "store/file_layout.hpp"
#include "store/file_locks.hpp"
#include "store/file_watcher.hpp"
#include "store/posix_file.hpp"

#include <algorithm>
#include <cerrno>
#include <sys/stat.h>
#include <unistd.h>

namespace gatehouse::store {

namespace {

constexpr mode_t directory_mode = 0700;
constexpr std::string_view probe_prefix = ".probe-";

class file_store final : public store {
public:
    file_store(std::filesystem::path root, const file_store_options& options)
        : root_(std::move(root)),
          locks_(root_ / file_layout::locks_directory, options.lock_guard_timeout),
          watcher_(root_, options.poll_interval)
    {}

    result<std::optional<std::string>> get(std::string_view key) override
    {
        if (!is_valid_key(key)) {
            return errc::invalid_key;
        }
        const auto location = file_layout::locate(key, file_layout::entry_suffix);
        std::optional<std::string> value;
        if (posix::read_file(root_ / location.directory / location.file_name, value)) {
            return errc::io_failed;
        }
        return value;
    }

    result<void> put(std::string_view key, std::string_view value) override
    {
        if (!is_valid_key(key)) {
            return errc::invalid_key;
        }
        const auto location = file_layout::locate(key, file_layout::entry_suffix);
        const auto dir = root_ / location.directory;
        const auto mode = posix::publish_mode::replace;
        auto error = posix::write_file_atomically(dir, location.file_name, value, mode);
        // The directories are made on the first write below them, not on every write.
        if (error == std::errc::no_such_file_or_directory) {
            error = posix::make_directories(root_, location.directory);
            if (!error) {
                error = posix::write_file_atomically(dir, location.file_name, value, mode);
            }
        }
        if (error) {
            return errc::io_failed;
        }
        return {};
    }

    result<void> remove(std::string_view key) override
    {
        if (!is_valid_key(key)) {
            return errc::invalid_key;
        }
        const auto location = file_layout::locate(key, file_layout::entry_suffix);
        if (posix::remove_file(root_ / location.directory / location.file_name)) {
            return errc::io_failed;
        }
        return {};
    }

    result<std::vector<std::string>> list(std::string_view prefix) override
    {
        if (!is_valid_prefix(prefix)) {
            return errc::invalid_key;
        }
        // Walk only the directory the prefix names; a partial last segment filters below.
        const auto slash = prefix.rfind('/');
        const auto directory_key =
            slash == std::string_view::npos ? std::string_view() : prefix.substr(0, slash + 1);
        std::vector<std::string> keys;
        const auto error =
            file_layout::walk_entries(root_, directory_key, [&](const file_layout::found_entry& e) {
                if (e.key.starts_with(prefix)) {
                    keys.push_back(e.key);
                }
            });
        if (error && error != std::errc::no_such_file_or_directory &&
            error != std::errc::not_a_directory) {
            return errc::io_failed;
        }
        std::sort(keys.begin(), keys.end());
        return keys;
    }

    result<std::optional<lock_lease>> try_lock(std::string_view name,
                                               std::chrono::seconds ttl) override
    {
        return locks_.try_lock(name, ttl);
    }

    result<void> refresh(const lock_lease& lease) override { return locks_.refresh(lease); }

    result<void> unlock(const lock_lease& lease) override { return locks_.unlock(lease); }

    result<std::unique_ptr<watch_handle>>
    watch(std::string_view prefix, std::function<void(const change_event&)> callback) override
    {
        return watcher_.watch(prefix, std::move(callback));
    }

    std::string describe() const override { return "file:" + root_.string(); }

private:
    const std::filesystem::path root_;
    file_locks locks_;
    file_watcher watcher_;
};

std::string failure_message(const std::string& what, const std::filesystem::path& dir,
                            const std::error_code& error)
{
    return what + " " + dir.string() + ": " + error.message();
}

// Creates `dir` (mode 0700) and its missing parents (default mode); an existing one is fine.
std::error_code create_private_directory(const std::filesystem::path& dir)
{
    std::error_code error;
    std::filesystem::create_directories(dir.parent_path(), error);
    if (error) {
        return error;
    }
    if (::mkdir(dir.c_str(), directory_mode) != 0 && errno != EEXIST) {
        return posix::last_error();
    }
    return {};
}

// Sets a directory this user owns to 0700. A failure is not reported here: if the directory
// cannot be changed it probably cannot be written either, and the probe says so precisely.
void restrict_directory(const std::filesystem::path& dir, const struct stat& status)
{
    if (status.st_uid == ::geteuid() && (status.st_mode & 07777) != directory_mode) {
        ::chmod(dir.c_str(), directory_mode);
    }
}

// Proves `dir` is writable with the very steps a put takes: create, write, fsync, rename,
// fsync the directory; then removes the probe.
std::error_code probe_writable(const std::filesystem::path& dir)
{
    const std::string probe = std::string(probe_prefix) + posix::random_hex(8);
    if (auto error =
            posix::write_file_atomically(dir, probe, "probe\n", posix::publish_mode::replace)) {
        return error;
    }
    return posix::remove_file(dir / probe);
}

bool is_leftover_name(std::string_view name)
{
    return posix::is_temporary_name(name) || name.starts_with(probe_prefix);
}

// Deletes temporary files and probes that a process which crashed mid-write left behind. Best
// effort: a failure here costs only disk space.
void remove_stale_temporaries(const std::filesystem::path& root, std::chrono::minutes age)
{
    using std::filesystem::directory_options;
    const auto cutoff = std::filesystem::file_time_type::clock::now() - age;
    std::error_code error;
    std::filesystem::recursive_directory_iterator it(
        root, directory_options::skip_permission_denied, error);
    for (; !error && it != std::filesystem::recursive_directory_iterator(); it.increment(error)) {
        std::error_code ignored;
        if (it->is_regular_file(ignored) && is_leftover_name(it->path().filename().string()) &&
            it->last_write_time(ignored) < cutoff) {
            std::filesystem::remove(it->path(), ignored);
        }
    }
}

std::filesystem::path normalized(const std::filesystem::path& dir)
{
    std::error_code error;
    auto absolute = std::filesystem::absolute(dir, error);
    if (error) {
        absolute = dir;
    }
    absolute = absolute.lexically_normal();
    // "/var/lib/gatehouse/" names the same directory; keep describe() and messages tidy.
    if (!absolute.has_filename() && absolute.has_relative_path()) {
        absolute = absolute.parent_path();
    }
    return absolute;
}

} // namespace

result<std::unique_ptr<store>> open_file_store(std::filesystem::path dir, std::string* why,
                                               const file_store_options& options)
{
    dir = normalized(dir);
    const auto fail = [&](std::string message) -> result<std::unique_ptr<store>> {
        if (why != nullptr) {
            *why = std::move(message);
        }
        return errc::not_writable;
    };

    if (auto error = create_private_directory(dir)) {
        return fail(failure_message("cannot create store directory", dir, error));
    }
    struct stat status;
    if (::stat(dir.c_str(), &status) != 0) {
        return fail(failure_message("cannot read store directory", dir, posix::last_error()));
    }
    if (!S_ISDIR(status.st_mode)) {
        return fail("store directory " + dir.string() + " is not a directory");
    }
    restrict_directory(dir, status);
    if (auto error = probe_writable(dir)) {
        return fail("store directory " + dir.string() + " is not writable: " + error.message());
    }

    const auto locks = dir / file_layout::locks_directory;
    if (auto error = create_private_directory(locks)) {
        return fail(failure_message("cannot create lock directory", locks, error));
    }
    if (::stat(locks.c_str(), &status) == 0) {
        restrict_directory(locks, status);
    }
    remove_stale_temporaries(dir, options.stale_temporary_age);
    return std::unique_ptr<store>(std::make_unique<file_store>(dir, options));
}

} // namespace gatehouse::store
