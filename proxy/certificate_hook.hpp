// Runs the operator's certificate_updated hook (config::certificate_hook_settings) after a
// certificate is obtained, renewed or replaced, so that something gatehouse does not serve
// itself (a mail server, a database, another proxy) can be handed the new certificate.
//
// Each run gets the chain and the private key in two files of its own private temporary folder
// (0700, files 0600, removed when the run ends) and learns the host, names and file paths from
// GATEHOUSE_HOST, GATEHOUSE_NAMES, GATEHOUSE_CERTIFICATE_FILE and GATEHOUSE_KEY_FILE. The
// command is started with fork and exec, never through a shell, in a process group of its own,
// with stdin from /dev/null; its stdout and stderr are captured, and their last lines are
// logged when it fails. Exit status 0 is success; any other status, a program that cannot be
// started, or a run past the timeout (its process group is then killed) is a failure, logged
// with host, attempt, retry_in and error, and retried after a delay that doubles up to a cap.
//
// The hook is an add-on to a certificate change, never part of it: the caller's certificate is
// already serving, and nothing the hook does (fail, hang, crash) reaches the caller. Runs
// happen one at a time on the runner's own thread. Key material is never logged.
#pragma once

#include "config/config.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gatehouse::proxy {

// When a failed run is tried again: after first_retry_delay, each further failure doubling the
// wait up to max_retry_delay. The defaults are the documented ones; tests shorten them.
struct certificate_hook_timing {
    std::chrono::milliseconds first_retry_delay{std::chrono::seconds(10)};
    std::chrono::milliseconds max_retry_delay{std::chrono::minutes(10)};
};

class certificate_hook {
public:
    // Starts the runner's thread; nothing runs until notify(). `settings.command` must not be
    // empty (the loader guarantees it). Throws std::system_error when the thread cannot start.
    explicit certificate_hook(config::certificate_hook_settings settings,
                              certificate_hook_timing timing = {});

    // Stops the runner: a hook running now has its process group killed, and runs still
    // waiting (first attempts and retries) are dropped, with a warning naming how many.
    // Returns once the thread has ended.
    ~certificate_hook();

    certificate_hook(const certificate_hook&) = delete;
    certificate_hook& operator=(const certificate_hook&) = delete;

    // Asks for one run about the certificate now serving `host`: `names` are the DNS names it
    // covers, `chain_pem` its chain (leaf first) and `key_pem` its private key, both PEM. A run
    // still waiting for `host` (a first attempt or a retry) is replaced, so only the newest
    // certificate of a host is handed on; a run in progress for it finishes, and this one
    // follows. Never blocks on a run and never fails. Thread-safe.
    void notify(std::string host, std::vector<std::string> names, std::string chain_pem,
                std::string key_pem);

    // Uses `settings` from the next run on (a reloaded configuration); a run in progress keeps
    // the settings it started with. Thread-safe.
    void update(config::certificate_hook_settings settings);

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// Keeps `hook` in step with the configuration: creates it when `settings` is set and it does not
// exist, hands it the new settings when both exist, and destroys it (see ~certificate_hook) when
// `settings` is empty. For the certificate manager, on its own thread.
void sync_certificate_hook(std::unique_ptr<certificate_hook>& hook,
                           const std::optional<config::certificate_hook_settings>& settings);

} // namespace gatehouse::proxy
