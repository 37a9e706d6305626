// Tests for log::render, the one place an event's message and fields become text: key=value in
// the text format, and a fragment of a JSON object in the JSON format.
#include "proxy/log.hpp"

#include <cstdint>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using gatehouse::config::log_format;
using gatehouse::config::log_settings;
using gatehouse::log::render;

namespace {

// Switches every logger to `format` for one test and back to the default text format after it,
// so no other test sees JSON.
class log_format_scope {
public:
    explicit log_format_scope(log_format format)
    {
        log_settings settings;
        settings.format = format;
        gatehouse::log::configure(settings);
    }

    ~log_format_scope() { gatehouse::log::configure(log_settings{}); }

    log_format_scope(const log_format_scope&) = delete;
    log_format_scope& operator=(const log_format_scope&) = delete;
};

// The JSON logger pattern wraps a rendered event in braces after the time, level and logger
// fields; wrapping it alone is enough to check it is a valid object body.
nlohmann::json parse_event(const std::string& rendered)
{
    return nlohmann::json::parse("{" + rendered + "}");
}

} // namespace

TEST_CASE("a text event is the message followed by key=value fields", "[proxy]")
{
    log_format_scope text(log_format::text);

    CHECK(render("listener up", {}) == "listener up");
    CHECK(render("listener up", {{"address", "127.0.0.1:8080"}}) ==
          "listener up address=127.0.0.1:8080");
    CHECK(render("upstream ejected",
                 {{"upstream", std::string("http://10.0.1.10:8080")}, {"cooldown_ms", 10000}}) ==
          "upstream ejected upstream=http://10.0.1.10:8080 cooldown_ms=10000");
}

TEST_CASE("a text value is quoted when it holds a space, a quote, an equals sign or a break",
          "[proxy]")
{
    log_format_scope text(log_format::text);

    SECTION("a space")
    {
        CHECK(render("upstream failed", {{"error", "Connection refused"}}) ==
              "upstream failed error=\"Connection refused\"");
    }
    SECTION("a double quote, which is escaped inside the quotes")
    {
        CHECK(render("request", {{"agent", "say \"hi\""}}) == R"(request agent="say \"hi\"")");
    }
    SECTION("an equals sign, which would read as another field")
    {
        CHECK(render("request", {{"path", "/a?b=c"}}) == "request path=\"/a?b=c\"");
    }
    SECTION("a line break, which must not start a forged line")
    {
        auto line = render("request", {{"path", "/a\nlevel=error forged"}});
        CHECK(line == R"(request path="/a\nlevel=error forged")");
        CHECK(line.find('\n') == std::string::npos);
    }
    SECTION("a tab and a carriage return")
    {
        CHECK(render("request", {{"v", "a\tb\rc"}}) == R"(request v="a\tb\rc")");
    }
    SECTION("an empty value, which would otherwise vanish")
    {
        CHECK(render("request", {{"host", ""}}) == "request host=\"\"");
    }
    SECTION("a plain value is left bare, backslashes included")
    {
        CHECK(render("request", {{"path", "/a\\b/c.js"}}) == "request path=/a\\b/c.js");
    }
}

TEST_CASE("text numbers and booleans are written bare", "[proxy]")
{
    log_format_scope text(log_format::text);

    CHECK(render("e", {{"status", 404}}) == "e status=404");
    CHECK(render("e", {{"delta", -3}}) == "e delta=-3");
    CHECK(render("e", {{"bytes", std::uint64_t{18446744073709551615ULL}}}) ==
          "e bytes=18446744073709551615");
    CHECK(render("e", {{"access", true}, {"tls", false}}) == "e access=true tls=false");
    CHECK(render("e", {{"duration_ms", 1.25}}) == "e duration_ms=1.250");
}

TEST_CASE("a JSON event is a valid object body with msg first and every field", "[proxy]")
{
    log_format_scope json(log_format::json);

    const auto rendered = render("listener up", {{"address", "127.0.0.1:8080"}, {"conn", 7}});
    CHECK(rendered == R"("msg":"listener up","address":"127.0.0.1:8080","conn":7)");

    const auto event = parse_event(rendered);
    CHECK(event.size() == 3);
    CHECK(event.at("msg") == "listener up");
    CHECK(event.at("address") == "127.0.0.1:8080");
    CHECK(event.at("conn") == 7);
}

TEST_CASE("a JSON event with no fields holds only the message", "[proxy]")
{
    log_format_scope json(log_format::json);

    const auto event = parse_event(render("draining", {}));
    CHECK(event == nlohmann::json{{"msg", "draining"}});
}

TEST_CASE("JSON strings escape quotes, backslashes and control characters", "[proxy]")
{
    // RFC 8259 section 7: '"', '\' and U+0000 to U+001F must be escaped inside a string.
    log_format_scope json(log_format::json);

    const std::string awkward = std::string("q\"b\\n\nr\rt\tu\x01v\x1fw") + '\0' + "end";
    const auto rendered = render("say \"hi\"\\", {{"value", awkward}, {"k\"ey", "v"}});

    SECTION("the escapes used")
    {
        CHECK_THAT(rendered, Catch::Contains(R"(\"b\\n\nr\rt\tu\u0001v\u001fw\u0000end)"));
        CHECK_THAT(rendered, Catch::StartsWith(R"("msg":"say \"hi\"\\")"));
        CHECK_THAT(rendered, Catch::Contains(R"("k\"ey":"v")"));
    }
    SECTION("a JSON parser reads back the exact text")
    {
        const auto event = parse_event(rendered);
        CHECK(event.at("msg") == "say \"hi\"\\");
        CHECK(event.at("value").get<std::string>() == awkward);
        CHECK(event.at("k\"ey") == "v");
    }
    SECTION("no raw control character reaches the line")
    {
        for (char c : rendered) {
            CHECK(static_cast<unsigned char>(c) >= 0x20);
        }
    }
}

TEST_CASE("JSON numbers and booleans are written unquoted with their JSON types", "[proxy]")
{
    log_format_scope json(log_format::json);

    const auto rendered = render("request", {{"status", 502},
                                             {"delta", -4L},
                                             {"bytes_out", std::uint64_t{18446744073709551615ULL}},
                                             {"duration_ms", 12.5},
                                             {"keep_alive", true},
                                             {"retry", false}});
    CHECK_THAT(rendered, Catch::Contains(R"("status":502,)"));
    CHECK_THAT(rendered, Catch::Contains(R"("keep_alive":true,)"));
    CHECK_THAT(rendered, Catch::EndsWith(R"("retry":false)"));

    const auto event = parse_event(rendered);
    CHECK(event.at("status").is_number_integer());
    CHECK(event.at("status") == 502);
    CHECK(event.at("delta") == -4);
    CHECK(event.at("bytes_out").is_number_unsigned());
    CHECK(event.at("bytes_out").get<std::uint64_t>() == 18446744073709551615ULL);
    CHECK(event.at("duration_ms").is_number_float());
    CHECK(event.at("duration_ms").get<double>() == Approx(12.5));
    CHECK(event.at("keep_alive").is_boolean());
    CHECK(event.at("keep_alive") == true);
    CHECK(event.at("retry") == false);
}

TEST_CASE("JSON strings keep UTF-8 text as it is", "[proxy]")
{
    log_format_scope json(log_format::json);

    const std::string path = "/caf\xc3\xa9/\xe2\x82\xac";
    const auto event = parse_event(render("request", {{"path", path}}));
    CHECK(event.at("path").get<std::string>() == path);
}

TEST_CASE("a JSON event stays valid JSON when a value holds bytes that are not UTF-8", "[proxy]")
{
    // The scanner lets obs-text (0x80-0xFF) through in the request line, and the access log
    // writes the target as received, so a client can put any byte there. RFC 8259 section 8.1
    // requires JSON text to be UTF-8; how the byte is shown does not matter, but the line must
    // still parse.
    log_format_scope json(log_format::json);

    const std::string rendered =
        render("request", {{"path", "/a\xff\xfe?x=\x80"}, {"status", 200}});
    INFO(rendered);
    nlohmann::json event;
    REQUIRE_NOTHROW(event = parse_event(rendered));
    CHECK(event.value("status", 0) == 200);
    // Each stray byte reads back as the code point of the same number.
    CHECK(event.at("path").get<std::string>() == "/a\u00ff\u00fe?x=\u0080");
}

TEST_CASE("JSON strings escape malformed UTF-8 sequences byte by byte", "[proxy]")
{
    log_format_scope json(log_format::json);

    // A lead byte cut off at the end, an overlong '/', and an encoded UTF-16 surrogate.
    const std::string rendered =
        render("request",
               {{"cut", "ok\xe2\x82"}, {"overlong", "\xc0\xaf"}, {"surrogate", "\xed\xa0\x80"}});
    INFO(rendered);
    nlohmann::json event;
    REQUIRE_NOTHROW(event = parse_event(rendered));
    CHECK(event.at("cut").get<std::string>() == "ok\u00e2\u0082");
    CHECK(event.at("overlong").get<std::string>() == "\u00c0\u00af");
    CHECK(event.at("surrogate").get<std::string>() == "\u00ed\u00a0\u0080");
}

TEST_CASE("configure switches render between the text and JSON formats", "[proxy]")
{
    {
        log_format_scope json(log_format::json);
        CHECK(render("e", {{"k", "v"}}) == R"("msg":"e","k":"v")");
    }
    // The scope restored the default text format.
    CHECK(render("e", {{"k", "v"}}) == "e k=v");
}
