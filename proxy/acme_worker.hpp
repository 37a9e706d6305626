// The thread that talks to ACME CAs for the certificate manager. Orders take seconds to
// minutes and wait on the network, so they run here, one at a time, while the manager's own
// thread keeps reloading files and publishing tables every second.
//
// For each job the worker takes the certificate's store lock (kept alive by a heartbeat), looks
// at the store again once it holds it (another instance may just have finished), orders from
// the job's CA, and writes the new bundle to the store. The manager learns the outcome through
// the result callback and loads the certificate from the store like any other change, so a
// certificate ordered here and one ordered by another instance take the same path.
//
// All public members are thread-safe.
#pragma once

#include "acme/client.hpp"
#include "acme/http_transport.hpp"
#include "acme/renewal_info.hpp"
#include "config/config.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gatehouse::store {
class store;
}

namespace gatehouse::proxy {

class challenge_responder;

// The ACME client settings for `directory_url` under the configured `settings`: contact,
// External Account Binding and certificate key type.
acme::client_settings client_settings_for(const config::acme_settings& settings,
                                          const std::string& directory_url);

// How the ACME client reaches CAs: the system trust store plus the configured ca_bundle, and
// connect and request deadlines short enough for order_lock_ttl (5 s and 20 s at its default
// of 150 s, less below it), so that an order that lost its lock is done with the CA before
// another instance can take the lock.
acme::http_transport_options transport_options_for(const config::acme_settings& settings);

struct acme_job {
    enum class kind {
        // Obtain a certificate for `names`, unless the store already holds a newer one.
        order,
        // Ask the CA when to renew `current_chain_pem` (ARI); nothing is ordered.
        renewal_info,
    };
    kind what = kind::order;

    // The route host: the store key and the lock are named after it.
    std::string host;
    // Every name on the certificate, host first.
    std::vector<std::string> names;
    // The CA to use, and the account settings.
    std::string directory_url;
    config::acme_settings settings;

    // The serial of the certificate the manager serves now, empty for none; a stored bundle
    // with another serial that is still good means someone else already renewed.
    std::string current_serial;
    std::string current_chain_pem;
};

struct acme_outcome {
    std::string host;
    acme_job::kind what = acme_job::kind::order;
    std::string directory_url;

    // The store now holds a certificate for the host that the manager should load: one this
    // worker ordered, or one found there under the lock.
    bool stored = false;
    bool ordered = false;

    // Another instance holds the lock and is ordering; not a failure.
    bool busy = false;

    // For a failure: what went wrong, whether it may pass, and the wait the CA asked for.
    std::string error;
    bool retryable = true;
    std::optional<std::chrono::seconds> retry_after;

    // For renewal_info: the CA's window, when it gave one.
    std::optional<acme::renewal_window> window;
};

class acme_worker {
public:
    using result_function = std::function<void(acme_outcome)>;

    // `store` must outlive the worker. `challenges` receives this instance's answers directly
    // (may be null). `on_result` runs on the worker's thread.
    acme_worker(store::store& store, challenge_responder* challenges, result_function on_result);

    // Stops the thread: a running order is cut short at its next wait.
    ~acme_worker();

    acme_worker(const acme_worker&) = delete;
    acme_worker& operator=(const acme_worker&) = delete;

    // Queues a job, unless one for the same host and kind is queued or running. Returns
    // whether it was queued.
    bool submit(acme_job job);

    // Whether a job for `host` is queued or running.
    bool pending(const std::string& host) const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace gatehouse::proxy
