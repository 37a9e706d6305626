// Tests for the RFC 3339 time format the store writes in its JSON records.
#include "store/rfc3339.hpp"

#include <chrono>

#include <catch2/catch.hpp>

using gatehouse::store::format_rfc3339;
using gatehouse::store::parse_rfc3339;
using std::chrono::system_clock;
using namespace std::chrono_literals;

namespace {

// 2026-03-01T12:34:56Z, computed independently of the code under test.
const system_clock::time_point march_first =
    std::chrono::sys_days(std::chrono::year(2026) / 3 / 1) + 12h + 34min + 56s;

} // namespace

TEST_CASE("times are written in UTC to the second with a Z", "[store]")
{
    CHECK(format_rfc3339(march_first) == "2026-03-01T12:34:56Z");
    CHECK(format_rfc3339(march_first + 999ms) == "2026-03-01T12:34:56Z");
    CHECK(format_rfc3339(system_clock::time_point{}) == "1970-01-01T00:00:00Z");
}

TEST_CASE("written times read back as the same second", "[store]")
{
    CHECK(parse_rfc3339(format_rfc3339(march_first)) == march_first);
}

TEST_CASE("times with offsets, fractions and lower-case letters are read", "[store]")
{
    CHECK(parse_rfc3339("2026-03-01T14:34:56+02:00") == march_first);
    CHECK(parse_rfc3339("2026-03-01T07:04:56-05:30") == march_first);
    CHECK(parse_rfc3339("2026-03-01t12:34:56z") == march_first);
    CHECK(parse_rfc3339("2026-03-01 12:34:56Z") == march_first);
    CHECK(parse_rfc3339("2026-03-01T12:34:56.250Z") == march_first + 250ms);
    CHECK(parse_rfc3339("2016-12-31T23:59:60Z") == parse_rfc3339("2016-12-31T23:59:59Z"));
}

TEST_CASE("times beyond the clock's range are clamped", "[store]")
{
    CHECK(parse_rfc3339("9999-12-31T23:59:59Z") == system_clock::time_point::max());
    CHECK(parse_rfc3339("0001-01-01T00:00:00Z") == system_clock::time_point::min());
}

TEST_CASE("malformed times are refused", "[store]")
{
    CHECK_FALSE(parse_rfc3339(""));
    CHECK_FALSE(parse_rfc3339("2026-03-01"));
    CHECK_FALSE(parse_rfc3339("2026-03-01T12:34:56"));
    CHECK_FALSE(parse_rfc3339("2026-02-30T12:34:56Z"));
    CHECK_FALSE(parse_rfc3339("2026-03-01T24:00:00Z"));
    CHECK_FALSE(parse_rfc3339("2026-03-01T12:34:56.Z"));
    CHECK_FALSE(parse_rfc3339("2026-03-01T12:34:56Z trailing"));
    CHECK_FALSE(parse_rfc3339("2026-03-01T12:34:56+0200"));
    CHECK_FALSE(parse_rfc3339("26-03-01T12:34:56Z"));
}
