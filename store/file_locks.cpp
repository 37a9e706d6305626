#include "store/file_locks.hpp"

#include "store/file_layout.hpp"
#include "store/posix_file.hpp"
#include "store/rfc3339.hpp"

#include <cerrno>
#include <fcntl.h>
#include <mutex>
#include <sys/file.h>
#include <thread>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace gatehouse::store {

namespace {

using std::chrono::system_clock;
using namespace std::chrono_literals;

constexpr std::size_t token_bytes = 16;
constexpr auto guard_retry_interval = 2ms;

// See the header: the flock alone does not exclude threads on every file system.
std::mutex guard_mutex;

// Holds the guard: the process-wide mutex and an exclusive flock on <locks dir>/.guard.
class guard {
public:
    static result<guard> take(const std::filesystem::path& locks_dir,
                              std::chrono::milliseconds timeout)
    {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        std::unique_lock in_process(guard_mutex, std::defer_lock);
        while (!in_process.try_lock()) {
            if (std::chrono::steady_clock::now() >= deadline) {
                return errc::timeout;
            }
            std::this_thread::sleep_for(guard_retry_interval);
        }
        const auto path = locks_dir / file_layout::guard_name;
        posix::unique_fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
        if (!fd.is_open()) {
            return errc::io_failed;
        }
        while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
            if (errno != EWOULDBLOCK && errno != EINTR) {
                return errc::io_failed;
            }
            if (std::chrono::steady_clock::now() >= deadline) {
                return errc::timeout;
            }
            std::this_thread::sleep_for(guard_retry_interval);
        }
        return guard(std::move(in_process), std::move(fd));
    }

private:
    guard(std::unique_lock<std::mutex> in_process, posix::unique_fd fd)
        : in_process_(std::move(in_process)), fd_(std::move(fd))
    {}

    // Declared in this order so that the flock is released (the descriptor closed) before the
    // mutex, and no other thread of this process can find the file still locked.
    std::unique_lock<std::mutex> in_process_;
    posix::unique_fd fd_;
};

struct lock_record {
    std::string token;
    std::int64_t expires_at_unix_ms = 0;
};

enum class record_state {
    absent,
    // Not JSON or missing fields: no holder writes such a record (they are replaced
    // atomically), so it is debris, e.g. an operator's, and counts as expired.
    unreadable,
    present,
};

struct lock_file {
    // Relative to the locks directory, and the same joined to it.
    std::filesystem::path relative_directory;
    std::filesystem::path directory;
    std::string name;

    std::filesystem::path path() const { return directory / name; }
};

lock_file locate_lock(const std::filesystem::path& locks_dir, std::string_view name)
{
    auto location = file_layout::locate(name, file_layout::lock_suffix);
    return {location.directory, locks_dir / location.directory, std::move(location.file_name)};
}

std::int64_t unix_ms(system_clock::time_point time)
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count();
}

std::string holder_description()
{
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) {
        host[0] = '\0';
    }
    return std::string(host) + " pid " + std::to_string(::getpid());
}

std::string serialize_record(const lock_lease& lease)
{
    const auto expires_at = system_clock::now() + lease.ttl;
    nlohmann::json record = {
        {"token", lease.token},
        {"expires_at_unix_ms", unix_ms(expires_at)},
        {"expires_at", format_rfc3339(expires_at)},
        {"holder", holder_description()},
    };
    return record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

record_state read_record(const lock_file& file, lock_record& found, std::error_code& error)
{
    std::optional<std::string> text;
    error = posix::read_file(file.path(), text);
    if (error || !text) {
        return record_state::absent;
    }
    const auto json = nlohmann::json::parse(*text, nullptr, false);
    if (!json.is_object()) {
        return record_state::unreadable;
    }
    const auto token = json.find("token");
    const auto expiry = json.find("expires_at_unix_ms");
    if (token == json.end() || !token->is_string() || expiry == json.end() ||
        !expiry->is_number_integer()) {
        return record_state::unreadable;
    }
    found.token = token->get<std::string>();
    found.expires_at_unix_ms = expiry->get<std::int64_t>();
    return record_state::present;
}

bool is_live(const lock_record& record)
{
    return record.expires_at_unix_ms > unix_ms(system_clock::now());
}

// Reads the record and checks that `lease` holds it; the guard must be held.
result<void> check_holder(const lock_file& file, const lock_lease& lease)
{
    lock_record record;
    std::error_code error;
    const auto state = read_record(file, record, error);
    if (error) {
        return errc::io_failed;
    }
    // A record still naming our token was not taken over, even if it expired, because taking
    // over happens under the guard we hold and replaces the token.
    if (state != record_state::present || record.token != lease.token) {
        return errc::lock_lost;
    }
    return {};
}

// Applies `change` (which returns an error code) to the record of the lock `lease` names, under
// the guard, once it has checked that the lease still holds it.
template <typename Change>
result<void> change_held_lock(const std::filesystem::path& locks_dir,
                              std::chrono::milliseconds guard_timeout, const lock_lease& lease,
                              Change change)
{
    if (!is_valid_key(lease.name)) {
        return errc::invalid_key;
    }
    const auto held = guard::take(locks_dir, guard_timeout);
    if (!held) {
        return held.error();
    }
    const auto file = locate_lock(locks_dir, lease.name);
    if (auto holder = check_holder(file, lease); !holder) {
        return holder;
    }
    if (change(file)) {
        return errc::io_failed;
    }
    return {};
}

} // namespace

file_locks::file_locks(std::filesystem::path locks_dir, std::chrono::milliseconds guard_timeout)
    : locks_dir_(std::move(locks_dir)), guard_timeout_(guard_timeout)
{}

result<std::optional<lock_lease>> file_locks::try_lock(std::string_view name,
                                                       std::chrono::seconds ttl)
{
    if (!is_valid_key(name)) {
        return errc::invalid_key;
    }
    if (ttl < 1s) {
        return errc::invalid_argument;
    }
    const auto held = guard::take(locks_dir_, guard_timeout_);
    if (!held) {
        return held.error();
    }
    const auto file = locate_lock(locks_dir_, name);
    if (posix::make_directories(locks_dir_, file.relative_directory)) {
        return errc::io_failed;
    }

    lock_record record;
    std::error_code error;
    const auto state = read_record(file, record, error);
    if (error) {
        return errc::io_failed;
    }
    if (state == record_state::present && is_live(record)) {
        return std::optional<lock_lease>();
    }

    // Absent: create, failing if the record appeared after all. Expired or unreadable: take
    // over by replacing it, which is safe because the guard keeps other takers out.
    lock_lease lease{std::string(name), posix::random_hex(token_bytes), ttl};
    const auto mode = state == record_state::absent ? posix::publish_mode::create_only
                                                    : posix::publish_mode::replace;
    error = posix::write_file_atomically(file.directory, file.name, serialize_record(lease), mode);
    if (error == std::errc::file_exists) {
        return std::optional<lock_lease>();
    }
    if (error) {
        return errc::io_failed;
    }
    return std::optional<lock_lease>(std::move(lease));
}

result<void> file_locks::refresh(const lock_lease& lease)
{
    return change_held_lock(locks_dir_, guard_timeout_, lease, [&lease](const lock_file& file) {
        return posix::write_file_atomically(file.directory, file.name, serialize_record(lease),
                                            posix::publish_mode::replace);
    });
}

result<void> file_locks::unlock(const lock_lease& lease)
{
    return change_held_lock(locks_dir_, guard_timeout_, lease,
                            [](const lock_file& file) { return posix::remove_file(file.path()); });
}

} // namespace gatehouse::store
