#include "acme/order_flow.hpp"

#include "acme/internal.hpp"
#include "acme/jws.hpp"
#include "pki/jose.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <netinet/in.h>

namespace gatehouse::acme {

namespace {

using internal::json;

constexpr const char* jose_content_type = "application/jose+json";
constexpr const char* pem_chain_type = "application/pem-certificate-chain";

// RFC 8738: an IP address is an "ip" identifier; everything else is a DNS name.
identifier identifier_for(const std::string& name)
{
    in6_addr address{};
    const bool is_ip = inet_pton(AF_INET, name.c_str(), &address) == 1 ||
                       inet_pton(AF_INET6, name.c_str(), &address) == 1;
    return identifier{is_ip ? "ip" : "dns", name};
}

bool is_success(int status)
{
    return status >= 200 && status < 300;
}

// A problem for a response that is not what the protocol promises. A 5xx is the server's fault
// and may pass; anything else is reported as it is.
problem unexpected(const http_response& response, std::string_view what)
{
    const auto kind = response.status >= 500 ? problem_kind::server_internal : problem_kind::other;
    return make_problem(kind, std::string(what), response.status);
}

failed failure(problem problem)
{
    const bool retryable = is_retryable(problem);
    return failed{std::move(problem), retryable};
}

// The problem behind an invalid authorization: the first challenge's error (section 7.1.4),
// or one naming the identifier when the server gave none.
problem authorization_problem(const authorization& authz)
{
    for (const auto& challenge : authz.challenges) {
        if (challenge.error) {
            return *challenge.error;
        }
    }
    return make_problem(problem_kind::other, "authorization for " + authz.identifier.type + ":" +
                                                 authz.identifier.value + " is " +
                                                 std::string(to_string(authz.status)));
}

} // namespace

std::optional<std::string> http_response::header(const std::string& name) const
{
    const auto found = headers.find(name);
    if (found == headers.end()) {
        return std::nullopt;
    }
    return found->second;
}

std::vector<std::string> http_response::headers_named(const std::string& name) const
{
    std::vector<std::string> values;
    const auto [first, last] = headers.equal_range(name);
    for (auto it = first; it != last; ++it) {
        values.push_back(it->second);
    }
    return values;
}

std::string_view to_string(http_method method) noexcept
{
    switch (method) {
    case http_method::get:
        return "GET";
    case http_method::head:
        return "HEAD";
    case http_method::post:
        return "POST";
    }
    return "POST";
}

order_flow::order_flow(EVP_PKEY* account_key, order_request request, clock_function now)
    : account_key_(pki::share(account_key)), request_(std::move(request)), now_(now),
      nonce_(request_.nonce), account_url_(request_.account_url)
{}

std::string_view order_flow::step_name(step value) noexcept
{
    switch (value) {
    case step::new_account:
        return "new-account";
    case step::new_order:
        return "new-order";
    case step::fetch_authorization:
        return "fetch-authorization";
    case step::answer_challenge:
        return "answer-challenge";
    case step::poll_authorization:
        return "poll-authorization";
    case step::finalize:
        return "finalize";
    case step::poll_order:
        return "poll-order";
    case step::download_certificate:
        return "download-certificate";
    default:
        return "none";
    }
}

next_action order_flow::start()
{
    if (step_ != step::not_started) {
        return finish(failure(make_problem(problem_kind::other, "order flow started twice")));
    }
    if (account_url_) {
        return new_order();
    }

    // Section 7.3: create the account, or find it again; a CA answers 200 with the existing
    // account's Location when the key is already registered.
    json payload{{"termsOfServiceAgreed", true}, {"onlyReturnExisting", false}};
    if (!request_.contact.empty()) {
        payload["contact"] = request_.contact;
    }
    if (request_.eab) {
        auto binding = sign_eab(request_.eab->key_id, request_.eab->hmac_key_b64url,
                                account_key_.get(), request_.directory.new_account);
        if (!binding) {
            return finish(failure(make_problem(problem_kind::other, binding.error().message)));
        }
        payload["externalAccountBinding"] = json::parse(*binding);
    }
    return send({step::new_account, request_.directory.new_account, payload.dump()});
}

next_action order_flow::on_response(const http_response& response)
{
    if (step_ == step::not_started || step_ == step::publishing || step_ == step::waiting ||
        step_ == step::finished) {
        return finish(failure(make_problem(problem_kind::other, "response out of turn")));
    }

    // Section 6.5: every response may carry a fresh nonce, errors included.
    if (auto fresh = response.header("replay-nonce")) {
        nonce_ = std::move(fresh);
    }
    if (awaiting_nonce_) {
        awaiting_nonce_ = false;
        if (!is_success(response.status) || !nonce_) {
            return finish(failure(unexpected(response, "newNonce gave no Replay-Nonce")));
        }
        return sign_and_send();
    }
    if (response.status >= 400) {
        return handle_problem(response);
    }
    if (!is_success(response.status)) {
        return finish(failure(unexpected(response, "unexpected HTTP status")));
    }
    bad_nonce_retries_ = 0;
    return handle(response);
}

next_action order_flow::on_waited()
{
    if (step_ != step::waiting) {
        return finish(failure(make_problem(problem_kind::other, "wait ended out of turn")));
    }
    return send(current_);
}

next_action order_flow::on_published()
{
    if (step_ != step::publishing) {
        return finish(failure(make_problem(problem_kind::other, "publish ended out of turn")));
    }

    // Section 7.5.1: an empty object tells the server the challenge may be validated now.
    return send({step::answer_challenge, challenge_url_, "{}"});
}

next_action order_flow::send(post request)
{
    current_ = std::move(request);
    step_ = current_.purpose;
    return sign_and_send();
}

next_action order_flow::sign_and_send()
{
    if (!nonce_) {
        return fetch_nonce();
    }

    // Section 6.2: only newAccount is signed with the bare key; the rest name the account.
    std::optional<std::string_view> kid;
    if (current_.purpose != step::new_account && account_url_) {
        kid = *account_url_;
    }
    std::optional<std::string_view> payload;
    if (current_.payload) {
        payload = *current_.payload;
    }
    auto body = sign_jws(account_key_.get(), current_.url, *nonce_, kid, payload);
    if (!body) {
        return finish(failure(make_problem(problem_kind::other, body.error().message)));
    }

    // A nonce is good for one request only (section 6.5).
    nonce_.reset();
    return send_request{http_method::post, current_.url,    std::move(*body),
                        jose_content_type, current_.accept, std::string(step_name(step_))};
}

next_action order_flow::fetch_nonce()
{
    // Section 7.2: HEAD newNonce answers 200 with a Replay-Nonce and no body.
    awaiting_nonce_ = true;
    return send_request{http_method::head, request_.directory.new_nonce, "", "", "", "new-nonce"};
}

next_action order_flow::handle_problem(const http_response& response)
{
    auto parsed = parse_problem(response.body);
    problem refusal = parsed ? *parsed : unexpected(response, "error without a problem document");
    if (refusal.status == 0) {
        refusal.status = response.status;
    }

    // Section 6.5: a stale nonce is not the request's fault; send it again, signed anew.
    if (refusal.kind == problem_kind::bad_nonce &&
        bad_nonce_retries_ < request_.max_bad_nonce_retries) {
        ++bad_nonce_retries_;
        return sign_and_send();
    }

    // Section 7.4: finalizing before every authorization shows valid is refused; wait for the
    // order to become ready and finalize then.
    if (refusal.kind == problem_kind::order_not_ready && step_ == step::finalize) {
        finalize_sent_ = false;
        return poll_again(response, {step::poll_order, order_url_, std::nullopt});
    }
    return finish(failure(std::move(refusal)));
}

next_action order_flow::handle(const http_response& response)
{
    switch (step_) {
    case step::new_account:
        return handle_new_account(response);
    case step::new_order:
        return handle_new_order(response);
    case step::fetch_authorization:
    case step::poll_authorization:
        return handle_authorization(response);
    case step::answer_challenge:
        return handle_challenge(response);
    case step::finalize:
    case step::poll_order:
        return handle_order(response);
    case step::download_certificate:
        return handle_certificate(response);
    default:
        return finish(failure(make_problem(problem_kind::other, "response out of turn")));
    }
}

next_action order_flow::handle_new_account(const http_response& response)
{
    // Section 7.3: the account URL, which later requests carry as "kid", is the Location.
    auto location = response.header("location");
    if (!location) {
        return finish(failure(unexpected(response, "newAccount gave no Location")));
    }
    auto created = parse_account(response.body);
    if (!created) {
        return finish(failure(unexpected(response, created.error().message)));
    }
    if (created->status != account_status::valid) {
        return finish(failure(make_problem(problem_kind::unauthorized,
                                           "account is " + std::string(to_string(created->status)),
                                           response.status)));
    }
    account_url_ = std::move(location);
    return new_order();
}

next_action order_flow::new_order()
{
    json identifiers = json::array();
    for (const auto& name : request_.names) {
        const identifier id = identifier_for(name);
        identifiers.push_back({{"type", id.type}, {"value", id.value}});
    }
    const json payload{{"identifiers", identifiers}};
    return send({step::new_order, request_.directory.new_order, payload.dump()});
}

next_action order_flow::handle_new_order(const http_response& response)
{
    auto location = response.header("location");
    auto created = parse_order(response.body);
    if (!location || !created) {
        const std::string what = !location ? "newOrder gave no Location" : created.error().message;
        return finish(failure(unexpected(response, what)));
    }
    order_url_ = std::move(*location);
    finalize_url_ = created->finalize;
    authorization_urls_ = created->authorizations;
    authorization_index_ = 0;
    if (created->status == order_status::pending) {
        return next_authorization();
    }
    return after_order(*created);
}

next_action order_flow::next_authorization()
{
    // TODO: authorizations are solved one after another; answering every challenge first and
    // then polling them together would make multi-name orders faster.
    polls_ = 0;
    if (authorization_index_ >= authorization_urls_.size()) {
        return finalize();
    }
    return send(
        {step::fetch_authorization, authorization_urls_[authorization_index_], std::nullopt});
}

next_action order_flow::finalize()
{
    // Section 7.4: the CSR goes as base64url DER, not PEM.
    finalize_sent_ = true;
    polls_ = 0;
    const json payload{{"csr", pki::base64url_encode(request_.csr_der)}};
    return send({step::finalize, finalize_url_, payload.dump()});
}

next_action order_flow::handle_authorization(const http_response& response)
{
    auto authz = parse_authorization(response.body);
    if (!authz) {
        return finish(failure(unexpected(response, authz.error().message)));
    }
    switch (authz->status) {
    case authorization_status::valid:
        ++authorization_index_;
        return next_authorization();
    case authorization_status::pending:
        if (step_ == step::fetch_authorization) {
            return on_pending_authorization(*authz);
        }
        return poll_again(response, current_);
    default:
        return finish(failure(authorization_problem(*authz)));
    }
}

next_action order_flow::on_pending_authorization(const authorization& authz)
{
    const challenge* http01 = nullptr;
    for (const auto& challenge : authz.challenges) {
        http01 = challenge.type == "http-01" ? &challenge : http01;
    }
    if (http01 == nullptr) {
        // Wildcard names are only ever offered dns-01 (section 7.1.3), which needs a DNS solver.
        return finish(failure(make_problem(problem_kind::other, "no http-01 challenge for " +
                                                                    authz.identifier.type + ":" +
                                                                    authz.identifier.value)));
    }

    // A challenge answered by an earlier attempt is being validated already: just poll.
    if (http01->status != challenge_status::pending) {
        return send({step::poll_authorization, current_.url, std::nullopt});
    }
    auto answer = key_authorization(http01->token, account_key_.get());
    if (!answer) {
        return finish(failure(make_problem(problem_kind::other, answer.error().message)));
    }
    challenge_url_ = http01->url;
    step_ = step::publishing;
    return publish_challenge{http01->token, std::move(*answer)};
}

next_action order_flow::handle_challenge(const http_response& response)
{
    auto answered = parse_challenge(response.body);
    if (!answered) {
        return finish(failure(unexpected(response, answered.error().message)));
    }
    if (answered->status == challenge_status::invalid) {
        const problem why = answered->error.value_or(
            make_problem(problem_kind::other, "challenge is invalid", response.status));
        return finish(failure(why));
    }

    // Section 7.5.1: the authorization, not the challenge, tells when validation is over.
    polls_ = 0;
    return send(
        {step::poll_authorization, authorization_urls_[authorization_index_], std::nullopt});
}

next_action order_flow::handle_order(const http_response& response)
{
    auto current = parse_order(response.body);
    if (!current) {
        return finish(failure(unexpected(response, current.error().message)));
    }
    if (current->status == order_status::pending || current->status == order_status::processing ||
        (current->status == order_status::ready && finalize_sent_)) {
        return poll_again(response, {step::poll_order, order_url_, std::nullopt});
    }
    return after_order(*current);
}

next_action order_flow::after_order(const order& current)
{
    switch (current.status) {
    case order_status::ready:
        finalize_url_ = current.finalize;
        return finalize();
    case order_status::valid:
        if (!current.certificate) {
            return finish(failure(make_problem(problem_kind::other, "valid order has no URL")));
        }

        // Section 7.4.2: the chain is fetched by POST-as-GET, as PEM.
        return send(
            {step::download_certificate, *current.certificate, std::nullopt, pem_chain_type});
    case order_status::invalid:
        return finish(
            failure(current.error.value_or(make_problem(problem_kind::other, "order is invalid"))));
    default:
        return poll_again(http_response{}, {step::poll_order, order_url_, std::nullopt});
    }
}

next_action order_flow::handle_certificate(const http_response& response)
{
    step_ = step::finished;
    return done{response.body, alternate_links(response.headers_named("link"))};
}

next_action order_flow::poll_again(const http_response& response, post request)
{
    if (++polls_ > request_.max_polls) {
        const std::string what = "gave up after " + std::to_string(request_.max_polls) +
                                 " polls of " + std::string(step_name(request.purpose));
        return finish(failed{make_problem(problem_kind::other, what), true});
    }

    // Section 8.2: the server may say how long to wait; otherwise poll at our own pace,
    // soon at first and less often the longer it takes.
    std::chrono::milliseconds delay = request_.first_poll_interval;
    for (int poll = 1; poll < polls_ && delay < request_.poll_interval; ++poll) {
        delay *= 2;
    }
    delay = std::min(delay, request_.poll_interval);
    if (auto retry_after = response.header("retry-after")) {
        if (auto asked = parse_retry_after(*retry_after, now_())) {
            delay = *asked;
        }
    }
    current_ = std::move(request);
    step_ = step::waiting;
    return wait{delay};
}

next_action order_flow::finish(failed outcome)
{
    step_ = step::finished;
    return outcome;
}

} // namespace gatehouse::acme
