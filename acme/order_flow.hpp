// The sans-io state machine for obtaining one certificate with http-01 (RFC 8555 section 7.3 to
// 7.4): given the last HTTP response, it says what to do next. It sends nothing itself; the
// caller performs each request, waits, and publishes challenge answers, then feeds back the
// result. That keeps every protocol rule here, tested without sockets or clocks.
//
// The steps: a nonce from newNonce when none is at hand (section 7.2); newAccount, unless an
// account URL is known (section 7.3); newOrder (section 7.4); each authorization fetched by
// POST-as-GET, and for a pending one the http-01 key authorization published and the challenge
// answered (section 7.5.1, 8.3), then the authorization polled until valid or invalid; the
// order finalized with the CSR and polled until valid; the certificate downloaded (section
// 7.4.2). Every response's Replay-Nonce is kept for the next request, and a badNonce refusal
// is answered by sending the same request again with the fresh nonce (section 6.5).
#pragma once

#include "acme/directory.hpp"
#include "acme/messages.hpp"
#include "acme/problem.hpp"
#include "pki/openssl_handles.hpp"

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace gatehouse::acme {

// One HTTP response as the caller received it. Header names are lower-case ("replay-nonce",
// "location", "retry-after", "link"); a name may repeat, as Link does.
struct http_response {
    int status = 0;
    std::multimap<std::string, std::string> headers;
    std::string body;

    // The first value of header `name`, or nullopt.
    std::optional<std::string> header(const std::string& name) const;

    // Every value of header `name`, in the order received.
    std::vector<std::string> headers_named(const std::string& name) const;
};

enum class http_method { get, head, post };

// "GET", "HEAD" or "POST".
std::string_view to_string(http_method method) noexcept;

// Send this request and pass the response to on_response(). A POST body is a signed JWS,
// sent with Content-Type `content_type` ("application/jose+json", section 6.2). `purpose`
// names the step for logs ("new-order", "poll-authorization"); never log `body`.
struct send_request {
    http_method method = http_method::post;
    std::string url;
    std::string body;
    std::string content_type;
    std::string accept;
    std::string purpose;
};

// Wait this long, then call on_waited(): polling, or a Retry-After (section 8.2).
struct wait {
    std::chrono::milliseconds duration{0};
};

// Make http://<identifier>/.well-known/acme-challenge/<token> answer `key_authorization` on
// port 80 (section 8.3), on every instance the CA may reach, then call on_published(). The
// caller removes the token again once the flow is done or failed.
struct publish_challenge {
    std::string token;
    std::string key_authorization;
};

// The certificate is issued: its chain as PEM, leaf first (section 7.4.2), and the URLs of
// alternate chains the CA offered.
struct done {
    std::string certificate_chain_pem;
    std::vector<std::string> alternate_urls;
};

// The order cannot go on. `retryable` is is_retryable(problem), whether a new attempt later may
// succeed without a change of configuration, except that running out of polls is retryable.
struct failed {
    acme::problem problem;
    bool retryable = false;
};

using next_action = std::variant<send_request, wait, publish_challenge, done, failed>;

// An account at a CA that asks for one bound to an external account (section 7.3.4).
struct external_account_binding {
    std::string key_id;
    std::string hmac_key_b64url; // a secret: never log it
};

struct order_request {
    acme::directory directory;

    // The names the certificate is for: DNS names, or IP addresses (RFC 8738).
    std::vector<std::string> names;

    // The PKCS#10 request for `names` in DER (pki::make_csr_der), signed by the certificate's
    // key, which the flow never sees.
    std::string csr_der;

    // "mailto:" contacts for newAccount (section 7.3); may be empty.
    std::vector<std::string> contact;

    // The account's URL when it is already registered: newAccount is skipped and requests
    // carry it as "kid".
    std::optional<std::string> account_url;

    std::optional<external_account_binding> eab;

    // A nonce left over from an earlier flow with the same CA, saving one HEAD request.
    std::optional<std::string> nonce;

    // How often a request refused with badNonce is sent again before the flow gives up.
    int max_bad_nonce_retries = 3;

    // How often an authorization or the order is polled before the flow gives up, and the
    // wait between polls when the server sends no Retry-After: the first poll comes after
    // first_poll_interval and each later one waits twice as long, up to poll_interval. A CA
    // usually validates within a second, so polling early saves most of an issuance's time,
    // while the cap keeps a slow one from being asked too often.
    int max_polls = 30;
    std::chrono::milliseconds first_poll_interval{250};
    std::chrono::milliseconds poll_interval{2000};
};

// One order, from start() to done or failed. Not thread-safe: one caller drives it, calling
// start() once and then on_response(), on_waited() or on_published() as the last action asks.
// A call that does not match the last action yields failed. Time comes in only through
// `now()`, to read Retry-After dates, so tests control it.
class order_flow {
public:
    using clock_function = std::chrono::system_clock::time_point (*)();

    // Takes a reference on `account_key` (a P-256 private key); the caller keeps its own.
    order_flow(EVP_PKEY* account_key, order_request request,
               clock_function now = &std::chrono::system_clock::now);

    // The first action: HEAD newNonce, newAccount, or newOrder when the account is known.
    // Fails (as an action) when called twice.
    next_action start();

    // The response to the last send_request. Keeps its Replay-Nonce, then decides the next
    // step; a problem document (status 400 and up) ends the flow unless it is badNonce or,
    // while finalizing, orderNotReady.
    next_action on_response(const http_response& response);

    // The last wait is over: sends the poll or request it was waiting for.
    next_action on_waited();

    // The last publish_challenge is answerable: tells the CA to validate it.
    next_action on_published();

    // The account URL, once newAccount's Location gave it or the request carried it.
    const std::optional<std::string>& account_url() const noexcept { return account_url_; }

    // The freshest unused nonce, to hand to the next flow with the same CA.
    const std::optional<std::string>& nonce() const noexcept { return nonce_; }

private:
    enum class step {
        not_started,
        new_account,
        new_order,
        fetch_authorization,
        publishing,
        answer_challenge,
        poll_authorization,
        finalize,
        poll_order,
        download_certificate,
        waiting,
        finished,
    };

    // A POST to build, kept so a badNonce refusal or a wait can send it again.
    struct post {
        step purpose = step::not_started;
        std::string url;
        std::optional<std::string> payload; // nullopt: POST-as-GET
        std::string accept = "application/json";
    };

    // "new-account", "poll-order", ...: the purpose of a request, for logs.
    static std::string_view step_name(step value) noexcept;

    next_action send(post request);
    next_action sign_and_send();
    next_action fetch_nonce();
    next_action handle(const http_response& response);
    next_action handle_problem(const http_response& response);
    next_action handle_new_account(const http_response& response);
    next_action handle_new_order(const http_response& response);
    next_action handle_authorization(const http_response& response);
    next_action handle_challenge(const http_response& response);
    next_action handle_order(const http_response& response);
    next_action handle_certificate(const http_response& response);
    next_action next_authorization();
    next_action on_pending_authorization(const authorization& authz);
    next_action after_order(const order& current);
    next_action poll_again(const http_response& response, post request);
    next_action new_order();
    next_action finalize();
    next_action finish(failed outcome);

    pki::evp_pkey_ptr account_key_;
    order_request request_;
    clock_function now_;

    step step_ = step::not_started;
    bool awaiting_nonce_ = false;
    post current_;
    std::optional<std::string> nonce_;
    std::optional<std::string> account_url_;
    std::string order_url_;
    std::string finalize_url_;
    std::vector<std::string> authorization_urls_;
    std::size_t authorization_index_ = 0;
    std::string challenge_url_;
    bool finalize_sent_ = false;
    int bad_nonce_retries_ = 0;
    int polls_ = 0;
};

} // namespace gatehouse::acme
