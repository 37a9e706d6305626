// Tests for encryption at rest: the decorator over a real file store (what reaches the disk,
// what stays clear, rotation, tampering, legacy values, rewrapping) and the key file's rules.
#include "store/encrypted_store.hpp"
#include "store/keys.hpp"
#include "tests/unit/store/store_test_support.hpp"

#include <fstream>
#include <sstream>
#include <string>
#include <sys/stat.h>

#include <catch2/catch.hpp>

using gatehouse::store::encrypted_store;
using gatehouse::store::encryption_key;
using gatehouse::store::errc;
using gatehouse::store::holds_secret;
using gatehouse::store::key_ring;
using gatehouse::store::load_key_ring;
using gatehouse::store::testing::open_store;
using gatehouse::store::testing::temporary_directory;
namespace keys = gatehouse::store::keys;

namespace {

// A certificate bundle as the certificate manager writes it, private key and all.
const std::string bundle = R"({"names":["example.com"],"issuer":"internal",)"
                           R"("certificate_chain_pem":"-----BEGIN CERTIFICATE-----\nMIIB\n",)"
                           R"("private_key_pem":"-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n"})";

std::array<unsigned char, encryption_key::size_bytes> filled_with(unsigned char byte)
{
    std::array<unsigned char, encryption_key::size_bytes> bytes;
    bytes.fill(byte);
    return bytes;
}

const encryption_key key_a(filled_with(0xaa));
const encryption_key key_b(filled_with(0xbb));

key_ring ring_of(std::initializer_list<encryption_key> keys)
{
    return key_ring{std::vector<encryption_key>(keys)};
}

std::unique_ptr<encrypted_store> encrypted_over(const temporary_directory& dir, key_ring ring)
{
    return std::make_unique<encrypted_store>(open_store(dir.path()), std::move(ring));
}

std::string file_text(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

std::filesystem::path write_key_file(const temporary_directory& dir, const std::string& content,
                                     mode_t mode = 0600)
{
    const auto path = dir.path() / "keys";
    std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
    REQUIRE(::chmod(path.c_str(), mode) == 0);
    return path;
}

std::string hex_of(unsigned char byte)
{
    constexpr char digits[] = "0123456789abcdef";
    std::string text;
    for (std::size_t i = 0; i < encryption_key::size_bytes; ++i) {
        text += digits[byte >> 4];
        text += digits[byte & 0x0f];
    }
    return text;
}

// The reason load_key_ring gives for refusing `content` written with `mode`.
std::string refusal_of(const std::string& content, mode_t mode = 0600)
{
    temporary_directory dir;
    const auto path = write_key_file(dir, content, mode);
    std::string why;
    const auto ring = load_key_ring(path, &why);
    REQUIRE_FALSE(ring);
    CHECK(ring.error() == errc::invalid_argument);
    CHECK_THAT(why, Catch::Contains(path.string()));
    return why;
}

} // namespace

TEST_CASE("a key's id is the first 16 hex digits of SHA-256 of its bytes", "[store]")
{
    // SHA-256 of 32 zero bytes is 66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925.
    CHECK(encryption_key(filled_with(0)).id() == "66687aadf862bd77");
    CHECK(key_a.id() != key_b.id());
}

TEST_CASE("certificates, accounts and the internal CA are secret; challenges are not", "[store]")
{
    CHECK(holds_secret(keys::certificate("example.com")));
    CHECK(holds_secret(keys::certificate("*.example.com")));
    CHECK(holds_secret(keys::account("https://acme.example/directory")));
    CHECK(holds_secret(keys::internal_ca()));
    CHECK_FALSE(holds_secret(keys::challenge_token("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0")));
    CHECK_FALSE(holds_secret("certificatesx/example.com"));
}

TEST_CASE("a secret value reads back as written and reaches the disk sealed", "[store]")
{
    temporary_directory dir;
    auto store = encrypted_over(dir, ring_of({key_a}));

    const auto key =
        GENERATE(std::string("certificates/example.com"),
                 std::string("accounts/acme.example-0123456789abcdef"), std::string("ca/internal"));
    REQUIRE(store->put(key, bundle));
    CHECK(store->get(key).value() == bundle);

    const auto on_disk = file_text(dir.path() / (key + ".entry"));
    INFO(on_disk);
    CHECK(on_disk.starts_with("gatehouse-encrypted:v1:" + key_a.id() + ":"));
    CHECK(on_disk.find("PRIVATE KEY") == std::string::npos);
    CHECK(on_disk.find("example.com") == std::string::npos);
    CHECK(on_disk.find('\n') == std::string::npos);

    // A fresh nonce per write: the same value never seals to the same text twice.
    REQUIRE(store->put(key, bundle));
    CHECK(file_text(dir.path() / (key + ".entry")) != on_disk);
    CHECK(store->get(key).value() == bundle);
}

TEST_CASE("an empty secret value round-trips too", "[store]")
{
    temporary_directory dir;
    auto store = encrypted_over(dir, ring_of({key_a}));
    REQUIRE(store->put("ca/internal", ""));
    CHECK(store->get("ca/internal").value() == std::string());
}

TEST_CASE("challenge tokens are stored in the clear", "[store]")
{
    temporary_directory dir;
    auto store = encrypted_over(dir, ring_of({key_a}));
    const auto key = keys::challenge_token("token-1");
    REQUIRE(store->put(key, "token-1.thumbprint"));
    CHECK(file_text(dir.path() / (key + ".entry")) == "token-1.thumbprint");
    CHECK(store->get(key).value() == "token-1.thumbprint");
}

TEST_CASE("listing, removal, locks and describe pass through the encrypted store", "[store]")
{
    temporary_directory dir;
    auto store = encrypted_over(dir, ring_of({key_a}));
    REQUIRE(store->put("certificates/a.example", bundle));
    REQUIRE(store->put("certificates/b.example", bundle));
    CHECK(store->list("certificates/").value() ==
          std::vector<std::string>{"certificates/a.example", "certificates/b.example"});
    REQUIRE(store->remove("certificates/a.example"));
    CHECK(store->get("certificates/a.example").value() == std::nullopt);
    CHECK(store->get("certificates/missing.example").value() == std::nullopt);

    const auto lease = store->try_lock("certificates/b.example", std::chrono::seconds(5));
    REQUIRE(lease);
    REQUIRE(lease->has_value());
    CHECK(store->refresh(**lease));
    CHECK(store->unlock(**lease));

    CHECK(store->describe() == "file:" + dir.path().string() + ", encrypted");
    CHECK(store->put("certificates/../x", bundle).error() == errc::invalid_key);
    CHECK(store->get("certificates/../x").error() == errc::invalid_key);
}

TEST_CASE("a rotated ring still opens values sealed with an older key", "[store]")
{
    temporary_directory dir;
    REQUIRE(encrypted_over(dir, ring_of({key_a}))->put("certificates/example.com", bundle));

    SECTION("the old key second in the ring opens it, and new writes use the first key")
    {
        auto rotated = encrypted_over(dir, ring_of({key_b, key_a}));
        CHECK(rotated->get("certificates/example.com").value() == bundle);
        REQUIRE(rotated->put("certificates/example.com", bundle));
        const auto on_disk = file_text(dir.path() / "certificates/example.com.entry");
        CHECK(on_disk.starts_with("gatehouse-encrypted:v1:" + key_b.id() + ":"));
        CHECK(encrypted_over(dir, ring_of({key_b}))->get("certificates/example.com").value() ==
              bundle);
    }
    SECTION("without the old key the value is corrupt")
    {
        auto rotated = encrypted_over(dir, ring_of({key_b}));
        CHECK(rotated->get("certificates/example.com").error() == errc::corrupt);
    }
}

TEST_CASE("a sealed value that was tampered with is corrupt", "[store]")
{
    temporary_directory dir;
    auto store = encrypted_over(dir, ring_of({key_a}));
    REQUIRE(store->put("certificates/example.com", bundle));
    auto plain = open_store(dir.path());
    const std::string sealed = plain->get("certificates/example.com").value().value();
    const std::string head = "gatehouse-encrypted:v1:" + key_a.id() + ":";

    auto altered = sealed;
    SECTION("one character of the ciphertext changed")
    {
        auto& c = altered[head.size() + 30];
        c = c == 'A' ? 'B' : 'A';
    }
    SECTION("one character of the tag changed")
    {
        auto& c = altered[altered.size() - 5];
        c = c == 'A' ? 'B' : 'A';
    }
    SECTION("truncated")
    {
        altered.resize(head.size() + 20);
    }
    SECTION("a key id no key has")
    {
        altered.replace(head.size() - 17, 16, "0123456789abcdef");
    }
    SECTION("an unknown version")
    {
        altered.replace(0, head.size() - 17, "gatehouse-encrypted:v9:");
    }
    SECTION("not base64")
    {
        altered.replace(head.size() + 8, 1, "!");
    }
    SECTION("only the envelope's head")
    {
        altered = head;
    }

    REQUIRE(altered != sealed);
    REQUIRE(plain->put("certificates/example.com", altered));
    CHECK(store->get("certificates/example.com").error() == errc::corrupt);
}

TEST_CASE("a sealed value copied under another key does not open", "[store]")
{
    temporary_directory dir;
    auto store = encrypted_over(dir, ring_of({key_a}));
    REQUIRE(store->put("certificates/a.example", bundle));
    auto plain = open_store(dir.path());
    const auto sealed = plain->get("certificates/a.example").value().value();
    REQUIRE(plain->put("certificates/b.example", sealed));
    REQUIRE(plain->put("ca/internal", sealed));
    CHECK(store->get("certificates/b.example").error() == errc::corrupt);
    CHECK(store->get("ca/internal").error() == errc::corrupt);
    CHECK(store->get("certificates/a.example").value() == bundle);
}

TEST_CASE("a value written before encryption was switched on reads as it is", "[store]")
{
    temporary_directory dir;
    REQUIRE(open_store(dir.path())->put("certificates/example.com", bundle));
    auto store = encrypted_over(dir, ring_of({key_a}));
    CHECK(store->get("certificates/example.com").value() == bundle);

    // Its next write seals it.
    REQUIRE(store->put("certificates/example.com", bundle));
    CHECK(file_text(dir.path() / "certificates/example.com.entry").find("PRIVATE KEY") ==
          std::string::npos);
    CHECK(store->get("certificates/example.com").value() == bundle);
}

TEST_CASE("rewrapping seals every secret value with the first key of the ring", "[store]")
{
    temporary_directory dir;
    REQUIRE(open_store(dir.path())->put("accounts/acme.example-0123456789abcdef", bundle));
    REQUIRE(encrypted_over(dir, ring_of({key_a}))->put("certificates/a.example", bundle));
    REQUIRE(encrypted_over(dir, ring_of({key_b}))->put("certificates/b.example", bundle));
    REQUIRE(open_store(dir.path())->put("challenges/token-1", "clear"));

    auto rotated = encrypted_over(dir, ring_of({key_b, key_a}));
    const auto lease = rotated->try_lock("ca/internal", std::chrono::seconds(30));
    REQUIRE(lease);
    REQUIRE(lease->has_value());
    REQUIRE(open_store(dir.path())->put("ca/internal", bundle));

    const auto outcome = rotated->rewrap_all();
    REQUIRE(outcome);
    CHECK(outcome->rewritten == 2);
    CHECK(outcome->busy == std::vector<std::string>{"ca/internal"});

    // Key A can leave the ring now; the locked value is still as it was.
    auto only_b = encrypted_over(dir, ring_of({key_b}));
    for (const auto* key : {"accounts/acme.example-0123456789abcdef", "certificates/a.example",
                            "certificates/b.example"}) {
        INFO(key);
        CHECK(only_b->get(key).value() == bundle);
    }
    CHECK(file_text(dir.path() / "ca/internal.entry") == bundle);
    CHECK(file_text(dir.path() / "challenges/token-1.entry") == "clear");
    REQUIRE(rotated->unlock(**lease));
    CHECK(rotated->rewrap_all().value().rewritten == 1);
    CHECK(rotated->rewrap_all().value().rewritten == 0);
}

TEST_CASE("rewrapping stops at a value no key of the ring opens", "[store]")
{
    temporary_directory dir;
    REQUIRE(encrypted_over(dir, ring_of({key_a}))->put("certificates/a.example", bundle));
    CHECK(encrypted_over(dir, ring_of({key_b}))->rewrap_all().error() == errc::corrupt);
    CHECK(encrypted_over(dir, ring_of({key_a}))->get("certificates/a.example").value() == bundle);
}

TEST_CASE("an encrypted store needs at least one key", "[store]")
{
    temporary_directory dir;
    CHECK_THROWS_AS(encrypted_store(open_store(dir.path()), key_ring{}), std::invalid_argument);
}

TEST_CASE("a key file holds keys in hex or base64, first key first", "[store]")
{
    temporary_directory dir;
    // 32 bytes of 0xbb in base64, as `openssl rand -base64 32` prints a key.
    const std::string b_base64 = "u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7s=";
    const auto path = write_key_file(dir, "# the current key first\n\n  " + b_base64 +
                                              "  \r\n# the old one\n" + hex_of(0xaa) + "\n");
    std::string why;
    const auto ring = load_key_ring(path, &why);
    INFO(why);
    REQUIRE(ring);
    REQUIRE(ring->keys.size() == 2);
    CHECK(ring->keys[0].id() == key_b.id());
    CHECK(ring->keys[1].id() == key_a.id());

    // Upper-case hex and a file without a final newline are fine too, and 0400 is private.
    const auto upper = write_key_file(
        dir, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 0400);
    REQUIRE(load_key_ring(upper).value().keys.front().id() == key_a.id());
}

TEST_CASE("a key file others could read is refused", "[store]")
{
    for (const mode_t mode : {0644, 0640, 0604, 0620, 0602}) {
        const auto why = refusal_of(hex_of(0xaa) + "\n", mode);
        CHECK_THAT(why, Catch::Contains("chmod 600"));
    }
}

TEST_CASE("a key file with a line that is not a key names the line and not its text", "[store]")
{
    const std::string secretish = hex_of(0xaa).substr(0, 63);
    const auto why = refusal_of("# keys\n" + hex_of(0xbb) + "\n" + secretish + "\n");
    CHECK_THAT(why, Catch::Contains(":3: not a key"));
    CHECK_THAT(why, !Catch::Contains(secretish));
    CHECK_THAT(why, !Catch::Contains(hex_of(0xbb)));

    CHECK_THAT(refusal_of(hex_of(0xaa) + "0\n"), Catch::Contains(":1: not a key"));
    CHECK_THAT(refusal_of("u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7s\n"),
               Catch::Contains(":1: not a key"));
    CHECK_THAT(refusal_of("u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7u7\n"),
               Catch::Contains(":1: not a key"));
    CHECK_THAT(refusal_of(hex_of(0xaa) + " # comment\n"), Catch::Contains(":1: not a key"));
}

TEST_CASE("a key file without keys or with a key twice is refused", "[store]")
{
    CHECK_THAT(refusal_of(""), Catch::Contains("holds no key"));
    CHECK_THAT(refusal_of("# nothing yet\n\n"), Catch::Contains("holds no key"));
    CHECK_THAT(refusal_of(hex_of(0xaa) + "\n" + hex_of(0xbb) + "\n" + hex_of(0xaa) + "\n"),
               Catch::Contains(":3: the same key as line 1"));
}

TEST_CASE("a key file that cannot be read is an I/O failure naming it", "[store]")
{
    temporary_directory dir;
    std::string why;
    const auto ring = load_key_ring(dir.path() / "missing", &why);
    REQUIRE_FALSE(ring);
    CHECK(ring.error() == errc::io_failed);
    CHECK_THAT(why, Catch::Contains((dir.path() / "missing").string()));
    CHECK_THAT(why, Catch::Contains("No such file"));

    const auto folder = load_key_ring(dir.path(), &why);
    REQUIRE_FALSE(folder);
    CHECK_THAT(why, Catch::Contains("not a regular file"));
}
