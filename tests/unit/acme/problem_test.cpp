// Tests for acme::problem: reading RFC 7807 documents as ACME servers send them (RFC 8555
// section 6.7) and telling permanent failures from ones worth retrying.
#include "acme/problem.hpp"
#include "tests/unit/acme/acme_test_support.hpp"

#include <catch2/catch.hpp>

namespace acme = gatehouse::acme;
using acme::problem_kind;
using acme_test::require_ok;

TEST_CASE("a problem document is read with its type, detail and status", "[acme]")
{
    const auto problem = require_ok(acme::parse_problem(
        R"({"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many orders",)"
        R"("status":429,"instance":"https://ca.test/docs/rate-limits"})"));
    CHECK(problem.kind == problem_kind::rate_limited);
    CHECK(problem.type == "urn:ietf:params:acme:error:rateLimited");
    CHECK(problem.detail == "too many orders");
    CHECK(problem.status == 429);
    CHECK(problem.subproblems.empty());
}

TEST_CASE("a compound problem keeps each subproblem and its identifier", "[acme]")
{
    const auto problem = require_ok(acme::parse_problem(R"({
        "type": "urn:ietf:params:acme:error:compound",
        "detail": "two names failed",
        "subproblems": [
            {"type": "urn:ietf:params:acme:error:dns", "detail": "NXDOMAIN",
             "identifier": {"type": "dns", "value": "a.example"}},
            {"type": "urn:ietf:params:acme:error:caa", "detail": "CAA forbids"}
        ]})"));
    REQUIRE(problem.subproblems.size() == 2);
    CHECK(problem.subproblems[0].kind == problem_kind::dns);
    REQUIRE(problem.subproblems[0].identifier.has_value());
    CHECK(*problem.subproblems[0].identifier == acme::identifier{"dns", "a.example"});
    CHECK(problem.subproblems[1].kind == problem_kind::caa);
    CHECK_FALSE(problem.subproblems[1].identifier.has_value());
    CHECK(acme::to_string(problem) == "compound detail=\"two names failed\" [dns "
                                      "identifier=dns:a.example detail=\"NXDOMAIN\"] [caa "
                                      "detail=\"CAA forbids\"]");
}

TEST_CASE("every RFC 8555 error type has its own kind and unknown ones are other", "[acme]")
{
    CHECK(acme::kind_of("urn:ietf:params:acme:error:badNonce") == problem_kind::bad_nonce);
    CHECK(acme::kind_of("urn:ietf:params:acme:error:badCSR") == problem_kind::bad_csr);
    CHECK(acme::kind_of("urn:ietf:params:acme:error:externalAccountRequired") ==
          problem_kind::external_account_required);
    CHECK(acme::kind_of("urn:ietf:params:acme:error:badSignatureAlgorithm") ==
          problem_kind::bad_signature_algorithm);
    CHECK(acme::kind_of("urn:ietf:params:acme:error:tls") == problem_kind::tls);
    CHECK(acme::kind_of("urn:ietf:params:acme:error:somethingNew") == problem_kind::other);
    CHECK(acme::kind_of("about:blank") == problem_kind::other);
    CHECK(acme::kind_of("badNonce") == problem_kind::other);
    CHECK(acme::to_string(problem_kind::user_action_required) == "userActionRequired");
}

TEST_CASE("members of the wrong type are ignored but text that is not JSON fails", "[acme]")
{
    const auto problem = require_ok(acme::parse_problem(R"({"type":7,"status":"500"})"));
    CHECK(problem.kind == problem_kind::other);
    CHECK(problem.status == 0);
    CHECK(acme_test::error_code_of(acme::parse_problem("<html>")) == acme::errc::invalid_json);
    CHECK(acme_test::error_code_of(acme::parse_problem("[]")) == acme::errc::invalid_json);
}

TEST_CASE("only failures that can pass on their own are retryable", "[acme]")
{
    SECTION("retryable")
    {
        for (const auto kind : {problem_kind::bad_nonce, problem_kind::rate_limited,
                                problem_kind::server_internal, problem_kind::order_not_ready}) {
            CHECK(acme::is_retryable(acme::make_problem(kind, "")));
        }
    }
    SECTION("permanent")
    {
        for (const auto kind :
             {problem_kind::unauthorized, problem_kind::malformed, problem_kind::dns,
              problem_kind::connection, problem_kind::incorrect_response, problem_kind::caa,
              problem_kind::bad_csr, problem_kind::rejected_identifier,
              problem_kind::user_action_required, problem_kind::external_account_required,
              problem_kind::tls, problem_kind::other}) {
            CHECK_FALSE(acme::is_retryable(acme::make_problem(kind, "")));
        }
    }
    SECTION("a compound problem is retryable only when all its subproblems are")
    {
        auto compound = acme::make_problem(problem_kind::compound, "");
        CHECK_FALSE(acme::is_retryable(compound));
        compound.subproblems.push_back({problem_kind::server_internal, "", "", std::nullopt});
        CHECK(acme::is_retryable(compound));
        compound.subproblems.push_back({problem_kind::dns, "", "", std::nullopt});
        CHECK_FALSE(acme::is_retryable(compound));
    }
}

TEST_CASE("a problem prints as one log line with its status and quoted detail", "[acme]")
{
    auto problem = acme::make_problem(problem_kind::malformed, "bad \"csr\"", 400);
    CHECK(acme::to_string(problem) == R"(malformed status=400 detail="bad \"csr\"")");
    problem = require_ok(acme::parse_problem(R"({"type":"https://ca.test/odd","detail":"x"})"));
    CHECK(acme::to_string(problem) == R"(other type=https://ca.test/odd detail="x")");
}
