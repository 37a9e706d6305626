// Tests for the sans-io response head reading: where a head ends (find_head_end), and the
// framing and syntax rules parse_response_head holds an upstream's response to.
#include "proxy/response_head.hpp"
#include "tests/unit/proxy/head_text.hpp"

#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>

#include <catch2/catch.hpp>

using gatehouse::proxy::find_field;
using gatehouse::proxy::find_head_end;
using gatehouse::proxy::head_end;
using gatehouse::proxy::parse_response_head;

using gatehouse::proxy::testing::head_of;

namespace {

head_end end_at_once(std::string_view bytes)
{
    std::size_t scanned = 0;
    return find_head_end(bytes, scanned);
}

// Only whether the head was accepted; tests that read the views keep the head in a string.
bool is_accepted(std::string_view head)
{
    return parse_response_head(head).head.has_value();
}

} // namespace

TEST_CASE("find_head_end finds the empty line and not the body after it", "[proxy]")
{
    const std::string head = head_of({"HTTP/1.1 200 OK", "Content-Length: 4"});
    const std::string bytes = head + "\r\n\r\n";
    auto end = end_at_once(bytes);
    CHECK(end.status == head_end::state::complete);
    CHECK(end.length == head.size());

    CHECK(end_at_once("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n").status ==
          head_end::state::incomplete);
    CHECK(end_at_once("HTTP/1.1 200 OK\r\n\r").status == head_end::state::incomplete);
    CHECK(end_at_once("").status == head_end::state::incomplete);
}

TEST_CASE("find_head_end resumes where it stopped and finds the same end", "[proxy]")
{
    const std::string head = head_of({"HTTP/1.1 204 No Content", "X-A: b"});
    std::size_t scanned = 0;
    head_end end;
    std::size_t calls = 0;
    for (std::size_t length = 1; length <= head.size(); ++length) {
        ++calls;
        end = find_head_end(std::string_view(head).substr(0, length), scanned);
        if (end.status != head_end::state::incomplete) {
            break;
        }
        // Each call picks up after the bytes the previous one saw.
        CHECK(scanned == length);
    }
    CHECK(calls == head.size());
    CHECK(end.status == head_end::state::complete);
    CHECK(end.length == head.size());
}

TEST_CASE("find_head_end reports a LF without its CR at once", "[proxy]")
{
    CHECK(end_at_once("HTTP/1.1 200 OK\nContent-Length: 0\n\n").status ==
          head_end::state::malformed);
    CHECK(end_at_once("HTTP/1.1 200 OK\r\nX: y\n").status == head_end::state::malformed);
    CHECK(end_at_once("\n").status == head_end::state::malformed);
}

TEST_CASE("a valid response head yields its status, reason, fields and framing", "[proxy]")
{
    SECTION("a length")
    {
        const std::string head =
            head_of({"HTTP/1.1 200 OK", "content-LENGTH:  12 ", "X-Multi: a", "X-Multi: b"});
        auto parsed = parse_response_head(head);
        REQUIRE(parsed.head);
        CHECK(parsed.head->version == 11);
        CHECK(parsed.head->status == 200);
        CHECK(parsed.head->reason == "OK");
        REQUIRE(parsed.head->content_length);
        CHECK(*parsed.head->content_length == 12);
        CHECK_FALSE(parsed.head->chunked);
        CHECK(parsed.head->keep_alive);
        REQUIRE(parsed.head->fields.size() == 3);
        CHECK(parsed.head->fields[0].value == "12");
        CHECK(parsed.head->fields[2].name == "X-Multi");
        CHECK(parsed.head->fields[2].value == "b");
        const auto* multi = find_field(parsed.head->fields, "x-multi");
        REQUIRE(multi != nullptr);
        CHECK(multi->value == "a");
    }
    SECTION("chunked, and a reason with spaces")
    {
        const std::string head =
            head_of({"HTTP/1.1 404 Not Found Here", "Transfer-Encoding: Chunked"});
        auto parsed = parse_response_head(head);
        REQUIRE(parsed.head);
        CHECK(parsed.head->status == 404);
        CHECK(parsed.head->reason == "Not Found Here");
        CHECK(parsed.head->chunked);
        CHECK_FALSE(parsed.head->content_length);
    }
    SECTION("neither: the body runs until the connection closes")
    {
        const std::string head = head_of({"HTTP/1.1 200 OK", "Server: x"});
        auto parsed = parse_response_head(head);
        REQUIRE(parsed.head);
        CHECK_FALSE(parsed.head->chunked);
        CHECK_FALSE(parsed.head->content_length);
    }
    SECTION("no reason, with or without the space before it")
    {
        for (std::string_view line : {"HTTP/1.1 503", "HTTP/1.1 503 "}) {
            const std::string head = head_of({line, "Content-Length: 0"});
            auto parsed = parse_response_head(head);
            REQUIRE(parsed.head);
            CHECK(parsed.head->status == 503);
            CHECK(parsed.head->reason.empty());
        }
    }
}

TEST_CASE("keep-alive follows the version and the Connection field", "[proxy]")
{
    auto keep_alive = [](std::initializer_list<std::string_view> lines) {
        const std::string head = head_of(lines);
        auto parsed = parse_response_head(head);
        REQUIRE(parsed.head);
        return parsed.head->keep_alive;
    };
    CHECK(keep_alive({"HTTP/1.1 200 OK"}));
    CHECK_FALSE(keep_alive({"HTTP/1.1 200 OK", "Connection: Close"}));
    CHECK_FALSE(keep_alive({"HTTP/1.1 200 OK", "Connection: x-custom, close"}));
    CHECK(keep_alive({"HTTP/1.1 200 OK", "Connection: closed"}));
    CHECK_FALSE(keep_alive({"HTTP/1.0 200 OK"}));
    CHECK(keep_alive({"HTTP/1.0 200 OK", "Connection: Keep-Alive"}));
}

TEST_CASE("ambiguous response framing is refused", "[proxy]")
{
    CHECK_FALSE(
        is_accepted(head_of({"HTTP/1.1 200 OK", "Content-Length: 5", "Content-Length: 5"})));
    CHECK_FALSE(is_accepted(
        head_of({"HTTP/1.1 200 OK", "Content-Length: 5", "Transfer-Encoding: chunked"})));
    CHECK_FALSE(is_accepted(head_of({"HTTP/1.1 200 OK", "Transfer-Encoding: gzip"})));
    CHECK_FALSE(is_accepted(head_of({"HTTP/1.1 200 OK", "Transfer-Encoding: gzip, chunked"})));
    CHECK_FALSE(is_accepted(
        head_of({"HTTP/1.1 200 OK", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"})));
    CHECK_FALSE(is_accepted(head_of({"HTTP/1.0 200 OK", "Transfer-Encoding: chunked"})));
    for (std::string_view length : {"", "-1", "+5", "0x10", "5, 5", "1 2", "9999999999999999999"}) {
        CAPTURE(length);
        CHECK_FALSE(
            is_accepted(head_of({"HTTP/1.1 200 OK", "Content-Length: " + std::string(length)})));
    }
    CHECK(is_accepted(head_of({"HTTP/1.1 200 OK", "Content-Length: 0"})));
}

TEST_CASE("malformed response heads are refused", "[proxy]")
{
    // Line ends and bytes.
    CHECK_FALSE(is_accepted("HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n"));
    CHECK_FALSE(is_accepted("HTTP/1.1 200 OK\r\nX-A: a\nX-B: b\r\n\r\n"));
    CHECK_FALSE(is_accepted(std::string("HTTP/1.1 200 OK\r\nX-A: a\0b\r\n\r\n", 27)));
    CHECK_FALSE(is_accepted("HTTP/1.1 200 OK\r\nX-A: a\x7f\r\n\r\n"));
    CHECK(is_accepted("HTTP/1.1 200 OK\r\nX-A: caf\xc3\xa9\tand more\r\n\r\n"));

    // Field lines.
    CHECK_FALSE(is_accepted(head_of({"HTTP/1.1 200 OK", "X-A: one", " two"})));
    CHECK_FALSE(is_accepted(head_of({"HTTP/1.1 200 OK", "X-A : one"})));
    CHECK_FALSE(is_accepted(head_of({"HTTP/1.1 200 OK", "no colon"})));
    CHECK_FALSE(is_accepted(head_of({"HTTP/1.1 200 OK", ": empty name"})));
    CHECK_FALSE(is_accepted(head_of({"HTTP/1.1 200 OK", "X(A): b"})));

    // Status lines.
    for (std::string_view line :
         {"HTTP/1.1 20 OK", "HTTP/1.1 2000 OK", "HTTP/1.1 099 Low", "HTTP/1.1 abc OK",
          "HTTP/1.1  200 OK", "HTTP/1.1 200x", "HTTP/2 200 OK", "HTTP/1.2 200 OK",
          "http/1.1 200 OK", "ICY 200 OK", ""}) {
        CAPTURE(line);
        CHECK_FALSE(is_accepted(head_of({line, "Content-Length: 0"})));
    }

    // Not a whole head.
    CHECK_FALSE(is_accepted("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"));
}
