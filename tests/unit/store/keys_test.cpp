// Tests for store::keys, the one place keys and lock names are built.
#include "store/keys.hpp"
#include "store/store.hpp"

#include <catch2/catch.hpp>

namespace keys = gatehouse::store::keys;
using gatehouse::store::is_valid_key;

TEST_CASE("a certificate's key is its lower-cased name under certificates/", "[store]")
{
    CHECK(keys::certificate("app.example.com") == "certificates/app.example.com");
    CHECK(keys::certificate("App.Example.COM.") == "certificates/app.example.com");
    CHECK(keys::certificate("10.0.0.1") == "certificates/10.0.0.1");
    CHECK(keys::certificate("app.example.com").starts_with(keys::certificates_prefix()));
    CHECK(is_valid_key(keys::certificate("app.example.com")));
}

TEST_CASE("a wildcard certificate's key keeps the asterisk and is a valid key", "[store]")
{
    const auto key = keys::certificate("*.Example.com");
    CHECK(key == "certificates/*.example.com");
    CHECK(is_valid_key(key));
}

TEST_CASE("a certificate name with characters keys forbid gives a key the store refuses", "[store]")
{
    CHECK_FALSE(is_valid_key(keys::certificate("../../etc/passwd")));
    CHECK_FALSE(is_valid_key(keys::certificate("a b.example.com")));
    CHECK_FALSE(is_valid_key(keys::certificate("")));
}

TEST_CASE("the internal CA and challenge tokens have fixed places", "[store]")
{
    CHECK(keys::internal_ca() == "ca/internal");
    CHECK(keys::challenge_token("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0") ==
          "challenges/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0");
    CHECK(keys::challenge_token("abc").starts_with(keys::challenges_prefix()));
    CHECK(is_valid_key(keys::challenge_token("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0")));
}

TEST_CASE("an account key names the CA's host and hashes the whole directory URL", "[store]")
{
    const auto production = keys::account("https://acme-v02.api.letsencrypt.org/directory");
    const auto staging = keys::account("https://acme-staging-v02.api.letsencrypt.org/directory");
    const auto pebble = keys::account("https://localhost:14000/dir");
    const auto other_path = keys::account("https://localhost:14000/other/dir");

    CHECK(production.starts_with("accounts/acme-v02.api.letsencrypt.org-"));
    CHECK(production.size() == std::string("accounts/acme-v02.api.letsencrypt.org-").size() + 16);
    CHECK(staging.starts_with("accounts/acme-staging-v02.api.letsencrypt.org-"));
    CHECK(pebble.starts_with("accounts/localhost:14000-"));
    CHECK(pebble != other_path);
    for (const auto& key : {production, staging, pebble, other_path}) {
        CHECK(is_valid_key(key));
    }
}

TEST_CASE("an account key is stable and ignores a trailing slash", "[store]")
{
    CHECK(keys::account("https://ca.example/dir") == keys::account("https://ca.example/dir"));
    CHECK(keys::account("https://ca.example/dir/") == keys::account("https://ca.example/dir"));
    // Pinned so that a change of hash, which would orphan every stored account, fails a test.
    CHECK(keys::account("https://ca.example/dir") == "accounts/ca.example-ec8b2fa9eef4ff9e");
}

TEST_CASE("an account key stays valid for odd directory URLs", "[store]")
{
    CHECK(is_valid_key(keys::account("https://user:pw@[::1]:14000/dir")));
    CHECK(is_valid_key(keys::account("not a url")));
    CHECK(is_valid_key(keys::account("")));
    CHECK(keys::account("https://user:pw@ca.example/dir").starts_with("accounts/ca.example-"));
}

TEST_CASE("lock names follow the keys of what they guard", "[store]")
{
    CHECK(keys::lock_for_certificate("*.Example.com") == "certificates/*.example.com");
    CHECK(keys::lock_for_account("https://ca.example/dir") ==
          keys::account("https://ca.example/dir"));
    CHECK(keys::lock_for_internal_ca() == "ca/internal");
    CHECK(is_valid_key(keys::lock_for_certificate("app.example.com")));
}
