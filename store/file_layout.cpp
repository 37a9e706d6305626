#include "store/file_layout.hpp"

#include "store/posix_file.hpp"
#include "store/store.hpp"

#include <cerrno>
#include <dirent.h>
#include <fcntl.h>
#include <memory>

namespace gatehouse::store::file_layout {

namespace {

struct directory_closer {
    void operator()(DIR* dir) const noexcept { ::closedir(dir); }
};
using directory_stream = std::unique_ptr<DIR, directory_closer>;

bool is_directory(DIR* parent, const dirent& entry)
{
    if (entry.d_type != DT_UNKNOWN) {
        return entry.d_type == DT_DIR;
    }
    // Some file systems (XFS without ftype, some network ones) do not fill in d_type.
    struct stat status;
    return ::fstatat(::dirfd(parent), entry.d_name, &status, AT_SYMLINK_NOFOLLOW) == 0 &&
           S_ISDIR(status.st_mode);
}

class walker {
public:
    walker(const std::function<void(const found_entry&)>& on_entry,
           const std::function<void(const std::filesystem::path&)>& on_directory)
        : on_entry_(on_entry), on_directory_(on_directory)
    {}

    // Walks `dir`, whose keys start with `key_prefix`. `is_first` says whether a missing `dir`
    // is an error (the directory asked for) or a race to skip (a subdirectory just removed).
    std::error_code walk(const std::filesystem::path& dir, const std::string& key_prefix,
                         bool is_first)
    {
        directory_stream stream(::opendir(dir.c_str()));
        if (!stream) {
            if (!is_first && (errno == ENOENT || errno == ENOTDIR)) {
                return {};
            }
            return posix::last_error();
        }
        if (on_directory_) {
            on_directory_(dir);
        }
        while (true) {
            errno = 0;
            const dirent* entry = ::readdir(stream.get());
            if (entry == nullptr) {
                return errno == 0 ? std::error_code() : posix::last_error();
            }
            if (auto error = visit(stream.get(), *entry, dir, key_prefix)) {
                return error;
            }
        }
    }

private:
    std::error_code visit(DIR* stream, const dirent& entry, const std::filesystem::path& dir,
                          const std::string& key_prefix)
    {
        const std::string_view name = entry.d_name;
        if (name.starts_with('.')) {
            return {};
        }
        if (is_directory(stream, entry)) {
            return walk(dir / entry.d_name, key_prefix + std::string(name) + "/", false);
        }
        if (!name.ends_with(entry_suffix)) {
            return {};
        }
        found_entry found;
        found.key = key_prefix + std::string(name.substr(0, name.size() - entry_suffix.size()));
        found.path = dir / entry.d_name;
        if (!is_valid_key(found.key) || ::stat(found.path.c_str(), &found.status) != 0 ||
            !S_ISREG(found.status.st_mode)) {
            // Removed since readdir, a dangling link, or something an operator named oddly.
            return {};
        }
        on_entry_(found);
        return {};
    }

    const std::function<void(const found_entry&)>& on_entry_;
    const std::function<void(const std::filesystem::path&)>& on_directory_;
};

} // namespace

file_location locate(std::string_view name, std::string_view suffix)
{
    const auto slash = name.rfind('/');
    if (slash == std::string_view::npos) {
        return {{}, std::string(name) + std::string(suffix)};
    }
    return {std::filesystem::path(name.substr(0, slash)),
            std::string(name.substr(slash + 1)) + std::string(suffix)};
}

std::error_code walk_entries(const std::filesystem::path& root, std::string_view directory_key,
                             const std::function<void(const found_entry&)>& on_entry,
                             const std::function<void(const std::filesystem::path&)>& on_directory)
{
    walker walk(on_entry, on_directory);
    const std::filesystem::path first = directory_key.empty() ? root : root / directory_key;
    return walk.walk(first, std::string(directory_key), true);
}

} // namespace gatehouse::store::file_layout
