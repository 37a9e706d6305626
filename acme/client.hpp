// The ACME client: runs whole operations against one CA (obtain a certificate, revoke one, roll
// the account key over) by driving the sans-io pieces (order_flow, sign_jws) over a transport,
// and keeps what must outlive one operation in the store: the account key and URL, and the
// http-01 answers that any instance sharing the store may be asked for.
//
// Each call blocks until the operation ends, so the client is meant for a worker thread of its
// own; every wait inside is bounded (the transport's timeouts, the flow's poll limit) and ends
// early when the stop function says so. One client serves one directory and is not
// thread-safe: give each worker its own.
#pragma once

#include "acme/directory.hpp"
#include "acme/error.hpp"
#include "acme/order_flow.hpp"
#include "acme/problem.hpp"
#include "acme/renewal_info.hpp"
#include "pki/keys.hpp"
#include "pki/openssl_handles.hpp"

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace gatehouse::store {
class store;
}

namespace gatehouse::acme {

// One HTTP exchange with the CA. acme/http_transport.hpp makes the real one on net::http_client;
// the interface keeps Beast out of this library's headers.
class transport {
public:
    transport() = default;
    transport(const transport&) = delete;
    transport& operator=(const transport&) = delete;
    virtual ~transport() = default;

    // Sends `request` and returns the whole response, whatever its status. Fails with
    // errc::unreachable, naming the cause, when no response arrived (refused, timed out, TLS
    // verification failed).
    virtual result<http_response> exchange(const send_request& request) = 0;
};

struct client_settings {
    std::string directory_url;

    // "mailto:" URLs for the account; may be empty.
    std::vector<std::string> contact;

    std::optional<external_account_binding> eab;

    // The kind of key each new certificate gets; a fresh one every time.
    pki::key_type certificate_key_type = pki::key_type::ecdsa_p256;

    // The common name of the root to prefer among the chains the CA offers (the issuer of the
    // chain's last certificate); empty for the CA's default chain.
    std::string preferred_chain;

    // How often one request refused with badNonce is sent again with the fresh nonce. CAs
    // reject a nonce now and then (Pebble 5% by default, 50% in our tests); eight retries make
    // a request fail that way about once in 500 at 50%, and the order is retried after that.
    int max_bad_nonce_retries = 8;

    // Polling limits for one order (see order_request).
    int max_polls = 30;
    std::chrono::milliseconds first_poll_interval{250};
    std::chrono::milliseconds poll_interval{2000};
};

// Where http-01 answers go while an order waits for validation, besides the store: the local
// responder, so this instance can answer before the store's change notification comes back.
// Both may be empty.
struct challenge_hooks {
    std::function<void(const std::string& token, const std::string& key_authorization)> published;
    std::function<void(const std::string& token)> withdrawn;

    // The thumbprint of the account key an order is about to use, so this instance can answer
    // its challenges statelessly even before the store's watch reports a new account.
    std::function<void(const std::string& thumbprint)> account_in_use;
};

// Sleeps for the given time or until a stop is requested; returns false when stopped.
using sleep_function = std::function<bool(std::chrono::milliseconds)>;

struct obtained_certificate {
    // Leaf first, then the intermediates, as the CA sent them.
    std::string chain_pem;
    // The certificate's fresh private key as PKCS#8 PEM. A secret: never log it.
    std::string private_key_pem;
    std::vector<std::string> alternate_chain_urls;
};

// Why an operation failed, with what the caller needs to plan the next attempt.
struct operation_failure {
    // What the CA said (or a problem gatehouse made: a network failure, a stop).
    acme::problem problem;

    // Whether trying again later, unchanged, can succeed (see is_retryable). Network failures
    // and running out of polls are retryable.
    bool retryable = false;

    // The wait the CA asked for with Retry-After on its last answer (rateLimited, section 6.6).
    std::optional<std::chrono::seconds> retry_after;
};

// Calling value() on a failed result throws a std::runtime_error with the problem's text.
[[noreturn]] void throw_exception_from_error(const operation_failure& failure,
                                             const boost::source_location& location);

template <class T>
using operation_result = boost::system::result<T, operation_failure>;

// The account as kept in the store under store::keys::account(directory URL): a JSON object
// with "directory", "private_key_pem" (a secret), "account_url" (absent until registered) and
// "contact".
struct account_record {
    std::string directory;
    std::string private_key_pem;
    std::optional<std::string> account_url;
    std::vector<std::string> contact;
};

std::string serialize_account(const account_record& record);
result<account_record> parse_account_record(std::string_view json);

class client {
public:
    // `store` and `transport` must outlive the client. `sleep` does every wait (polls, the
    // account lock), so a stop cuts them short; it is also asked for a zero wait before every
    // request of an order, so returning false there (a stop, a lost lock) ends the order.
    client(store::store& store, transport& transport, client_settings settings,
           sleep_function sleep, challenge_hooks hooks = {});

    // Orders a certificate for `names` (DNS names; the first is the subject) with a new key:
    // loads or creates the account (registering it on first use, once for every instance
    // sharing the store), answers each http-01 challenge through the store, finalizes with a
    // CSR, and downloads the chain. Challenge answers are removed again however it ends.
    operation_result<obtained_certificate> obtain(const std::vector<std::string>& names);

    // Revokes `certificate_pem` (its leaf) with the account key (section 7.6). `reason` is an
    // RFC 5280 CRLReason code, or nullopt for none.
    operation_result<void> revoke(const std::string& certificate_pem, std::optional<int> reason);

    // Replaces the account key (section 7.3.5): the CA is told first, then the new key is
    // stored, so every instance signs with it from its next request on. An instance still
    // holding the old key in the middle of an order fails that order and retries.
    operation_result<void> rollover_account_key();

    // The window in which the CA suggests renewing `certificate_pem` (ARI, RFC 9773), or
    // nullopt when its directory offers no renewalInfo or the certificate has no identifier
    // for it. Unauthenticated: no account is needed.
    operation_result<std::optional<renewal_window>>
    renewal_info(const std::string& certificate_pem);

    // The directory, fetched once per operation. Exposed for diagnostics.
    operation_result<acme::directory> fetch_directory();

    // The account's URL at the CA, once known.
    std::optional<std::string> account_url() const;

private:
    struct account {
        pki::evp_pkey_ptr key;
        account_record record;
    };

    operation_result<account> load_or_create_account();
    void remember_account_url(account& current, const std::string& url);
    operation_result<obtained_certificate> run_order(account& current,
                                                     const acme::directory& directory,
                                                     const std::vector<std::string>& names,
                                                     const std::string& csr_der);
    // An unauthenticated GET (the directory, renewalInfo); a status other than 2xx fails.
    operation_result<http_response> get(const std::string& url, std::string_view purpose);
    operation_result<void> ensure_account_url(account& current, const acme::directory& directory);
    operation_result<http_response> post_signed(account& current, const std::string& url,
                                                const std::optional<std::string>& payload,
                                                const acme::directory& directory,
                                                std::string_view accept = "application/json");
    void choose_chain(account& current, const acme::directory& directory,
                      obtained_certificate& issued);
    operation_result<std::string> fresh_nonce(const acme::directory& directory);

    store::store& store_;
    transport& transport_;
    client_settings settings_;
    sleep_function sleep_;
    challenge_hooks hooks_;

    std::optional<std::string> nonce_;
    std::optional<std::string> account_url_;
};

} // namespace gatehouse::acme
