// The file backend, gatehouse's default store (`store: {file: DIR}`): every key is a file below
// one directory, written atomically, readable only by gatehouse's user. docs/store.md describes
// the layout, the lock records and how an operator copies a certificate in.
#pragma once

#include "store/store.hpp"

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

namespace gatehouse::store {

struct file_store_options {
    // How often the watch thread rescans the directory even when inotify reported nothing.
    // This bounds the delay for changes inotify cannot see (made on another machine sharing the
    // directory over NFS); local changes are reported within about 20 ms.
    std::chrono::milliseconds poll_interval{500};

    // How long a lock operation waits for another process's short critical section on the
    // lock records before failing with errc::timeout.
    std::chrono::milliseconds lock_guard_timeout{5000};

    // Temporary files older than this, left by a writer that crashed mid-write, are deleted
    // when the store opens. Long enough that a slow write by another live instance is never
    // cut short.
    std::chrono::minutes stale_temporary_age{10};
};

// Opens the store kept in `dir`, creating it and its parents if missing (the store directory
// itself with mode 0700). An existing directory owned by this user is set to 0700; one owned by
// another user (a volume prepared with a group, say) keeps its mode. Writability is proven by
// creating, fsyncing and removing a probe file, so a read-only mount or a full disk is found
// now rather than when the first certificate is obtained.
//
// Fails with errc::not_writable when the directory cannot be created or written, naming the
// directory and the OS error in *why when `why` is not null, e.g. "store directory
// /var/lib/gatehouse is not writable: Read-only file system"; gatehouse then refuses to start.
// Call it at start-up; the returned store is thread-safe and owns a watch thread that starts
// with the first watch() and stops in its destructor.
result<std::unique_ptr<store>> open_file_store(std::filesystem::path dir,
                                               std::string* why = nullptr,
                                               const file_store_options& options = {});

} // namespace gatehouse::store
