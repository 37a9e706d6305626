#include "store/posix_file.hpp"

#include <array>
#include <cerrno>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

namespace gatehouse::store::posix {

namespace {

constexpr mode_t file_mode = 0600;
constexpr mode_t directory_mode = 0700;
constexpr std::string_view temporary_marker = ".tmp-";

std::error_code write_all(int fd, std::string_view content)
{
    while (!content.empty()) {
        const ssize_t written = ::write(fd, content.data(), content.size());
        if (written < 0) {
            if (errno == EINTR) {
                continue;
            }
            return last_error();
        }
        content.remove_prefix(static_cast<std::size_t>(written));
    }
    return {};
}

// Writes and fsyncs a new file at `path`, which must not exist.
std::error_code write_new_file(const std::filesystem::path& path, std::string_view content)
{
    unique_fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, file_mode));
    if (!fd.is_open()) {
        return last_error();
    }
    // The umask can only take bits away; this makes 0600 hold whatever the umask was.
    if (::fchmod(fd.get(), file_mode) != 0) {
        return last_error();
    }
    if (auto error = write_all(fd.get(), content)) {
        return error;
    }
    if (::fsync(fd.get()) != 0) {
        return last_error();
    }
    // close(2) can report a deferred write error on some file systems (NFS).
    if (::close(fd.release()) != 0) {
        return last_error();
    }
    return {};
}

std::error_code publish(const std::filesystem::path& from, const std::filesystem::path& to,
                        publish_mode mode)
{
    const int status = mode == publish_mode::replace ? ::rename(from.c_str(), to.c_str())
                                                     : ::link(from.c_str(), to.c_str());
    return status == 0 ? std::error_code() : last_error();
}

} // namespace

unique_fd& unique_fd::operator=(unique_fd&& other) noexcept
{
    if (this != &other) {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
}

unique_fd::~unique_fd()
{
    if (fd_ >= 0) {
        ::close(fd_);
    }
}

std::error_code last_error() noexcept
{
    return {errno, std::system_category()};
}

std::string random_hex(std::size_t bytes)
{
    std::string random(bytes, '\0');
    std::size_t filled = 0;
    while (filled < bytes) {
        const ssize_t got = ::getrandom(random.data() + filled, bytes - filled, 0);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw std::system_error(last_error(), "getrandom");
        }
        filled += static_cast<std::size_t>(got);
    }
    static constexpr char digits[] = "0123456789abcdef";
    std::string hex;
    hex.reserve(bytes * 2);
    for (unsigned char c : random) {
        hex.push_back(digits[c >> 4]);
        hex.push_back(digits[c & 0xf]);
    }
    return hex;
}

std::string temporary_name(std::string_view final_name)
{
    return "." + std::string(final_name) + std::string(temporary_marker) + random_hex(8);
}

bool is_temporary_name(std::string_view name)
{
    return name.starts_with('.') && name.find(temporary_marker) != std::string_view::npos;
}

std::error_code write_file_atomically(const std::filesystem::path& dir, std::string_view final_name,
                                      std::string_view content, publish_mode mode)
{
    const std::filesystem::path temporary = dir / temporary_name(final_name);
    std::error_code error = write_new_file(temporary, content);
    if (!error) {
        error = publish(temporary, dir / final_name, mode);
    }
    // After a rename there is nothing left to remove; after a link, or a failure, there is.
    if (mode == publish_mode::create_only || error) {
        ::unlink(temporary.c_str());
    }
    if (error) {
        return error;
    }
    return fsync_directory(dir);
}

std::error_code read_file(const std::filesystem::path& file, std::optional<std::string>& content)
{
    content.reset();
    unique_fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.is_open()) {
        if (errno == ENOENT || errno == ENOTDIR) {
            return {};
        }
        return last_error();
    }
    std::string text;
    std::array<char, 16384> buffer;
    while (true) {
        const ssize_t got = ::read(fd.get(), buffer.data(), buffer.size());
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            return last_error();
        }
        if (got == 0) {
            break;
        }
        text.append(buffer.data(), static_cast<std::size_t>(got));
    }
    content = std::move(text);
    return {};
}

std::error_code remove_file(const std::filesystem::path& file)
{
    if (::unlink(file.c_str()) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            return {};
        }
        return last_error();
    }
    return fsync_directory(file.parent_path());
}

std::error_code fsync_directory(const std::filesystem::path& dir)
{
    unique_fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.is_open()) {
        return last_error();
    }
    if (::fsync(fd.get()) != 0) {
        return last_error();
    }
    return {};
}

std::error_code make_directories(const std::filesystem::path& root,
                                 const std::filesystem::path& relative)
{
    std::filesystem::path current = root;
    for (const auto& component : relative) {
        const std::filesystem::path parent = current;
        current /= component;
        if (::mkdir(current.c_str(), directory_mode) != 0) {
            if (errno == EEXIST) {
                continue;
            }
            return last_error();
        }
        if (auto error = fsync_directory(parent)) {
            return error;
        }
    }
    return {};
}

} // namespace gatehouse::store::posix
