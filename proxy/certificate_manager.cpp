#include "proxy/certificate_manager.hpp"

#include "acme/client.hpp"
#include "acme/renewal_info.hpp"
#include "pki/certificate.hpp"
#include "pki/jose.hpp"
#include "pki/keys.hpp"
#include "pki/local_ca.hpp"
#include "proxy/acme_worker.hpp"
#include "proxy/certificate_hook.hpp"
#include "proxy/challenge_responder.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"
#include "store/certificate_bundle.hpp"
#include "store/keys.hpp"
#include "store/rfc3339.hpp"
#include "store/store.hpp"

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <sys/stat.h>
#include <thread>

namespace gatehouse::proxy {

namespace {

using system_clock = std::chrono::system_clock;

// How often user-managed files and renewal times are checked. Half the 2 s within which a
// replaced certificate must be served.
constexpr std::chrono::milliseconds check_interval{1000};

// Session ticket keys: a new one encrypts from each rotation on, and the previous ones still
// decrypt, so a ticket stays usable for up to (kept - 1) intervals.
// TODO: keys are random per process, so a client resumes only with the instance it first met;
// keeping them in the store (encrypted) would let every instance behind one load balancer resume.
constexpr std::chrono::hours ticket_rotation_interval{12};
constexpr std::size_t ticket_keys_kept = 3;

// Retries of a failed issue or reload start here and double up to the cap.
constexpr std::chrono::seconds first_retry_delay{5};
constexpr std::chrono::seconds max_retry_delay{std::chrono::minutes(10)};

// How long an instance may hold a certificate's lock while issuing from the internal CA, which
// takes milliseconds; a crashed holder's lock is free again after this, and acquire_lock waits
// a little longer than this, so a restart after a crash mid-issue gets the lock.
constexpr std::chrono::seconds issue_lock_ttl{10};
constexpr std::chrono::milliseconds lock_wait{12'000};
constexpr std::chrono::milliseconds lock_poll_interval{200};

constexpr std::chrono::days internal_ca_validity{3650};
constexpr std::string_view internal_ca_name = "gatehouse local CA";

std::shared_ptr<spdlog::logger> logger()
{
    static const auto instance = log::get("certs");
    return instance;
}

template <typename T>
T value_or_throw(store::result<T> outcome, const std::string& what)
{
    if (!outcome) {
        throw std::runtime_error(what + ": " + outcome.error().message());
    }
    return std::move(*outcome);
}

void check_or_throw(const store::result<void>& outcome, const std::string& what)
{
    if (!outcome) {
        throw std::runtime_error(what + ": " + outcome.error().message());
    }
}

std::string read_whole_file(const std::string& path)
{
    std::ifstream file(path, std::ios::binary);
    if (!file) {
        throw std::runtime_error("cannot open " + path);
    }
    std::ostringstream text;
    text << file.rdbuf();
    return text.str();
}

// What identifies one version of a file: a replaced or rewritten file changes at least one.
struct file_version {
    dev_t device = 0;
    ino_t inode = 0;
    off_t size = 0;
    std::int64_t modified_ns = 0;
    // Changed by chmod and chown too, which can make an unreadable key readable.
    std::int64_t changed_ns = 0;
    bool exists = false;

    friend bool operator==(const file_version&, const file_version&) = default;
};

file_version version_of(const std::string& path)
{
    struct stat info {};
    if (::stat(path.c_str(), &info) != 0) {
        return {};
    }
    const auto nanoseconds = [](const timespec& time) {
        return static_cast<std::int64_t>(time.tv_sec) * 1'000'000'000 + time.tv_nsec;
    };
    return {info.st_dev,
            info.st_ino,
            info.st_size,
            nanoseconds(info.st_mtim),
            nanoseconds(info.st_ctim),
            true};
}

// A chain and key that parse, belong together and cover `host`, with the leaf's facts.
struct checked_certificate {
    certificate_material material;
    pki::certificate_info info;
};

checked_certificate check_pair(const std::string& host, std::string chain_pem, std::string key_pem,
                               const std::vector<std::string>& extra_names = {})
{
    auto chain = pki::parse_certificate_chain(chain_pem);
    if (!chain) {
        throw std::runtime_error("certificate: " + chain.error().message);
    }
    auto key = pki::private_key_from_pem(key_pem);
    if (!key) {
        throw std::runtime_error("private key: " + key.error().message);
    }
    if (!pki::public_key_matches(key->get(), chain->leaf.get())) {
        throw std::runtime_error("the private key does not belong to the certificate");
    }
    auto info = pki::describe_certificate(chain->leaf.get());
    if (!info) {
        throw std::runtime_error("certificate: " + info.error().message);
    }
    if (!pki::covers_name(*info, host.starts_with("*.") ? "x" + host.substr(1) : host)) {
        throw std::runtime_error("the certificate does not cover " + host);
    }
    std::vector<std::string> hosts{host};
    for (const auto& name : extra_names) {
        if (!pki::covers_name(*info, name)) {
            throw std::runtime_error("the certificate does not cover " + name);
        }
        hosts.push_back(name);
    }
    return {{std::move(hosts), std::move(chain_pem), std::move(key_pem)}, std::move(*info)};
}

// Takes `name`, waiting up to lock_wait for another instance to finish with it. Returns nothing
// when it stays taken; throws when the store cannot be asked.
std::optional<store::lock_lease> acquire_lock(store::store& store, const std::string& name)
{
    const auto give_up_at = std::chrono::steady_clock::now() + lock_wait;
    for (;;) {
        auto lease = value_or_throw(store.try_lock(name, issue_lock_ttl), "locking " + name);
        if (lease || std::chrono::steady_clock::now() >= give_up_at) {
            return lease;
        }
        std::this_thread::sleep_for(lock_poll_interval);
    }
}

// Releases a lock when the work under it ends, however it ends.
class scoped_lease {
public:
    scoped_lease(store::store& store, store::lock_lease lease)
        : store_(store), lease_(std::move(lease))
    {}
    ~scoped_lease() { (void)store_.unlock(lease_); }

    scoped_lease(const scoped_lease&) = delete;
    scoped_lease& operator=(const scoped_lease&) = delete;

private:
    store::store& store_;
    store::lock_lease lease_;
};

std::chrono::seconds grown_delay(std::chrono::seconds previous,
                                 std::chrono::seconds first = first_retry_delay,
                                 std::chrono::seconds cap = max_retry_delay)
{
    if (previous.count() == 0) {
        return std::min(first, cap);
    }
    return std::min(previous * 2, cap);
}

// How long to wait before asking again when another instance holds a certificate's lock: its
// certificate reaches us through the store's watch long before this, in the normal case.
constexpr std::chrono::seconds busy_retry_delay{5};

// After this many failures in a row at one CA, a name moves on to the next directory listed.
constexpr unsigned failures_before_next_ca = 2;

std::mt19937_64& random_source()
{
    static thread_local std::mt19937_64 random{std::random_device{}()};
    return random;
}

// Up to a twentieth of the lifetime earlier, so instances and names issued together do not all
// renew at the same moment.
std::chrono::seconds renewal_jitter(const pki::certificate_info& info)
{
    const auto lifetime = info.not_after - info.not_before;
    const auto spread = std::chrono::duration_cast<std::chrono::seconds>(lifetime / 20).count();
    return std::chrono::seconds(spread > 0 ? static_cast<long>(random_source()() % spread) : 0);
}

// When an ACME certificate is due for renewal by our own schedule: once the remaining lifetime
// falls under the configured share (or duration).
system_clock::time_point acme_renewal_due(const pki::certificate_info& info,
                                          const config::acme_settings& settings)
{
    const auto lifetime = info.not_after - info.not_before;
    const auto before =
        settings.renew_before
            ? std::chrono::duration_cast<system_clock::duration>(*settings.renew_before)
            : std::chrono::duration_cast<system_clock::duration>(lifetime *
                                                                 settings.renew_remaining_fraction);
    return info.not_after - std::min(before, lifetime);
}

} // namespace

internal_ca_pem load_or_create_internal_ca(store::store& store)
{
    const std::string key = store::keys::internal_ca();
    auto existing = value_or_throw(store.get(key), "reading the internal CA from the store");
    if (existing) {
        auto bundle = value_or_throw(store::parse_bundle(*existing), "the stored internal CA");
        return {bundle.certificate_chain_pem, bundle.private_key_pem};
    }

    // Instances sharing a store must end with one CA: whoever holds the lock creates it, and
    // everyone checks again once they hold it.
    const auto lease = acquire_lock(store, store::keys::lock_for_internal_ca());
    if (!lease) {
        throw std::runtime_error("another instance holds the internal CA lock; try again later");
    }
    const scoped_lease held(store, *lease);

    if (auto created_meanwhile = value_or_throw(store.get(key), "reading the internal CA")) {
        auto bundle = value_or_throw(store::parse_bundle(*created_meanwhile), "the internal CA");
        return {bundle.certificate_chain_pem, bundle.private_key_pem};
    }
    auto material = pki::create_local_ca(std::string(internal_ca_name), internal_ca_validity);
    if (!material) {
        throw std::runtime_error("creating the internal CA: " + material.error().message);
    }
    auto ca = pki::local_ca::from_material(*material);
    if (!ca) {
        throw std::runtime_error("loading the new internal CA: " + ca.error().message);
    }

    store::certificate_bundle bundle;
    bundle.names = {ca->info().subject};
    bundle.certificate_chain_pem = material->certificate_pem;
    bundle.private_key_pem = material->private_key_pem;
    bundle.issuer = "internal";
    bundle.serial = ca->info().serial_hex;
    bundle.not_before = ca->info().not_before;
    bundle.not_after = ca->info().not_after;
    bundle.obtained_at = system_clock::now();
    check_or_throw(store.put(key, store::serialize_bundle(bundle)),
                   "writing the internal CA to the store");
    log::write(*logger(), spdlog::level::info, "internal ca created",
               {{"subject", ca->info().subject},
                {"not_after", store::format_rfc3339(ca->info().not_after)}});
    return {material->certificate_pem, material->private_key_pem};
}

struct certificate_manager::impl {
    impl(store::store& s, publish_function p, challenge_responder* c)
        : store(s), publish(std::move(p)), challenges(c)
    {}

    // One route host's certificate and what the manager knows about it.
    struct entry {
        certificate_status status;
        config::route_tls tls;
        std::optional<checked_certificate> current;

        // For files: the versions last tried, so a broken pair is reported once, not every
        // second.
        file_version certificate_version;
        file_version key_version;

        // For internal and acme: set when the store says the bundle changed.
        bool store_changed = false;
        std::chrono::seconds retry_delay{0};

        // For acme: every name on the certificate after the host, the CA in use (an index
        // into the configured directories), failures in a row there, whether the worker has
        // a job for it, and the last renewal window the CA suggested.
        std::vector<std::string> extra_names;
        std::size_t directory_index = 0;
        unsigned failures_at_ca = 0;
        bool job_pending = false;
        std::optional<system_clock::time_point> renewal_info_checked;
        std::optional<acme::renewal_window> renewal_window;
    };

    void run();
    bool refresh(bool at_start);
    bool refresh_entry(entry& e, system_clock::time_point now, bool at_start);
    bool refresh_files(entry& e);
    bool refresh_internal(entry& e, system_clock::time_point now);
    bool refresh_acme(entry& e, system_clock::time_point now);
    void submit_acme(entry& e, acme_job::kind what);
    void take_acme_outcomes(system_clock::time_point now);
    void on_challenge_change(const store::change_event& event);
    void reload_challenges();
    void reload_account_thumbprints();
    void publish_acme_hosts();
    std::optional<checked_certificate> read_stored(const std::string& host);
    checked_certificate issue_internal(const std::string& host);
    const pki::local_ca& internal_ca();
    void sync_entries(const config::gatehouse_config& config);
    void publish_table();
    void record_success(entry& e, checked_certificate loaded);
    void record_failure(entry& e, const std::string& error, system_clock::time_point now,
                        std::optional<std::chrono::seconds> retry_after = {});
    void on_store_change(const store::change_event& event);

    store::store& store;
    publish_function publish;
    challenge_responder* challenges;

    mutable std::mutex mutex;
    std::condition_variable wake;
    bool stopping = false;
    std::shared_ptr<const config::gatehouse_config> config;
    bool config_changed = false;

    // The configuration the manager's thread works from, copied from `config` under the mutex.
    std::shared_ptr<const config::gatehouse_config> active;
    std::set<std::string> changed_hosts;
    bool resync_all = false;

    // Owned by the manager's thread (and by start, before the thread exists).
    std::map<std::string, entry> entries;
    std::optional<pki::local_ca> ca;
    std::string ca_pem;
    std::vector<ticket_key> ticket_keys;
    std::chrono::steady_clock::time_point last_rotation;
    std::unique_ptr<store::watch_handle> watch;
    std::unique_ptr<store::watch_handle> challenge_watch;
    std::unique_ptr<store::watch_handle> account_watch;
    std::unique_ptr<acme_worker> acme;

    // The certificate_updated hook, when the configuration has one (see certificate_hook.hpp).
    // Owned by the manager's thread; its destructor kills a hook still running.
    std::unique_ptr<certificate_hook> hook;

    std::thread thread;

    // Finished ACME jobs, handed over by the worker's thread, under `mutex`.
    std::vector<acme_outcome> acme_outcomes;

    // Copies for status(), under `mutex`.
    std::vector<certificate_status> status_copy;
};

void certificate_manager::impl::sync_entries(const config::gatehouse_config& next)
{
    std::set<std::string> wanted;
    for (const auto& route : next.routes) {
        if (route.tls.source == config::tls_source::off) {
            continue;
        }
        wanted.insert(route.host);
        auto [found, added] = entries.try_emplace(route.host);
        entry& e = found->second;
        const bool source_changed =
            !added && (e.tls.source != route.tls.source ||
                       e.tls.certificate_file != route.tls.certificate_file ||
                       e.tls.key_file != route.tls.key_file);
        if (added || source_changed) {
            e = entry{};
            e.status.host = route.host;
            e.status.source = route.tls.source == config::tls_source::internal ? "internal"
                              : route.tls.source == config::tls_source::acme   ? "acme"
                                                                               : "files";
            e.tls = route.tls;
            e.extra_names = route.tls.extra_names;
        } else if (e.extra_names != route.tls.extra_names) {
            // New names need a new certificate; the old one serves the old names meanwhile.
            e.tls = route.tls;
            e.extra_names = route.tls.extra_names;
            e.status.renew_at = system_clock::now();
            e.status.next_attempt.reset();
        }
    }
    std::erase_if(entries, [&](const auto& item) { return !wanted.contains(item.first); });
}

const pki::local_ca& certificate_manager::impl::internal_ca()
{
    if (!ca) {
        auto pem = load_or_create_internal_ca(store);
        auto loaded = pki::local_ca::from_material({pem.certificate_pem, pem.private_key_pem});
        if (!loaded) {
            throw std::runtime_error("the stored internal CA: " + loaded.error().message);
        }
        ca.emplace(std::move(*loaded));
        std::lock_guard lock(mutex);
        ca_pem = pem.certificate_pem;
    }
    return *ca;
}

std::optional<checked_certificate> certificate_manager::impl::read_stored(const std::string& host)
{
    auto text = value_or_throw(store.get(store::keys::certificate(host)),
                               "reading the certificate from the store");
    if (!text) {
        return std::nullopt;
    }
    auto bundle = value_or_throw(store::parse_bundle(*text), "the stored certificate");
    return check_pair(host, bundle.certificate_chain_pem, bundle.private_key_pem);
}

checked_certificate certificate_manager::impl::issue_internal(const std::string& host)
{
    const auto& authority = internal_ca();
    const auto lifetime = active->tls.internal_certificate_lifetime;

    // A fresh key for every certificate: a key never outlives the certificate it was made for.
    auto key = pki::generate_private_key(pki::key_type::ecdsa_p256);
    if (!key) {
        throw std::runtime_error("generating a key: " + key.error().message);
    }
    auto issued = authority.issue({host}, lifetime, key->get());
    if (!issued) {
        throw std::runtime_error("issuing: " + issued.error().message);
    }
    auto key_pem = pki::private_key_to_pem(key->get());
    if (!key_pem) {
        throw std::runtime_error("encoding the key: " + key_pem.error().message);
    }
    auto checked = check_pair(host, issued->certificate_pem, *key_pem);

    store::certificate_bundle bundle;
    bundle.names = checked.info.dns_names;
    bundle.certificate_chain_pem = checked.material.chain_pem;
    bundle.private_key_pem = checked.material.private_key_pem;
    bundle.issuer = "internal";
    bundle.serial = checked.info.serial_hex;
    bundle.not_before = checked.info.not_before;
    bundle.not_after = checked.info.not_after;
    bundle.obtained_at = system_clock::now();
    check_or_throw(store.put(store::keys::certificate(host), store::serialize_bundle(bundle)),
                   "writing the certificate to the store");
    return checked;
}

bool certificate_manager::impl::refresh_files(entry& e)
{
    // Unchanged files are read again only when a failed attempt is due for a retry (a file
    // that could not be read may have become readable).
    const auto certificate_version = version_of(e.tls.certificate_file);
    const auto key_version = version_of(e.tls.key_file);
    const bool unchanged =
        certificate_version == e.certificate_version && key_version == e.key_version;
    const bool retry_due = e.status.next_attempt && system_clock::now() >= *e.status.next_attempt;
    if (unchanged && (e.current || e.status.next_attempt) && !retry_due) {
        return false;
    }
    e.certificate_version = certificate_version;
    e.key_version = key_version;
    record_success(e, check_pair(e.status.host, read_whole_file(e.tls.certificate_file),
                                 read_whole_file(e.tls.key_file)));
    return true;
}

bool certificate_manager::impl::refresh_internal(entry& e, system_clock::time_point now)
{
    const bool due = !e.current || !e.status.renew_at || now >= *e.status.renew_at;
    if (!due && !e.store_changed) {
        return false;
    }
    if (e.status.next_attempt && now < *e.status.next_attempt && !e.store_changed) {
        return false;
    }
    e.store_changed = false;
    const std::string& host = e.status.host;

    // Another instance, or an operator, may have put a good certificate in the store already.
    auto stored = read_stored(host);
    if (stored && !pki::needs_renewal(stored->info, now)) {
        if (e.current && e.current->info.serial_hex == stored->info.serial_hex) {
            return false;
        }
        record_success(e, std::move(*stored));
        return true;
    }
    if (!due) {
        return false;
    }

    // Only one instance issues; the others pick its certificate up through the store.
    const auto lease = acquire_lock(store, store::keys::lock_for_certificate(host));
    if (!lease) {
        throw std::runtime_error("another instance is issuing this certificate");
    }
    const scoped_lease held(store, *lease);

    // Checked again under the lock: the holder before us may just have finished.
    stored = read_stored(host);
    if (stored && !pki::needs_renewal(stored->info, now)) {
        record_success(e, std::move(*stored));
        return true;
    }
    const bool renewal = e.current.has_value();
    record_success(e, issue_internal(host));
    log::write(*logger(), spdlog::level::info,
               renewal ? "certificate renewed" : "certificate obtained",
               {{"host", host},
                {"issuer", "internal"},
                {"serial", e.status.serial},
                {"not_after", store::format_rfc3339(e.status.not_after)}});
    return true;
}

bool certificate_manager::impl::refresh_acme(entry& e, system_clock::time_point now)
{
    const std::string& host = e.status.host;
    const auto& directories = active->acme.directories;
    e.directory_index = std::min(e.directory_index, directories.size() - 1);
    e.status.ca = directories[e.directory_index];

    // A certificate in the store that we do not serve yet: ordered by our worker, by another
    // instance, or copied in by an operator.
    bool changed = false;
    if (!e.current || std::exchange(e.store_changed, false)) {
        auto text = value_or_throw(store.get(store::keys::certificate(host)),
                                   "reading the certificate from the store");
        if (!text && e.current && e.status.renew_at && *e.status.renew_at > now) {
            // Removed from the store (`gatehouse revoke` does that): replace it at once.
            e.status.renew_at = now;
            e.status.next_attempt.reset();
        }
        if (text) {
            auto bundle = value_or_throw(store::parse_bundle(*text), "the stored certificate");
            auto stored = check_pair(host, bundle.certificate_chain_pem, bundle.private_key_pem,
                                     e.extra_names);
            const bool valid_now = stored.info.not_before <= now && now < stored.info.not_after;
            if (valid_now && (!e.current || e.current->info.serial_hex != stored.info.serial_hex)) {
                // Renewals stay with the CA that issued it (when it is still configured).
                const auto from =
                    std::find(directories.begin(), directories.end(), bundle.acme_directory);
                if (from != directories.end()) {
                    e.directory_index = static_cast<std::size_t>(from - directories.begin());
                    e.status.ca = *from;
                }
                const bool renewal = e.current.has_value();
                record_success(e, std::move(stored));
                log::write(*logger(), spdlog::level::info,
                           renewal ? "certificate renewed" : "certificate loaded",
                           {{"host", host},
                            {"issuer", "acme"},
                            {"serial", e.status.serial},
                            {"not_after", store::format_rfc3339(e.status.not_after)}});
                changed = true;
            }
        }
    }
    if (e.job_pending) {
        return changed;
    }

    const bool due = !e.current || !e.status.renew_at || now >= *e.status.renew_at;
    if (due && (!e.status.next_attempt || now >= *e.status.next_attempt)) {
        submit_acme(e, acme_job::kind::order);
    } else if (!due && e.current &&
               (!e.renewal_info_checked ||
                now - *e.renewal_info_checked >= active->acme.check_every)) {
        // The CA may want this certificate replaced sooner (or later) than our schedule.
        e.renewal_info_checked = now;
        submit_acme(e, acme_job::kind::renewal_info);
    }
    return changed;
}

void certificate_manager::impl::submit_acme(entry& e, acme_job::kind what)
{
    if (!acme) {
        acme = std::make_unique<acme_worker>(store, challenges, [this](acme_outcome outcome) {
            std::lock_guard lock(mutex);
            acme_outcomes.push_back(std::move(outcome));
            wake.notify_one();
        });
    }
    acme_job job;
    job.what = what;
    job.host = e.status.host;
    job.names.push_back(e.status.host);
    job.names.insert(job.names.end(), e.extra_names.begin(), e.extra_names.end());
    job.directory_url = e.status.ca;
    job.settings = active->acme;
    if (e.current) {
        job.current_serial = e.current->info.serial_hex;
        job.current_chain_pem = e.current->material.chain_pem;
    }
    e.job_pending = acme->submit(std::move(job)) || acme->pending(e.status.host);
}

void certificate_manager::impl::take_acme_outcomes(system_clock::time_point now)
{
    std::vector<acme_outcome> outcomes;
    {
        std::lock_guard lock(mutex);
        outcomes.swap(acme_outcomes);
    }
    for (auto& outcome : outcomes) {
        const auto found = entries.find(outcome.host);
        if (found == entries.end() || found->second.tls.source != config::tls_source::acme) {
            continue; // the route went away while its job ran
        }
        entry& e = found->second;
        e.job_pending = false;

        if (outcome.what == acme_job::kind::renewal_info) {
            // Section 4.2 of RFC 9773: a new window means a new random point inside it.
            if (outcome.window && e.current &&
                (!e.renewal_window || e.renewal_window->start != outcome.window->start ||
                 e.renewal_window->end != outcome.window->end)) {
                e.renewal_window = outcome.window;
                e.status.renew_at =
                    acme::choose_renewal_time(*outcome.window, now, random_source()());
                log::write(*logger(), spdlog::level::info, "renewal window from the CA",
                           {{"host", e.status.host},
                            {"start", store::format_rfc3339(outcome.window->start)},
                            {"end", store::format_rfc3339(outcome.window->end)},
                            {"renew_at", store::format_rfc3339(*e.status.renew_at)}});
            }
            continue;
        }
        if (outcome.busy) {
            e.status.next_attempt = now + busy_retry_delay;
            continue;
        }
        if (outcome.stored) {
            e.store_changed = true;
            e.failures_at_ca = 0;
            e.status.next_attempt.reset();
            continue;
        }

        // A CA that keeps failing for this name hands it on to the next one listed.
        const auto& directories = active->acme.directories;
        if (++e.failures_at_ca >= failures_before_next_ca && directories.size() > 1) {
            e.failures_at_ca = 0;
            e.directory_index = (e.directory_index + 1) % directories.size();
            log::write(*logger(), spdlog::level::warn, "switching CA",
                       {{"host", e.status.host},
                        {"from", outcome.directory_url},
                        {"to", directories[e.directory_index]}});
            e.status.ca = directories[e.directory_index];
        }
        record_failure(e, outcome.error + (outcome.retryable ? "" : " (permanent)"), now,
                       outcome.retry_after);
    }
}

void certificate_manager::impl::on_challenge_change(const store::change_event& event)
{
    // Runs on the store's thread; reading the store from here is allowed.
    if (event.kind == store::change_kind::resync) {
        reload_challenges();
        return;
    }
    const std::string prefix = store::keys::challenges_prefix();
    if (!event.key.starts_with(prefix)) {
        return;
    }
    const std::string token = event.key.substr(prefix.size());
    if (event.kind == store::change_kind::removed) {
        challenges->remove(token);
        return;
    }
    auto value = store.get(event.key);
    if (value && *value) {
        challenges->add(token, **value);
    } else if (value) {
        challenges->remove(token);
    }
}

void certificate_manager::impl::publish_acme_hosts()
{
    if (challenges == nullptr) {
        return;
    }
    std::set<std::string, std::less<>> hosts;
    for (const auto& [host, e] : entries) {
        if (e.tls.source == config::tls_source::acme) {
            hosts.insert(host);
            hosts.insert(e.extra_names.begin(), e.extra_names.end());
        }
    }
    challenges->set_acme_hosts(std::move(hosts));
}

void certificate_manager::impl::reload_account_thumbprints()
{
    // Runs on the store's thread (and once at start). A record that does not parse is left
    // out; the worker reports it when it needs that account.
    auto keys = store.list(store::keys::accounts_prefix());
    if (!keys) {
        return;
    }
    std::vector<std::string> thumbprints;
    for (const auto& key : *keys) {
        auto text = store.get(key);
        if (!text || !*text) {
            continue;
        }
        auto record = acme::parse_account_record(**text);
        if (!record) {
            continue;
        }
        auto account_key = pki::private_key_from_pem(record->private_key_pem);
        if (!account_key) {
            continue;
        }
        if (auto thumbprint = pki::jwk_thumbprint(account_key->get())) {
            thumbprints.push_back(std::move(*thumbprint));
        }
    }
    challenges->set_account_thumbprints(std::move(thumbprints));
}

void certificate_manager::impl::reload_challenges()
{
    const std::string prefix = store::keys::challenges_prefix();
    auto keys = store.list(prefix);
    if (!keys) {
        log::write(*logger(), spdlog::level::warn, "reading challenge answers failed",
                   {{"error", keys.error().message()}});
        return;
    }
    std::map<std::string, std::string, std::less<>> answers;
    for (const auto& key : *keys) {
        if (auto value = store.get(key); value && *value) {
            answers.emplace(key.substr(prefix.size()), **value);
        }
    }
    challenges->replace_all(std::move(answers));
}

void certificate_manager::impl::record_success(entry& e, checked_certificate loaded)
{
    e.status.names = loaded.info.dns_names;
    e.status.issuer = loaded.info.issuer;
    e.status.serial = loaded.info.serial_hex;
    e.status.not_before = loaded.info.not_before;
    e.status.not_after = loaded.info.not_after;
    e.status.last_error.clear();
    e.status.next_attempt.reset();
    e.retry_delay = std::chrono::seconds(0);
    e.status.failed_attempts = 0;
    if (e.tls.source == config::tls_source::internal) {
        e.status.renew_at = pki::renewal_due(loaded.info) - renewal_jitter(loaded.info);
    } else if (e.tls.source == config::tls_source::acme) {
        e.status.renew_at =
            acme_renewal_due(loaded.info, active->acme) - renewal_jitter(loaded.info);
        e.renewal_window.reset();
        e.renewal_info_checked.reset();
    } else {
        e.status.renew_at.reset();
    }

    // The certificate_updated hook hears of every certificate new to this instance, whatever
    // its source; one read again with the same serial is no news. notify() never blocks, and
    // nothing the hook does can fail this success.
    if (hook && (!e.current || e.current->info.serial_hex != loaded.info.serial_hex)) {
        hook->notify(e.status.host, loaded.info.dns_names, loaded.material.chain_pem,
                     loaded.material.private_key_pem);
    }
    e.current = std::move(loaded);
    process_metrics().certificate_updates.fetch_add(1, std::memory_order_relaxed);
}

void certificate_manager::impl::record_failure(entry& e, const std::string& error,
                                               system_clock::time_point now,
                                               std::optional<std::chrono::seconds> retry_after)
{
    // ACME backs off on the configured scale (minutes to hours, to spare the CA); local
    // sources retry within seconds.
    if (e.tls.source == config::tls_source::acme) {
        e.retry_delay = grown_delay(e.retry_delay, active->acme.retry_min, active->acme.retry_max);
    } else {
        e.retry_delay = grown_delay(e.retry_delay);
    }
    const auto wait = std::max(e.retry_delay, retry_after.value_or(std::chrono::seconds(0)));
    ++e.status.failed_attempts;
    e.status.last_error = error;
    e.status.next_attempt = now + wait;
    process_metrics().certificate_failures.fetch_add(1, std::memory_order_relaxed);
    log::write(*logger(), spdlog::level::err,
               e.current ? "certificate update failed, keeping the current one"
                         : "certificate unavailable",
               {{"host", e.status.host},
                {"source", e.status.source},
                {"attempt", static_cast<std::int64_t>(e.status.failed_attempts)},
                {"retry_in", static_cast<std::int64_t>(wait.count())},
                {"error", error}});
}

bool certificate_manager::impl::refresh_entry(entry& e, system_clock::time_point now, bool at_start)
{
    if (e.tls.source == config::tls_source::acme) {
        // Never fatal, not even at start: the CA may be down, and the rest must serve.
        try {
            return refresh_acme(e, now);
        } catch (const std::exception& failure) {
            record_failure(e, failure.what(), now);
            return false;
        }
    }
    try {
        return e.tls.source == config::tls_source::files ? refresh_files(e)
                                                         : refresh_internal(e, now);
    } catch (const std::exception& failure) {
        if (at_start) {
            throw std::runtime_error("certificate for " + e.status.host + ": " + failure.what());
        }
        record_failure(e, failure.what(), now);
        return false;
    }
}

bool certificate_manager::impl::refresh(bool at_start)
{
    std::set<std::string> hosts;
    bool everything = false;
    {
        std::lock_guard lock(mutex);
        if (config_changed) {
            active = config;
            sync_entries(*active);
            publish_acme_hosts();
            config_changed = false;
            everything = true;
        }
        hosts.swap(changed_hosts);
        everything = everything || std::exchange(resync_all, false);
    }

    // The hook follows the configuration; outside the lock, since removing it waits for a
    // running hook to be killed.
    if (everything) {
        sync_certificate_hook(hook, active->hooks.certificate_updated);
    }
    for (auto& [host, e] : entries) {
        if (everything || hosts.contains(host)) {
            e.store_changed = true;
        }
    }

    bool changed = everything;
    const auto now = system_clock::now();
    take_acme_outcomes(now);
    for (auto& [host, e] : entries) {
        changed = refresh_entry(e, now, at_start) || changed;
    }
    if (std::chrono::steady_clock::now() - last_rotation >= ticket_rotation_interval) {
        ticket_keys.insert(ticket_keys.begin(), make_ticket_key());
        ticket_keys.resize(std::min(ticket_keys.size(), ticket_keys_kept));
        last_rotation = std::chrono::steady_clock::now();
        changed = true;
    }

    std::vector<certificate_status> statuses;
    for (const auto& [host, e] : entries) {
        statuses.push_back(e.status);
    }
    std::lock_guard lock(mutex);
    status_copy = std::move(statuses);
    return changed;
}

void certificate_manager::impl::publish_table()
{
    tls_policy policy;
    policy.min_version = active->tls.min_version;
    policy.session_tickets = active->tls.session_tickets;
    policy.unknown_sni = active->tls.unknown_sni;
    policy.default_host = active->tls.default_certificate;

    std::vector<certificate_material> materials;
    for (const auto& [host, e] : entries) {
        if (e.current) {
            materials.push_back(e.current->material);
        }
    }
    publish(std::make_shared<const tls_table>(policy, materials, ticket_keys));
}

void certificate_manager::impl::on_store_change(const store::change_event& event)
{
    std::lock_guard lock(mutex);
    if (event.kind == store::change_kind::resync) {
        resync_all = true;
    } else {
        const std::string prefix = store::keys::certificates_prefix();
        if (event.key.starts_with(prefix)) {
            changed_hosts.insert(event.key.substr(prefix.size()));
        }
    }
    wake.notify_one();
}

void certificate_manager::impl::run()
{
    std::unique_lock lock(mutex);
    while (!stopping) {
        wake.wait_for(lock, check_interval);
        if (stopping) {
            break;
        }
        lock.unlock();
        try {
            if (refresh(false)) {
                publish_table();
            }
        } catch (const std::exception& failure) {
            log::write(*logger(), spdlog::level::err, "certificate check failed",
                       {{"error", failure.what()}});
        }
        lock.lock();
    }
}

certificate_manager::certificate_manager(store::store& store, publish_function publish,
                                         challenge_responder* challenges)
    : impl_(std::make_unique<impl>(store, std::move(publish), challenges))
{}

certificate_manager::~certificate_manager()
{
    {
        std::lock_guard lock(impl_->mutex);
        impl_->stopping = true;
        impl_->wake.notify_all();
    }
    if (impl_->thread.joinable()) {
        impl_->thread.join();
    }
    // The worker's result callback takes the mutex; it is gone once the worker is.
    impl_->acme.reset();
    impl_->watch.reset();
    impl_->challenge_watch.reset();
    impl_->account_watch.reset();
}

void certificate_manager::start(std::shared_ptr<const config::gatehouse_config> config)
{
    auto& self = *impl_;
    {
        std::lock_guard lock(self.mutex);
        self.config = std::move(config);
        self.config_changed = true;
    }

    // The watch starts before the first read, so nothing written in between is missed.
    auto watch = self.store.watch(
        store::keys::certificates_prefix(),
        [&self](const store::change_event& event) { self.on_store_change(event); });
    if (!watch) {
        throw std::runtime_error("watching the store: " + watch.error().message());
    }
    self.watch = std::move(*watch);

    // Every instance answers every challenge in the store, whoever placed the order.
    if (self.challenges != nullptr) {
        auto challenge_watch = self.store.watch(
            store::keys::challenges_prefix(),
            [&self](const store::change_event& event) { self.on_challenge_change(event); });
        if (!challenge_watch) {
            throw std::runtime_error("watching the store: " + challenge_watch.error().message());
        }
        self.challenge_watch = std::move(*challenge_watch);
        self.reload_challenges();

        // The account thumbprints let this instance answer tokens it has not seen yet.
        auto account_watch =
            self.store.watch(store::keys::accounts_prefix(), [&self](const store::change_event&) {
                self.reload_account_thumbprints();
            });
        if (!account_watch) {
            throw std::runtime_error("watching the store: " + account_watch.error().message());
        }
        self.account_watch = std::move(*account_watch);
        self.reload_account_thumbprints();
    }

    self.ticket_keys = {make_ticket_key()};
    self.last_rotation = std::chrono::steady_clock::now();
    self.refresh(true);
    self.publish_table();
    self.thread = std::thread([&self] { self.run(); });
}

void certificate_manager::apply(std::shared_ptr<const config::gatehouse_config> config)
{
    std::lock_guard lock(impl_->mutex);
    impl_->config = std::move(config);
    impl_->config_changed = true;
    impl_->wake.notify_one();
}

std::vector<certificate_status> certificate_manager::status() const
{
    std::lock_guard lock(impl_->mutex);
    return impl_->status_copy;
}

std::string certificate_manager::internal_ca_pem() const
{
    std::lock_guard lock(impl_->mutex);
    return impl_->ca_pem;
}

} // namespace gatehouse::proxy
