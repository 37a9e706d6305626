// Tests for the file backend's values: round trips, the layout and permissions on disk,
// refusing a directory it cannot write, and never showing a half-written value.
#include "store/file_store.hpp"
#include "tests/unit/store/store_test_support.hpp"

#include <atomic>
#include <csignal>
#include <fstream>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#include <catch2/catch.hpp>

using gatehouse::store::errc;
using gatehouse::store::open_file_store;
using gatehouse::store::testing::open_store;
using gatehouse::store::testing::temporary_directory;

namespace {

mode_t permissions_of(const std::filesystem::path& path)
{
    struct stat status;
    REQUIRE(::stat(path.c_str(), &status) == 0);
    return status.st_mode & 07777;
}

void write_raw(const std::filesystem::path& path, const std::string& content)
{
    std::ofstream out(path, std::ios::binary);
    out << content;
    REQUIRE(out.good());
}

} // namespace

TEST_CASE("a value put can be read back, replaced and removed", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());

    REQUIRE(store->put("certificates/example.com", "first"));
    CHECK(store->get("certificates/example.com").value() == "first");

    REQUIRE(store->put("certificates/example.com", "second"));
    CHECK(store->get("certificates/example.com").value() == "second");

    REQUIRE(store->remove("certificates/example.com"));
    CHECK(store->get("certificates/example.com").value() == std::nullopt);
}

TEST_CASE("a missing key reads as empty and removing it succeeds", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());

    const auto missing = store->get("certificates/nowhere.example");
    REQUIRE(missing);
    CHECK_FALSE(missing->has_value());
    CHECK(store->remove("certificates/nowhere.example"));
    CHECK(store->remove("never/created/below"));
}

TEST_CASE("values are kept byte for byte, empty and binary ones included", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());
    const std::string binary("\0\x01\xff\n\r binary", 12);
    const std::string large(1 << 20, 'x');

    REQUIRE(store->put("a/binary", binary));
    REQUIRE(store->put("a/empty", ""));
    REQUIRE(store->put("a/large", large));
    CHECK(store->get("a/binary").value() == binary);
    CHECK(store->get("a/empty").value() == std::string());
    CHECK(store->get("a/large").value() == large);
}

TEST_CASE("a key and a key below it can both hold values", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());

    REQUIRE(store->put("a", "parent"));
    REQUIRE(store->put("a/b", "child"));
    CHECK(store->get("a").value() == "parent");
    CHECK(store->get("a/b").value() == "child");
}

TEST_CASE("list returns every key under a prefix at any depth, sorted", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());
    for (const char* key : {"certificates/b.example", "certificates/*.a.example",
                            "certificates/a.example", "accounts/ca-1", "certificates/x/deep"}) {
        REQUIRE(store->put(key, "v"));
    }

    using list = std::vector<std::string>;
    CHECK(store->list("certificates/").value() ==
          list{"certificates/*.a.example", "certificates/a.example", "certificates/b.example",
               "certificates/x/deep"});
    CHECK(store->list("certificates/a").value() == list{"certificates/a.example"});
    CHECK(store->list("accounts").value() == list{"accounts/ca-1"});
    CHECK(store->list("").value().size() == 5);
    CHECK(store->list("challenges/").value().empty());
    CHECK(store->list("certificates/a.example/").value().empty());
}

TEST_CASE("a wildcard certificate name is stored under its own key", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());

    REQUIRE(store->put("certificates/*.example.com", "wildcard"));
    REQUIRE(store->put("certificates/a.example.com", "exact"));
    CHECK(store->get("certificates/*.example.com").value() == "wildcard");
    CHECK(std::filesystem::exists(dir.path() / "certificates" / "*.example.com.entry"));
}

TEST_CASE("invalid keys are refused by every operation", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());

    for (const char* key : {"", "/abs", "a/../b", "..", "a//b", "a/.hidden", "a b"}) {
        INFO(key);
        CHECK(store->get(key).error() == errc::invalid_key);
        CHECK(store->put(key, "v").error() == errc::invalid_key);
        CHECK(store->remove(key).error() == errc::invalid_key);
    }
    CHECK(store->list("../").error() == errc::invalid_key);
    CHECK(store->try_lock("../x", std::chrono::seconds(5)).error() == errc::invalid_key);
    CHECK_FALSE(std::filesystem::exists(dir.path().parent_path() / "b.entry"));
}

TEST_CASE("values are files of mode 0600 in directories of mode 0700", "[store]")
{
    temporary_directory dir;
    const auto root = dir.path() / "store";
    const mode_t old_umask = ::umask(0);
    auto store = open_store(root);
    REQUIRE(store->put("certificates/example.com", "secret"));
    REQUIRE(store->try_lock("certificates/example.com", std::chrono::seconds(5)).value());
    ::umask(old_umask);

    CHECK(permissions_of(root) == 0700);
    CHECK(permissions_of(root / "certificates") == 0700);
    CHECK(permissions_of(root / "certificates" / "example.com.entry") == 0600);
    CHECK(permissions_of(root / ".locks") == 0700);
    CHECK(permissions_of(root / ".locks" / "certificates") == 0700);
    CHECK(permissions_of(root / ".locks" / "certificates" / "example.com.lock") == 0600);
}

TEST_CASE("opening an existing directory of ours restricts it to 0700", "[store]")
{
    temporary_directory dir;
    REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
    auto store = open_store(dir.path());
    CHECK(permissions_of(dir.path()) == 0700);
}

TEST_CASE("opening creates missing parent directories", "[store]")
{
    temporary_directory dir;
    const auto root = dir.path() / "var" / "lib" / "gatehouse";
    auto store = open_store(root);
    CHECK(std::filesystem::is_directory(root));
    CHECK(store->describe() == "file:" + root.string());
}

TEST_CASE("a directory that cannot be created is refused with a message naming it", "[store]")
{
    // Root ignores permission bits, so the failure used is one root cannot get past either: a
    // path whose parent is a regular file (ENOTDIR).
    temporary_directory dir;
    write_raw(dir.path() / "plain-file", "not a directory");
    const auto root = dir.path() / "plain-file" / "store";

    std::string why;
    const auto opened = open_file_store(root, &why);
    REQUIRE_FALSE(opened);
    CHECK(opened.error() == errc::not_writable);
    CHECK(why.find(root.string()) != std::string::npos);
    CHECK(why.find("Not a directory") != std::string::npos);
}

TEST_CASE("a store path that is a regular file is refused", "[store]")
{
    temporary_directory dir;
    write_raw(dir.path() / "plain-file", "not a directory");

    std::string why;
    const auto opened = open_file_store(dir.path() / "plain-file", &why);
    REQUIRE_FALSE(opened);
    CHECK(opened.error() == errc::not_writable);
    CHECK(why.find("is not a directory") != std::string::npos);
}

TEST_CASE("a directory whose probe file cannot be written is refused", "[store]")
{
    // Root writes through permission bits, but not through a file size limit: with
    // RLIMIT_FSIZE at 0 (and SIGXFSZ ignored) the probe's write fails with EFBIG.
    temporary_directory dir;
    rlimit saved;
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
    const auto saved_handler = std::signal(SIGXFSZ, SIG_IGN);
    rlimit no_writes = saved;
    no_writes.rlim_cur = 0;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &no_writes) == 0);

    std::string why;
    const auto opened = open_file_store(dir.path(), &why);
    ::setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, saved_handler);

    REQUIRE_FALSE(opened);
    CHECK(opened.error() == errc::not_writable);
    CHECK(why == "store directory " + dir.path().string() + " is not writable: File too large");
    CHECK(std::filesystem::is_empty(dir.path()));
}

TEST_CASE("a directory that permissions forbid creating is refused", "[store]")
{
    if (::geteuid() == 0) {
        SUCCEED("running as root: permission bits do not stop writes");
        return;
    }
    temporary_directory dir;
    const auto parent = dir.path() / "readonly";
    std::filesystem::create_directory(parent);
    std::filesystem::permissions(parent, std::filesystem::perms::owner_read |
                                             std::filesystem::perms::owner_exec);
    std::string why;
    const auto opened = open_file_store(parent / "store", &why);
    std::filesystem::permissions(parent, std::filesystem::perms::owner_all);
    REQUIRE_FALSE(opened);
    CHECK(opened.error() == errc::not_writable);
    CHECK(why.find("Permission denied") != std::string::npos);
}

TEST_CASE("a temporary file left by a crashed write is neither listed nor read", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());
    REQUIRE(store->put("certificates/example.com", "complete"));

    // What a writer that died between write() and rename() leaves behind.
    const auto certificates = dir.path() / "certificates";
    write_raw(certificates / ".example.com.entry.tmp-0123456789abcdef", "compl");
    write_raw(certificates / ".other.example.entry.tmp-0123456789abcdef", "half");

    CHECK(store->list("certificates/").value() ==
          std::vector<std::string>{"certificates/example.com"});
    CHECK(store->get("certificates/example.com").value() == "complete");
    CHECK(store->get("certificates/other.example").value() == std::nullopt);
}

TEST_CASE("files without the entry suffix are not keys", "[store]")
{
    temporary_directory dir;
    auto store = open_store(dir.path());
    std::filesystem::create_directories(dir.path() / "certificates");
    write_raw(dir.path() / "certificates" / "README", "operator notes");
    write_raw(dir.path() / "certificates" / "bad name.entry", "odd");

    CHECK(store->list("").value().empty());
}

TEST_CASE("opening removes old temporary files and probes, and keeps the rest", "[store]")
{
    temporary_directory dir;
    std::filesystem::create_directories(dir.path() / "certificates");
    const auto old_temporary = dir.path() / "certificates" / ".a.entry.tmp-00000000000000aa";
    const auto new_temporary = dir.path() / "certificates" / ".b.entry.tmp-00000000000000bb";
    const auto old_probe = dir.path() / ".probe-00000000000000cc";
    const auto entry = dir.path() / "certificates" / "c.entry";
    const auto an_hour_ago = std::filesystem::file_time_type::clock::now() - std::chrono::hours(1);
    for (const auto& path : {old_temporary, new_temporary, old_probe, entry}) {
        write_raw(path, "x");
    }
    for (const auto& path : {old_temporary, old_probe, entry}) {
        std::filesystem::last_write_time(path, an_hour_ago);
    }

    auto store = open_store(dir.path());
    CHECK_FALSE(std::filesystem::exists(old_temporary));
    CHECK_FALSE(std::filesystem::exists(old_probe));
    CHECK(std::filesystem::exists(new_temporary));
    CHECK(std::filesystem::exists(entry));
}

TEST_CASE("readers never see a partial value while another thread replaces it", "[store]")
{
    temporary_directory dir;
    auto writer = open_store(dir.path());
    auto reader = open_store(dir.path());
    const std::string small(10, 'a');
    const std::string big(256 * 1024, 'b');
    REQUIRE(writer->put("k", small));

    std::atomic<bool> done{false};
    std::thread writing([&] {
        for (int i = 0; i < 40; ++i) {
            (void)writer->put("k", i % 2 == 0 ? big : small);
        }
        done = true;
    });
    std::size_t torn = 0;
    std::size_t reads = 0;
    while (!done) {
        const auto value = reader->get("k");
        ++reads;
        if (!value || !*value || (**value != small && **value != big)) {
            ++torn;
        }
    }
    writing.join();
    CHECK(reads > 0);
    CHECK(torn == 0);
}
