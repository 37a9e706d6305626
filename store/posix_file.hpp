// The few POSIX file operations the file backend is built from, each with the fsync calls that
// make it crash-safe. Internal to store/: nothing outside the file backend includes this.
//
// Every function reports failure as a std::error_code in the system category (errno), never
// by throwing, so the caller can name the OS error. All are thread-safe: they share no state.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace gatehouse::store::posix {

// Owns a file descriptor and closes it on destruction.
class unique_fd {
public:
    unique_fd() = default;
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    unique_fd& operator=(unique_fd&& other) noexcept;
    ~unique_fd();

    int get() const noexcept { return fd_; }
    bool is_open() const noexcept { return fd_ >= 0; }

    // Gives up ownership: the caller closes the descriptor.
    int release() noexcept { return std::exchange(fd_, -1); }

private:
    int fd_ = -1;
};

// errno as an error_code.
std::error_code last_error() noexcept;

// `bytes` random bytes from the kernel, in lower-case hex. Throws std::system_error only if
// the kernel has no randomness to give, which does not happen on Linux 3.17 or later.
std::string random_hex(std::size_t bytes);

// A fresh name for a temporary sibling of `final_name`: ".<final_name>.tmp-<16 hex digits>".
// It starts with '.', which no key segment may, so listings and watches never see it.
std::string temporary_name(std::string_view final_name);

// True for the ".tmp-" names temporary_name makes.
bool is_temporary_name(std::string_view name);

enum class publish_mode {
    // rename(2) over whatever is there.
    replace,
    // link(2): fails with std::errc::file_exists when the target exists, atomically.
    create_only,
};

// Writes `content` to dir/final_name so that the file either keeps its old content or has the
// new one, whatever happens: a temporary file in `dir` (O_EXCL, mode 0600) is written, fsynced
// and closed, then renamed or linked into place, then `dir` itself is fsynced so the new name
// survives a power cut. The temporary file is removed on every path out.
std::error_code write_file_atomically(const std::filesystem::path& dir, std::string_view final_name,
                                      std::string_view content, publish_mode mode);

// Reads the whole of `file` into `content`. A file that does not exist (ENOENT, or ENOTDIR for
// a missing parent) is not an error: `content` is left empty.
std::error_code read_file(const std::filesystem::path& file, std::optional<std::string>& content);

// Unlinks `file` and fsyncs its directory. A file that does not exist is not an error.
std::error_code remove_file(const std::filesystem::path& file);

// fsync(2) on a directory, which makes the creation, rename or removal of its entries durable.
std::error_code fsync_directory(const std::filesystem::path& dir);

// Creates root/relative and the directories between, each with mode 0700, fsyncing the parent
// of every directory it creates. `root` must exist. Existing directories are left as they are.
std::error_code make_directories(const std::filesystem::path& root,
                                 const std::filesystem::path& relative);

} // namespace gatehouse::store::posix
