// Where the file backend keeps each key and lock below its directory, and how it walks them
// back. Internal to store/; docs/store.md describes the same layout for operators.
//
//   <root>/certificates/example.com.entry     the value of key "certificates/example.com"
//   <root>/certificates/*.example.com.entry   a wildcard's key is its name, '*' and all
//   <root>/.locks/certificates/example.com.lock   the lock "certificates/example.com"
//   <root>/.locks/.guard                       serializes changes to lock records
//   <root>/certificates/.example.com.entry.tmp-<hex>   a write in progress (never listed)
//
// Every key segment but the last is a directory; the last gets the ".entry" suffix, so that
// "a" and "a/b" can both exist, as they can in a networked key/value store. Names starting
// with '.' belong to the backend. All functions are pure or read-only, and thread-safe.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <system_error>

namespace gatehouse::store::file_layout {

inline constexpr std::string_view entry_suffix = ".entry";
inline constexpr std::string_view lock_suffix = ".lock";
inline constexpr std::string_view locks_directory = ".locks";
inline constexpr std::string_view guard_name = ".guard";

// A key or lock name split into the directory that holds its file (relative to the root of its
// namespace) and the file's name: "certificates/example.com" with ".entry" gives
// {"certificates", "example.com.entry"}. `name` must be a valid key.
struct file_location {
    std::filesystem::path directory;
    std::string file_name;
};
file_location locate(std::string_view name, std::string_view suffix);

// One value file found by walk_entries.
struct found_entry {
    std::string key;
    std::filesystem::path path;

    // stat(2) of the file, following a symbolic link an operator may have put there.
    struct stat status;
};

// Calls `on_entry` for every value file below root/`directory_key` (empty, or a key prefix
// ending in '/'), at any depth, in no particular order, and `on_directory` (when given) for
// every directory it walks, the first included. Names starting with '.' (temporary files, the
// lock directory) and files without the ".entry" suffix or whose key would not be valid are
// skipped; symbolic links to directories are not followed. A directory that vanishes during
// the walk is skipped; failing to open the first directory or any other error is returned
// (ENOENT when the first one does not exist).
std::error_code
walk_entries(const std::filesystem::path& root, std::string_view directory_key,
             const std::function<void(const found_entry&)>& on_entry,
             const std::function<void(const std::filesystem::path&)>& on_directory = nullptr);

} // namespace gatehouse::store::file_layout
