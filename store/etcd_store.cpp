#include "store/etcd_store.hpp"

#include "store/etcd_client.hpp"
#include "store/etcd_watcher.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <map>
#include <mutex>
#include <stdexcept>
#include <sys/random.h>
#include <system_error>

#include <nlohmann/json.hpp>

namespace gatehouse::store {

namespace {

using etcd::base64_encode;
using etcd::json_result;
using nlohmann::json;

// Lock records live beside the values, under a first segment that starts with '.', which no
// key may: they can never collide with a value, and list() and watches pass over them.
constexpr std::string_view lock_directory = ".locks/";

// open_etcd_store's proof that the prefix may be written; removed at once.
constexpr std::string_view probe_prefix = ".probe-";

// Keys per range request while listing, so a large store never makes one huge answer.
constexpr std::int64_t list_page_keys = 1000;

std::string random_hex(std::size_t bytes)
{
    std::string raw(bytes, '\0');
    std::size_t filled = 0;
    while (filled < bytes) {
        const ssize_t got = ::getrandom(raw.data() + filled, bytes - filled, 0);
        if (got < 0 && errno != EINTR) {
            throw std::system_error(errno, std::generic_category(), "getrandom");
        }
        filled += got > 0 ? static_cast<std::size_t>(got) : 0;
    }
    constexpr std::string_view digits = "0123456789abcdef";
    std::string hex;
    for (const char byte : raw) {
        hex += digits[static_cast<unsigned char>(byte) >> 4];
        hex += digits[static_cast<unsigned char>(byte) & 15];
    }
    return hex;
}

// The first element of an array field, or nothing.
const json* first_of(const json& object, std::string_view name)
{
    const auto found = object.find(name);
    if (found == object.end() || !found->is_array() || found->empty()) {
        return nullptr;
    }
    return &found->front();
}

// A transaction of one comparison and the requests to make when it holds
// (https://etcd.io/docs/v3.4/learning/api/#transaction).
json transaction(json compare, std::initializer_list<json> success)
{
    json txn;
    txn["compare"] = json::array();
    txn["compare"].push_back(std::move(compare));
    txn["success"] = json::array();
    for (const auto& request : success) {
        txn["success"].push_back(request);
    }
    return txn;
}

// Who holds a lock: the token and the lease its record is attached to.
struct lock_record {
    std::string token;
    std::int64_t lease_id = 0;
};

class etcd_store final : public store {
public:
    explicit etcd_store(const etcd_options& options)
        : prefix_(options.prefix), cluster_(options), watcher_(cluster_, prefix_)
    {}

    result<std::optional<std::string>> get(std::string_view key) override
    {
        if (!is_valid_key(key)) {
            return errc::invalid_key;
        }
        const auto answer = call("/v3/kv/range", {{"key", base64_encode(value_key(key))}});
        if (!answer) {
            return answer.error();
        }
        const json* kv = first_of(*answer, "kvs");
        if (kv == nullptr) {
            return std::optional<std::string>();
        }
        auto value = etcd::bytes_field(*kv, "value");
        if (!value) {
            return errc::io_failed;
        }
        return std::optional<std::string>(std::move(*value));
    }

    result<void> put(std::string_view key, std::string_view value) override
    {
        if (!is_valid_key(key)) {
            return errc::invalid_key;
        }
        const json request = {{"key", base64_encode(value_key(key))},
                              {"value", base64_encode(value)}};
        const auto answer = call("/v3/kv/put", request);
        if (!answer) {
            return answer.error();
        }
        return {};
    }

    result<void> remove(std::string_view key) override
    {
        if (!is_valid_key(key)) {
            return errc::invalid_key;
        }
        const auto answer = call("/v3/kv/deleterange", {{"key", base64_encode(value_key(key))}});
        if (!answer) {
            return answer.error();
        }
        return {};
    }

    result<std::vector<std::string>> list(std::string_view prefix) override;

    result<std::optional<lock_lease>> try_lock(std::string_view name,
                                               std::chrono::seconds ttl) override;
    result<void> refresh(const lock_lease& lease) override;
    result<void> unlock(const lock_lease& lease) override;

    result<std::unique_ptr<watch_handle>>
    watch(std::string_view prefix, std::function<void(const change_event&)> callback) override
    {
        return watcher_.watch(prefix, std::move(callback));
    }

    std::string describe() const override { return "etcd:" + cluster_.endpoints_text() + prefix_; }

    // Writes and deletes a probe key; fails as open_etcd_store documents, with *why set.
    result<void> probe(std::string& why);

private:
    std::string value_key(std::string_view key) const { return prefix_ + std::string(key); }

    std::string lock_key(std::string_view name) const
    {
        return prefix_ + std::string(lock_directory) + std::string(name);
    }

    // A request made on behalf of a store call. Permission denied is reported as io_failed
    // here: not_writable is an error of opening the store, which the probe has passed.
    json_result call(std::string_view path, const json& body)
    {
        auto answer = cluster_.call(path, body);
        if (!answer && answer.error() == errc::not_writable) {
            return etcd::json_failure(errc::io_failed);
        }
        return answer;
    }

    result<std::optional<lock_record>> read_lock(std::string_view name);
    void revoke(std::int64_t lease_id);
    std::int64_t remembered_lease(const std::string& token);
    void remember_lease(const std::string& token, std::int64_t lease_id);
    void forget_lease(const std::string& token);

    const std::string prefix_;
    etcd::client cluster_;

    // The lease behind each lock this store took, by token, so a refresh needs no lookup.
    std::mutex leases_mutex_;
    std::map<std::string, std::int64_t> leases_;

    // Last: destroyed first, as its thread uses cluster_.
    etcd::watcher watcher_;
};

result<std::vector<std::string>> etcd_store::list(std::string_view prefix)
{
    if (!is_valid_prefix(prefix)) {
        return errc::invalid_key;
    }
    const std::string begin = value_key(prefix);
    const std::string end = etcd::range_end(begin);
    std::string from = begin;
    std::vector<std::string> keys;
    while (true) {
        const json request = {{"key", base64_encode(from)},
                              {"range_end", base64_encode(end)},
                              {"keys_only", true},
                              {"limit", std::to_string(list_page_keys)}};
        const auto answer = call("/v3/kv/range", request);
        if (!answer) {
            return answer.error();
        }
        std::string last;
        const auto found = answer->find("kvs");
        if (found != answer->end() && found->is_array()) {
            for (const auto& kv : *found) {
                auto key = etcd::bytes_field(kv, "key");
                if (!key || !key->starts_with(prefix_)) {
                    return errc::io_failed;
                }
                last = *key;
                // Lock records and probes start with '.', which no key may.
                auto relative = key->substr(prefix_.size());
                if (is_valid_key(relative)) {
                    keys.push_back(std::move(relative));
                }
            }
        }
        if (!etcd::bool_field(*answer, "more") || last.empty()) {
            break;
        }
        // The next page starts just after the last key of this one.
        from = last + '\0';
    }
    std::sort(keys.begin(), keys.end());
    return keys;
}

// A lease with the lock's ttl, then a transaction that writes the lock record attached to it
// only if the record does not exist (its create revision is 0). etcd deletes the record when
// the lease runs out, which is what lets another holder take the lock after the ttl.
result<std::optional<lock_lease>> etcd_store::try_lock(std::string_view name,
                                                       std::chrono::seconds ttl)
{
    if (!is_valid_key(name)) {
        return errc::invalid_key;
    }
    if (ttl < std::chrono::seconds(1)) {
        return errc::invalid_argument;
    }
    const auto granted = call("/v3/lease/grant", {{"TTL", std::to_string(ttl.count())}});
    if (!granted) {
        return granted.error();
    }
    const std::int64_t lease_id = etcd::int64_field(*granted, "ID");
    if (lease_id == 0 || !etcd::string_field(*granted, "error").empty()) {
        return errc::io_failed;
    }

    const std::string token = random_hex(16);
    const std::string key = base64_encode(lock_key(name));
    const json compare = {
        {"key", key}, {"target", "CREATE"}, {"result", "EQUAL"}, {"create_revision", "0"}};
    const json put = {
        {"request_put",
         {{"key", key}, {"value", base64_encode(token)}, {"lease", std::to_string(lease_id)}}}};
    const auto taken = call("/v3/kv/txn", transaction(compare, {put}));
    if (!taken || !etcd::bool_field(*taken, "succeeded")) {
        // Also removes the record should the transaction have happened after all, its answer
        // lost to a timeout: a lock nobody knows it holds must not wait out its ttl.
        revoke(lease_id);
        if (!taken) {
            return taken.error();
        }
        return std::optional<lock_lease>();
    }
    remember_lease(token, lease_id);
    return std::optional<lock_lease>(lock_lease{std::string(name), token, ttl});
}

// Renews the lease, then checks that the record still holds our token on that lease: a lease
// that is gone (keepalive answers without a TTL) or a record that changed means the lock was
// lost, to expiry or to an operator deleting it.
result<void> etcd_store::refresh(const lock_lease& lease)
{
    if (!is_valid_key(lease.name)) {
        return errc::invalid_key;
    }
    std::int64_t lease_id = remembered_lease(lease.token);
    if (lease_id == 0) {
        // Taken by another store object (or before a restart of this one): look it up.
        const auto holder = read_lock(lease.name);
        if (!holder) {
            return holder.error();
        }
        if (!*holder || (*holder)->token != lease.token) {
            return errc::lock_lost;
        }
        lease_id = (*holder)->lease_id;
    }

    const auto kept = call("/v3/lease/keepalive", {{"ID", std::to_string(lease_id)}});
    if (!kept) {
        return kept.error();
    }
    // keepalive is a stream in gRPC, so the gateway wraps its one answer in "result".
    const auto found = kept->find("result");
    const json& answer = found != kept->end() && found->is_object() ? *found : *kept;
    if (etcd::int64_field(answer, "TTL") <= 0) {
        forget_lease(lease.token);
        return errc::lock_lost;
    }

    const auto holder = read_lock(lease.name);
    if (!holder) {
        return holder.error();
    }
    if (!*holder || (*holder)->token != lease.token || (*holder)->lease_id != lease_id) {
        forget_lease(lease.token);
        return errc::lock_lost;
    }
    remember_lease(lease.token, lease_id);
    return {};
}

// Deletes the record only if it still holds our token, reading it in the same transaction to
// learn its lease, which is then revoked so it does not linger until its ttl.
result<void> etcd_store::unlock(const lock_lease& lease)
{
    if (!is_valid_key(lease.name)) {
        return errc::invalid_key;
    }
    const std::string key = base64_encode(lock_key(lease.name));
    const json compare = {{"key", key},
                          {"target", "VALUE"},
                          {"result", "EQUAL"},
                          {"value", base64_encode(lease.token)}};
    const json read = {{"request_range", {{"key", key}}}};
    const json remove = {{"request_delete_range", {{"key", key}}}};
    const auto released = call("/v3/kv/txn", transaction(compare, {read, remove}));
    forget_lease(lease.token);
    if (!released) {
        return released.error();
    }
    if (!etcd::bool_field(*released, "succeeded")) {
        return errc::lock_lost;
    }
    if (const json* response = first_of(*released, "responses")) {
        const auto range = response->find("response_range");
        if (range != response->end()) {
            if (const json* kv = first_of(*range, "kvs")) {
                revoke(etcd::int64_field(*kv, "lease"));
            }
        }
    }
    return {};
}

result<std::optional<lock_record>> etcd_store::read_lock(std::string_view name)
{
    const auto answer = call("/v3/kv/range", {{"key", base64_encode(lock_key(name))}});
    if (!answer) {
        return answer.error();
    }
    const json* kv = first_of(*answer, "kvs");
    if (kv == nullptr) {
        return std::optional<lock_record>();
    }
    auto token = etcd::bytes_field(*kv, "value");
    if (!token) {
        return errc::corrupt;
    }
    return std::optional<lock_record>(lock_record{*token, etcd::int64_field(*kv, "lease")});
}

// Best effort: a lease that cannot be revoked runs out by itself.
void etcd_store::revoke(std::int64_t lease_id)
{
    if (lease_id != 0) {
        (void)call("/v3/lease/revoke", {{"ID", std::to_string(lease_id)}});
    }
}

std::int64_t etcd_store::remembered_lease(const std::string& token)
{
    std::lock_guard lock(leases_mutex_);
    const auto found = leases_.find(token);
    return found == leases_.end() ? 0 : found->second;
}

void etcd_store::remember_lease(const std::string& token, std::int64_t lease_id)
{
    std::lock_guard lock(leases_mutex_);
    leases_[token] = lease_id;
}

void etcd_store::forget_lease(const std::string& token)
{
    std::lock_guard lock(leases_mutex_);
    leases_.erase(token);
}

result<void> etcd_store::probe(std::string& why)
{
    const std::string key = base64_encode(prefix_ + std::string(probe_prefix) + random_hex(8));
    auto answer = cluster_.call("/v3/kv/put", {{"key", key}, {"value", base64_encode("probe\n")}});
    if (answer) {
        answer = cluster_.call("/v3/kv/deleterange", {{"key", key}});
    }
    if (answer) {
        return {};
    }
    const std::string where = "etcd store " + describe();
    const std::string cause = cluster_.last_failure();
    const auto error = answer.error();
    if (error == errc::unavailable) {
        why = where + " is unavailable: no endpoint could be reached; last: " + cause;
    } else if (error == errc::timeout) {
        why = where + " did not answer in time: " + cause;
    } else if (error == errc::not_writable) {
        why = where + " is not writable: " + cause;
    } else {
        why = where + " cannot be used: " + cause;
    }
    return error;
}

// Why `endpoint` cannot be used, or nothing: an http:// or https:// URL with a host and no path.
std::optional<std::string> endpoint_problem(std::string_view endpoint)
{
    std::string_view rest;
    if (endpoint.starts_with("http://")) {
        rest = endpoint.substr(7);
    } else if (endpoint.starts_with("https://")) {
        rest = endpoint.substr(8);
    } else {
        return "must start with http:// or https://";
    }
    const auto slash = rest.find('/');
    if (slash == 0 || rest.empty()) {
        return "has no host";
    }
    if (slash != std::string_view::npos && rest.substr(slash) != "/") {
        return "must not have a path";
    }
    if (rest.find_first_of("@?# ") != std::string_view::npos) {
        return "must be scheme://host:port only";
    }
    return std::nullopt;
}

std::optional<std::string> options_problem(const etcd_options& options)
{
    if (options.endpoints.empty()) {
        return "no etcd endpoint given";
    }
    for (const auto& endpoint : options.endpoints) {
        if (auto problem = endpoint_problem(endpoint)) {
            return "etcd endpoint \"" + endpoint + "\" " + *problem;
        }
    }
    if (options.prefix.empty() || !options.prefix.starts_with('/') ||
        !options.prefix.ends_with('/')) {
        return "etcd prefix \"" + options.prefix + "\" must start and end with '/'";
    }
    if (options.certificate_file.empty() != options.key_file.empty()) {
        return "an etcd client certificate needs its key, and a key its certificate";
    }
    if (options.username.empty() && !options.password.empty()) {
        return "an etcd password needs a username";
    }
    if (options.request_timeout.count() <= 0) {
        return "the etcd request timeout must be positive";
    }
    return std::nullopt;
}

} // namespace

result<std::unique_ptr<store>> open_etcd_store(const etcd_options& options, std::string* why)
{
    std::string message;
    const auto fail = [&](errc error) -> result<std::unique_ptr<store>> {
        if (why != nullptr) {
            *why = std::move(message);
        }
        return error;
    };
    if (auto problem = options_problem(options)) {
        message = std::move(*problem);
        return fail(errc::invalid_argument);
    }

    std::unique_ptr<etcd_store> opened;
    try {
        opened = std::make_unique<etcd_store>(options);
    } catch (const std::exception& error) {
        // The TLS files: http_client names the one that does not load.
        message = std::string("etcd store: ") + error.what();
        return fail(errc::invalid_argument);
    }
    if (auto probed = opened->probe(message); !probed) {
        const auto error = probed.error();
        const bool out_of_reach = error == errc::unavailable || error == errc::timeout;
        if (out_of_reach && options.open_while_unreachable) {
            // The caller serves from a local copy meanwhile; every call fails until the
            // cluster answers, and watches deliver a resync once it does.
            return std::unique_ptr<store>(std::move(opened));
        }
        if (why != nullptr) {
            *why = std::move(message);
        }
        return error;
    }
    return std::unique_ptr<store>(std::move(opened));
}

} // namespace gatehouse::store
