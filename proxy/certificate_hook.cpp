#include "proxy/certificate_hook.hpp"

#include "proxy/log.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <map>
#include <mutex>
#include <poll.h>
#include <string_view>
#include <sys/stat.h>
#include <sys/wait.h>
#include <system_error>
#include <thread>
#include <unistd.h>
#include <utility>

extern char** environ;

namespace gatehouse::proxy {

namespace {

using steady_clock = std::chrono::steady_clock;

// How much of a run's output is kept (its end), and how much of that a failure logs.
constexpr std::size_t max_output_bytes = 16 * 1024;
constexpr std::size_t logged_output_lines = 10;
constexpr std::size_t max_logged_line_chars = 300;

// How often a running hook is checked for having exited, run out of time, or been stopped.
constexpr std::chrono::milliseconds child_poll_interval{50};

// Where a program name is looked up when gatehouse has no PATH, as execvp would.
constexpr std::string_view default_search_path = "/usr/local/bin:/usr/bin:/bin";

std::shared_ptr<spdlog::logger> logger()
{
    static const auto instance = log::get("hooks");
    return instance;
}

std::string errno_text(int error)
{
    return std::generic_category().message(error);
}

// One run asked for by notify(), and its retries.
struct hook_job {
    std::string host;
    std::vector<std::string> names;
    std::string chain_pem;

    // A secret: written to the run's key file only, never logged.
    std::string key_pem;

    unsigned attempt = 0;
    steady_clock::time_point due{};
    std::chrono::milliseconds retry_delay{0};
};

// How one run ended: `error` is empty on success. `output` is the end of what it printed.
struct run_result {
    std::string error;
    std::string output;
};

// A file descriptor, closed when it goes out of scope.
class unique_fd {
public:
    explicit unique_fd(int fd = -1) noexcept : fd_(fd) {}
    ~unique_fd() { reset(); }
    unique_fd(const unique_fd&) = delete;
    unique_fd& operator=(const unique_fd&) = delete;

    int get() const noexcept { return fd_; }

    // Closes the descriptor held, and holds `fd` instead.
    void reset(int fd = -1) noexcept
    {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        fd_ = fd;
    }

private:
    int fd_;
};

// A private folder for one run's files (mkdtemp makes it 0700), removed with everything in it,
// the hook's own leftovers included, when the run ends.
class private_folder {
public:
    // Empty path() when the folder could not be made; `error` then says why.
    explicit private_folder(std::string& error)
    {
        const char* base = std::getenv("TMPDIR");
        std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") +
                              "/gatehouse-hook-XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr) {
            error = "creating a temporary folder like " + pattern + ": " + errno_text(errno);
            return;
        }
        path_ = std::move(pattern);
    }

    ~private_folder()
    {
        if (!path_.empty()) {
            std::error_code ignored;
            std::filesystem::remove_all(path_, ignored);
        }
    }

    private_folder(const private_folder&) = delete;
    private_folder& operator=(const private_folder&) = delete;

    const std::string& path() const noexcept { return path_; }

private:
    std::string path_;
};

// Writes `content` to a new file that only its owner may read. Returns why it failed, or an
// empty string. The message names the file, never its content.
std::string write_private_file(const std::string& path, std::string_view content)
{
    const unique_fd file(
        ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (file.get() < 0) {
        return "creating " + path + ": " + errno_text(errno);
    }
    while (!content.empty()) {
        const ssize_t written = ::write(file.get(), content.data(), content.size());
        if (written < 0 && errno == EINTR) {
            continue;
        }
        if (written < 0) {
            return "writing " + path + ": " + errno_text(errno);
        }
        content.remove_prefix(static_cast<std::size_t>(written));
    }
    return {};
}

bool is_executable_file(const std::string& path)
{
    struct stat info {};
    return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode) &&
           ::access(path.c_str(), X_OK) == 0;
}

// The file exec runs for `program`: itself when it holds a '/', otherwise the first executable
// file of that name in PATH, as execvp would find it. Looked up before fork, where allocating
// is allowed. Empty PATH entries (the current folder) are skipped on purpose.
std::optional<std::string> find_program(const std::string& program)
{
    if (program.find('/') != std::string::npos) {
        return program;
    }
    const char* path = std::getenv("PATH");
    std::string_view folders = path != nullptr && *path != '\0' ? path : default_search_path;
    while (!folders.empty()) {
        const auto colon = folders.find(':');
        const std::string_view folder = folders.substr(0, colon);
        folders.remove_prefix(colon == std::string_view::npos ? folders.size() : colon + 1);
        if (folder.empty()) {
            continue;
        }
        std::string candidate = std::string(folder) + "/" + program;
        if (is_executable_file(candidate)) {
            return candidate;
        }
    }
    return std::nullopt;
}

std::string joined(const std::vector<std::string>& items, std::string_view separator)
{
    std::string text;
    for (const auto& item : items) {
        text += (text.empty() ? "" : std::string(separator)) + item;
    }
    return text;
}

// gatehouse's own environment, less any variable the hook is given, then those variables.
std::vector<std::string> hook_environment(const hook_job& job, const std::string& certificate_file,
                                          const std::string& key_file)
{
    const std::array<std::pair<std::string, std::string>, 4> given{{
        {"GATEHOUSE_HOST", job.host},
        {"GATEHOUSE_NAMES", joined(job.names, ",")},
        {"GATEHOUSE_CERTIFICATE_FILE", certificate_file},
        {"GATEHOUSE_KEY_FILE", key_file},
    }};
    std::vector<std::string> environment;
    for (char** each = environ; *each != nullptr; ++each) {
        const std::string_view entry(*each);
        const bool replaced = std::any_of(given.begin(), given.end(), [&](const auto& variable) {
            return entry.starts_with(variable.first + "=");
        });
        if (!replaced) {
            environment.emplace_back(entry);
        }
    }
    for (const auto& [name, value] : given) {
        environment.push_back(name + "=" + value);
    }
    return environment;
}

// The NULL-terminated array exec takes, pointing into `strings`.
std::vector<char*> exec_array(std::vector<std::string>& strings)
{
    std::vector<char*> pointers;
    for (auto& each : strings) {
        pointers.push_back(each.data());
    }
    pointers.push_back(nullptr);
    return pointers;
}

// A pipe whose ends are both above 2, so that the child's dup2 onto 0, 1 and 2 cannot clobber
// one of them when gatehouse was started with a standard stream closed.
bool make_pipe(unique_fd& read_end, unique_fd& write_end)
{
    std::array<int, 2> ends{};
    if (::pipe2(ends.data(), O_CLOEXEC) != 0) {
        return false;
    }
    for (int& end : ends) {
        if (end <= 2) {
            const int moved = ::fcntl(end, F_DUPFD_CLOEXEC, 3);
            ::close(end);
            end = moved;
        }
    }
    read_end.reset(ends[0]);
    write_end.reset(ends[1]);
    return read_end.get() >= 0 && write_end.get() >= 0;
}

// Everything the child does between fork and exec. Only async-signal-safe calls: the parent is
// threaded, and another thread may have held the allocator's lock at the fork.
[[noreturn]] void exec_child(const char* program, char* const* argv, char* const* envp,
                             int output_fd, int error_fd, int open_max)
{
    // A process group of its own, so a timeout kills whatever the hook started too.
    ::setpgid(0, 0);

    // gatehouse's blocked and ignored signals must not carry over to the hook.
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    for (int signal_number = 1; signal_number < NSIG; ++signal_number) {
        ::sigaction(signal_number, &default_action, nullptr);
    }

    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0 && ::dup2(null_fd, 0) >= 0 && ::dup2(output_fd, 1) >= 0 &&
        ::dup2(output_fd, 2) >= 0) {
        // Only 0, 1 and 2 pass on to the hook: everything above closes at exec, the error
        // pipe included, which is how the parent learns that exec succeeded. Kernels before
        // 5.11 lack CLOSE_RANGE_CLOEXEC; there every other descriptor is closed one by one.
        if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
            for (int fd = 3; fd < open_max; ++fd) {
                if (fd != error_fd) {
                    ::close(fd);
                }
            }
        }
        ::execve(program, argv, envp);
    }
    const int error = errno;
    (void)!::write(error_fd, &error, sizeof error);
    ::_exit(127);
}

// How far to close descriptors in the child; computed before fork.
int descriptor_limit()
{
    const long limit = ::sysconf(_SC_OPEN_MAX);
    return static_cast<int>(std::clamp(limit, 256L, 65'536L));
}

// Appends what can be read from `fd` now, keeping the last max_output_bytes. False at EOF.
bool read_available(int fd, std::string& output)
{
    std::array<char, 4096> buffer{};
    for (;;) {
        const ssize_t count = ::read(fd, buffer.data(), buffer.size());
        if (count > 0) {
            output.append(buffer.data(), static_cast<std::size_t>(count));
            if (output.size() > max_output_bytes) {
                output.erase(0, output.size() - max_output_bytes);
            }
            continue;
        }
        if (count < 0 && errno == EINTR) {
            continue;
        }
        return count < 0; // EAGAIN: open but empty; 0: every writer is gone
    }
}

void kill_group_and_reap(pid_t pid, int& status)
{
    ::kill(-pid, SIGKILL);
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
}

std::string describe_exit(int status)
{
    if (WIFEXITED(status)) {
        return "exit status " + std::to_string(WEXITSTATUS(status));
    }
    if (WIFSIGNALED(status)) {
        return "killed by signal " + std::to_string(WTERMSIG(status));
    }
    return "ended with wait status " + std::to_string(status);
}

// Waits for the started child, collecting its output, until it exits, the timeout passes or
// the runner stops; the last two kill its process group. The child is always reaped.
run_result wait_for_child(pid_t pid, int output_fd, std::chrono::seconds timeout,
                          const std::atomic<bool>& stopping)
{
    run_result result;
    ::fcntl(output_fd, F_SETFL, ::fcntl(output_fd, F_GETFL) | O_NONBLOCK);
    const auto deadline = steady_clock::now() + timeout;
    bool output_open = true;
    int status = 0;
    for (;;) {
        const pid_t done = ::waitpid(pid, &status, WNOHANG);
        if (done == pid) {
            // What it wrote last is still in the pipe; anything it left running may hold the
            // pipe open, so this reads what is there and does not wait for EOF.
            read_available(output_fd, result.output);
            result.error =
                WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "" : describe_exit(status);
            return result;
        }
        if (done < 0 && errno != EINTR) {
            result.error = "waiting for the hook: " + errno_text(errno);
            return result;
        }
        const auto now = steady_clock::now();
        if (stopping || now >= deadline) {
            kill_group_and_reap(pid, status);
            result.error = stopping ? "stopped, gatehouse is shutting down"
                                    : "timed out after " + std::to_string(timeout.count()) +
                                          "s; its process group was killed";
            return result;
        }
        const auto wait = std::min<steady_clock::duration>(child_poll_interval, deadline - now);
        pollfd watched{output_open ? output_fd : -1, POLLIN, 0};
        const auto wait_ms = std::chrono::ceil<std::chrono::milliseconds>(wait).count();
        if (::poll(&watched, 1, static_cast<int>(wait_ms)) > 0) {
            output_open = read_available(output_fd, result.output);
        }
    }
}

// Starts the hook with the job's files and environment and waits for it.
run_result run_hook(const config::certificate_hook_settings& settings, const hook_job& job,
                    const std::atomic<bool>& stopping)
{
    run_result result;
    const private_folder folder(result.error);
    if (folder.path().empty()) {
        return result;
    }
    const std::string certificate_file = folder.path() + "/certificate.pem";
    const std::string key_file = folder.path() + "/key.pem";
    result.error = write_private_file(certificate_file, job.chain_pem);
    if (result.error.empty()) {
        result.error = write_private_file(key_file, job.key_pem);
    }
    if (!result.error.empty()) {
        return result;
    }

    // Everything exec needs is built now: after fork, the child may not allocate.
    const auto program = find_program(settings.command.front());
    if (!program) {
        result.error = "cannot run " + settings.command.front() + ": not found in PATH";
        return result;
    }
    std::vector<std::string> arguments = settings.command;
    std::vector<std::string> environment = hook_environment(job, certificate_file, key_file);
    const auto argv = exec_array(arguments);
    const auto envp = exec_array(environment);
    const int open_max = descriptor_limit();
    unique_fd output_read, output_write, error_read, error_write;
    if (!make_pipe(output_read, output_write) || !make_pipe(error_read, error_write)) {
        result.error = "creating a pipe: " + errno_text(errno);
        return result;
    }

    const pid_t pid = ::fork();
    if (pid < 0) {
        result.error = "fork: " + errno_text(errno);
        return result;
    }
    if (pid == 0) {
        exec_child(program->c_str(), argv.data(), envp.data(), output_write.get(),
                   error_write.get(), open_max);
    }
    // Set here too, so the group exists even if the child has not run yet when it is killed.
    ::setpgid(pid, pid);
    output_write.reset();
    error_write.reset();

    // The error pipe closes at a successful exec; otherwise the child sends exec's errno.
    int exec_error = 0;
    ssize_t got = 0;
    do {
        got = ::read(error_read.get(), &exec_error, sizeof exec_error);
    } while (got < 0 && errno == EINTR);
    if (got == static_cast<ssize_t>(sizeof exec_error)) {
        int status = 0;
        kill_group_and_reap(pid, status);
        result.error = "cannot run " + *program + ": " + errno_text(exec_error);
        return result;
    }
    return wait_for_child(pid, output_read.get(), settings.timeout, stopping);
}

bool is_private_key_marker(std::string_view line, std::string_view edge)
{
    return line.find(edge) != std::string_view::npos &&
           line.find("PRIVATE KEY-----") != std::string_view::npos;
}

// The last lines of a run's output for the log, with every PEM private key block replaced by a
// note: a hook that prints its key file must not put the key into gatehouse's log. A block
// whose BEGIN line fell off the kept output is recognised by its END line.
std::string output_for_log(std::string_view output)
{
    std::vector<std::string_view> lines;
    while (!output.empty()) {
        const auto end = output.find('\n');
        std::string_view line = output.substr(0, end);
        if (line.ends_with('\r')) {
            line.remove_suffix(1);
        }
        lines.push_back(line);
        output.remove_prefix(end == std::string_view::npos ? output.size() : end + 1);
    }
    const auto first_marker = std::find_if(lines.begin(), lines.end(), [](std::string_view line) {
        return line.find("PRIVATE KEY-----") != std::string_view::npos;
    });
    bool in_key = first_marker != lines.end() && is_private_key_marker(*first_marker, "-----END");

    constexpr std::string_view removed = "[private key removed]";
    std::vector<std::string_view> kept;
    if (in_key) {
        kept.push_back(removed);
    }
    for (const auto line : lines) {
        if (in_key) {
            in_key = !is_private_key_marker(line, "-----END");
        } else if (is_private_key_marker(line, "-----BEGIN")) {
            kept.push_back(removed);
            in_key = true;
        } else {
            kept.push_back(line);
        }
    }

    std::string text;
    const std::size_t first =
        kept.size() > logged_output_lines ? kept.size() - logged_output_lines : 0;
    for (std::size_t i = first; i < kept.size(); ++i) {
        text += (i == first ? "" : "\n") + std::string(kept[i].substr(0, max_logged_line_chars));
    }
    return text;
}

} // namespace

struct certificate_hook::impl {
    impl(config::certificate_hook_settings s, certificate_hook_timing t)
        : timing(t), settings(std::move(s))
    {}

    void run();
    void finish(hook_job job, const run_result& result, steady_clock::duration took);

    certificate_hook_timing timing;

    std::mutex mutex;
    std::condition_variable wake;

    // Under `mutex`: the settings the next run uses, and the runs waiting, one per host.
    config::certificate_hook_settings settings;
    std::map<std::string, hook_job> pending;

    // Set under `mutex`; read without it by a running hook's wait loop.
    std::atomic<bool> stopping{false};

    std::thread thread;
};

void certificate_hook::impl::run()
{
    std::unique_lock lock(mutex);
    while (!stopping) {
        const auto next = std::min_element(pending.begin(), pending.end(), [](auto& a, auto& b) {
            return a.second.due < b.second.due;
        });
        if (next == pending.end()) {
            wake.wait(lock);
            continue;
        }
        if (steady_clock::now() < next->second.due) {
            wake.wait_until(lock, next->second.due);
            continue;
        }
        hook_job job = std::move(next->second);
        pending.erase(next);
        const auto run_settings = settings;
        lock.unlock();

        ++job.attempt;
        const auto started = steady_clock::now();
        const auto result = run_hook(run_settings, job, stopping);
        const auto took = steady_clock::now() - started;
        lock.lock();
        finish(std::move(job), result, took);
    }
    if (!pending.empty()) {
        log::write(*logger(), spdlog::level::warn, "certificate hook runs dropped at shutdown",
                   {{"remaining", static_cast<std::uint64_t>(pending.size())}});
    }
}

void certificate_hook::impl::finish(hook_job job, const run_result& result,
                                    steady_clock::duration took)
{
    const auto took_ms = std::chrono::duration_cast<std::chrono::milliseconds>(took).count();
    if (result.error.empty()) {
        log::write(*logger(), spdlog::level::info, "certificate hook done",
                   {{"host", job.host},
                    {"attempt", static_cast<std::uint64_t>(job.attempt)},
                    {"duration_ms", static_cast<std::int64_t>(took_ms)}});
        return;
    }
    if (stopping) {
        log::write(*logger(), spdlog::level::warn, "certificate hook stopped",
                   {{"host", job.host}, {"error", result.error}});
        return;
    }

    // A newer certificate for the host waiting already replaces this retry.
    const std::string host = job.host;
    const unsigned attempt = job.attempt;
    if (!pending.contains(host)) {
        const auto previous = job.retry_delay;
        job.retry_delay = previous.count() == 0 ? timing.first_retry_delay
                                                : std::min(previous * 2, timing.max_retry_delay);
        job.due = steady_clock::now() + job.retry_delay;
        pending.emplace(host, std::move(job));
    }
    const auto retry_in = std::chrono::ceil<std::chrono::seconds>(
        std::max<steady_clock::duration>(pending.at(host).due - steady_clock::now(), {}));
    log::write(*logger(), spdlog::level::err, "certificate hook failed",
               {{"host", host},
                {"attempt", static_cast<std::uint64_t>(attempt)},
                {"retry_in", static_cast<std::int64_t>(retry_in.count())},
                {"error", result.error},
                {"output", output_for_log(result.output)}});
}

certificate_hook::certificate_hook(config::certificate_hook_settings settings,
                                   certificate_hook_timing timing)
    : impl_(std::make_unique<impl>(std::move(settings), timing))
{
    impl_->thread = std::thread([self = impl_.get()] { self->run(); });
}

certificate_hook::~certificate_hook()
{
    {
        std::lock_guard lock(impl_->mutex);
        impl_->stopping = true;
    }
    impl_->wake.notify_all();
    impl_->thread.join();
}

void certificate_hook::notify(std::string host, std::vector<std::string> names,
                              std::string chain_pem, std::string key_pem)
{
    hook_job job;
    job.host = host;
    job.names = std::move(names);
    job.chain_pem = std::move(chain_pem);
    job.key_pem = std::move(key_pem);
    job.due = steady_clock::now();
    {
        std::lock_guard lock(impl_->mutex);
        impl_->pending.insert_or_assign(std::move(host), std::move(job));
    }
    impl_->wake.notify_one();
}

void certificate_hook::update(config::certificate_hook_settings settings)
{
    std::lock_guard lock(impl_->mutex);
    impl_->settings = std::move(settings);
}

void sync_certificate_hook(std::unique_ptr<certificate_hook>& hook,
                           const std::optional<config::certificate_hook_settings>& settings)
{
    if (!settings) {
        if (hook) {
            hook.reset();
            log::write(*logger(), spdlog::level::info, "certificate hook removed");
        }
        return;
    }
    if (hook) {
        hook->update(*settings);
        return;
    }
    hook = std::make_unique<certificate_hook>(*settings);
    // Only the program: an argument may carry a secret.
    log::write(*logger(), spdlog::level::info, "certificate hook enabled",
               {{"program", settings->command.front()}});
}

} // namespace gatehouse::proxy
