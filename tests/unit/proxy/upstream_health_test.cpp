// Tests for passive health checking and the round-robin pick, run on a simulated clock: every
// "now" is a time point the test chooses, so cooldowns end without waiting.
#include "proxy/upstream_health.hpp"

#include <array>
#include <chrono>
#include <cstddef>
#include <vector>

#include <catch2/catch.hpp>

using gatehouse::config::upstream_health;
using gatehouse::proxy::health_clock;
using gatehouse::proxy::pick_upstream;
using gatehouse::proxy::upstream_health_state;
using namespace std::chrono_literals;

namespace {

// An arbitrary start for the simulated clock, well after the clock's epoch.
const health_clock::time_point t0 = health_clock::time_point{} + 1000h;

upstream_health policy(unsigned max_fails, std::chrono::milliseconds cooldown)
{
    upstream_health result;
    result.max_fails = max_fails;
    result.cooldown = cooldown;
    return result;
}

// Ejects `state` at `now` with a one-failure policy and the given cooldown.
void eject(upstream_health_state& state, health_clock::time_point now,
           std::chrono::milliseconds cooldown)
{
    REQUIRE(state.record_failure(now, policy(1, cooldown)));
    REQUIRE(state.is_ejected(now));
}

std::size_t pick(const std::vector<const upstream_health_state*>& states, unsigned start,
                 health_clock::time_point now)
{
    return pick_upstream(states, start, now);
}

} // namespace

TEST_CASE("a new upstream is not ejected", "[proxy]")
{
    upstream_health_state state;
    CHECK_FALSE(state.is_ejected(t0));
    CHECK_FALSE(state.is_ejected(health_clock::time_point{}));
}

TEST_CASE("an upstream is ejected by max_fails consecutive failures, not before", "[proxy]")
{
    const auto three_strikes = policy(3, 10s);
    upstream_health_state state;

    CHECK_FALSE(state.record_failure(t0, three_strikes));
    CHECK_FALSE(state.is_ejected(t0));
    CHECK_FALSE(state.record_failure(t0 + 1s, three_strikes));
    CHECK_FALSE(state.is_ejected(t0 + 1s));

    // The third failure in a row is the one that ejects, and it says so.
    CHECK(state.record_failure(t0 + 2s, three_strikes));
    CHECK(state.is_ejected(t0 + 2s));
    CHECK(state.ejected_until() == t0 + 2s + 10s);
}

TEST_CASE("with max_fails of one the first failure ejects", "[proxy]")
{
    upstream_health_state state;
    CHECK(state.record_failure(t0, policy(1, 5s)));
    CHECK(state.is_ejected(t0));
    CHECK(state.ejected_until() == t0 + 5s);
}

TEST_CASE("a success resets the count of consecutive failures", "[proxy]")
{
    const auto three_strikes = policy(3, 10s);
    upstream_health_state state;

    CHECK_FALSE(state.record_failure(t0, three_strikes));
    CHECK_FALSE(state.record_failure(t0, three_strikes));
    state.record_success();

    // Two more failures make four in total but only two in a row: still in rotation.
    CHECK_FALSE(state.record_failure(t0, three_strikes));
    CHECK_FALSE(state.record_failure(t0, three_strikes));
    CHECK_FALSE(state.is_ejected(t0));

    CHECK(state.record_failure(t0, three_strikes));
    CHECK(state.is_ejected(t0));
}

TEST_CASE("an ejection ends exactly when its cooldown has passed", "[proxy]")
{
    upstream_health_state state;
    eject(state, t0, 10s);

    CHECK(state.is_ejected(t0 + 1ms));
    CHECK(state.is_ejected(t0 + 10s - 1ms));
    CHECK_FALSE(state.is_ejected(t0 + 10s));
    CHECK_FALSE(state.is_ejected(t0 + 1h));
}

TEST_CASE("an upstream back from cooldown needs max_fails new failures to be ejected again",
          "[proxy]")
{
    const auto two_strikes = policy(2, 10s);
    upstream_health_state state;
    state.record_failure(t0, two_strikes);
    REQUIRE(state.record_failure(t0, two_strikes));

    const auto after = t0 + 11s;
    REQUIRE_FALSE(state.is_ejected(after));
    CHECK_FALSE(state.record_failure(after, two_strikes));
    CHECK_FALSE(state.is_ejected(after));
    CHECK(state.record_failure(after, two_strikes));
    CHECK(state.is_ejected(after));
    CHECK(state.ejected_until() == after + 10s);
}

TEST_CASE("failing again while ejected extends the cooldown without reporting a new ejection",
          "[proxy]")
{
    // When every upstream is ejected one is still tried; its failures push the cooldown out,
    // but the ejection is counted only once.
    upstream_health_state state;
    eject(state, t0, 10s);

    CHECK_FALSE(state.record_failure(t0 + 4s, policy(1, 10s)));
    CHECK(state.ejected_until() == t0 + 14s);
    CHECK(state.is_ejected(t0 + 12s));
}

TEST_CASE("pick_upstream takes the round-robin position when it is healthy", "[proxy]")
{
    std::array<upstream_health_state, 3> states;
    std::vector<const upstream_health_state*> all = {&states[0], &states[1], &states[2]};

    CHECK(pick(all, 0, t0) == 0);
    CHECK(pick(all, 1, t0) == 1);
    CHECK(pick(all, 2, t0) == 2);

    // The position is an ever-growing counter, taken modulo the number of upstreams.
    CHECK(pick(all, 3, t0) == 0);
    CHECK(pick(all, 7, t0) == 1);
}

TEST_CASE("pick_upstream skips ejected upstreams in round-robin order", "[proxy]")
{
    std::array<upstream_health_state, 4> states;
    std::vector<const upstream_health_state*> all = {&states[0], &states[1], &states[2],
                                                     &states[3]};

    SECTION("the next one after an ejected position")
    {
        eject(states[1], t0, 10s);
        CHECK(pick(all, 1, t0) == 2);
        CHECK(pick(all, 0, t0) == 0);
    }
    SECTION("several ejected in a row")
    {
        eject(states[1], t0, 10s);
        eject(states[2], t0, 10s);
        CHECK(pick(all, 1, t0) == 3);
    }
    SECTION("wrapping past the end")
    {
        eject(states[3], t0, 10s);
        eject(states[0], t0, 10s);
        CHECK(pick(all, 3, t0) == 1);
    }
    SECTION("an upstream whose cooldown ended is picked again")
    {
        eject(states[1], t0, 10s);
        CHECK(pick(all, 1, t0 + 9s) == 2);
        CHECK(pick(all, 1, t0 + 10s) == 1);
    }
}

TEST_CASE("when every upstream is ejected the one whose cooldown ends first is picked", "[proxy]")
{
    std::array<upstream_health_state, 3> states;
    std::vector<const upstream_health_state*> all = {&states[0], &states[1], &states[2]};

    SECTION("the soonest is not at the round-robin position")
    {
        eject(states[0], t0, 30s);
        eject(states[1], t0, 10s);
        eject(states[2], t0, 20s);
        for (unsigned start = 0; start < 3; ++start) {
            INFO("start " << start);
            CHECK(pick(all, start, t0 + 1s) == 1);
        }
    }
    SECTION("the soonest was ejected later but with a shorter cooldown")
    {
        eject(states[0], t0, 30s);
        eject(states[1], t0, 30s);
        eject(states[2], t0 + 5s, 10s);
        CHECK(pick(all, 0, t0 + 6s) == 2);
    }
    SECTION("equal cooldowns keep round-robin order")
    {
        eject(states[0], t0, 10s);
        eject(states[1], t0, 10s);
        eject(states[2], t0, 10s);
        CHECK(pick(all, 0, t0) == 0);
        CHECK(pick(all, 1, t0) == 1);
        CHECK(pick(all, 2, t0) == 2);
    }
}

TEST_CASE("pick_upstream with a single upstream always picks it", "[proxy]")
{
    upstream_health_state only;
    std::vector<const upstream_health_state*> one = {&only};

    CHECK(pick(one, 0, t0) == 0);
    CHECK(pick(one, 41, t0) == 0);
    eject(only, t0, 10s);
    CHECK(pick(one, 5, t0) == 0);
}
