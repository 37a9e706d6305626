// Tests for the TLS certificate table: which certificate a handshake gets for a server name,
// and that a broken or mismatched pair is refused when the table is built.
#include "proxy/tls_table.hpp"
#include "tests/unit/proxy/test_certificates.hpp"

#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

using namespace gatehouse;
using proxy::certificate_material;
using proxy::tls_policy;
using proxy::tls_table;
using proxy::testing::material_for;

namespace {

// Which host's certificate `table` picks for `name`, or "rejected".
std::string chosen(const tls_table& table, const std::map<SSL_CTX*, std::string>& owners,
                   std::string_view name)
{
    SSL_CTX* context = table.select(name);
    return context == nullptr ? "rejected" : owners.at(context);
}

// The host of each certificate in the table, found by asking for its exact name.
std::map<SSL_CTX*, std::string> owners_of(const tls_table& table,
                                          const std::vector<std::string>& exact_hosts,
                                          const std::string& wildcard_probe)
{
    std::map<SSL_CTX*, std::string> owners;
    for (const auto& host : exact_hosts) {
        owners[table.select(host)] = host;
    }
    owners[table.select(wildcard_probe)] = "wildcard";
    return owners;
}

} // namespace

TEST_CASE("a server name picks the exact host first, then a one-label wildcard", "[proxy][tls]")
{
    const std::vector<certificate_material> certificates{material_for("app.example.test"),
                                                         material_for("*.example.test"),
                                                         material_for("other.test")};
    const tls_table table(tls_policy{}, certificates, {proxy::make_ticket_key()});
    const auto owners = owners_of(table, {"app.example.test", "other.test"}, "x.example.test");
    REQUIRE(owners.size() == 3);

    CHECK(chosen(table, owners, "app.example.test") == "app.example.test");
    CHECK(chosen(table, owners, "APP.Example.Test.") == "app.example.test");
    CHECK(chosen(table, owners, "b.example.test") == "wildcard");
    CHECK(chosen(table, owners, "other.test") == "other.test");

    // A wildcard covers one label only, and never the bare domain.
    CHECK(chosen(table, owners, "a.b.example.test") == "rejected");
    CHECK(chosen(table, owners, "example.test") == "rejected");
    CHECK(chosen(table, owners, "unknown.test") == "rejected");
    CHECK(chosen(table, owners, "") == "rejected");
}

TEST_CASE("unknown and missing server names get the default certificate when one is set",
          "[proxy][tls]")
{
    tls_policy policy;
    policy.unknown_sni = config::unknown_sni_action::serve_default;
    policy.default_host = "app.example.test";
    const tls_table table(policy, {material_for("app.example.test"), material_for("b.test")}, {});
    SSL_CTX* app = table.select("app.example.test");
    REQUIRE(app != nullptr);
    CHECK(table.select("b.test") != app);
    CHECK(table.select("unknown.test") == app);
    CHECK(table.select("") == app);
}

TEST_CASE("a table refuses a key that does not belong to its certificate", "[proxy][tls]")
{
    auto first = material_for("a.test");
    const auto second = material_for("b.test");
    first.private_key_pem = second.private_key_pem;
    CHECK_THROWS_WITH(tls_table(tls_policy{}, {first}, {}),
                      Catch::Contains("does not match the certificate for hosts a.test"));
}

TEST_CASE("a table refuses a chain that is not PEM, without echoing the key", "[proxy][tls]")
{
    auto broken = material_for("a.test");
    broken.chain_pem = "not a certificate";
    try {
        tls_table table(tls_policy{}, {broken}, {});
        FAIL("a broken chain was accepted");
    } catch (const std::runtime_error& error) {
        const std::string message = error.what();
        CHECK_THAT(message, Catch::Contains("PEM_read_bio_X509"));
        CHECK(message.find("PRIVATE KEY") == std::string::npos);
    }
}

TEST_CASE("session tickets are off in the base context when the policy turns them off",
          "[proxy][tls]")
{
    tls_policy policy;
    policy.session_tickets = false;
    const tls_table without(policy, {material_for("a.test")}, {proxy::make_ticket_key()});
    CHECK((SSL_CTX_get_options(without.base_context()) & SSL_OP_NO_TICKET) != 0);

    const tls_table with(tls_policy{}, {material_for("a.test")}, {proxy::make_ticket_key()});
    CHECK((SSL_CTX_get_options(with.base_context()) & SSL_OP_NO_TICKET) == 0);
    CHECK(SSL_CTX_get_min_proto_version(with.base_context()) == TLS1_2_VERSION);
}
