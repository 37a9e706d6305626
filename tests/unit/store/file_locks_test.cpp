// Tests for the file backend's locks: exclusion while held, release, take-over after the time
// to live, loss detection, and exclusion between store instances and processes.
#include "store/file_locks.hpp"
#include "tests/unit/store/store_test_support.hpp"

#include <atomic>
#include <barrier>
#include <cstdio>
#include <fstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <catch2/catch.hpp>

using gatehouse::store::errc;
using gatehouse::store::lock_lease;
using gatehouse::store::testing::open_store;
using gatehouse::store::testing::temporary_directory;
using namespace std::chrono_literals;

namespace {

// Lets a one-second lease run out, with room for the millisecond rounding of the record.
void let_one_second_ttl_expire()
{
    std::this_thread::sleep_for(1100ms);
}

// Writes the record a holder that crashed long ago would have left for lock `name`.
void write_expired_record(const std::filesystem::path& root, const std::string& name)
{
    const auto path = root / ".locks" / (name + ".lock");
    std::filesystem::create_directories(path.parent_path());
    std::ofstream out(path);
    out << R"({"token":"00000000000000000000000000000000","expires_at_unix_ms":1000,)"
        << R"("expires_at":"1970-01-01T00:00:01Z","holder":"gone pid 1"})"
        << "\n";
    REQUIRE(out.good());
}

} // namespace

TEST_CASE("a held lock cannot be taken again until it is released", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());

    const auto first = store->try_lock("certificates/example.com", 30s);
    REQUIRE(first);
    REQUIRE(first->has_value());
    CHECK((*first)->name == "certificates/example.com");
    CHECK((*first)->token.size() == 32);

    const auto second = store->try_lock("certificates/example.com", 30s);
    REQUIRE(second);
    CHECK_FALSE(second->has_value());

    REQUIRE(store->unlock(**first));
    const auto third = store->try_lock("certificates/example.com", 30s);
    REQUIRE(third);
    REQUIRE(third->has_value());
    CHECK((*third)->token != (*first)->token);
}

TEST_CASE("different lock names do not exclude each other", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());

    CHECK(store->try_lock("certificates/a.example", 30s).value().has_value());
    CHECK(store->try_lock("certificates/b.example", 30s).value().has_value());
    CHECK(store->try_lock("ca/internal", 30s).value().has_value());
}

TEST_CASE("locks and values do not share names", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());

    REQUIRE(store->try_lock("certificates/example.com", 30s).value().has_value());
    CHECK(store->get("certificates/example.com").value() == std::nullopt);
    CHECK(store->list("").value().empty());
}

TEST_CASE("a time to live under one second is refused", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());

    CHECK(store->try_lock("x", 0s).error() == errc::invalid_argument);
    CHECK(store->try_lock("x", -5s).error() == errc::invalid_argument);
}

TEST_CASE("a lock held by another store instance on the same directory is seen", "[store]")
{
    temporary_directory dir;
    auto one = open_store(dir.path());
    auto two = open_store(dir.path());

    const auto lease = one->try_lock("certificates/example.com", 30s).value();
    REQUIRE(lease);
    CHECK_FALSE(two->try_lock("certificates/example.com", 30s).value().has_value());
    CHECK(two->refresh(*lease));

    REQUIRE(one->unlock(*lease));
    CHECK(two->try_lock("certificates/example.com", 30s).value().has_value());
}

TEST_CASE("a lock whose holder died is taken over once its ttl has passed", "[store]")
{
    temporary_directory dir;

    // A real second process takes the lock and exits without releasing it. The parent has no
    // other threads here, so forking is safe; the child leaves with _exit, skipping Catch2.
    // Flushed first, so that buffered test output is not written twice.
    std::fflush(nullptr);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        auto opened = gatehouse::store::open_file_store(dir.path());
        if (!opened) {
            ::_exit(1);
        }
        const auto taken = (*opened)->try_lock("certificates/example.com", 1s);
        ::_exit(taken && taken->has_value() ? 0 : 1);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);

    auto store = open_store(dir.path());
    CHECK_FALSE(store->try_lock("certificates/example.com", 30s).value().has_value());
    let_one_second_ttl_expire();
    CHECK(store->try_lock("certificates/example.com", 30s).value().has_value());
}

TEST_CASE("refreshing or releasing a lock that was taken over fails with lock_lost", "[store]")
{
    temporary_directory dir;
    auto one = open_store(dir.path());
    auto two = open_store(dir.path());

    const auto stale = one->try_lock("certificates/example.com", 1s).value();
    REQUIRE(stale);
    let_one_second_ttl_expire();
    const auto taker = two->try_lock("certificates/example.com", 30s).value();
    REQUIRE(taker);

    CHECK(one->refresh(*stale).error() == errc::lock_lost);
    CHECK(one->unlock(*stale).error() == errc::lock_lost);
    // The failed release must not have freed the new holder's lock.
    CHECK_FALSE(one->try_lock("certificates/example.com", 30s).value().has_value());
    CHECK(two->refresh(*taker));
}

TEST_CASE("refreshing a released lock fails with lock_lost", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());

    const auto lease = store->try_lock("ca/internal", 30s).value();
    REQUIRE(lease);
    REQUIRE(store->unlock(*lease));
    CHECK(store->refresh(*lease).error() == errc::lock_lost);
    CHECK(store->unlock(*lease).error() == errc::lock_lost);
}

TEST_CASE("a refreshed lock outlives its original ttl", "[store]")
{
    temporary_directory dir;
    auto one = open_store(dir.path());
    auto two = open_store(dir.path());

    const auto lease = one->try_lock("certificates/example.com", 1s).value();
    REQUIRE(lease);
    for (int beat = 0; beat < 3; ++beat) {
        std::this_thread::sleep_for(400ms);
        REQUIRE(one->refresh(*lease));
    }
    // 1.2 s after taking a 1 s lock, it is still held thanks to the refreshes.
    CHECK_FALSE(two->try_lock("certificates/example.com", 1s).value().has_value());
}

TEST_CASE("a lock record that cannot be read counts as expired", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());
    std::filesystem::create_directories(dir.path() / ".locks" / "certificates");
    std::ofstream(dir.path() / ".locks" / "certificates" / "example.com.lock") << "garbage";

    CHECK(store->try_lock("certificates/example.com", 30s).value().has_value());
}

TEST_CASE("only one of many racing instances takes a free lock", "[store]")
{
    temporary_directory dir;
    constexpr int racers = 8;
    std::vector<std::unique_ptr<gatehouse::store::store>> stores;
    for (int i = 0; i < racers; ++i) {
        stores.push_back(open_store(dir.path()));
    }

    SECTION("when nobody held it") {}
    SECTION("when a crashed holder left an expired record")
    {
        write_expired_record(dir.path(), "certificates/example.com");
    }

    std::atomic<int> winners{0};
    std::atomic<int> failures{0};
    std::barrier start(racers);
    std::vector<std::thread> threads;
    for (int i = 0; i < racers; ++i) {
        threads.emplace_back([&, i] {
            start.arrive_and_wait();
            const auto taken = stores[i]->try_lock("certificates/example.com", 30s);
            if (!taken) {
                ++failures;
            } else if (taken->has_value()) {
                ++winners;
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    CHECK(failures == 0);
    CHECK(winners == 1);
}
