// Tests for lock_heartbeat: it keeps a lock past its ttl, and notices when the lock is gone.
#include "store/lock_heartbeat.hpp"
#include "tests/unit/store/store_test_support.hpp"

#include <thread>

#include <catch2/catch.hpp>

using gatehouse::store::lock_heartbeat;
using gatehouse::store::testing::open_store;
using gatehouse::store::testing::temporary_directory;
using gatehouse::store::testing::wait_until;
using namespace std::chrono_literals;

TEST_CASE("a heartbeat keeps a lock held past its ttl", "[store]")
{
    temporary_directory dir;
    auto holder = open_store(dir.path());
    auto other = open_store(dir.path());
    const auto lease = holder->try_lock("certificates/example.com", 1s).value();
    REQUIRE(lease);

    {
        lock_heartbeat heartbeat(*holder, *lease);
        std::this_thread::sleep_for(1500ms);
        CHECK_FALSE(heartbeat.lost());
        CHECK_FALSE(other->try_lock("certificates/example.com", 1s).value().has_value());
    }
    CHECK(holder->unlock(*lease));
}

TEST_CASE("a heartbeat reports the lock lost once it was released elsewhere", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());
    const auto lease = store->try_lock("ca/internal", 30s).value();
    REQUIRE(lease);

    lock_heartbeat heartbeat(*store, *lease, 20ms);
    REQUIRE(store->unlock(*lease));
    CHECK(wait_until([&] { return heartbeat.lost(); }, 1000ms));
}
