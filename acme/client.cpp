#include "acme/client.hpp"

#include "acme/internal.hpp"
#include "acme/jws.hpp"
#include "pki/certificate.hpp"
#include "pki/csr.hpp"
#include "pki/jose.hpp"
#include "store/keys.hpp"
#include "store/store.hpp"

#include <chrono>
#include <stdexcept>
#include <variant>

#include <boost/throw_exception.hpp>

namespace gatehouse::acme {

namespace {

using internal::json;

constexpr const char* jose_content_type = "application/jose+json";

// Registering the account is quick; the lock only keeps two instances starting together from
// making two keys. A holder that dies frees it after the ttl, and the wait outlasts that.
constexpr std::chrono::seconds account_lock_ttl{30};
constexpr std::chrono::milliseconds account_lock_wait{35'000};
constexpr std::chrono::milliseconds account_lock_poll{250};

// A bound on the actions of one order, far above what any real order needs (about a dozen
// requests per name plus polls), so no answer sequence can keep the loop going forever.
constexpr int max_actions_per_order = 1000;

operation_failure failure_of(problem what, std::optional<std::chrono::seconds> retry_after = {})
{
    const bool retryable = is_retryable(what);
    return operation_failure{std::move(what), retryable, retry_after};
}

// A failure on our side of the wire or in the store: the CA said nothing, so trying again
// later may well work.
operation_failure local_failure(std::string detail, bool retryable = true)
{
    return operation_failure{make_problem(problem_kind::other, std::move(detail)), retryable, {}};
}

// The common name in the issuer of a chain's last certificate: the root it leads to.
std::string chain_root_name(std::string_view chain_pem)
{
    auto chain = pki::parse_certificate_chain(chain_pem);
    if (!chain) {
        return {};
    }
    X509* top =
        chain->intermediates.empty() ? chain->leaf.get() : chain->intermediates.back().get();
    auto info = pki::describe_certificate(top);
    if (!info) {
        return {};
    }
    // RFC 2253 text, most specific first: "CN=Pebble Root CA 4a3f,O=...".
    const auto start = info->issuer.find("CN=");
    if (start == std::string::npos) {
        return {};
    }
    const auto end = info->issuer.find(',', start);
    return info->issuer.substr(start + 3, end == std::string::npos ? end : end - start - 3);
}

operation_failure stopped()
{
    return local_failure("stopped");
}

bool is_success(int status)
{
    return status >= 200 && status < 300;
}

std::optional<std::chrono::seconds> retry_after_of(const http_response& response)
{
    if (auto value = response.header("retry-after")) {
        return parse_retry_after(*value, std::chrono::system_clock::now());
    }
    return std::nullopt;
}

// The problem document of a refused request, or one naming the status when the body is none.
problem problem_of(const http_response& response, std::string_view what)
{
    if (auto parsed = parse_problem(response.body); parsed && !parsed->type.empty()) {
        if (parsed->status == 0) {
            parsed->status = response.status;
        }
        return *parsed;
    }
    const auto kind = response.status >= 500 ? problem_kind::server_internal : problem_kind::other;
    return make_problem(kind, std::string(what) + " answered " + std::to_string(response.status),
                        response.status);
}

// Removes the http-01 answers an order published, however the order ends.
class published_challenges {
public:
    published_challenges(store::store& store, const challenge_hooks& hooks)
        : store_(store), hooks_(hooks)
    {}
    ~published_challenges()
    {
        for (const auto& token : tokens_) {
            (void)store_.remove(store::keys::challenge_token(token));
            if (hooks_.withdrawn) {
                hooks_.withdrawn(token);
            }
        }
    }
    published_challenges(const published_challenges&) = delete;
    published_challenges& operator=(const published_challenges&) = delete;

    // Records the answer in the store, where every instance's responder finds it, and hands
    // it to this instance's responder directly.
    bool publish(const publish_challenge& challenge, std::string& error)
    {
        auto written =
            store_.put(store::keys::challenge_token(challenge.token), challenge.key_authorization);
        if (!written) {
            error = "storing the challenge answer: " + written.error().message();
            return false;
        }
        tokens_.push_back(challenge.token);
        if (hooks_.published) {
            hooks_.published(challenge.token, challenge.key_authorization);
        }
        return true;
    }

private:
    store::store& store_;
    const challenge_hooks& hooks_;
    std::vector<std::string> tokens_;
};

} // namespace

void throw_exception_from_error(const operation_failure& failure,
                                const boost::source_location& location)
{
    boost::throw_exception(std::runtime_error(to_string(failure.problem)), location);
}

std::string serialize_account(const account_record& record)
{
    json object{{"directory", record.directory},
                {"private_key_pem", record.private_key_pem},
                {"contact", record.contact}};
    if (record.account_url) {
        object["account_url"] = *record.account_url;
    }
    return object.dump(2) + "\n";
}

result<account_record> parse_account_record(std::string_view text)
{
    auto object = internal::parse_object(text, "account record");
    if (!object) {
        return object.error();
    }
    account_record record;
    auto key = internal::required_string(*object, "private_key_pem", "account record");
    if (!key) {
        return key.error();
    }
    record.private_key_pem = std::move(*key);
    record.directory = internal::optional_string(*object, "directory").value_or("");
    record.account_url = internal::optional_string(*object, "account_url");
    record.contact = internal::string_array(*object, "contact");
    return record;
}

client::client(store::store& store, transport& transport, client_settings settings,
               sleep_function sleep, challenge_hooks hooks)
    : store_(store), transport_(transport), settings_(std::move(settings)),
      sleep_(std::move(sleep)), hooks_(std::move(hooks))
{}

std::optional<std::string> client::account_url() const
{
    return account_url_;
}

operation_result<http_response> client::get(const std::string& url, std::string_view purpose)
{
    auto response = transport_.exchange(
        {http_method::get, url, "", "", "application/json", std::string(purpose)});
    if (!response) {
        return local_failure(response.error().message);
    }
    if (!is_success(response->status)) {
        return failure_of(problem_of(*response, purpose), retry_after_of(*response));
    }
    return std::move(*response);
}

operation_result<acme::directory> client::fetch_directory()
{
    auto response = get(settings_.directory_url, "directory");
    if (!response) {
        return response.error();
    }
    auto parsed = parse_directory(response->body);
    if (!parsed) {
        return local_failure("the directory at " + settings_.directory_url + ": " +
                             parsed.error().message);
    }
    return std::move(*parsed);
}

operation_result<client::account> client::load_or_create_account()
{
    const std::string key = store::keys::account(settings_.directory_url);
    const auto load = [&](const std::string& text) -> operation_result<account> {
        auto record = parse_account_record(text);
        if (!record) {
            return local_failure("the stored account " + key + ": " + record.error().message,
                                 false);
        }
        auto private_key = pki::private_key_from_pem(record->private_key_pem);
        if (!private_key) {
            return local_failure(
                "the stored account key " + key + ": " + private_key.error().message, false);
        }
        account_url_ = record->account_url;
        return account{std::move(*private_key), std::move(*record)};
    };

    auto existing = store_.get(key);
    if (!existing) {
        return local_failure("reading " + key + ": " + existing.error().message());
    }
    if (*existing) {
        return load(**existing);
    }

    // Instances sharing the store must share one account: whoever holds the lock makes the
    // key, and everyone looks again once they hold it.
    const std::string lock_name = store::keys::lock_for_account(settings_.directory_url);
    std::optional<store::lock_lease> lease;
    for (auto waited = std::chrono::milliseconds(0);; waited += account_lock_poll) {
        auto taken = store_.try_lock(lock_name, account_lock_ttl);
        if (!taken) {
            return local_failure("locking " + lock_name + ": " + taken.error().message());
        }
        if (*taken) {
            lease = std::move(*taken);
            break;
        }
        if (waited >= account_lock_wait) {
            return local_failure("another instance holds " + lock_name);
        }
        if (!sleep_(account_lock_poll)) {
            return stopped();
        }
    }
    struct unlock_at_exit {
        store::store& store;
        const store::lock_lease& lease;
        ~unlock_at_exit() { (void)store.unlock(lease); }
    } unlock{store_, *lease};

    existing = store_.get(key);
    if (!existing) {
        return local_failure("reading " + key + ": " + existing.error().message());
    }
    if (*existing) {
        return load(**existing);
    }

    // The key is stored before the CA hears of it: registering again with the same key
    // returns the same account (section 7.3.1), so a crash between the two loses nothing.
    auto private_key = pki::generate_private_key(pki::key_type::ecdsa_p256);
    if (!private_key) {
        return local_failure("generating the account key: " + private_key.error().message);
    }
    auto pem = pki::private_key_to_pem(private_key->get());
    if (!pem) {
        return local_failure("encoding the account key: " + pem.error().message);
    }
    account_record record{settings_.directory_url, std::move(*pem), std::nullopt,
                          settings_.contact};
    if (auto written = store_.put(key, serialize_account(record)); !written) {
        return local_failure("writing " + key + ": " + written.error().message());
    }
    account_url_.reset();
    return account{std::move(*private_key), std::move(record)};
}

void client::remember_account_url(account& current, const std::string& url)
{
    account_url_ = url;
    if (current.record.account_url == url) {
        return;
    }
    current.record.account_url = url;
    // A failed write only costs a newAccount lookup next time, which returns the same URL.
    (void)store_.put(store::keys::account(settings_.directory_url),
                     serialize_account(current.record));
}

operation_result<obtained_certificate> client::obtain(const std::vector<std::string>& names)
{
    if (names.empty()) {
        return local_failure("no names to order a certificate for", false);
    }
    auto directory = fetch_directory();
    if (!directory) {
        return directory.error();
    }
    auto current = load_or_create_account();
    if (!current) {
        return current.error();
    }
    if (hooks_.account_in_use) {
        if (auto thumbprint = pki::jwk_thumbprint(current->key.get())) {
            hooks_.account_in_use(*thumbprint);
        }
    }

    // A fresh key for every certificate: a key never outlives the certificate it was made for.
    auto key = pki::generate_private_key(settings_.certificate_key_type);
    if (!key) {
        return local_failure("generating the certificate key: " + key.error().message);
    }
    auto csr = pki::make_csr_der(key->get(), names);
    if (!csr) {
        return local_failure("making the CSR: " + csr.error().message, false);
    }
    auto key_pem = pki::private_key_to_pem(key->get());
    if (!key_pem) {
        return local_failure("encoding the certificate key: " + key_pem.error().message);
    }

    auto issued = run_order(*current, *directory, names, *csr);
    if (!issued && issued.error().problem.kind == problem_kind::account_does_not_exist &&
        current->record.account_url) {
        // The CA forgot the account (a test CA restarted, an account deactivated by hand):
        // register the same key again and order once more.
        current->record.account_url.reset();
        account_url_.reset();
        issued = run_order(*current, *directory, names, *csr);
    }
    if (!issued) {
        return issued.error();
    }
    issued->private_key_pem = std::move(*key_pem);
    return issued;
}

operation_result<obtained_certificate> client::run_order(account& current,
                                                         const acme::directory& directory,
                                                         const std::vector<std::string>& names,
                                                         const std::string& csr_der)
{
    order_request request;
    request.directory = directory;
    request.names = names;
    request.csr_der = csr_der;
    request.contact = current.record.contact;
    request.account_url = current.record.account_url;
    request.eab = settings_.eab;
    request.nonce = std::exchange(nonce_, std::nullopt);
    request.max_bad_nonce_retries = settings_.max_bad_nonce_retries;
    request.max_polls = settings_.max_polls;
    request.first_poll_interval = settings_.first_poll_interval;
    request.poll_interval = settings_.poll_interval;

    order_flow flow(current.key.get(), std::move(request));
    published_challenges challenges(store_, hooks_);
    std::optional<std::chrono::seconds> retry_after;

    const auto keep_state = [&] {
        nonce_ = flow.nonce();
        if (flow.account_url()) {
            remember_account_url(current, *flow.account_url());
        }
    };

    next_action next = flow.start();
    for (int actions = 0; actions < max_actions_per_order; ++actions) {
        if (auto* request_to_send = std::get_if<send_request>(&next)) {
            // A zero wait asks whether to go on at all: a stop, or a lost certificate lock,
            // ends the order before it sends anything more.
            if (!sleep_(std::chrono::milliseconds(0))) {
                keep_state();
                return stopped();
            }
            auto response = transport_.exchange(*request_to_send);
            if (!response) {
                keep_state();
                return local_failure(response.error().message);
            }
            if (response->status >= 400) {
                retry_after = retry_after_of(*response);
            }
            next = flow.on_response(*response);
        } else if (auto* pause = std::get_if<wait>(&next)) {
            if (!sleep_(pause->duration)) {
                keep_state();
                return stopped();
            }
            next = flow.on_waited();
        } else if (auto* challenge = std::get_if<publish_challenge>(&next)) {
            std::string error;
            if (!challenges.publish(*challenge, error)) {
                keep_state();
                return local_failure(error);
            }
            next = flow.on_published();
        } else if (auto* issued = std::get_if<done>(&next)) {
            keep_state();
            obtained_certificate result{
                std::move(issued->certificate_chain_pem), {}, std::move(issued->alternate_urls)};
            choose_chain(current, directory, result);
            return result;
        } else {
            auto& refused = std::get<failed>(next);
            keep_state();
            return operation_failure{std::move(refused.problem), refused.retryable, retry_after};
        }
    }
    keep_state();
    return local_failure("the order did not finish within " +
                         std::to_string(max_actions_per_order) + " steps");
}

operation_result<std::string> client::fresh_nonce(const acme::directory& directory)
{
    send_request request;
    request.method = http_method::head;
    request.url = directory.new_nonce;
    request.purpose = "new-nonce";
    auto response = transport_.exchange(request);
    if (!response) {
        return local_failure(response.error().message);
    }
    auto nonce = response->header("replay-nonce");
    if (!nonce) {
        return failure_of(problem_of(*response, "newNonce"));
    }
    return *nonce;
}

operation_result<void> client::ensure_account_url(account& current,
                                                  const acme::directory& directory)
{
    if (current.record.account_url) {
        return {};
    }

    // Requests outside an order need the account's URL as kid; an account registered by
    // another instance may not have told us yet, so ask the CA (section 7.3.1).
    for (int attempt = 0;; ++attempt) {
        auto nonce = nonce_ ? operation_result<std::string>(*std::exchange(nonce_, {}))
                            : fresh_nonce(directory);
        if (!nonce) {
            return nonce.error();
        }
        auto body = sign_jws(current.key.get(), directory.new_account, *nonce, std::nullopt,
                             std::string(R"({"onlyReturnExisting":true})"));
        if (!body) {
            return local_failure(body.error().message, false);
        }
        auto response =
            transport_.exchange({http_method::post, directory.new_account, *body, jose_content_type,
                                 "application/json", "lookup-account"});
        if (!response) {
            return local_failure(response.error().message);
        }
        nonce_ = response->header("replay-nonce");
        auto refused = problem_of(*response, "newAccount");
        if (!is_success(response->status)) {
            if (refused.kind == problem_kind::bad_nonce &&
                attempt < settings_.max_bad_nonce_retries) {
                continue;
            }
            return failure_of(std::move(refused), retry_after_of(*response));
        }
        auto location = response->header("location");
        if (!location) {
            return local_failure("newAccount gave no account URL", false);
        }
        remember_account_url(current, *location);
        return {};
    }
}

void client::choose_chain(account& current, const acme::directory& directory,
                          obtained_certificate& issued)
{
    // Section 7.4.2: the default chain first, then each alternate by POST-as-GET, until one
    // leads to the preferred root. None does: keep the default, as a chain that serves beats
    // none.
    const auto& preferred = settings_.preferred_chain;
    if (preferred.empty() || chain_root_name(issued.chain_pem) == preferred) {
        return;
    }
    for (const auto& url : issued.alternate_chain_urls) {
        auto alternate =
            post_signed(current, url, std::nullopt, directory, "application/pem-certificate-chain");
        if (alternate && chain_root_name(alternate->body) == preferred) {
            issued.chain_pem = std::move(alternate->body);
            return;
        }
    }
}

operation_result<http_response> client::post_signed(account& current, const std::string& url,
                                                    const std::optional<std::string>& payload,
                                                    const acme::directory& directory,
                                                    std::string_view accept)
{
    if (auto known = ensure_account_url(current, directory); !known) {
        return known.error();
    }
    for (int attempt = 0;; ++attempt) {
        auto nonce = nonce_ ? operation_result<std::string>(*std::exchange(nonce_, {}))
                            : fresh_nonce(directory);
        if (!nonce) {
            return nonce.error();
        }
        auto body = sign_jws(current.key.get(), url, *nonce, *current.record.account_url, payload);
        if (!body) {
            return local_failure(body.error().message, false);
        }
        auto response = transport_.exchange(
            {http_method::post, url, *body, jose_content_type, std::string(accept), "signed-post"});
        if (!response) {
            return local_failure(response.error().message);
        }
        nonce_ = response->header("replay-nonce");
        if (is_success(response->status)) {
            return std::move(*response);
        }
        auto refused = problem_of(*response, url);
        if (refused.kind == problem_kind::bad_nonce && attempt < settings_.max_bad_nonce_retries) {
            continue;
        }
        return failure_of(std::move(refused), retry_after_of(*response));
    }
}

operation_result<void> client::revoke(const std::string& certificate_pem, std::optional<int> reason)
{
    auto chain = pki::parse_certificate_chain(certificate_pem);
    if (!chain) {
        return local_failure("the certificate to revoke: " + chain.error().message, false);
    }
    auto der = pki::certificate_to_der(chain->leaf.get());
    if (!der) {
        return local_failure("the certificate to revoke: " + der.error().message, false);
    }
    auto directory = fetch_directory();
    if (!directory) {
        return directory.error();
    }
    auto current = load_or_create_account();
    if (!current) {
        return current.error();
    }
    json payload{{"certificate", pki::base64url_encode(*der)}};
    if (reason) {
        payload["reason"] = *reason;
    }
    auto response = post_signed(*current, directory->revoke_cert, payload.dump(), *directory);
    if (!response) {
        return response.error();
    }
    return {};
}

operation_result<std::optional<renewal_window>>
client::renewal_info(const std::string& certificate_pem)
{
    auto directory = fetch_directory();
    if (!directory) {
        return directory.error();
    }
    if (!directory->renewal_info) {
        return std::optional<renewal_window>();
    }
    auto chain = pki::parse_certificate_chain(certificate_pem);
    if (!chain) {
        return local_failure("the certificate: " + chain.error().message, false);
    }
    auto id = renewal_certificate_id(chain->leaf.get());
    if (!id) {
        return std::optional<renewal_window>();
    }
    std::string url = *directory->renewal_info;
    if (!url.ends_with('/')) {
        url += '/';
    }
    auto response = get(url + *id, "renewal-info");
    if (!response) {
        return response.error();
    }
    auto window = parse_renewal_info(response->body);
    if (!window) {
        return local_failure(window.error().message);
    }
    return std::optional<renewal_window>(std::move(*window));
}

operation_result<void> client::rollover_account_key()
{
    auto directory = fetch_directory();
    if (!directory) {
        return directory.error();
    }
    auto current = load_or_create_account();
    if (!current) {
        return current.error();
    }
    auto new_key = pki::generate_private_key(pki::key_type::ecdsa_p256);
    if (!new_key) {
        return local_failure("generating the new account key: " + new_key.error().message);
    }
    auto new_pem = pki::private_key_to_pem(new_key->get());
    if (!new_pem) {
        return local_failure("encoding the new account key: " + new_pem.error().message);
    }

    // The URL is needed inside the inner JWS, so it must be known before signing.
    if (auto known = ensure_account_url(*current, *directory); !known) {
        return known.error();
    }
    auto inner = sign_key_change(new_key->get(), current->key.get(), *current->record.account_url,
                                 directory->key_change);
    if (!inner) {
        return local_failure("signing the key change: " + inner.error().message, false);
    }
    auto response = post_signed(*current, directory->key_change, *inner, *directory);
    if (!response) {
        return response.error();
    }

    // TODO: if this write fails the CA knows only the new key while the store holds the old
    // one; keeping the new key beside the old before asking the CA would make that recoverable.
    current->record.private_key_pem = std::move(*new_pem);
    if (auto written = store_.put(store::keys::account(settings_.directory_url),
                                  serialize_account(current->record));
        !written) {
        return local_failure("the CA accepted the new account key but storing it failed: " +
                                 written.error().message(),
                             false);
    }
    return {};
}

} // namespace gatehouse::acme
