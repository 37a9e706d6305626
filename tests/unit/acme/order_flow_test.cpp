// Tests for acme::order_flow: the whole order is driven with canned responses, as a CA like
// Pebble would send them, and every request the flow asks for is checked on the way.
#include "acme/order_flow.hpp"
#include "pki/jose.hpp"
#include "tests/unit/acme/acme_test_support.hpp"

#include <chrono>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace acme = gatehouse::acme;
namespace pki = gatehouse::pki;
using acme_test::json;
using namespace std::chrono_literals;

namespace {

constexpr const char* account_url = "https://ca.test/my-account/1";
constexpr const char* order_url = "https://ca.test/my-order/1";
constexpr const char* authz_url = "https://ca.test/authZ/1";
constexpr const char* challenge_url = "https://ca.test/chalZ/1";
constexpr const char* finalize_url = "https://ca.test/finalize-order/1";
constexpr const char* certificate_url = "https://ca.test/certZ/1";
constexpr const char* chain_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

acme::directory pebble_directory()
{
    acme::directory directory;
    directory.new_nonce = "https://ca.test/nonce-plz";
    directory.new_account = "https://ca.test/sign-me-up";
    directory.new_order = "https://ca.test/order-plz";
    directory.revoke_cert = "https://ca.test/revoke-cert";
    directory.key_change = "https://ca.test/rollover-account-key";
    return directory;
}

acme::order_request example_request()
{
    acme::order_request request;
    request.directory = pebble_directory();
    request.names = {"example.com"};
    request.csr_der = "fake DER bytes";
    request.contact = {"mailto:ops@example.com"};
    return request;
}

// Simulated time: Retry-After dates are read against this.
std::chrono::system_clock::time_point fixed_now()
{
    return std::chrono::system_clock::from_time_t(784111777); // Sun, 06 Nov 1994 08:49:37 GMT
}

acme::http_response reply(int status, std::string body, const std::string& nonce,
                          std::multimap<std::string, std::string> headers = {})
{
    headers.emplace("replay-nonce", nonce);
    return acme::http_response{status, std::move(headers), std::move(body)};
}

std::string order_body(std::string_view status, bool with_certificate = false)
{
    json order{{"status", status},
               {"identifiers", {{{"type", "dns"}, {"value", "example.com"}}}},
               {"authorizations", {authz_url}},
               {"finalize", finalize_url}};
    if (with_certificate) {
        order["certificate"] = certificate_url;
    }
    return order.dump();
}

std::string authz_body(std::string_view status, std::string_view challenge_status = "pending")
{
    return json{{"status", status},
                {"identifier", {{"type", "dns"}, {"value", "example.com"}}},
                {"challenges",
                 {{{"type", "dns-01"},
                   {"url", "https://ca.test/chalZ/2"},
                   {"token", "other"},
                   {"status", challenge_status}},
                  {{"type", "http-01"},
                   {"url", challenge_url},
                   {"token", "tok123"},
                   {"status", challenge_status}}}}}
        .dump();
}

template <class T>
T expect(const acme::next_action& action)
{
    INFO("action index " << action.index());
    REQUIRE(std::holds_alternative<T>(action));
    return std::get<T>(action);
}

// The POST the flow asked for, checked to be a JWS by `key` for `url` with `nonce`.
acme_test::jws_parts expect_post(const acme::next_action& action, EVP_PKEY* key,
                                 const std::string& url, const std::string& nonce)
{
    const auto request = expect<acme::send_request>(action);
    CHECK(request.method == acme::http_method::post);
    CHECK(request.url == url);
    CHECK(request.content_type == "application/jose+json");
    auto parts = acme_test::split_jws(request.body);
    CHECK(parts.header.at("url") == url);
    CHECK(parts.header.at("nonce") == nonce);
    CHECK(pki_test::es256_verifies(key, parts.signing_input, parts.signature));
    return parts;
}

// A flow already past newAccount, newOrder and the first authorization fetch, waiting for its
// pending authorization to be answered.
struct flow_at_authorization {
    pki::evp_pkey_ptr key = acme_test::make_account_key();
    acme::order_flow flow;

    flow_at_authorization()
        : flow(
              key.get(),
              [] {
                  auto request = example_request();
                  request.account_url = account_url;
                  request.nonce = "n0";
                  return request;
              }(),
              &fixed_now)
    {
        expect_post(flow.start(), key.get(), "https://ca.test/order-plz", "n0");
        auto next =
            flow.on_response(reply(201, order_body("pending"), "n1", {{"location", order_url}}));
        expect_post(next, key.get(), authz_url, "n1");
    }
};

} // namespace

TEST_CASE("an order runs from a new account to a downloaded certificate", "[acme]")
{
    const auto key = acme_test::make_account_key();
    acme::order_flow flow(key.get(), example_request(), &fixed_now);

    // No nonce yet: one comes from HEAD newNonce (section 7.2).
    const auto head = expect<acme::send_request>(flow.start());
    CHECK(head.method == acme::http_method::head);
    CHECK(head.url == "https://ca.test/nonce-plz");
    auto next = flow.on_response(reply(200, "", "n1"));

    // newAccount is signed with the jwk and agrees to the terms.
    auto parts = expect_post(next, key.get(), "https://ca.test/sign-me-up", "n1");
    CHECK(parts.header.contains("jwk"));
    CHECK(json::parse(parts.payload) == json{{"termsOfServiceAgreed", true},
                                             {"onlyReturnExisting", false},
                                             {"contact", {"mailto:ops@example.com"}}});
    next = flow.on_response(reply(201, R"({"status":"valid"})", "n2", {{"location", account_url}}));
    CHECK(flow.account_url() == std::optional<std::string>(account_url));

    // newOrder and every later request name the account by kid.
    parts = expect_post(next, key.get(), "https://ca.test/order-plz", "n2");
    CHECK(parts.header.at("kid") == account_url);
    CHECK(json::parse(parts.payload) ==
          json{{"identifiers", {{{"type", "dns"}, {"value", "example.com"}}}}});
    next = flow.on_response(reply(201, order_body("pending"), "n3", {{"location", order_url}}));

    // The authorization is fetched by POST-as-GET; its http-01 answer is published.
    parts = expect_post(next, key.get(), authz_url, "n3");
    CHECK(parts.payload.empty());
    next = flow.on_response(reply(200, authz_body("pending"), "n4"));
    const auto publish = expect<acme::publish_challenge>(next);
    CHECK(publish.token == "tok123");
    CHECK(publish.key_authorization ==
          "tok123." + pki_test::require_ok(pki::jwk_thumbprint(key.get())));

    // Once published, the challenge is answered with {} and the authorization polled.
    parts = expect_post(flow.on_published(), key.get(), challenge_url, "n4");
    CHECK(parts.payload == "{}");
    next = flow.on_response(
        reply(200, R"({"type":"http-01","url":"x","token":"tok123","status":"processing"})", "n5"));
    parts = expect_post(next, key.get(), authz_url, "n5");
    CHECK(parts.payload.empty());
    next = flow.on_response(reply(200, authz_body("valid", "valid"), "n6"));

    // Finalize carries the CSR as base64url DER; a processing order is polled after a wait.
    parts = expect_post(next, key.get(), finalize_url, "n6");
    CHECK(json::parse(parts.payload) == json{{"csr", pki::base64url_encode("fake DER bytes")}});
    next = flow.on_response(reply(200, order_body("processing"), "n7"));
    CHECK(expect<acme::wait>(next).duration == 250ms);
    parts = expect_post(flow.on_waited(), key.get(), order_url, "n7");
    CHECK(parts.payload.empty());
    next = flow.on_response(reply(200, order_body("valid", true), "n8"));

    // The certificate is fetched as a PEM chain, with the alternates the CA links to.
    const auto download = expect<acme::send_request>(next);
    CHECK(download.accept == "application/pem-certificate-chain");
    parts = expect_post(next, key.get(), certificate_url, "n8");
    CHECK(parts.payload.empty());
    next = flow.on_response(reply(200, chain_pem, "n9",
                                  {{"link", R"(<https://ca.test/certZ/1/1>;rel="alternate")"},
                                   {"link", R"(<https://ca.test/dir>;rel="index")"}}));
    const auto finished = expect<acme::done>(next);
    CHECK(finished.certificate_chain_pem == chain_pem);
    CHECK(finished.alternate_urls == std::vector<std::string>{"https://ca.test/certZ/1/1"});
    CHECK(flow.nonce() == std::optional<std::string>("n9"));
}

TEST_CASE("a known account skips newAccount and an EAB is sent when configured", "[acme]")
{
    const auto key = acme_test::make_account_key();
    SECTION("known account")
    {
        auto request = example_request();
        request.account_url = account_url;
        request.nonce = "n0";
        acme::order_flow flow(key.get(), request, &fixed_now);
        const auto parts = expect_post(flow.start(), key.get(), "https://ca.test/order-plz", "n0");
        CHECK(parts.header.at("kid") == account_url);
    }
    SECTION("external account binding")
    {
        auto request = example_request();
        request.nonce = "n0";
        request.eab = acme::external_account_binding{"eab-kid", pki::base64url_encode("k3y")};
        acme::order_flow flow(key.get(), request, &fixed_now);
        const auto parts = expect_post(flow.start(), key.get(), "https://ca.test/sign-me-up", "n0");
        const auto binding = json::parse(parts.payload).at("externalAccountBinding");
        const auto inner = acme_test::split_jws(binding.dump());
        CHECK(inner.header.at("kid") == "eab-kid");
        CHECK(inner.header.at("alg") == "HS256");
    }
}

TEST_CASE("a badNonce refusal re-sends the same request with the fresh nonce", "[acme]")
{
    const auto key = acme_test::make_account_key();
    auto request = example_request();
    request.account_url = account_url;
    request.nonce = "stale";
    request.max_bad_nonce_retries = 2;
    acme::order_flow flow(key.get(), request, &fixed_now);
    const auto first = expect_post(flow.start(), key.get(), "https://ca.test/order-plz", "stale");

    const std::string bad_nonce = R"({"type":"urn:ietf:params:acme:error:badNonce",)"
                                  R"("detail":"JWS has an invalid anti-replay nonce"})";
    auto next = flow.on_response(reply(400, bad_nonce, "fresh-1"));
    const auto second = expect_post(next, key.get(), "https://ca.test/order-plz", "fresh-1");
    CHECK(second.payload == first.payload);
    CHECK(second.header.at("kid") == first.header.at("kid"));

    next = flow.on_response(reply(400, bad_nonce, "fresh-2"));
    expect_post(next, key.get(), "https://ca.test/order-plz", "fresh-2");

    // The third refusal in a row exceeds max_bad_nonce_retries.
    const auto gave_up = expect<acme::failed>(flow.on_response(reply(400, bad_nonce, "fresh-3")));
    CHECK(gave_up.problem.kind == acme::problem_kind::bad_nonce);
    CHECK(gave_up.retryable);
}

TEST_CASE("an invalid authorization ends the order with its challenge's problem", "[acme]")
{
    flow_at_authorization at;
    const auto publish = expect<acme::publish_challenge>(
        at.flow.on_response(reply(200, authz_body("pending"), "n2")));
    CHECK(publish.token == "tok123");
    expect_post(at.flow.on_published(), at.key.get(), challenge_url, "n2");
    auto next = at.flow.on_response(
        reply(200, R"({"type":"http-01","url":"x","token":"tok123","status":"processing"})", "n3"));
    expect_post(next, at.key.get(), authz_url, "n3");

    const json invalid{{"status", "invalid"},
                       {"identifier", {{"type", "dns"}, {"value", "example.com"}}},
                       {"challenges",
                        {{{"type", "http-01"},
                          {"url", challenge_url},
                          {"token", "tok123"},
                          {"status", "invalid"},
                          {"error",
                           {{"type", "urn:ietf:params:acme:error:unauthorized"},
                            {"detail", "404 at /.well-known/acme-challenge/tok123"},
                            {"status", 403}}}}}}};
    const auto outcome =
        expect<acme::failed>(at.flow.on_response(reply(200, invalid.dump(), "n4")));
    CHECK(outcome.problem.kind == acme::problem_kind::unauthorized);
    CHECK(outcome.problem.detail == "404 at /.well-known/acme-challenge/tok123");
    CHECK_FALSE(outcome.retryable);

    // The flow is over: anything more is out of turn.
    CHECK(std::holds_alternative<acme::failed>(at.flow.on_waited()));
}

TEST_CASE("a Retry-After while polling yields a wait of that many seconds", "[acme]")
{
    flow_at_authorization at;
    expect<acme::publish_challenge>(at.flow.on_response(reply(200, authz_body("pending"), "n2")));
    expect_post(at.flow.on_published(), at.key.get(), challenge_url, "n2");
    auto next = at.flow.on_response(
        reply(200, R"({"type":"http-01","url":"x","token":"tok123","status":"processing"})", "n3"));
    expect_post(next, at.key.get(), authz_url, "n3");

    SECTION("delta-seconds")
    {
        next = at.flow.on_response(
            reply(200, authz_body("pending", "processing"), "n4", {{"retry-after", "7"}}));
        CHECK(expect<acme::wait>(next).duration == 7s);
    }
    SECTION("an HTTP date, read against the injected clock")
    {
        next = at.flow.on_response(reply(200, authz_body("pending", "processing"), "n4",
                                         {{"retry-after", "Sun, 06 Nov 1994 08:50:37 GMT"}}));
        CHECK(expect<acme::wait>(next).duration == 60s);
    }

    // After the wait the same authorization is polled again.
    expect_post(at.flow.on_waited(), at.key.get(), authz_url, "n4");
}

TEST_CASE("polls start soon and slow down to poll_interval", "[acme]")
{
    const auto key = acme_test::make_account_key();
    auto request = example_request();
    request.account_url = account_url;
    request.nonce = "n0";
    acme::order_flow flow(key.get(), request, &fixed_now);
    expect_post(flow.start(), key.get(), "https://ca.test/order-plz", "n0");
    auto next = flow.on_response(reply(201, order_body("ready"), "n1", {{"location", order_url}}));
    expect_post(next, key.get(), finalize_url, "n1");

    std::vector<std::chrono::milliseconds> waits;
    for (int poll = 0; poll < 6; ++poll) {
        const std::string nonce = "p" + std::to_string(poll);
        waits.push_back(
            expect<acme::wait>(flow.on_response(reply(200, order_body("processing"), nonce)))
                .duration);
        expect_post(flow.on_waited(), key.get(), order_url, nonce);
    }
    using namespace std::chrono_literals;
    const std::vector<std::chrono::milliseconds> expected{250ms,  500ms,  1000ms,
                                                          2000ms, 2000ms, 2000ms};
    CHECK(waits == expected);
}

TEST_CASE("polling gives up, retryable, after max_polls attempts", "[acme]")
{
    const auto key = acme_test::make_account_key();
    auto request = example_request();
    request.account_url = account_url;
    request.nonce = "n0";
    request.max_polls = 2;
    acme::order_flow flow(key.get(), request, &fixed_now);
    expect_post(flow.start(), key.get(), "https://ca.test/order-plz", "n0");

    // An order that is already ready is finalized at once, then polled while processing.
    auto next = flow.on_response(reply(201, order_body("ready"), "n1", {{"location", order_url}}));
    expect_post(next, key.get(), finalize_url, "n1");
    expect<acme::wait>(flow.on_response(reply(200, order_body("processing"), "n2")));
    expect_post(flow.on_waited(), key.get(), order_url, "n2");
    expect<acme::wait>(flow.on_response(reply(200, order_body("processing"), "n3")));
    expect_post(flow.on_waited(), key.get(), order_url, "n3");
    const auto outcome =
        expect<acme::failed>(flow.on_response(reply(200, order_body("processing"), "n4")));
    CHECK(outcome.problem.detail == "gave up after 2 polls of poll-order");
    CHECK(outcome.retryable);
}

TEST_CASE("a response that arrives while the flow waits is refused as out of turn", "[acme]")
{
    const auto key = acme_test::make_account_key();
    auto request = example_request();
    request.account_url = account_url;
    request.nonce = "n0";
    acme::order_flow flow(key.get(), request, &fixed_now);
    expect_post(flow.start(), key.get(), "https://ca.test/order-plz", "n0");
    expect_post(flow.on_response(reply(201, order_body("ready"), "n1", {{"location", order_url}})),
                key.get(), finalize_url, "n1");
    expect<acme::wait>(flow.on_response(reply(200, order_body("processing"), "n2")));

    const auto outcome =
        expect<acme::failed>(flow.on_response(reply(200, order_body("processing"), "n3")));
    CHECK(outcome.problem.detail == "response out of turn");
    CHECK_FALSE(outcome.retryable);
}

TEST_CASE("a server error without a problem document fails as serverInternal", "[acme]")
{
    const auto key = acme_test::make_account_key();
    auto request = example_request();
    request.account_url = account_url;
    request.nonce = "n0";
    acme::order_flow flow(key.get(), request, &fixed_now);
    expect_post(flow.start(), key.get(), "https://ca.test/order-plz", "n0");
    const auto outcome = expect<acme::failed>(flow.on_response(reply(503, "<html>", "n1")));
    CHECK(outcome.problem.kind == acme::problem_kind::server_internal);
    CHECK(outcome.problem.status == 503);
    CHECK(outcome.retryable);
}

TEST_CASE("an authorization offering no http-01 challenge fails permanently", "[acme]")
{
    flow_at_authorization at;
    const json dns_only{{"status", "pending"},
                        {"identifier", {{"type", "dns"}, {"value", "example.com"}}},
                        {"wildcard", true},
                        {"challenges",
                         {{{"type", "dns-01"},
                           {"url", "https://ca.test/chalZ/2"},
                           {"token", "t"},
                           {"status", "pending"}}}}};
    const auto outcome =
        expect<acme::failed>(at.flow.on_response(reply(200, dns_only.dump(), "n2")));
    CHECK(outcome.problem.detail == "no http-01 challenge for dns:example.com");
    CHECK_FALSE(outcome.retryable);
}

TEST_CASE("an order not ready for finalize is polled until ready and finalized again", "[acme]")
{
    flow_at_authorization at;

    // The authorization is valid already, so the flow finalizes at once.
    auto next = at.flow.on_response(reply(200, authz_body("valid", "valid"), "n2"));
    expect_post(next, at.key.get(), finalize_url, "n2");
    const std::string not_ready =
        R"({"type":"urn:ietf:params:acme:error:orderNotReady","detail":"order is pending"})";
    next = at.flow.on_response(reply(403, not_ready, "n3", {{"retry-after", "3"}}));
    CHECK(expect<acme::wait>(next).duration == 3s);

    expect_post(at.flow.on_waited(), at.key.get(), order_url, "n3");
    next = at.flow.on_response(reply(200, order_body("ready"), "n4"));
    expect_post(next, at.key.get(), finalize_url, "n4");
}
