// Tests for lock_heartbeat: it keeps a lock past its ttl, and notices when the lock is gone.
#include "store/forwarding_store.hpp"
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

namespace {

// A store whose refresh never answers in time, as an etcd that accepts connections and then
// says nothing: each refresh waits `stall` before failing. Everything else is a file store's.
class stalled_refresh_store final : public gatehouse::store::forwarding_store {
public:
    stalled_refresh_store(std::unique_ptr<store> inner, std::chrono::milliseconds stall)
        : forwarding_store(std::move(inner)), stall_(stall)
    {}

    gatehouse::store::result<void> refresh(const gatehouse::store::lock_lease&) override
    {
        std::this_thread::sleep_for(stall_);
        return gatehouse::store::errc::timeout;
    }

private:
    std::chrono::milliseconds stall_;
};

} // namespace

TEST_CASE("a heartbeat whose refresh hangs reports the lock lost at two thirds of the ttl",
          "[store]")
{
    // The ttl is 3 s, so the holder must stop by 2 s, while the one refresh in flight (sent at
    // 1 s) is still waiting and will not answer before 4 s, after the lease ran out.
    temporary_directory dir;
    stalled_refresh_store store(open_store(dir.path()), 3000ms);
    const auto asked_at = std::chrono::steady_clock::now();
    const auto lease = store.try_lock("certificates/example.com", 3s).value();
    REQUIRE(lease);

    lock_heartbeat heartbeat(store, *lease, 0ms, asked_at);
    std::this_thread::sleep_for(1700ms);
    CHECK_FALSE(heartbeat.lost());
    REQUIRE(wait_until([&] { return heartbeat.lost(); }, 1000ms));
    CHECK(std::chrono::steady_clock::now() - asked_at < 2300ms);
    // And it stays lost.
    std::this_thread::sleep_for(100ms);
    CHECK(heartbeat.lost());
}
