// Tests for the file backend's watches: changes made through another instance, by an operator
// writing files directly, and removals are reported; temporary files are not; destroying a
// handle stops its callbacks without deadlocking; a lost directory leads to a resync.
#include "store/file_watcher.hpp"
#include "tests/unit/store/store_test_support.hpp"

#include <atomic>
#include <fstream>
#include <thread>

#include <catch2/catch.hpp>

using gatehouse::store::change_event;
using gatehouse::store::change_kind;
using gatehouse::store::errc;
using gatehouse::store::watch_handle;
using gatehouse::store::testing::calls_to_a_watch_that_ends_itself;
using gatehouse::store::testing::event_recorder;
using gatehouse::store::testing::open_store;
using gatehouse::store::testing::temporary_directory;
using gatehouse::store::testing::wait_until;
using namespace std::chrono_literals;

namespace {

// The issue asks for changes to be noticed within a second; tests allow two for a busy host.
constexpr auto report_deadline = 2000ms;

std::unique_ptr<watch_handle> watch_into(gatehouse::store::store& store, std::string_view prefix,
                                         std::shared_ptr<event_recorder> recorder)
{
    auto handle = store.watch(prefix, [recorder](const change_event& e) { (*recorder)(e); });
    REQUIRE(handle);
    return std::move(*handle);
}

// Writes a value file the way the docs tell operators to: a temporary name, then mv.
void operator_copies_in(const std::filesystem::path& root, const std::string& key,
                        const std::string& content)
{
    const auto final_path = root / (key + ".entry");
    std::filesystem::create_directories(final_path.parent_path());
    const auto temporary = final_path.parent_path() / ".incoming";
    {
        std::ofstream out(temporary, std::ios::binary);
        out << content;
        REQUIRE(out.good());
    }
    std::filesystem::rename(temporary, final_path);
}

} // namespace

TEST_CASE("a put through another instance on the same directory is reported", "[store]")
{
    temporary_directory dir;
    auto watching = open_store(dir.path());
    auto writing = open_store(dir.path());
    auto events = std::make_shared<event_recorder>();
    const auto handle = watch_into(*watching, "certificates/", events);

    REQUIRE(writing->put("certificates/example.com", "bundle"));
    CHECK(wait_until([&] { return events->has(change_kind::put, "certificates/example.com"); },
                     report_deadline));
}

TEST_CASE("a value written directly to the directory with rename is reported", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());
    auto events = std::make_shared<event_recorder>();
    const auto handle = watch_into(*store, "certificates/", events);

    operator_copies_in(dir.path(), "certificates/ops.example.com", "{}");
    CHECK(wait_until([&] { return events->has(change_kind::put, "certificates/ops.example.com"); },
                     report_deadline));
    CHECK(store->get("certificates/ops.example.com").value() == "{}");
}

TEST_CASE("a value replaced and then removed is reported as put and removed", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());
    REQUIRE(store->put("certificates/example.com", "old"));
    auto events = std::make_shared<event_recorder>();
    const auto handle = watch_into(*store, "", events);

    REQUIRE(store->put("certificates/example.com", "new"));
    REQUIRE(wait_until([&] { return events->has(change_kind::put, "certificates/example.com"); },
                       report_deadline));
    REQUIRE(store->remove("certificates/example.com"));
    CHECK(wait_until([&] { return events->has(change_kind::removed, "certificates/example.com"); },
                     report_deadline));
}

TEST_CASE("a watch reports only keys under its prefix", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());
    auto certificates = std::make_shared<event_recorder>();
    auto everything = std::make_shared<event_recorder>();
    const auto narrow = watch_into(*store, "certificates/", certificates);
    const auto wide = watch_into(*store, "", everything);

    REQUIRE(store->put("accounts/ca", "account"));
    REQUIRE(store->put("certificates/example.com", "bundle"));
    REQUIRE(wait_until([&] { return everything->size() >= 2; }, report_deadline));
    REQUIRE(wait_until([&] { return certificates->size() >= 1; }, report_deadline));
    CHECK_FALSE(certificates->saw_key("accounts/ca"));
    CHECK(everything->saw_key("accounts/ca"));
}

TEST_CASE("temporary files and lock records never trigger events", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());
    auto events = std::make_shared<event_recorder>();
    const auto handle = watch_into(*store, "", events);

    std::filesystem::create_directories(dir.path() / "certificates");
    std::ofstream(dir.path() / "certificates" / ".example.com.entry.tmp-00000000000000ff")
        << "half";
    REQUIRE(store->try_lock("certificates/example.com", 30s).value().has_value());
    // A later, visible change proves the scans covering the temporary file have happened.
    REQUIRE(store->put("marker", "m"));
    REQUIRE(wait_until([&] { return events->saw_key("marker"); }, report_deadline));

    for (const auto& event : events->events()) {
        CHECK(event.key == "marker");
    }
}

TEST_CASE("a watch with an invalid prefix is refused", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());
    const auto refused = store->watch("../", [](const change_event&) {});
    REQUIRE_FALSE(refused);
    CHECK(refused.error() == errc::invalid_key);
}

TEST_CASE("a destroyed handle gets no more callbacks", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());
    auto stopped = std::make_shared<event_recorder>();
    auto sentinel = std::make_shared<event_recorder>();
    auto handle = watch_into(*store, "", stopped);
    const auto sentinel_handle = watch_into(*store, "", sentinel);

    handle.reset();
    REQUIRE(store->put("certificates/example.com", "bundle"));
    // Both watches are called in the same dispatch, so once the sentinel has heard of the put
    // the destroyed one would have too.
    REQUIRE(
        wait_until([&] { return sentinel->saw_key("certificates/example.com"); }, report_deadline));
    CHECK(stopped->size() == 0);
}

TEST_CASE("destroying a handle waits for its running callback to return", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());
    std::atomic<bool> entered{false};
    std::atomic<bool> returned{false};
    auto handle = store->watch("", [&](const change_event&) {
        entered = true;
        std::this_thread::sleep_for(200ms);
        returned = true;
    });
    REQUIRE(handle);

    REQUIRE(store->put("k", "v"));
    REQUIRE(wait_until([&] { return entered.load(); }, report_deadline));
    handle->reset();
    CHECK(returned);
}

TEST_CASE("a callback may destroy its own handle without deadlocking", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());
    CHECK(calls_to_a_watch_that_ends_itself(*store, report_deadline) == 1);
}

TEST_CASE("a watch hears resync after its directory vanished and came back", "[store]")
{
    temporary_directory dir;
    const auto root = dir.path() / "store";
    auto store = open_store(root);
    auto events = std::make_shared<event_recorder>();
    const auto handle = watch_into(*store, "certificates/", events);

    std::filesystem::rename(root, dir.path() / "away");
    // Long enough for a scan to fail: inotify reports the move at once, polling within 500 ms.
    std::this_thread::sleep_for(600ms);
    std::filesystem::rename(dir.path() / "away", root);

    CHECK(wait_until([&] { return events->has(change_kind::resync, ""); }, report_deadline));
}

TEST_CASE("a handle may outlive its store", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());
    auto events = std::make_shared<event_recorder>();
    auto handle = watch_into(*store, "", events);
    store.reset();
    handle.reset();
    SUCCEED("destroyed in that order without a crash");
}
