// Tests for the sans-io request head checks: the byte scanner that finds the end of a head and
// refuses malformed bytes, the framing rules of check_request_head (RFC 9112 section 6), and the
// request target rules of resolve_target and has_dot_segment.
#include "proxy/request_head.hpp"
#include "tests/unit/proxy/head_text.hpp"

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include <catch2/catch.hpp>

using gatehouse::proxy::check_request_head;
using gatehouse::proxy::has_dot_segment;
using gatehouse::proxy::head_scan_result;
using gatehouse::proxy::head_status;
using gatehouse::proxy::request_head_scanner;
using gatehouse::proxy::resolve_target;

using gatehouse::proxy::testing::head_of;

namespace {

constexpr std::size_t default_max_header_bytes = 16 * 1024;
constexpr std::size_t default_max_uri_bytes = 8 * 1024;

head_scan_result scan_at_once(std::string_view bytes,
                              std::size_t max_header_bytes = default_max_header_bytes,
                              std::size_t max_uri_bytes = default_max_uri_bytes)
{
    request_head_scanner scanner(max_header_bytes, max_uri_bytes);
    return scanner.scan(bytes);
}

// Feeds a growing buffer one byte longer each time, as a slow client would, and returns the
// first result that is not `incomplete` (or the last one).
head_scan_result scan_byte_by_byte(std::string_view bytes,
                                   std::size_t max_header_bytes = default_max_header_bytes,
                                   std::size_t max_uri_bytes = default_max_uri_bytes)
{
    request_head_scanner scanner(max_header_bytes, max_uri_bytes);
    head_scan_result result;
    for (std::size_t length = 1; length <= bytes.size(); ++length) {
        result = scanner.scan(bytes.substr(0, length));
        if (result.status != head_status::incomplete) {
            break;
        }
    }
    return result;
}

head_status scan_status(std::string_view bytes)
{
    return scan_at_once(bytes).status;
}

// Only whether the head was accepted: the views in a result point into the head, so tests that
// read them keep the head in a named string.
bool is_accepted(std::string_view head)
{
    return check_request_head(head).head.has_value();
}

} // namespace

// ---------------------------------------------------------------------------------------------
// request_head_scanner

TEST_CASE("a head without its final empty line is incomplete", "[proxy]")
{
    CHECK(scan_status("") == head_status::incomplete);
    CHECK(scan_status("GET") == head_status::incomplete);
    CHECK(scan_status("GET / HTTP/1.1") == head_status::incomplete);
    CHECK(scan_status("GET / HTTP/1.1\r") == head_status::incomplete);
    CHECK(scan_status("GET / HTTP/1.1\r\n") == head_status::incomplete);
    CHECK(scan_status("GET / HTTP/1.1\r\nHost: a\r\n") == head_status::incomplete);
    CHECK(scan_status("GET / HTTP/1.1\r\nHost: a\r\n\r") == head_status::incomplete);
}

TEST_CASE("a head is complete at its empty line, and the body after it is not counted", "[proxy]")
{
    const std::string head = head_of({"POST /upload HTTP/1.1", "Host: a", "Content-Length: 5"});

    auto result = scan_at_once(head + "hello");
    CHECK(result.status == head_status::complete);
    CHECK(result.head_length == head.size());
    CHECK(result.leading_blank_bytes == 0);
    CHECK(result.reason.empty());
}

TEST_CASE("a head fed byte by byte scans the same as a head given at once", "[proxy]")
{
    const std::string inputs[] = {
        head_of({"GET / HTTP/1.1", "Host: a"}),
        "\r\n\r\n" + head_of({"GET /x?y=1 HTTP/1.1", "Host: a", "Accept: */*"}) + "body",
        head_of({"GET / HTTP/1.1", "Host: a\tb"}),
        head_of({"GET / HTTP/1.1", "Host : a"}),
        head_of({"GET / HTTP/1.1", "Host: a", " folded"}),
        std::string("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"),
        std::string("GET / HTTP/1.1\nHost: a\n\n"),
        std::string("GET / HTTP/1.1\r\nHost: a") + '\0' + "b\r\n\r\n",
    };

    for (const auto& input : inputs) {
        INFO("input: " << input);
        auto at_once = scan_at_once(input);
        auto trickled = scan_byte_by_byte(input);
        CHECK(trickled.status == at_once.status);
        CHECK(trickled.head_length == at_once.head_length);
        CHECK(trickled.leading_blank_bytes == at_once.leading_blank_bytes);
    }

    // The list above must hold both accepted and refused heads to mean anything.
    CHECK(scan_status(inputs[0]) == head_status::complete);
    CHECK(scan_status(inputs[3]) == head_status::bad_request);
}

TEST_CASE("empty lines before the request line are skipped and counted", "[proxy]")
{
    // RFC 9112 section 2.2: a server ought to ignore at least one empty line before a request.
    const std::string head = head_of({"GET / HTTP/1.1", "Host: a"});

    SECTION("one empty line")
    {
        auto result = scan_at_once("\r\n" + head);
        REQUIRE(result.status == head_status::complete);
        CHECK(result.leading_blank_bytes == 2);
        CHECK(result.head_length == head.size() + 2);
    }
    SECTION("several empty lines")
    {
        auto result = scan_at_once("\r\n\r\n\r\n" + head);
        REQUIRE(result.status == head_status::complete);
        CHECK(result.leading_blank_bytes == 6);
        CHECK(result.head_length == head.size() + 6);
    }
    SECTION("only empty lines so far")
    {
        CHECK(scan_status("\r\n\r\n") == head_status::incomplete);
    }
}

TEST_CASE("a bare CR or a bare LF makes a head a bad request", "[proxy]")
{
    // RFC 9112 section 2.2: a bare CR must be refused or replaced; gatehouse refuses it, and it
    // refuses lines ended by LF alone too, so no two parsers can split lines differently.
    SECTION("bare CR inside a field value")
    {
        CHECK(scan_status("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n") == head_status::bad_request);
    }
    SECTION("bare CR inside the request line")
    {
        CHECK(scan_status("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n") == head_status::bad_request);
    }
    SECTION("CR CR LF")
    {
        CHECK(scan_status("GET / HTTP/1.1\r\r\nHost: a\r\n\r\n") == head_status::bad_request);
    }
    SECTION("LF ending the request line")
    {
        CHECK(scan_status("GET / HTTP/1.1\nHost: a\r\n\r\n") == head_status::bad_request);
    }
    SECTION("LF ending a field line")
    {
        CHECK(scan_status("GET / HTTP/1.1\r\nHost: a\n\r\n") == head_status::bad_request);
    }
    SECTION("LF as the final empty line")
    {
        CHECK(scan_status("GET / HTTP/1.1\r\nHost: a\r\n\n") == head_status::bad_request);
    }
    SECTION("LF as the first byte")
    {
        CHECK(scan_status("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n") == head_status::bad_request);
    }
    SECTION("the refusal says why")
    {
        CHECK_FALSE(scan_at_once("GET / HTTP/1.1\nHost: a\r\n\r\n").reason.empty());
    }
}

TEST_CASE("NUL and other control bytes make a head a bad request", "[proxy]")
{
    // RFC 9110 section 5.5: field values hold visible characters, SP, HTAB and obs-text only.
    auto with_value_byte = [](char byte) {
        std::string head = "GET / HTTP/1.1\r\nHost: a\r\nX-Test: a";
        head.push_back(byte);
        head += "b\r\n\r\n";
        return head;
    };

    SECTION("refused bytes")
    {
        for (char byte : {'\0', '\x01', '\x08', '\x0b', '\x0c', '\x1b', '\x1f', '\x7f'}) {
            INFO("byte " << static_cast<int>(static_cast<unsigned char>(byte)));
            CHECK(scan_status(with_value_byte(byte)) == head_status::bad_request);
        }
    }
    SECTION("NUL in the request line")
    {
        std::string head = std::string("GET /a") + '\0' + "b HTTP/1.1\r\nHost: a\r\n\r\n";
        CHECK(scan_status(head) == head_status::bad_request);
    }
    SECTION("tab and obs-text are allowed in a value")
    {
        CHECK(scan_status(with_value_byte('\t')) == head_status::complete);
        CHECK(scan_status(with_value_byte('\xe9')) == head_status::complete);
    }
}

TEST_CASE("an obs-fold continuation line makes a head a bad request", "[proxy]")
{
    // RFC 9112 section 5.2: a server must refuse obs-fold or replace it; gatehouse refuses it.
    SECTION("folded with a space")
    {
        CHECK(scan_status(head_of({"GET / HTTP/1.1", "Host: a", "X-Long: one", " two"})) ==
              head_status::bad_request);
    }
    SECTION("folded with a tab")
    {
        CHECK(scan_status(head_of({"GET / HTTP/1.1", "Host: a", "X-Long: one", "\ttwo"})) ==
              head_status::bad_request);
    }
    SECTION("a first field line starting with whitespace")
    {
        CHECK(scan_status(head_of({"GET / HTTP/1.1", " Host: a"})) == head_status::bad_request);
    }
}

TEST_CASE("whitespace between a field name and its colon makes a head a bad request", "[proxy]")
{
    // RFC 9112 section 5.1: a server must answer 400 to whitespace before the colon.
    CHECK(scan_status(head_of({"GET / HTTP/1.1", "Host : a"})) == head_status::bad_request);
    CHECK(scan_status(head_of({"GET / HTTP/1.1", "Host\t: a"})) == head_status::bad_request);
    CHECK(scan_status(head_of({"GET / HTTP/1.1", "Host: a", "Transfer-Encoding : chunked"})) ==
          head_status::bad_request);
}

TEST_CASE("a field line without a token name before a colon makes a head a bad request", "[proxy]")
{
    SECTION("empty field name")
    {
        CHECK(scan_status(head_of({"GET / HTTP/1.1", "Host: a", ": value"})) ==
              head_status::bad_request);
    }
    SECTION("no colon at all")
    {
        CHECK(scan_status(head_of({"GET / HTTP/1.1", "Host: a", "NoColon"})) ==
              head_status::bad_request);
    }
    SECTION("a separator inside the name")
    {
        CHECK(scan_status(head_of({"GET / HTTP/1.1", "Host: a", "X(y): z"})) ==
              head_status::bad_request);
    }
    SECTION("a token name is fine")
    {
        CHECK(scan_status(head_of({"GET / HTTP/1.1", "Host: a", "X-Y_z.1~!#$%&'*+^`|: v"})) ==
              head_status::complete);
    }
}

TEST_CASE("a request target over max_uri_bytes is uri_too_long", "[proxy]")
{
    constexpr std::size_t max_uri_bytes = 64;
    auto request_with_target_of = [](std::size_t length) {
        std::string target = "/" + std::string(length - 1, 'a');
        return head_of({"GET " + target + " HTTP/1.1", "Host: a"});
    };

    SECTION("exactly at the limit is accepted")
    {
        auto result = scan_at_once(request_with_target_of(max_uri_bytes), 16 * 1024, max_uri_bytes);
        CHECK(result.status == head_status::complete);
    }
    SECTION("one byte over is refused, at once")
    {
        auto result =
            scan_at_once(request_with_target_of(max_uri_bytes + 1), 16 * 1024, max_uri_bytes);
        CHECK(result.status == head_status::uri_too_long);
    }
    SECTION("one byte over is refused, byte by byte")
    {
        auto result =
            scan_byte_by_byte(request_with_target_of(max_uri_bytes + 1), 16 * 1024, max_uri_bytes);
        CHECK(result.status == head_status::uri_too_long);
    }
}

TEST_CASE("an endless request line is refused as uri_too_long before it ends", "[proxy]")
{
    constexpr std::size_t max_uri_bytes = 64;
    request_head_scanner scanner(16 * 1024, max_uri_bytes);

    // No CRLF ever arrives; the scanner must give up without waiting for one.
    std::string partial = "GET /" + std::string(max_uri_bytes + 100, 'a');
    auto result = scanner.scan(partial);
    CHECK(result.status == head_status::uri_too_long);
}

TEST_CASE("a head over max_header_bytes is refused as header_too_large before it ends", "[proxy]")
{
    constexpr std::size_t max_header_bytes = 256;
    std::string partial = "GET / HTTP/1.1\r\nHost: a\r\nX-Filler: ";
    partial += std::string(max_header_bytes, 'x');

    SECTION("at once")
    {
        CHECK(scan_at_once(partial, max_header_bytes).status == head_status::header_too_large);
    }
    SECTION("byte by byte, stopping close to the limit")
    {
        request_head_scanner scanner(max_header_bytes, default_max_uri_bytes);
        head_scan_result result;
        std::size_t fed = 0;
        for (fed = 1; fed <= partial.size(); ++fed) {
            result = scanner.scan(std::string_view(partial).substr(0, fed));
            if (result.status != head_status::incomplete) {
                break;
            }
        }
        CHECK(result.status == head_status::header_too_large);
        CHECK(fed == max_header_bytes + 1);
    }
}

TEST_CASE("a complete head over max_header_bytes is header_too_large even when it arrives at once",
          "[proxy]")
{
    // A client that sends its whole oversized head in one segment must get the same 431 as one
    // that trickles it in. Regression: the limit used to be checked only while the head was
    // still incomplete, so an oversized head that arrived in a single read was accepted.
    constexpr std::size_t max_header_bytes = 256;
    const std::string head = head_of(
        {"GET / HTTP/1.1", "Host: a", "X-Filler: " + std::string(2 * max_header_bytes, 'x')});
    REQUIRE(head.size() > max_header_bytes);

    SECTION("byte by byte")
    {
        CHECK(scan_byte_by_byte(head, max_header_bytes).status == head_status::header_too_large);
    }
    SECTION("at once")
    {
        CHECK(scan_at_once(head, max_header_bytes).status == head_status::header_too_large);
    }
}

TEST_CASE("a scanner that is reset scans the next request from its start", "[proxy]")
{
    request_head_scanner scanner(default_max_header_bytes, default_max_uri_bytes);
    const std::string first = head_of({"GET /one HTTP/1.1", "Host: a"});
    const std::string second = head_of({"GET /second-request HTTP/1.1", "Host: a", "X: y"});

    REQUIRE(scanner.scan(first).status == head_status::complete);
    scanner.reset();
    auto result = scanner.scan(second);
    CHECK(result.status == head_status::complete);
    CHECK(result.head_length == second.size());
}

// ---------------------------------------------------------------------------------------------
// check_request_head

TEST_CASE("a valid head yields its method, target, version, host and framing", "[proxy]")
{
    SECTION("a GET without a body")
    {
        const std::string head =
            head_of({"GET /a/b?c=d HTTP/1.1", "Host: app.example.com:8080", "Accept: */*"});
        auto checked = check_request_head(head);
        REQUIRE(checked.head);
        CHECK(checked.head->method == "GET");
        CHECK(checked.head->target == "/a/b?c=d");
        CHECK(checked.head->version == 11);
        REQUIRE(checked.head->host);
        CHECK(*checked.head->host == "app.example.com:8080");
        CHECK_FALSE(checked.head->content_length);
        CHECK_FALSE(checked.head->chunked);
    }
    SECTION("a POST with a Content-Length, field names in any case")
    {
        const std::string head =
            head_of({"POST /upload HTTP/1.1", "HOST:  a.example  ", "content-LENGTH: 42"});
        auto checked = check_request_head(head);
        REQUIRE(checked.head);
        CHECK(checked.head->method == "POST");
        REQUIRE(checked.head->host);
        CHECK(*checked.head->host == "a.example");
        REQUIRE(checked.head->content_length);
        CHECK(*checked.head->content_length == 42);
        CHECK_FALSE(checked.head->chunked);
    }
    SECTION("a chunked POST")
    {
        const std::string head =
            head_of({"POST /upload HTTP/1.1", "Host: a", "Transfer-Encoding:  Chunked "});
        auto checked = check_request_head(head);
        REQUIRE(checked.head);
        CHECK(checked.head->chunked);
        CHECK_FALSE(checked.head->content_length);
    }
    SECTION("an HTTP/1.0 request")
    {
        const std::string head = head_of({"HEAD / HTTP/1.0", "Content-Length: 0"});
        auto checked = check_request_head(head);
        REQUIRE(checked.head);
        CHECK(checked.head->method == "HEAD");
        CHECK(checked.head->version == 10);
        CHECK_FALSE(checked.head->host);
        CHECK(checked.head->content_length == std::uint64_t{0});
    }
    SECTION("an absolute-form target is kept as sent")
    {
        const std::string head = head_of({"GET http://a/x HTTP/1.1", "Host: a"});
        auto checked = check_request_head(head);
        REQUIRE(checked.head);
        CHECK(checked.head->target == "http://a/x");
    }
}

TEST_CASE("Host is required once in HTTP/1.1 and never allowed twice", "[proxy]")
{
    // RFC 9112 section 3.2: a 1.1 request without Host, or with more than one, gets 400.
    SECTION("missing on HTTP/1.1")
    {
        auto checked = check_request_head(head_of({"GET / HTTP/1.1", "Accept: */*"}));
        CHECK_FALSE(checked.head);
        CHECK_FALSE(checked.reason.empty());
    }
    SECTION("missing on HTTP/1.0 is fine")
    {
        CHECK(is_accepted(head_of({"GET / HTTP/1.0"})));
    }
    SECTION("twice on HTTP/1.1")
    {
        CHECK_FALSE(is_accepted(head_of({"GET / HTTP/1.1", "Host: a", "Host: b"})));
    }
    SECTION("twice with the same value")
    {
        CHECK_FALSE(is_accepted(head_of({"GET / HTTP/1.1", "Host: a", "host: a"})));
    }
    SECTION("twice on HTTP/1.0")
    {
        CHECK_FALSE(is_accepted(head_of({"GET / HTTP/1.0", "Host: a", "Host: b"})));
    }
}

TEST_CASE("a request with both Content-Length and Transfer-Encoding is refused", "[proxy]")
{
    // RFC 9112 section 6.1: a server may refuse such a request, and a proxy that forwards it
    // invites smuggling; section 6.3 makes Transfer-Encoding win where it is not refused.
    SECTION("Content-Length first")
    {
        CHECK_FALSE(is_accepted(head_of(
            {"POST / HTTP/1.1", "Host: a", "Content-Length: 5", "Transfer-Encoding: chunked"})));
    }
    SECTION("Transfer-Encoding first")
    {
        CHECK_FALSE(is_accepted(head_of(
            {"POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked", "Content-Length: 5"})));
    }
    SECTION("Content-Length of zero")
    {
        CHECK_FALSE(is_accepted(head_of(
            {"POST / HTTP/1.1", "Host: a", "Content-Length: 0", "Transfer-Encoding: chunked"})));
    }
}

TEST_CASE("Content-Length is one field of digits only", "[proxy]")
{
    // RFC 9110 section 8.6 (Content-Length = 1*DIGIT) and RFC 9112 section 6.3: anything else
    // leaves the body length unknown, so the request is refused.
    auto with_length = [](std::string_view value) {
        return head_of({"POST / HTTP/1.1", "Host: a", "Content-Length: " + std::string(value)});
    };

    SECTION("two fields with equal values")
    {
        CHECK_FALSE(is_accepted(
            head_of({"POST / HTTP/1.1", "Host: a", "Content-Length: 5", "Content-Length: 5"})));
    }
    SECTION("two fields with different values")
    {
        CHECK_FALSE(is_accepted(
            head_of({"POST / HTTP/1.1", "Host: a", "Content-Length: 5", "Content-Length: 6"})));
    }
    SECTION("malformed values")
    {
        for (std::string_view value :
             {"5, 5", "5,5", "+5", "0x5", "-1", "5 5", "5a", "", "1e3", "99999999999999999999"}) {
            INFO("Content-Length: " << value);
            CHECK_FALSE(is_accepted(with_length(value)));
        }
    }
    SECTION("leading zeros and surrounding whitespace are fine")
    {
        auto checked = check_request_head(with_length("  007 "));
        REQUIRE(checked.head);
        CHECK(checked.head->content_length == std::uint64_t{7});
    }
}

TEST_CASE("Transfer-Encoding must be exactly one chunked coding", "[proxy]")
{
    // RFC 9112 section 6.1: chunked must be the final coding, and gatehouse decodes no other
    // coding, so a single "chunked" is the only framing it can forward faithfully.
    auto with_coding = [](std::string_view value) {
        return head_of({"POST / HTTP/1.1", "Host: a", "Transfer-Encoding: " + std::string(value)});
    };

    SECTION("codings other than a lone chunked")
    {
        for (std::string_view value : {"gzip, chunked", "chunked, gzip", "gzip", "chunked, chunked",
                                       "chunked;x=1", "identity", "", "xchunked"}) {
            INFO("Transfer-Encoding: " << value);
            CHECK_FALSE(is_accepted(with_coding(value)));
        }
    }
    SECTION("chunked split over two field lines")
    {
        CHECK_FALSE(is_accepted(head_of({"POST / HTTP/1.1", "Host: a", "Transfer-Encoding: gzip",
                                         "Transfer-Encoding: chunked"})));
    }
    SECTION("chunked repeated on two field lines")
    {
        CHECK_FALSE(is_accepted(head_of({"POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked",
                                         "Transfer-Encoding: chunked"})));
    }
    SECTION("chunked on HTTP/1.0")
    {
        // RFC 9112 section 6.1: a 1.0 message with Transfer-Encoding is faulty framing.
        CHECK_FALSE(
            is_accepted(head_of({"POST / HTTP/1.0", "Host: a", "Transfer-Encoding: chunked"})));
    }
    SECTION("a lone chunked in any case is accepted")
    {
        CHECK(is_accepted(with_coding("chunked")));
        CHECK(is_accepted(with_coding("CHUNKED")));
    }
}

TEST_CASE("a request line with an unknown version or a malformed shape is refused", "[proxy]")
{
    // RFC 9112 section 2.3: HTTP-version is "HTTP/" DIGIT "." DIGIT, case-sensitive; gatehouse
    // speaks 1.0 and 1.1 on this parser.
    SECTION("versions")
    {
        for (std::string_view version : {"HTTP/2.0", "HTTP/1.1x", "HTTP/1.2", "HTTP/0.9",
                                         "http/1.1", "HTTP/1", "HTTP/11", " HTTP/1.1"}) {
            INFO("version: " << version);
            CHECK_FALSE(is_accepted(head_of({"GET / " + std::string(version), "Host: a"})));
        }
    }
    SECTION("shapes")
    {
        for (std::string_view line : {"GET /", "GET", "GET  / HTTP/1.1", "GET / a HTTP/1.1",
                                      " GET / HTTP/1.1", "G(T / HTTP/1.1", "GET /  HTTP/1.1"}) {
            INFO("request line: " << line);
            CHECK_FALSE(is_accepted(head_of({line, "Host: a"})));
        }
    }
    SECTION("the refusal says why")
    {
        CHECK_FALSE(check_request_head(head_of({"GET / HTTP/2.0", "Host: a"})).reason.empty());
    }
}

// ---------------------------------------------------------------------------------------------
// resolve_target and has_dot_segment

TEST_CASE("an origin-form target passes through resolve_target unchanged", "[proxy]")
{
    for (std::string_view target : {"/", "/a/b", "/a/b?c=d&e=/f", "/%41?x"}) {
        INFO("target: " << target);
        auto resolved = resolve_target(target);
        REQUIRE(resolved);
        CHECK(resolved->authority.empty());
        CHECK(resolved->origin_form == target);
    }
}

TEST_CASE("an absolute-form target gives its lower-cased authority and an origin-form path",
          "[proxy]")
{
    // RFC 9112 section 3.2.2: the host of an absolute-form target replaces the Host header.
    SECTION("http with a path and a query")
    {
        auto resolved = resolve_target("http://App.Example.COM:8080/Path/X?Q=Y");
        REQUIRE(resolved);
        CHECK(resolved->authority == "app.example.com:8080");
        CHECK(resolved->origin_form == "/Path/X?Q=Y");
    }
    SECTION("https, scheme in upper case")
    {
        auto resolved = resolve_target("HTTPS://example.com/a");
        REQUIRE(resolved);
        CHECK(resolved->authority == "example.com");
        CHECK(resolved->origin_form == "/a");
    }
    SECTION("an empty path becomes /")
    {
        // RFC 9112 section 3.2.1 and RFC 9110 section 4.2.3: an empty path means "/".
        auto resolved = resolve_target("http://example.com");
        REQUIRE(resolved);
        CHECK(resolved->authority == "example.com");
        CHECK(resolved->origin_form == "/");
    }
    SECTION("an empty path with a query")
    {
        auto resolved = resolve_target("http://example.com?x=1");
        REQUIRE(resolved);
        CHECK(resolved->authority == "example.com");
        CHECK(resolved->origin_form == "/?x=1");
    }
    SECTION("an IPv6 literal authority")
    {
        auto resolved = resolve_target("http://[::1]:8080/x");
        REQUIRE(resolved);
        CHECK(resolved->authority == "[::1]:8080");
        CHECK(resolved->origin_form == "/x");
    }
}

TEST_CASE("resolve_target refuses targets gatehouse does not route", "[proxy]")
{
    auto refused = [](std::string_view target) {
        return !resolve_target(target).has_value();
    };

    SECTION("user info in the authority")
    {
        // RFC 9110 section 4.2.4: userinfo is deprecated in http(s) URIs and misleads readers.
        CHECK(refused("http://user@example.com/"));
        CHECK(refused("http://user:pass@example.com/a"));
    }
    SECTION("a user-info look-alike after the path starts is only path")
    {
        auto resolved = resolve_target("http://example.com/a@b");
        REQUIRE(resolved);
        CHECK(resolved->authority == "example.com");
        CHECK(resolved->origin_form == "/a@b");
    }
    SECTION("other schemes")
    {
        CHECK(refused("ftp://example.com/"));
        CHECK(refused("ws://example.com/"));
        CHECK(refused("httpx://example.com/"));
        CHECK(refused("file:///etc/passwd"));
    }
    SECTION("an empty authority")
    {
        CHECK(refused("http://"));
        CHECK(refused("http:///a"));
        CHECK(refused("https://?x"));
    }
    SECTION("asterisk-form and authority-form")
    {
        // RFC 9112 sections 3.2.3 and 3.2.4: only CONNECT and server-wide OPTIONS use them.
        CHECK(refused("*"));
        CHECK(refused("example.com:443"));
    }
    SECTION("an empty target")
    {
        CHECK(refused(""));
    }
    SECTION("dot segments, plain or encoded")
    {
        CHECK(refused("/a/../b"));
        CHECK(refused("/a/%2e%2E/b"));
        CHECK(refused("http://example.com/a/./b"));
        CHECK(refused("http://example.com/.."));
    }
}

TEST_CASE("has_dot_segment finds . and .. segments, plain and percent-encoded", "[proxy]")
{
    SECTION("plain")
    {
        CHECK(has_dot_segment("/a/../b"));
        CHECK(has_dot_segment("/a/./b"));
        CHECK(has_dot_segment("/../etc/passwd"));
        CHECK(has_dot_segment("/./"));
        CHECK(has_dot_segment("//a//..//b"));
    }
    SECTION("at the end of the path")
    {
        CHECK(has_dot_segment("/a/.."));
        CHECK(has_dot_segment("/a/."));
        CHECK(has_dot_segment("/.."));
        CHECK(has_dot_segment("/a/..?x=1"));
    }
    SECTION("percent-encoded, either case")
    {
        CHECK(has_dot_segment("/a/%2e%2e/b"));
        CHECK(has_dot_segment("/a/%2E%2E/b"));
        CHECK(has_dot_segment("/a/%2e%2E"));
        CHECK(has_dot_segment("/a/.%2e/b"));
        CHECK(has_dot_segment("/a/%2E./b"));
        CHECK(has_dot_segment("/a/%2e/b"));
        CHECK(has_dot_segment("/a/%2E"));
    }
    SECTION("without a leading slash")
    {
        CHECK(has_dot_segment(".."));
        CHECK(has_dot_segment("."));
    }
}

TEST_CASE("has_dot_segment is not fooled by dots that are not whole segments", "[proxy]")
{
    for (std::string_view path : {"/", "/a/b", "/.../x", "/a/...", "/a..b", "/a/..b", "/a/b..",
                                  "/.hidden", "/a/.well-known/x", "/x?y=/../z", "/x?../", "/x?.",
                                  "/%2e%2e%2e/x", "/%252e%252e/x", "/a%2e%2eb"}) {
        INFO("path: " << path);
        CHECK_FALSE(has_dot_segment(path));
    }
}

TEST_CASE("check_request_head lists every field line in order, values trimmed", "[proxy]")
{
    const std::string head = head_of({"GET / HTTP/1.1", "Host: a", "X-Forwarded-For:  10.0.0.1 ",
                                      "Connection: upgrade", "x-forwarded-for: 10.0.0.2"});
    auto checked = check_request_head(head);
    REQUIRE(checked.head);
    const auto& fields = checked.head->fields;
    REQUIRE(fields.size() == 4);
    CHECK(fields[0].name == "Host");
    CHECK(fields[1].value == "10.0.0.1");
    CHECK(fields[3].name == "x-forwarded-for");
    const auto* first = gatehouse::proxy::find_field(fields, "X-FORWARDED-FOR");
    REQUIRE(first != nullptr);
    CHECK(first->value == "10.0.0.1");
    CHECK(gatehouse::proxy::connection_has(fields, "Upgrade"));
    CHECK_FALSE(gatehouse::proxy::connection_has(fields, "close"));
}

TEST_CASE("a tab inside the request target is refused", "[proxy]")
{
    CHECK_FALSE(is_accepted(head_of({"GET /a\tb HTTP/1.1", "Host: a"})));
}
