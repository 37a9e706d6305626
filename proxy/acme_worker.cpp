#include "proxy/acme_worker.hpp"

#include "acme/client.hpp"
#include "acme/http_transport.hpp"
#include "pki/certificate.hpp"
#include "pki/keys.hpp"
#include "proxy/challenge_responder.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"
#include "store/certificate_bundle.hpp"
#include "store/keys.hpp"
#include "store/lock_heartbeat.hpp"
#include "store/rfc3339.hpp"
#include "store/store.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

namespace gatehouse::proxy {

namespace {

using steady_clock = std::chrono::steady_clock;
using system_clock = std::chrono::system_clock;

// The lock an order holds lasts acme.order_lock_ttl (150 s by default). Its heartbeat refreshes
// it every ttl/3 and gives it up after 2/3 of the ttl without a successful refresh (100 s); the
// order asks before every request whether to go on, so what is left of the lease, a third of
// the ttl, must cover the longest single request: connect + exchange, twice when
// net::http_client sends it again on a fresh connection. Each attempt therefore gets at most
// ttl/6, a fifth of it to connect and the rest to exchange: 5 s + 20 s at 150 s. A holder cut
// off from the store has then stopped talking to the CA by the time the lease runs out and
// another instance may take over. A holder that dies frees the lock within the ttl too; orders
// are rare enough for that wait.
constexpr std::chrono::milliseconds longest_connect{std::chrono::seconds(5)};
constexpr std::chrono::milliseconds longest_exchange{std::chrono::seconds(20)};

constexpr std::chrono::minutes rate_window{1};

// How often a wait looks at the heartbeat: nothing tells the worker when the lock is lost, and a
// wait may be long (a poll interval, a CA's Retry-After, the rate cap), so an order that lost its
// lock ends within this rather than when its wait is over.
constexpr std::chrono::milliseconds lost_lock_check{100};

std::shared_ptr<spdlog::logger> logger()
{
    static const auto instance = log::get("acme");
    return instance;
}

pki::key_type key_type_of(config::acme_key_type type)
{
    switch (type) {
    case config::acme_key_type::ecdsa_p384:
        return pki::key_type::ecdsa_p384;
    case config::acme_key_type::rsa2048:
        return pki::key_type::rsa2048;
    case config::acme_key_type::rsa4096:
        return pki::key_type::rsa4096;
    case config::acme_key_type::ecdsa_p256:
        break;
    }
    return pki::key_type::ecdsa_p256;
}

// What makes two jobs need different clients: a change to any of it on reload builds a new one.
std::string client_identity(const acme_job& job)
{
    const auto& s = job.settings;
    return job.directory_url + "\n" + s.email + "\n" + s.ca_bundle_file + "\n" +
           (s.eab ? s.eab->key_id + "\n" + s.eab->hmac_key : std::string()) + "\n" +
           std::to_string(static_cast<int>(s.key_type)) + "\n" + s.preferred_chain + "\n" +
           // The transport's deadlines follow the lock's ttl.
           std::to_string(s.order_lock_ttl.count());
}

// A bundle in the store for `job`'s host that someone else obtained while we were not looking:
// it parses, covers every name, is valid now, and is not the one the manager serves.
bool holds_newer_bundle(store::store& store, const acme_job& job)
{
    auto text = store.get(store::keys::certificate(job.host));
    if (!text || !*text) {
        return false;
    }
    auto bundle = store::parse_bundle(**text);
    if (!bundle) {
        return false;
    }
    auto chain = pki::parse_certificate_chain(bundle->certificate_chain_pem);
    if (!chain) {
        return false;
    }
    auto info = pki::describe_certificate(chain->leaf.get());
    if (!info || info->serial_hex == job.current_serial) {
        return false;
    }
    for (const auto& name : job.names) {
        if (!pki::covers_name(*info, name)) {
            return false;
        }
    }
    const auto now = system_clock::now();
    return info->not_before <= now && now < info->not_after && !pki::needs_renewal(*info, now);
}

} // namespace

acme::client_settings client_settings_for(const config::acme_settings& settings,
                                          const std::string& directory_url)
{
    acme::client_settings out;
    out.directory_url = directory_url;
    if (!settings.email.empty()) {
        out.contact = {"mailto:" + settings.email};
    }
    if (settings.eab) {
        out.eab = acme::external_account_binding{settings.eab->key_id, settings.eab->hmac_key};
    }
    out.certificate_key_type = key_type_of(settings.key_type);
    out.preferred_chain = settings.preferred_chain;
    return out;
}

acme::http_transport_options transport_options_for(const config::acme_settings& settings)
{
    acme::http_transport_options out;
    out.extra_ca_file = settings.ca_bundle_file;
    // Bounded so that an order's last request ends before its lock can pass to another
    // instance (see longest_connect). A ttl above 150 s keeps 5 s and 20 s: a CA slower than
    // that is failing anyway, and waiting longer would only hold the order up.
    const auto ttl = std::chrono::duration_cast<std::chrono::milliseconds>(settings.order_lock_ttl);
    out.connect_timeout = std::min(longest_connect, ttl / 30);
    out.request_timeout = std::min(longest_exchange, ttl * 2 / 15);
    out.user_agent = "gatehouse (ACME client)";
    return out;
}

struct acme_worker::impl {
    impl(store::store& s, challenge_responder* c, result_function r)
        : store(s), challenges(c), on_result(std::move(r))
    {}

    struct cached_client {
        std::string identity;
        std::unique_ptr<acme::transport> transport;
        std::unique_ptr<acme::client> client;
    };

    void run();
    acme_outcome perform(const acme_job& job);
    acme_outcome order(const acme_job& job);
    acme_outcome renewal_info(const acme_job& job);
    acme::client& client_for(const acme_job& job);
    bool sleep(std::chrono::milliseconds duration);
    bool wait_for_rate_limit(const acme_job& job);

    store::store& store;
    challenge_responder* challenges;
    result_function on_result;

    mutable std::mutex mutex;
    std::condition_variable wake;
    bool stopping = false;
    std::deque<acme_job> queue;
    std::optional<std::pair<std::string, acme_job::kind>> running;

    // Owned by the worker's thread.
    std::map<std::string, cached_client> clients;
    std::deque<steady_clock::time_point> recent_orders;
    const store::lock_heartbeat* heartbeat = nullptr;
    std::thread thread;
};

bool acme_worker::impl::sleep(std::chrono::milliseconds duration)
{
    const auto until = steady_clock::now() + duration;
    std::unique_lock lock(mutex);
    for (;;) {
        // A lost lock ends the order at its next wait, before another holder can start.
        if (stopping || (heartbeat != nullptr && heartbeat->lost())) {
            return false;
        }
        const auto now = steady_clock::now();
        if (now >= until) {
            return true;
        }
        const auto slice = std::min<steady_clock::duration>(until - now, lost_lock_check);
        wake.wait_for(lock, slice, [this] { return stopping; });
    }
}

acme::client& acme_worker::impl::client_for(const acme_job& job)
{
    auto& cached = clients[job.directory_url];
    const std::string identity = client_identity(job);
    if (!cached.client || cached.identity != identity) {
        cached.client.reset();
        cached.transport = acme::make_http_transport(transport_options_for(job.settings));
        auto settings = client_settings_for(job.settings, job.directory_url);

        acme::challenge_hooks hooks;
        if (challenges != nullptr) {
            hooks.published = [target = challenges](const std::string& token,
                                                    const std::string& answer) {
                target->add(token, answer);
            };
            hooks.withdrawn = [target = challenges](const std::string& token) {
                target->remove(token);
            };
            hooks.account_in_use = [target = challenges](const std::string& thumbprint) {
                target->add_account_thumbprint(thumbprint);
            };
        }
        cached.client = std::make_unique<acme::client>(
            store, *cached.transport, std::move(settings),
            [this](std::chrono::milliseconds duration) { return sleep(duration); },
            std::move(hooks));
        cached.identity = identity;
    }
    return *cached.client;
}

bool acme_worker::impl::wait_for_rate_limit(const acme_job& job)
{
    // A local cap on orders per minute, so a configuration with many names, or a bug, cannot
    // run into the CA's own rate limits, which take hours to clear.
    const std::size_t cap = std::max(1u, job.settings.orders_per_minute);
    for (;;) {
        const auto now = steady_clock::now();
        while (!recent_orders.empty() && now - recent_orders.front() >= rate_window) {
            recent_orders.pop_front();
        }
        if (recent_orders.size() < cap) {
            recent_orders.push_back(now);
            return true;
        }
        const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
            recent_orders.front() + rate_window - now);
        log::write(*logger(), spdlog::level::info, "order rate cap reached, waiting",
                   {{"host", job.host}, {"wait_ms", static_cast<std::int64_t>(wait.count())}});
        if (!sleep(wait)) {
            return false;
        }
    }
}

acme_outcome acme_worker::impl::order(const acme_job& job)
{
    acme_outcome outcome;
    outcome.host = job.host;
    outcome.what = job.what;
    outcome.directory_url = job.directory_url;

    // Only one instance orders: the others wait for its certificate to reach the store. The
    // lease's ttl starts somewhere during try_lock, so the heartbeat counts from before it.
    const auto asked_at = std::chrono::steady_clock::now();
    auto taken =
        store.try_lock(store::keys::lock_for_certificate(job.host), job.settings.order_lock_ttl);
    if (!taken) {
        outcome.error = "locking the certificate: " + taken.error().message();
        return outcome;
    }
    if (!*taken) {
        outcome.busy = true;
        return outcome;
    }
    const store::lock_lease lease = **taken;
    store::lock_heartbeat alive(store, lease, std::chrono::milliseconds(0), asked_at);
    {
        std::lock_guard lock(mutex);
        heartbeat = &alive;
    }
    struct release_at_exit {
        impl& self;
        store::store& target;
        const store::lock_lease& lease;
        ~release_at_exit()
        {
            {
                std::lock_guard lock(self.mutex);
                self.heartbeat = nullptr;
            }
            (void)target.unlock(lease);
        }
    } release{*this, store, lease};

    // Checked again under the lock: the holder before us may just have stored a certificate.
    if (holds_newer_bundle(store, job)) {
        outcome.stored = true;
        return outcome;
    }
    if (!wait_for_rate_limit(job)) {
        outcome.error = "stopped";
        return outcome;
    }

    log::write(*logger(), spdlog::level::info, "ordering certificate",
               {{"host", job.host}, {"ca", job.directory_url}});
    process_metrics().acme_orders.fetch_add(1, std::memory_order_relaxed);
    const auto started = steady_clock::now();
    auto issued = client_for(job).obtain(job.names);
    if (alive.lost()) {
        // Someone else may be ordering now; storing ours could overwrite theirs. Said in so
        // many words, since the order itself only knows that it was told to stop.
        process_metrics().acme_order_failures.fetch_add(1, std::memory_order_relaxed);
        log::write(*logger(), spdlog::level::warn, "certificate lock lost, order stopped",
                   {{"host", job.host}, {"ca", job.directory_url}});
        outcome.error = "the certificate lock was lost while ordering";
        return outcome;
    }
    if (!issued) {
        process_metrics().acme_order_failures.fetch_add(1, std::memory_order_relaxed);
        outcome.error = acme::to_string(issued.error().problem);
        outcome.retryable = issued.error().retryable;
        outcome.retry_after = issued.error().retry_after;
        return outcome;
    }

    auto chain = pki::parse_certificate_chain(issued->chain_pem);
    if (!chain) {
        outcome.error = "the CA sent a chain that does not parse: " + chain.error().message;
        return outcome;
    }
    auto info = pki::describe_certificate(chain->leaf.get());
    if (!info) {
        outcome.error = "the CA sent a certificate that does not parse: " + info.error().message;
        return outcome;
    }
    store::certificate_bundle bundle;
    bundle.names = job.names;
    bundle.certificate_chain_pem = issued->chain_pem;
    bundle.private_key_pem = issued->private_key_pem;
    bundle.issuer = "acme";
    bundle.acme_directory = job.directory_url;
    bundle.serial = info->serial_hex;
    bundle.not_before = info->not_before;
    bundle.not_after = info->not_after;
    bundle.obtained_at = system_clock::now();
    if (auto written =
            store.put(store::keys::certificate(job.host), store::serialize_bundle(bundle));
        !written) {
        outcome.error = "storing the certificate: " + written.error().message();
        return outcome;
    }
    const auto took =
        std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - started);
    log::write(*logger(), spdlog::level::info, "certificate ordered",
               {{"host", job.host},
                {"ca", job.directory_url},
                {"serial", info->serial_hex},
                {"not_after", store::format_rfc3339(info->not_after)},
                {"took_ms", static_cast<std::int64_t>(took.count())}});
    outcome.stored = true;
    outcome.ordered = true;
    return outcome;
}

acme_outcome acme_worker::impl::renewal_info(const acme_job& job)
{
    acme_outcome outcome;
    outcome.host = job.host;
    outcome.what = job.what;
    outcome.directory_url = job.directory_url;
    auto window = client_for(job).renewal_info(job.current_chain_pem);
    if (!window) {
        outcome.error = acme::to_string(window.error().problem);
        outcome.retry_after = window.error().retry_after;
        return outcome;
    }
    outcome.window = *window;
    return outcome;
}

acme_outcome acme_worker::impl::perform(const acme_job& job)
{
    try {
        return job.what == acme_job::kind::order ? order(job) : renewal_info(job);
    } catch (const std::exception& failure) {
        // A CA bundle that cannot be read, a thread that cannot start: reported, retried.
        acme_outcome outcome;
        outcome.host = job.host;
        outcome.what = job.what;
        outcome.directory_url = job.directory_url;
        outcome.error = failure.what();
        return outcome;
    }
}

void acme_worker::impl::run()
{
    std::unique_lock lock(mutex);
    for (;;) {
        wake.wait(lock, [this] { return stopping || !queue.empty(); });
        if (stopping) {
            return;
        }
        acme_job job = std::move(queue.front());
        queue.pop_front();
        running.emplace(job.host, job.what);
        lock.unlock();

        auto outcome = perform(job);
        on_result(std::move(outcome));

        lock.lock();
        running.reset();
    }
}

acme_worker::acme_worker(store::store& store, challenge_responder* challenges,
                         result_function on_result)
    : impl_(std::make_unique<impl>(store, challenges, std::move(on_result)))
{
    impl_->thread = std::thread([self = impl_.get()] { self->run(); });
}

acme_worker::~acme_worker()
{
    {
        std::lock_guard lock(impl_->mutex);
        impl_->stopping = true;
    }
    impl_->wake.notify_all();
    impl_->thread.join();
}

bool acme_worker::submit(acme_job job)
{
    std::lock_guard lock(impl_->mutex);
    const auto same = [&](const std::string& host, acme_job::kind what) {
        return host == job.host && what == job.what;
    };
    if (impl_->running && same(impl_->running->first, impl_->running->second)) {
        return false;
    }
    for (const auto& queued : impl_->queue) {
        if (same(queued.host, queued.what)) {
            return false;
        }
    }
    impl_->queue.push_back(std::move(job));
    impl_->wake.notify_all();
    return true;
}

bool acme_worker::pending(const std::string& host) const
{
    std::lock_guard lock(impl_->mutex);
    if (impl_->running && impl_->running->first == host) {
        return true;
    }
    for (const auto& queued : impl_->queue) {
        if (queued.host == host) {
            return true;
        }
    }
    return false;
}

} // namespace gatehouse::proxy
