// Tests for the store interface's own rules: which keys and prefixes are valid, and how store
// errors read as error codes.
#include "store/store.hpp"
#include "tests/unit/store/result_string_maker.hpp"

#include <string>

#include <catch2/catch.hpp>

using gatehouse::store::errc;
using gatehouse::store::is_valid_key;
using gatehouse::store::is_valid_prefix;
using gatehouse::store::make_error_code;

TEST_CASE("keys made of allowed segments are valid", "[store]")
{
    CHECK(is_valid_key("certificates/example.com"));
    CHECK(is_valid_key("certificates/*.example.com"));
    CHECK(is_valid_key("accounts/localhost:14000-0123456789abcdef"));
    CHECK(is_valid_key("a"));
    CHECK(is_valid_key("a/b/c"));
    CHECK(is_valid_key("user@host+tag_1-2"));
    CHECK(is_valid_key("challenges/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"));
}

TEST_CASE("keys with empty segments, dots or foreign characters are refused", "[store]")
{
    CHECK_FALSE(is_valid_key(""));
    CHECK_FALSE(is_valid_key("/certificates/example.com"));
    CHECK_FALSE(is_valid_key("certificates/"));
    CHECK_FALSE(is_valid_key("certificates//example.com"));
    CHECK_FALSE(is_valid_key("certificates/.."));
    CHECK_FALSE(is_valid_key("../etc/passwd"));
    CHECK_FALSE(is_valid_key("certificates/."));
    CHECK_FALSE(is_valid_key("certificates/.hidden"));
    CHECK_FALSE(is_valid_key("certificates/exa mple.com"));
    CHECK_FALSE(is_valid_key("certificates/example.com\n"));
    CHECK_FALSE(is_valid_key(std::string("certificates/a\0b", 16)));
    CHECK_FALSE(is_valid_key("certificates\\example.com"));
    CHECK_FALSE(is_valid_key("certificates/caf\xc3\xa9"));
}

TEST_CASE("keys may not end a segment with the file backend's suffix", "[store]")
{
    CHECK_FALSE(is_valid_key("certificates/example.entry"));
    CHECK_FALSE(is_valid_key("x.entry/y"));
    CHECK(is_valid_key("certificates/example.entry.com"));
}

TEST_CASE("keys longer than the limits are refused", "[store]")
{
    CHECK(is_valid_key(std::string(200, 'a')));
    CHECK_FALSE(is_valid_key(std::string(201, 'a')));

    std::string long_key;
    while (long_key.size() < 1100) {
        long_key += "abcdefghi/";
    }
    long_key += "x";
    CHECK_FALSE(is_valid_key(long_key));
}

TEST_CASE("prefixes are empty, a key, or a key followed by a slash", "[store]")
{
    CHECK(is_valid_prefix(""));
    CHECK(is_valid_prefix("certificates/"));
    CHECK(is_valid_prefix("certificates/exa"));
    CHECK(is_valid_prefix("certificates"));
    CHECK_FALSE(is_valid_prefix("/"));
    CHECK_FALSE(is_valid_prefix("certificates//"));
    CHECK_FALSE(is_valid_prefix("../"));
}

TEST_CASE("store errors convert to error codes with readable messages", "[store]")
{
    const boost::system::error_code lost = errc::lock_lost;
    CHECK(lost == errc::lock_lost);
    CHECK(lost != errc::timeout);
    CHECK(std::string(lost.category().name()) == "gatehouse.store");
    CHECK(lost.message().find("lock lost") == 0);
    CHECK(make_error_code(errc::not_writable).message() == "store is not writable");
    CHECK(static_cast<int>(errc::io_failed) == 1);
}
