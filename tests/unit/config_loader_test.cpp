// Tests for the configuration loader: the documented examples, the defaults, the value parsers,
// and the position, key path and message of every class of error.
#include "config/config_loader.hpp"
#include "config/value_parsers.hpp"
#include "proxy/acme_worker.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

using namespace gatehouse::config;
using namespace std::chrono_literals;

namespace {

const std::filesystem::path repository_root =
    std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();

std::string read_text(const std::filesystem::path& path)
{
    std::ifstream file(path);
    REQUIRE(file.good());
    std::ostringstream text;
    text << file.rdbuf();
    return text.str();
}

// Raw strings in this file start with a newline so the YAML can sit at the left margin; drop it
// so that the first YAML line is line 1.
std::string yaml(std::string_view text)
{
    if (text.starts_with('\n')) {
        text.remove_prefix(1);
    }
    return std::string(text);
}

std::vector<config_error> errors_in_file(const std::string& text, const std::string& file_name)
{
    try {
        parse_config(text, file_name);
    } catch (const config_load_error& error) {
        return error.errors();
    }
    return {};
}

std::vector<config_error> errors_in(const std::string& text)
{
    try {
        parse_config(text, "test.yaml");
    } catch (const config_load_error& error) {
        return error.errors();
    }
    return {};
}

// The one error `text` produces; fails the test when there is not exactly one.
config_error only_error_in(const std::string& text)
{
    const auto errors = errors_in(text);
    for (const auto& error : errors) {
        UNSCOPED_INFO(error.to_string());
    }
    REQUIRE(errors.size() == 1);
    return errors.front();
}

void check_error(const config_error& error, int line, int column, const std::string& key_path,
                 const std::string& message_part)
{
    INFO(error.to_string());
    CHECK(error.file == "test.yaml");
    CHECK(error.line == line);
    CHECK(error.column == column);
    CHECK(error.key_path == key_path);
    CHECK_THAT(error.message, Catch::Contains(message_part));
}

// The documented full example, which examples/full.yaml repeats; both must give these values.
void check_full_example(const gatehouse_config& config)
{
    CHECK(config.http_listener.host.empty());
    CHECK(config.http_listener.port == 8080);
    REQUIRE(config.https_listener.has_value());
    CHECK(config.https_listener->port == 8443);
    REQUIRE(config.admin_listener.has_value());
    CHECK(config.admin_listener->host == "127.0.0.1");
    CHECK(config.admin_listener->port == 9901);
    CHECK(config.health_path == "/healthz");
    CHECK(config.threads == 0);

    CHECK(config.timeouts.header_read == 10s);
    CHECK(config.timeouts.idle == 60s);
    CHECK(config.timeouts.upstream_connect == 5s);
    CHECK(config.timeouts.upstream_response == 1min);
    CHECK(config.timeouts.drain == 30s);

    CHECK(config.limits.max_header_bytes == 16 * 1024);
    CHECK(config.limits.max_uri_bytes == 8 * 1024);
    CHECK(config.limits.max_body_bytes == 10 * 1024 * 1024);
    CHECK(config.limits.max_connections == 10000);
    CHECK(config.upstream_health.max_fails == 3);
    CHECK(config.upstream_health.cooldown == 10s);

    REQUIRE(config.trusted_proxies.size() == 3);
    CHECK(config.trusted_proxies[0].contains("10.20.30.40"));
    CHECK(config.trusted_proxies[1].contains("192.168.1.10"));
    CHECK_FALSE(config.trusted_proxies[1].contains("192.168.1.11"));
    CHECK(config.trusted_proxies[2].contains("fd12::1"));

    CHECK(config.log.format == log_format::json);
    CHECK(config.log.level == "info");
    CHECK(config.log.access);

    CHECK(config.tls.unknown_sni == unknown_sni_action::serve_default);
    CHECK(config.tls.default_certificate == "app.example.com");
    CHECK(config.tls.min_version == 2);
    CHECK(config.tls.session_tickets);
    CHECK(config.tls.internal_certificate_lifetime == std::chrono::hours(24 * 7));
    CHECK(config.store.file_directory == "/var/lib/gatehouse");

    REQUIRE(config.routes.size() == 2);
    const route& app = config.routes[0];
    CHECK(app.host == "app.example.com");
    CHECK(app.tls.source == tls_source::internal);
    CHECK(app.redirect_http);
    CHECK(app.hsts.enabled);
    CHECK(app.hsts.max_age == std::chrono::hours(24 * 180));
    CHECK(app.hsts.include_subdomains);
    CHECK_FALSE(app.hsts.preload);
    REQUIRE(app.paths.size() == 2);
    CHECK(app.paths[0].prefix == "/");
    CHECK_FALSE(app.paths[0].strip_prefix);
    REQUIRE(app.paths[0].upstreams.size() == 1);
    CHECK(app.paths[0].upstreams[0].host == "127.0.0.1");
    CHECK(app.paths[0].upstreams[0].port == 3000);
    CHECK(app.paths[1].prefix == "/api/");
    CHECK(app.paths[1].strip_prefix);
    REQUIRE(app.paths[1].upstreams.size() == 2);
    CHECK(app.paths[1].upstreams[1].text == "http://10.0.1.11:8080");

    const route& wildcard = config.routes[1];
    CHECK(wildcard.host == "*.example.com");
    CHECK(wildcard.tls.source == tls_source::off);
    REQUIRE(wildcard.paths.size() == 1);
    REQUIRE(wildcard.paths[0].upstreams.size() == 1);
    CHECK(wildcard.paths[0].upstreams[0].host == "fd00::20");
    CHECK(wildcard.paths[0].upstreams[0].port == 8080);
}

// The first ```yaml block after `heading` in a Markdown file.
std::string yaml_block_after(const std::string& markdown, const std::string& heading)
{
    const auto heading_at = markdown.find("\n" + heading + "\n");
    REQUIRE(heading_at != std::string::npos);
    const std::string opening = "```yaml\n";
    const auto start = markdown.find(opening, heading_at);
    REQUIRE(start != std::string::npos);
    const auto end = markdown.find("```", start + opening.size());
    REQUIRE(end != std::string::npos);
    return markdown.substr(start + opening.size(), end - start - opening.size());
}

// A file in a fresh directory under the system's temporary directory.
std::filesystem::path scratch_file(const std::string& name, const std::string& content)
{
    const auto directory = std::filesystem::temp_directory_path() / "gatehouse_config_test";
    std::filesystem::create_directories(directory);
    const auto path = directory / name;
    std::ofstream(path) << content;
    return path;
}

} // namespace

// ---- examples and defaults ------------------------------------------------------------------

TEST_CASE("the full example in docs/configuration.md parses with the values it shows", "[config]")
{
    const std::string markdown = read_text(repository_root / "docs" / "configuration.md");
    check_full_example(parse_config(yaml_block_after(markdown, "## Full example"), "docs"));
}

TEST_CASE("examples/full.yaml parses with the values of the documented full example", "[config]")
{
    check_full_example(load_config_file((repository_root / "examples" / "full.yaml").string()));
}

TEST_CASE("examples/gatehouse.yaml proxies localhost to the admin listener", "[config]")
{
    const auto config =
        load_config_file((repository_root / "examples" / "gatehouse.yaml").string());

    CHECK(config.http_listener.host == "127.0.0.1");
    CHECK(config.http_listener.port == 8080);
    REQUIRE(config.https_listener.has_value());
    CHECK(config.https_listener->port == 8443);
    CHECK(config.store.file_directory == (repository_root / "build" / "example-store").string());
    REQUIRE(config.admin_listener.has_value());
    CHECK(config.admin_listener->text == "127.0.0.1:9901");
    REQUIRE(config.routes.size() == 1);
    CHECK(config.routes[0].host == "localhost");
    CHECK(config.routes[0].tls.source == tls_source::internal);
    REQUIRE(config.routes[0].paths.size() == 1);
    CHECK(config.routes[0].paths[0].prefix == "/");
    REQUIRE(config.routes[0].paths[0].upstreams.size() == 1);
    CHECK(config.routes[0].paths[0].upstreams[0].host == config.admin_listener->host);
    CHECK(config.routes[0].paths[0].upstreams[0].port == config.admin_listener->port);
}

TEST_CASE("settings that are not written take the defaults of config.hpp", "[config]")
{
    SECTION("in an empty file")
    {
        const auto config = parse_config("", "empty.yaml");
        CHECK(config.http_listener.port == 80);
        CHECK(config.routes.empty());
        CHECK(config.source_file == "empty.yaml");
    }
    SECTION("in a file with a single route")
    {
        const auto config = parse_config(yaml(R"(
routes:
  - host: example.com
    paths:
      - upstream: http://backend
)"),
                                         "test.yaml");
        CHECK(config.http_listener.text == ":80");
        CHECK_FALSE(config.https_listener.has_value());
        REQUIRE(config.admin_listener.has_value());
        CHECK(config.admin_listener->text == "127.0.0.1:9901");
        CHECK(config.health_path == "/healthz");
        CHECK(config.threads == 0);
        CHECK(config.timeouts.header_read == 10s);
        CHECK(config.timeouts.idle == 60s);
        CHECK(config.timeouts.upstream_connect == 5s);
        CHECK(config.timeouts.upstream_response == 60s);
        CHECK(config.timeouts.drain == 30s);
        CHECK(config.limits.max_header_bytes == 16384);
        CHECK(config.limits.max_uri_bytes == 8192);
        CHECK(config.limits.max_body_bytes == 0);
        CHECK(config.limits.max_connections == 10000);
        CHECK(config.upstream_health.max_fails == 1);
        CHECK(config.upstream_health.cooldown == 10s);
        CHECK(config.trusted_proxies.empty());
        CHECK(config.log.format == log_format::text);
        CHECK(config.log.level == "info");
        CHECK(config.log.access);

        REQUIRE(config.routes.size() == 1);
        REQUIRE(config.routes[0].paths.size() == 1);
        const path_route& path = config.routes[0].paths[0];
        CHECK(path.prefix == "/");
        CHECK_FALSE(path.strip_prefix);
        REQUIRE(path.upstreams.size() == 1);
        CHECK(path.upstreams[0].host == "backend");
        CHECK(path.upstreams[0].port == 80);
    }
    SECTION("in sections whose settings are all commented out")
    {
        const auto config = parse_config("timeouts:\nlimits:\nlog:\n", "test.yaml");
        CHECK(config.timeouts.idle == 60s);
        CHECK(config.limits.max_header_bytes == 16384);
        CHECK(config.log.level == "info");
    }
}

// ---- durations and sizes --------------------------------------------------------------------

TEST_CASE("durations are whole numbers with units from days down to milliseconds", "[config]")
{
    CHECK(parse_duration("250ms") == 250ms);
    CHECK(parse_duration("10s") == 10s);
    CHECK(parse_duration("5m") == 5min);
    CHECK(parse_duration("1h") == 1h);
    CHECK(parse_duration("1d") == 24h);
    CHECK(parse_duration("1m30s") == 90s);
    CHECK(parse_duration("1d2h3m4s5ms") == 93'784'005ms);
    CHECK(parse_duration("0s") == 0ms);
}

TEST_CASE("durations without a unit, with a sign or out of order are rejected", "[config]")
{
    for (const char* text : {"", "10", "s", "-5s", "+5s", "1.5s", "10 s", "5S", "10sec", "30s1m",
                             "1s1s", "1m30", "99999999999999999999s", "300000000000000d"}) {
        INFO(text);
        CHECK_FALSE(parse_duration(text).has_value());
    }
}

TEST_CASE("sizes are bytes or a whole number with a binary or decimal unit", "[config]")
{
    CHECK(parse_size("512") == 512U);
    CHECK(parse_size("512B") == 512U);
    CHECK(parse_size("16KiB") == 16U * 1024);
    CHECK(parse_size("1MiB") == 1024U * 1024);
    CHECK(parse_size("2GiB") == 2ULL * 1024 * 1024 * 1024);
    CHECK(parse_size("10KB") == 10'000U);
    CHECK(parse_size("1MB") == 1'000'000U);
    CHECK(parse_size("1GB") == 1'000'000'000U);
    CHECK(parse_size("16kib") == 16U * 1024);
    CHECK(parse_size("3mb") == 3'000'000U);
    CHECK(parse_size("0") == 0U);
}

TEST_CASE("sizes with unknown units, signs, spaces or overflow are rejected", "[config]")
{
    for (const char* text : {"", "KiB", "-1", "16 KiB", "16Kib", "16kB", "16b", "1.5MiB", "16K",
                             "18446744073709551616", "17179869184GiB"}) {
        INFO(text);
        CHECK_FALSE(parse_size(text).has_value());
    }
}

// ---- ip_network -----------------------------------------------------------------------------

TEST_CASE("an IPv4 network contains its addresses, also written IPv4-mapped", "[config]")
{
    const auto network = parse_ip_network("10.1.0.0/16");
    REQUIRE(network.ok());
    CHECK(network.value().prefix_length == 96 + 16);

    CHECK(network.value().contains("10.1.0.0"));
    CHECK(network.value().contains("10.1.255.255"));
    CHECK(network.value().contains("::ffff:10.1.2.3"));
    CHECK_FALSE(network.value().contains("10.2.0.1"));
    CHECK_FALSE(network.value().contains("::ffff:10.2.0.1"));

    // The mapped prefix must not make an IPv6 address that merely starts with zeros match.
    CHECK_FALSE(network.value().contains("::10.1.2.3"));
}

TEST_CASE("a single IPv4 address is a network of one host", "[config]")
{
    const auto network = parse_ip_network("192.168.1.10");
    REQUIRE(network.ok());
    CHECK(network.value().contains("192.168.1.10"));
    CHECK_FALSE(network.value().contains("192.168.1.11"));
}

TEST_CASE("an IPv6 network contains exactly the addresses under its prefix", "[config]")
{
    const auto network = parse_ip_network("2001:db8:abcd::/50");
    REQUIRE(network.ok());

    CHECK(network.value().contains("2001:db8:abcd::1"));
    CHECK(network.value().contains("2001:db8:abcd:3fff:ffff:ffff:ffff:ffff"));
    CHECK_FALSE(network.value().contains("2001:db8:abcd:4000::"));
    CHECK_FALSE(network.value().contains("10.0.0.1"));

    const auto everything = parse_ip_network("::/0");
    REQUIRE(everything.ok());
    CHECK(everything.value().contains("::1"));
    CHECK(everything.value().contains("127.0.0.1"));
}

TEST_CASE("an unparsable address is never inside a network", "[config]")
{
    const auto network = parse_ip_network("0.0.0.0/0");
    REQUIRE(network.ok());
    CHECK(network.value().contains("8.8.8.8"));
    CHECK_FALSE(network.value().contains(""));
    CHECK_FALSE(network.value().contains("not-an-ip"));
    CHECK_FALSE(network.value().contains("10.0.0.1:80"));
    CHECK_FALSE(network.value().contains("[::1]"));
}

TEST_CASE("a network with host bits set is rejected with the likely intended one", "[config]")
{
    const auto network = parse_ip_network("10.1.2.3/8");
    REQUIRE_FALSE(network.ok());
    CHECK_THAT(network.error(), Catch::Contains("did you mean 10.0.0.0/8?"));

    CHECK_FALSE(parse_ip_network("10.0.0.0/33").ok());
    CHECK_FALSE(parse_ip_network("::/129").ok());
    CHECK_FALSE(parse_ip_network("10.0.0.0/").ok());
    CHECK_FALSE(parse_ip_network("10.0.0/8").ok());
}

// ---- error reports --------------------------------------------------------------------------

TEST_CASE("an error reads as file:line:col: key path: message", "[config]")
{
    const config_error error{"gatehouse.yaml", 7, 3, "routes[0].host", "bad host"};
    CHECK(error.to_string() == "gatehouse.yaml:7:3: routes[0].host: bad host");

    const config_error whole_file{"gatehouse.yaml", 0, 0, "", "cannot read file: denied"};
    CHECK(whole_file.to_string() == "gatehouse.yaml:0:0: cannot read file: denied");
}

TEST_CASE("a config_load_error's message lists every error, one per line", "[config]")
{
    const config_load_error error(
        {{"a.yaml", 1, 2, "threads", "first"}, {"a.yaml", 3, 4, "log.level", "second"}});
    CHECK(std::string(error.what()) == "a.yaml:1:2: threads: first\na.yaml:3:4: log.level: second");
    CHECK(error.errors().size() == 2);
}

TEST_CASE("several errors in one file are all reported in file order", "[config]")
{
    const auto errors = errors_in(yaml(R"(
routes:
  - host: "bad host"
    paths:
      - upstream: ftp://x
threads: 0
timeouts:
  idle: 10
log: {level: loud}
)"));

    REQUIRE(errors.size() == 5);
    check_error(errors[0], 2, 11, "routes[0].host", "invalid host name");
    check_error(errors[1], 4, 19, "routes[0].paths[0].upstream", "unsupported scheme");
    check_error(errors[2], 5, 10, "threads", "must be greater than zero");
    check_error(errors[3], 7, 9, "timeouts.idle", "needs a unit, e.g. 10s");
    check_error(errors[4], 8, 14, "log.level", "unknown log level");
}

TEST_CASE("a YAML syntax error is one error at its position", "[config]")
{
    const auto error = only_error_in("listen:\n  http: [\":8080\"\n");
    CHECK(error.file == "test.yaml");
    CHECK(error.line == 3);
    CHECK(error.key_path.empty());
    CHECK_THAT(error.message, Catch::StartsWith("invalid YAML: "));
}

TEST_CASE("a second YAML document in the file is an error", "[config]")
{
    check_error(only_error_in("threads: 2\n---\nthreads: 3\n"), 3, 1, "", "one YAML document");
}

TEST_CASE("an unreadable file is one error naming the file and the reason", "[config]")
{
    const std::string path = (std::filesystem::temp_directory_path() / "gatehouse-no-such.yaml");
    try {
        load_config_file(path);
        FAIL("a missing file loaded");
    } catch (const config_load_error& error) {
        REQUIRE(error.errors().size() == 1);
        CHECK(error.errors()[0].to_string() ==
              path + ":0:0: cannot read file: No such file or directory");
    }
}

TEST_CASE("a loaded file records its path and reports errors under it", "[config]")
{
    const auto good = scratch_file("good.yaml", "threads: 4\n");
    const auto config = load_config_file(good.string());
    CHECK(config.threads == 4);
    CHECK(config.source_file == good.string());

    const auto bad = scratch_file("bad.yaml", "threads: lots\n");
    try {
        load_config_file(bad.string());
        FAIL("an invalid file loaded");
    } catch (const config_load_error& error) {
        REQUIRE(error.errors().size() == 1);
        CHECK(error.errors()[0].file == bad.string());
    }
}

// ---- keys and types -------------------------------------------------------------------------

TEST_CASE("unknown keys are errors at the key, at every level", "[config]")
{
    SECTION("at the top")
    {
        check_error(only_error_in("thread: 4\n"), 1, 1, "thread", "unknown key \"thread\"");
    }
    SECTION("in a section")
    {
        check_error(only_error_in("timeouts:\n  idel: 5s\n"), 2, 3, "timeouts.idel",
                    "expected one of: header_read, idle,");
    }
    SECTION("in a path of a route")
    {
        check_error(only_error_in(yaml(R"(
routes:
  - host: a.example
    paths:
      - upstream: http://a
        strip: true
)")),
                    5, 9, "routes[0].paths[0].strip", "unknown key \"strip\"");
    }
}

TEST_CASE("a key given twice in one mapping is an error naming the first line", "[config]")
{
    SECTION("at the top")
    {
        check_error(only_error_in("threads: 2\nhealth_path: /h\nthreads: 3\n"), 3, 1, "threads",
                    "duplicate key \"threads\"; it is already set on line 1");
    }
    SECTION("in a flow mapping")
    {
        check_error(only_error_in("log: {level: info, level: debug}\n"), 1, 20, "log.level",
                    "duplicate key \"level\"");
    }
    SECTION("even when both values are valid")
    {
        CHECK_THROWS_AS(parse_config("log:\n  access: true\n  access: false\n", "t"),
                        config_load_error);
    }
}

TEST_CASE("values of the wrong type are errors at the value", "[config]")
{
    SECTION("a mapping where a string is expected")
    {
        check_error(only_error_in("health_path: {a: 1}\n"), 1, 14, "health_path",
                    "expected a string, found a mapping");
    }
    SECTION("yes where a number is expected")
    {
        check_error(only_error_in("upstream_health:\n  max_fails: yes\n"), 2, 14,
                    "upstream_health.max_fails", "expected a whole number, found \"yes\"");
    }
    SECTION("yes where true or false is expected")
    {
        check_error(only_error_in("log:\n  access: yes\n"), 2, 11, "log.access",
                    "expected true or false, found \"yes\"");
    }
    SECTION("a string where a mapping is expected")
    {
        check_error(only_error_in("timeouts: 10s\n"), 1, 11, "timeouts",
                    "expected a mapping of settings, found \"10s\"");
    }
    SECTION("a mapping where a list is expected")
    {
        check_error(only_error_in("routes: {host: a}\n"), 1, 9, "routes",
                    "expected a list, found a mapping");
    }
    SECTION("an empty value where a string is expected, located at its key")
    {
        check_error(only_error_in("health_path:\nthreads: 2\n"), 1, 1, "health_path",
                    "found an empty value");
    }
}

// ---- listeners ------------------------------------------------------------------------------

TEST_CASE("listen addresses are host:port with the port required", "[config]")
{
    const auto any = parse_listen_address(":8080");
    REQUIRE(any.ok());
    CHECK(any.value().host.empty());
    CHECK(any.value().port == 8080);
    CHECK(any.value().text == ":8080");

    const auto ipv4 = parse_listen_address("127.0.0.1:8080");
    REQUIRE(ipv4.ok());
    CHECK(ipv4.value().host == "127.0.0.1");

    const auto ipv6 = parse_listen_address("[::1]:8080");
    REQUIRE(ipv6.ok());
    CHECK(ipv6.value().host == "::1");
    CHECK(ipv6.value().port == 8080);

    const auto name = parse_listen_address("localhost:8080");
    REQUIRE(name.ok());
    CHECK(name.value().host == "localhost");

    const auto free_port = parse_listen_address("127.0.0.1:0");
    REQUIRE(free_port.ok());
    CHECK(free_port.value().port == 0);
}

TEST_CASE("listen addresses without a port or with a bad host or port are rejected", "[config]")
{
    for (const char* text :
         {"8080", "localhost", "", ":", ":http", ":65536", ":-1", "::1:8080", "[::1]", "[::1]8080",
          "[zz::1]:80", "[::1:80", "bad host:80", "300.1.1.1:80", "*:8080", "a..b:80"}) {
        INFO(text);
        CHECK_FALSE(parse_listen_address(text).ok());
    }
}

TEST_CASE("a bad listen address is an error at its value", "[config]")
{
    check_error(only_error_in("listen:\n  http: 8080\n"), 2, 9, "listen.http", "missing port");
}

TEST_CASE("routes default to the internal CA once an https listener is set", "[config]")
{
    const auto config = parse_config(yaml(R"(
listen:
  http: ":80"
  https: ":443"
routes:
  - host: a.example.com
    paths: [{upstream: "http://backend"}]
  - host: b.example.com
    tls: off
    paths: [{upstream: "http://backend"}]
)"),
                                     "test.yaml");
    REQUIRE(config.https_listener.has_value());
    CHECK(config.https_listener->port == 443);
    REQUIRE(config.routes.size() == 2);
    CHECK(config.routes[0].tls.source == tls_source::internal);
    CHECK(config.routes[0].redirect_http);
    CHECK(config.routes[1].tls.source == tls_source::off);
    CHECK(config.tls.unknown_sni == unknown_sni_action::reject);
    CHECK(config.tls.session_tickets);
    CHECK(config.tls.min_version == 2);
    CHECK(config.tls.internal_certificate_lifetime == std::chrono::hours(24 * 7));
    CHECK(config.store.file_directory == "/var/lib/gatehouse");
}

TEST_CASE("a route without an https listener is plain HTTP and cannot ask for TLS", "[config]")
{
    CHECK(parse_config("routes: [{host: a, paths: [{upstream: \"http://b\"}]}]\n", "t")
              .routes[0]
              .tls.source == tls_source::off);
    check_error(only_error_in(yaml(R"(
routes:
  - host: a.example.com
    tls: internal
    paths: [{upstream: "http://backend"}]
)")),
                3, 10, "routes[0].tls", "listen.https is not set");
    CHECK_FALSE(parse_config("listen:\n  https: off\n", "t").https_listener.has_value());
}

TEST_CASE("the https listener may not share a port with another listener", "[config]")
{
    check_error(only_error_in("listen:\n  http: \":8443\"\n  https: \"127.0.0.1:8443\"\n"), 3, 10,
                "listen.https", "listen.http and listen.https would both bind");
}

TEST_CASE("a certificate from files resolves paths against the configuration's folder", "[config]")
{
    const auto folder = std::filesystem::temp_directory_path() / "gatehouse-config-tls-test";
    std::filesystem::create_directories(folder);
    std::ofstream(folder / "site.crt") << "certificate";
    std::ofstream(folder / "site.key") << "key";
    const std::string text = yaml(R"(
listen: {https: ":443"}
store: {file: state}
routes:
  - host: a.example.com
    tls: {cert: site.crt, key: site.key}
    hsts: {max_age: 30d, include_subdomains: true}
    paths: [{upstream: "http://backend"}]
)");
    const auto config = parse_config(text, (folder / "gatehouse.yaml").string());
    const auto& tls = config.routes[0].tls;
    CHECK(tls.source == tls_source::files);
    CHECK(tls.certificate_file == (folder / "site.crt").string());
    CHECK(tls.key_file == (folder / "site.key").string());
    CHECK(config.store.file_directory == (folder / "state").string());
    CHECK(config.routes[0].hsts.enabled);
    CHECK(config.routes[0].hsts.max_age == std::chrono::hours(24 * 30));
    CHECK(config.routes[0].hsts.include_subdomains);
    CHECK_FALSE(config.routes[0].hsts.preload);

    SECTION("a missing file is an error at its key")
    {
        std::filesystem::remove(folder / "site.key");
        const auto errors = errors_in_file(text, (folder / "gatehouse.yaml").string());
        REQUIRE(errors.size() == 1);
        INFO(errors[0].to_string());
        CHECK(errors[0].line == 5);
        CHECK(errors[0].key_path == "routes[0].tls.key");
        CHECK_THAT(errors[0].message, Catch::Contains("cannot read"));
    }
    std::filesystem::remove_all(folder);
}

TEST_CASE("tls sources, tls settings and hsts reject what they do not know", "[config]")
{
    const auto errors = errors_in(yaml(R"(
listen: {https: ":443"}
tls:
  unknown_sni: ignore
  min_version: "1.1"
  session_tickets: maybe
  internal_certificate_lifetime: 10s
routes:
  - host: a.example.com
    tls: letsencrypt
    paths: [{upstream: "http://backend"}]
  - host: b.example.com
    tls: {cert: only.crt}
    paths: [{upstream: "http://backend"}]
  - host: c.example.com
    tls: off
    hsts: true
    paths: [{upstream: "http://backend"}]
)"));
    for (const auto& error : errors) {
        UNSCOPED_INFO(error.to_string());
    }
    REQUIRE(errors.size() == 8);
    check_error(errors[0], 3, 16, "tls.unknown_sni", "expected reject or default");
    check_error(errors[1], 4, 16, "tls.min_version", "older versions are never offered");
    check_error(errors[2], 5, 20, "tls.session_tickets", "");
    check_error(errors[3], 6, 34, "tls.internal_certificate_lifetime", "at least 1m");
    check_error(errors[4], 9, 10, "routes[0].tls", "expected off, internal, acme or");
    check_error(errors[5], 12, 10, "routes[1].tls", "needs both cert and key");
    check_error(errors[6], 12, 17, "routes[1].tls.cert", "cannot read");
    check_error(errors[7], 16, 11, "routes[2].hsts", "hsts needs TLS");
}

TEST_CASE("the default certificate must belong to a route with TLS", "[config]")
{
    check_error(only_error_in(yaml(R"(
listen: {https: ":443"}
tls: {unknown_sni: default}
)")),
                2, 6, "tls", "needs default_certificate");
    check_error(only_error_in(yaml(R"(
listen: {https: ":443"}
tls: {unknown_sni: default, default_certificate: other.example.com}
routes:
  - host: a.example.com
    paths: [{upstream: "http://backend"}]
)")),
                2, 6, "tls", "is not the host of a route with TLS");
    const auto config = parse_config(yaml(R"(
listen: {https: ":443"}
tls: {unknown_sni: default, default_certificate: A.example.com}
routes:
  - host: a.example.com
    paths: [{upstream: "http://backend"}]
)"),
                                     "t");
    CHECK(config.tls.unknown_sni == unknown_sni_action::serve_default);
    CHECK(config.tls.default_certificate == "a.example.com");
}

TEST_CASE("the admin listener is turned off by an empty value or off", "[config]")
{
    for (const char* text : {"listen:\n  admin:\n", "listen:\n  admin: \"\"\n",
                             "listen:\n  admin: off\n", "listen: {admin: null}\n"}) {
        INFO(text);
        CHECK_FALSE(parse_config(text, "t").admin_listener.has_value());
    }
    const auto moved = parse_config("listen:\n  admin: \"[::1]:9000\"\n", "t");
    REQUIRE(moved.admin_listener.has_value());
    CHECK(moved.admin_listener->host == "::1");
}

TEST_CASE("the http and admin listeners cannot bind the same address", "[config]")
{
    check_error(only_error_in("listen:\n  http: \":9000\"\n  admin: \"127.0.0.1:9000\"\n"), 3, 10,
                "listen.admin", "would both bind");
    CHECK_NOTHROW(parse_config("listen: {http: \"127.0.0.1:0\", admin: \"127.0.0.1:0\"}\n", "t"));
    CHECK_NOTHROW(parse_config("listen: {http: \"127.0.0.1:80\", admin: \"[::1]:80\"}\n", "t"));
}

// ---- top-level scalars and sections ---------------------------------------------------------

TEST_CASE("threads is auto or a whole number from 1 to 1024", "[config]")
{
    CHECK(parse_config("threads: auto\n", "t").threads == 0);
    CHECK(parse_config("threads: 8\n", "t").threads == 8);
    CHECK(parse_config("threads: 1024\n", "t").threads == 1024);

    check_error(only_error_in("threads: 0\n"), 1, 10, "threads", "must be greater than zero");
    check_error(only_error_in("threads: 1025\n"), 1, 10, "threads", "must be at most 1024");
    check_error(only_error_in("threads: -1\n"), 1, 10, "threads", "expected \"auto\"");
    check_error(only_error_in("threads: Auto\n"), 1, 10, "threads", "expected \"auto\"");
}

TEST_CASE("health_path must start with a slash", "[config]")
{
    CHECK(parse_config("health_path: /ready\n", "t").health_path == "/ready");
    check_error(only_error_in("health_path: healthz\n"), 1, 14, "health_path",
                "must start with '/'");
}

TEST_CASE("timeouts are positive durations with a unit", "[config]")
{
    SECTION("a bare number needs a unit")
    {
        check_error(only_error_in("timeouts:\n  drain: 30\n"), 2, 10, "timeouts.drain",
                    "needs a unit, e.g. 10s");
    }
    SECTION("a malformed duration")
    {
        check_error(only_error_in("timeouts:\n  idle: 1x\n"), 2, 9, "timeouts.idle",
                    "invalid duration \"1x\"");
    }
    SECTION("a negative duration")
    {
        check_error(only_error_in("timeouts:\n  upstream_connect: -5s\n"), 2, 21,
                    "timeouts.upstream_connect", "invalid duration");
    }
    SECTION("zero")
    {
        check_error(only_error_in("timeouts:\n  header_read: 0s\n"), 2, 16, "timeouts.header_read",
                    "must be greater than zero");
    }
    SECTION("the upstream_health cooldown too")
    {
        check_error(only_error_in("upstream_health:\n  cooldown: 0ms\n"), 2, 13,
                    "upstream_health.cooldown", "must be greater than zero");
    }
}

TEST_CASE("limits take sizes and counts and reject values below their minimum", "[config]")
{
    SECTION("sizes may be numbers or strings with units")
    {
        const auto config = parse_config(
            "limits: {max_header_bytes: 1KiB, max_uri_bytes: 2048, max_body_bytes: 1MB}\n", "t");
        CHECK(config.limits.max_header_bytes == 1024);
        CHECK(config.limits.max_uri_bytes == 2048);
        CHECK(config.limits.max_body_bytes == 1'000'000);
    }
    SECTION("max_header_bytes under 1KiB")
    {
        check_error(only_error_in("limits:\n  max_header_bytes: 1023\n"), 2, 21,
                    "limits.max_header_bytes", "must be at least 1024 bytes");
    }
    SECTION("a malformed size")
    {
        check_error(only_error_in("limits:\n  max_body_bytes: 10 MiB\n"), 2, 19,
                    "limits.max_body_bytes", "invalid size \"10 MiB\"");
    }
    SECTION("a size that overflows")
    {
        check_error(only_error_in("limits:\n  max_body_bytes: 99999999999GiB\n"), 2, 19,
                    "limits.max_body_bytes", "invalid size");
    }
    SECTION("max_uri_bytes of zero")
    {
        check_error(only_error_in("limits:\n  max_uri_bytes: 0\n"), 2, 18, "limits.max_uri_bytes",
                    "must be greater than zero");
    }
    SECTION("max_connections of zero")
    {
        check_error(only_error_in("limits:\n  max_connections: 0\n"), 2, 20,
                    "limits.max_connections", "must be greater than zero");
    }
    SECTION("max_connections with a unit")
    {
        check_error(only_error_in("limits:\n  max_connections: 10KB\n"), 2, 20,
                    "limits.max_connections", "expected a whole number");
    }
    SECTION("max_body_bytes of zero means no limit")
    {
        CHECK(parse_config("limits: {max_body_bytes: 0}\n", "t").limits.max_body_bytes == 0);
    }
}

TEST_CASE("max_fails must be at least one", "[config]")
{
    check_error(only_error_in("upstream_health:\n  max_fails: 0\n"), 2, 14,
                "upstream_health.max_fails", "must be greater than zero");
}

TEST_CASE("the log format and level must be known values", "[config]")
{
    const auto config = parse_config("log: {format: text, level: debug, access: false}\n", "t");
    CHECK(config.log.format == log_format::text);
    CHECK(config.log.level == "debug");
    CHECK_FALSE(config.log.access);

    check_error(only_error_in("log:\n  format: xml\n"), 2, 11, "log.format",
                "expected text or json");
    check_error(only_error_in("log:\n  level: verbose\n"), 2, 10, "log.level",
                "unknown log level \"verbose\"");
}

TEST_CASE("trusted proxies are networks or single addresses", "[config]")
{
    const auto config = parse_config("trusted_proxies: [127.0.0.1, \"::1\", 10.0.0.0/8]\n", "t");
    REQUIRE(config.trusted_proxies.size() == 3);
    CHECK(config.trusted_proxies[0].text == "127.0.0.1");
    CHECK(config.trusted_proxies[1].contains("::1"));
    CHECK(config.trusted_proxies[2].contains("10.9.8.7"));

    check_error(only_error_in("trusted_proxies:\n  - 10.0.0.0/8\n  - 10.0.0.1/24\n"), 3, 5,
                "trusted_proxies[1]", "host bits set");
    check_error(only_error_in("trusted_proxies:\n  - proxy.local\n"), 2, 5, "trusted_proxies[0]",
                "invalid IP address");
}

// ---- routes ---------------------------------------------------------------------------------

TEST_CASE("upstream URLs are http with a host and an optional port only", "[config]")
{
    const auto plain = parse_upstream_url("http://Backend.Local");
    REQUIRE(plain.ok());
    CHECK(plain.value().host == "backend.local");
    CHECK(plain.value().port == 80);
    CHECK(plain.value().text == "http://Backend.Local");

    const auto with_port = parse_upstream_url("HTTP://127.0.0.1:8080/");
    REQUIRE(with_port.ok());
    CHECK(with_port.value().host == "127.0.0.1");
    CHECK(with_port.value().port == 8080);

    const auto ipv6 = parse_upstream_url("http://[2001:db8::1]:9000");
    REQUIRE(ipv6.ok());
    CHECK(ipv6.value().host == "2001:db8::1");
    CHECK(ipv6.value().port == 9000);

    // Container DNS names often carry underscores.
    CHECK(parse_upstream_url("http://my_service:8080").ok());
}

TEST_CASE("malformed upstream URLs are rejected", "[config]")
{
    for (const char* text :
         {"127.0.0.1:8080", "https://a:443", "ws://a", "http://", "http://:8080", "http://a:0",
          "http://a:65536", "http://a:", "http://a:80/api", "http://a/?x=1", "http://a#top",
          "http://user@a", "http://user:pw@a:80", "http://::1:80", "http://[::1", "http://[x]:80",
          "http://a b", "http://a:8o"}) {
        INFO(text);
        CHECK_FALSE(parse_upstream_url(text).ok());
    }
}

TEST_CASE("a malformed upstream URL is an error at the URL", "[config]")
{
    SECTION("a single upstream with a path")
    {
        check_error(only_error_in(yaml(R"(
routes:
  - host: a.example
    paths:
      - upstream: http://backend:8080/api
)")),
                    4, 19, "routes[0].paths[0].upstream", "cannot have a path");
    }
    SECTION("one of several upstreams with userinfo")
    {
        check_error(only_error_in(yaml(R"(
routes:
  - host: a.example
    paths:
      - upstreams:
          - http://one:8080
          - http://admin:secret@two:8080
)")),
                    6, 13, "routes[0].paths[0].upstreams[1]", "user name or password");
    }
    SECTION("a port out of range")
    {
        check_error(only_error_in(yaml(R"(
routes:
  - host: a.example
    paths:
      - upstream: http://backend:70000
)")),
                    4, 19, "routes[0].paths[0].upstream", "out of range 1-65535");
    }
}

TEST_CASE("route hosts are stored lower-cased without a trailing dot", "[config]")
{
    const auto config = parse_config(yaml(R"(
routes:
  - host: App.Example.COM.
    paths: [{upstream: "http://a"}]
  - host: "*.Example.com"
    paths: [{upstream: "http://a"}]
)"),
                                     "t");
    REQUIRE(config.routes.size() == 2);
    CHECK(config.routes[0].host == "app.example.com");
    CHECK(config.routes[1].host == "*.example.com");
}

TEST_CASE("duplicate hosts are errors whatever their case or trailing dot", "[config]")
{
    check_error(only_error_in(yaml(R"(
routes:
  - host: example.com
    paths: [{upstream: "http://a"}]
  - host: EXAMPLE.com.
    paths: [{upstream: "http://b"}]
)")),
                4, 11, "routes[1].host", "duplicate host \"example.com\"; it is already on line 2");
}

TEST_CASE("a wildcard host covers a single leading label only", "[config]")
{
    for (const char* text : {"*", "*.", "*example.com", "a.*.example.com", "*.*.example.com",
                             "example.*", "**.example.com"}) {
        INFO(text);
        CHECK_FALSE(parse_route_host(text).ok());
    }
    check_error(only_error_in("routes:\n  - host: \"*\"\n    paths: [{upstream: \"http://a\"}]\n"),
                2, 11, "routes[0].host", "invalid wildcard");
}

TEST_CASE("host names with invalid characters are errors", "[config]")
{
    for (const char* text : {"exa mple.com", "example.com:8080", "under_score.com", "-a.com",
                             "a-.com", "a..com", "300.1.1.1", "[::1]", "ex@mple.com", ""}) {
        INFO(text);
        CHECK_FALSE(parse_route_host(text).ok());
    }
    for (const char* text : {"localhost", "a-b.example.com", "10.0.0.1", "xn--bcher-kva.example"}) {
        INFO(text);
        CHECK(parse_route_host(text).ok());
    }
    check_error(only_error_in("routes:\n  - host: a/b\n    paths: [{upstream: \"http://a\"}]\n"), 2,
                11, "routes[0].host", "invalid host name \"a/b\"");
}

TEST_CASE("a route needs a host and at least one path", "[config]")
{
    SECTION("no paths key")
    {
        check_error(only_error_in("routes:\n  - host: a.example\n"), 2, 5, "routes[0]",
                    "a route needs paths");
    }
    SECTION("an empty paths list")
    {
        check_error(only_error_in("routes:\n  - host: a.example\n    paths: []\n"), 3, 12,
                    "routes[0].paths", "at least one path");
    }
    SECTION("no host")
    {
        check_error(only_error_in("routes:\n  - paths: [{upstream: \"http://a\"}]\n"), 2, 5,
                    "routes[0]", "a route needs a host");
    }
    SECTION("a route that is not a mapping")
    {
        check_error(only_error_in("routes:\n  - a.example\n"), 2, 5, "routes[0]",
                    "expected a route");
    }
}

TEST_CASE("a prefix starts with a slash and appears once per route", "[config]")
{
    SECTION("no leading slash")
    {
        check_error(only_error_in(yaml(R"(
routes:
  - host: a.example
    paths:
      - prefix: api/
        upstream: http://a
)")),
                    4, 17, "routes[0].paths[0].prefix", "must start with '/'");
    }
    SECTION("the same prefix twice")
    {
        check_error(only_error_in(yaml(R"(
routes:
  - host: a.example
    paths:
      - prefix: /api/
        upstream: http://a
      - prefix: /api/
        upstream: http://b
)")),
                    6, 17, "routes[0].paths[1].prefix",
                    "duplicate prefix \"/api/\"; it is already on line 4");
    }
    SECTION("the default prefix and an explicit / are the same prefix")
    {
        check_error(only_error_in(yaml(R"(
routes:
  - host: a.example
    paths:
      - upstream: http://a
      - prefix: /
        upstream: http://b
)")),
                    5, 17, "routes[0].paths[1].prefix", "duplicate prefix \"/\"");
    }
    SECTION("the same prefix in two routes is fine")
    {
        CHECK_NOTHROW(parse_config(yaml(R"(
routes:
  - host: a.example
    paths: [{prefix: /x, upstream: "http://a"}]
  - host: b.example
    paths: [{prefix: /x, upstream: "http://a"}]
)"),
                                   "t"));
    }
}

TEST_CASE("a path has exactly one of upstream and upstreams, and a non-empty list", "[config]")
{
    SECTION("neither")
    {
        check_error(only_error_in(yaml(R"(
routes:
  - host: a.example
    paths:
      - prefix: /
)")),
                    4, 9, "routes[0].paths[0]", "missing upstream");
    }
    SECTION("both")
    {
        check_error(only_error_in(yaml(R"(
routes:
  - host: a.example
    paths:
      - upstream: http://a
        upstreams: [http://b]
)")),
                    5, 9, "routes[0].paths[0].upstreams", "not both");
    }
    SECTION("an empty list")
    {
        check_error(only_error_in(yaml(R"(
routes:
  - host: a.example
    paths:
      - upstreams: []
)")),
                    4, 20, "routes[0].paths[0].upstreams", "the upstream list is empty");
    }
    SECTION("a list keeps its order")
    {
        const auto config = parse_config(yaml(R"(
routes:
  - host: a.example
    paths:
      - upstreams: [http://b:1, http://a:2]
)"),
                                         "t");
        const auto& upstreams = config.routes.at(0).paths.at(0).upstreams;
        REQUIRE(upstreams.size() == 2);
        CHECK(upstreams[0].host == "b");
        CHECK(upstreams[1].port == 2);
    }
}

TEST_CASE("the error example in docs/configuration.md is what the loader reports", "[config]")
{
    const std::string markdown = read_text(repository_root / "docs" / "configuration.md");
    const std::string example = yaml_block_after(markdown, "## Errors");

    // The expected report is the plain ``` block that follows "gives".
    const std::string opening = "gives\n\n```\n";
    const auto start = markdown.find(opening, markdown.find("\n## Errors\n"));
    REQUIRE(start != std::string::npos);
    const auto end = markdown.find("```", start + opening.size());
    const std::string expected =
        markdown.substr(start + opening.size(), end - start - opening.size());

    std::string reported;
    try {
        parse_config(example, "gatehouse.yaml");
    } catch (const config_load_error& error) {
        reported = std::string(error.what()) + "\n";
    }
    CHECK(reported == expected);
}

// ---- acme -----------------------------------------------------------------------------------

TEST_CASE("acme settings that are not written take the defaults of config.hpp", "[config]")
{
    for (const char* text : {"", "acme:\n", "acme: {}\n"}) {
        INFO(text);
        const auto acme = parse_config(text, "t").acme;
        CHECK(acme.email.empty());
        CHECK(acme.directories ==
              std::vector<std::string>{"https://acme-v02.api.letsencrypt.org/directory"});
        CHECK(acme.ca_bundle_file.empty());
        CHECK_FALSE(acme.eab.has_value());
        CHECK(acme.key_type == acme_key_type::ecdsa_p256);
        CHECK(acme.renew_remaining_fraction == Approx(1.0 / 3.0));
        CHECK_FALSE(acme.renew_before.has_value());
        CHECK(acme.check_every == 10min);
        CHECK(acme.retry_min == 1min);
        CHECK(acme.retry_max == 6h);
        CHECK(acme.orders_per_minute == 10);
        CHECK(acme.order_lock_ttl == 150s);
    }
}

TEST_CASE("every acme key is read, with ca_bundle resolved against the file's folder", "[config]")
{
    const auto folder = std::filesystem::temp_directory_path() / "gatehouse-config-acme-test";
    std::filesystem::create_directories(folder / "ca");
    std::ofstream(folder / "ca" / "extra.pem") << "certificate";

    // No route uses acme, which is fine: the section only sets how acme routes are served.
    const std::string text = yaml(R"(
acme:
  email: ops@example.com
  directory: [letsencrypt-staging, "https://ca.internal:14000/dir"]
  ca_bundle: ca/extra.pem
  eab: {kid: kid-1, hmac_key: c2VjcmV0LWtleQ}
  key_type: rsa4096
  renew_when_remaining: 12.5%
  check_every: 30s
  retry: {min: 10s, max: 1h}
  orders_per_minute: 3
  order_lock_ttl: 30s
)");
    const auto acme = parse_config(text, (folder / "gatehouse.yaml").string()).acme;
    CHECK(acme.email == "ops@example.com");
    CHECK(acme.directories ==
          std::vector<std::string>{"https://acme-staging-v02.api.letsencrypt.org/directory",
                                   "https://ca.internal:14000/dir"});
    CHECK(acme.ca_bundle_file == (folder / "ca" / "extra.pem").string());
    REQUIRE(acme.eab.has_value());
    CHECK(acme.eab->key_id == "kid-1");
    CHECK(acme.eab->hmac_key == "c2VjcmV0LWtleQ");
    CHECK(acme.key_type == acme_key_type::rsa4096);
    CHECK(acme.renew_remaining_fraction == Approx(0.125));
    CHECK_FALSE(acme.renew_before.has_value());
    CHECK(acme.check_every == 30s);
    CHECK(acme.retry_min == 10s);
    CHECK(acme.retry_max == 1h);
    CHECK(acme.orders_per_minute == 3);
    CHECK(acme.order_lock_ttl == 30s);

    SECTION("a missing ca_bundle is an error at its value")
    {
        std::filesystem::remove(folder / "ca" / "extra.pem");
        const auto errors = errors_in_file(text, (folder / "gatehouse.yaml").string());
        REQUIRE(errors.size() == 1);
        INFO(errors[0].to_string());
        CHECK(errors[0].line == 4);
        CHECK(errors[0].column == 14);
        CHECK(errors[0].key_path == "acme.ca_bundle");
        CHECK_THAT(errors[0].message,
                   Catch::Contains("cannot read " + (folder / "ca" / "extra.pem").string()));
    }
    SECTION("a folder is not a ca_bundle")
    {
        const auto errors =
            errors_in_file("acme: {ca_bundle: ca}\n", (folder / "gatehouse.yaml").string());
        REQUIRE(errors.size() == 1);
        CHECK(errors[0].key_path == "acme.ca_bundle");
        CHECK_THAT(errors[0].message, Catch::Contains("not a regular file"));
    }
    std::filesystem::remove_all(folder);
}

TEST_CASE("an ACME directory is a known CA's name or an https URL", "[config]")
{
    CHECK(parse_acme_directory("letsencrypt").value() ==
          "https://acme-v02.api.letsencrypt.org/directory");
    CHECK(parse_acme_directory("letsencrypt-staging").value() ==
          "https://acme-staging-v02.api.letsencrypt.org/directory");
    for (const char* text :
         {"https://localhost:14000/dir", "HTTPS://CA.example/acme?tenant=1", "https://ca.example",
          "https://[::1]:14000/dir", "https://10.0.0.1/directory"}) {
        INFO(text);
        const auto parsed = parse_acme_directory(text);
        REQUIRE(parsed.ok());
        CHECK(parsed.value() == text);
    }
    for (const char* text : {"", "Letsencrypt", "ca.example/dir", "ftp://ca.example", "https://",
                             "https:///dir", "https://user@ca.example/", "https://ca.example:0/",
                             "https://ca.example:99999/", "https://ca.example/#top",
                             "https://ca example/", "https://ca_example/", "https://::1/dir"}) {
        INFO(text);
        CHECK_FALSE(parse_acme_directory(text).ok());
    }
    const auto plain = parse_acme_directory("http://ca.example/dir");
    REQUIRE_FALSE(plain.ok());
    CHECK_THAT(plain.error(), Catch::Contains("speaks only HTTPS to a CA"));
}

TEST_CASE("acme.directory is one directory or a non-empty list without duplicates", "[config]")
{
    SECTION("one name")
    {
        CHECK(parse_config("acme: {directory: letsencrypt-staging}\n", "t").acme.directories ==
              std::vector<std::string>{"https://acme-staging-v02.api.letsencrypt.org/directory"});
    }
    SECTION("a plain-HTTP URL")
    {
        check_error(only_error_in("acme:\n  directory: http://ca.example/dir\n"), 2, 14,
                    "acme.directory", "must be an https:// URL");
    }
    SECTION("a name and its own URL are the same directory")
    {
        const auto error = only_error_in(yaml(R"(
acme:
  directory:
    - letsencrypt
    - https://acme-v02.api.letsencrypt.org/directory
)"));
        check_error(error, 4, 7, "acme.directory[1]",
                    "duplicate directory \"https://acme-v02.api.letsencrypt.org/directory\";");
        CHECK_THAT(error.message, Catch::EndsWith("; it is already on line 3"));
    }
    SECTION("an empty list")
    {
        check_error(only_error_in("acme:\n  directory: []\n"), 2, 14, "acme.directory",
                    "the directory list is empty");
    }
    SECTION("a bad entry in a list")
    {
        check_error(only_error_in("acme:\n  directory: [letsencrypt, lets-encrypt]\n"), 2, 28,
                    "acme.directory[1]", "expected letsencrypt, letsencrypt-staging or an https");
    }
}

TEST_CASE("the acme email must look like an address", "[config]")
{
    for (const char* text : {"ops@example.com", "first.last+gatehouse@mail.example.org"}) {
        INFO(text);
        CHECK(parse_email_address(text).ok());
    }
    for (const char* text :
         {"", "ops", "ops@", "@example.com", "a@b@example.com", "ops @example.com",
          "ops@exa mple.com", "ops@-bad.example", "mailto:ops@example.com", "ops@example.com\t"}) {
        INFO(text);
        CHECK_FALSE(parse_email_address(text).ok());
    }
    check_error(only_error_in("acme:\n  email: ops.example.com\n"), 2, 10, "acme.email",
                "expected an email address such as ops@example.com");
    check_error(only_error_in("acme:\n  email: mailto:ops@example.com\n"), 2, 10, "acme.email",
                "without \"mailto:\"");
}

TEST_CASE("an external account binding needs a kid and a base64url hmac_key", "[config]")
{
    CHECK(parse_base64url_secret("c2VjcmV0LWtleQ").ok());
    CHECK(parse_base64url_secret("a-_Z09").ok());
    for (const char* text : {"", "c2VjcmV0=", "abc+def/", "abc def", "abcde"}) {
        INFO(text);
        CHECK_FALSE(parse_base64url_secret(text).ok());
    }

    SECTION("hmac_key missing")
    {
        check_error(only_error_in("acme:\n  eab: {kid: k}\n"), 2, 8, "acme.eab",
                    "needs both kid and hmac_key");
    }
    SECTION("an empty eab")
    {
        check_error(only_error_in("acme:\n  eab:\n"), 2, 3, "acme.eab",
                    "needs both kid and hmac_key");
    }
    SECTION("not a mapping")
    {
        check_error(only_error_in("acme:\n  eab: k:secret\n"), 2, 8, "acme.eab",
                    "expected {kid: KEY_ID, hmac_key: BASE64URL}");
    }
    SECTION("an empty kid")
    {
        check_error(only_error_in("acme:\n  eab: {kid: \"\", hmac_key: a2V5}\n"), 2, 14,
                    "acme.eab.kid", "cannot be empty");
    }
    SECTION("a bad hmac_key is reported without the secret itself")
    {
        for (const char* secret : {"c2VjcmV0LWtleQ==", "s3cr+t/k3y", "abcde"}) {
            INFO(secret);
            const auto error = only_error_in("acme:\n  eab:\n    kid: k\n    hmac_key: \"" +
                                             std::string(secret) + "\"\n");
            check_error(error, 4, 15, "acme.eab.hmac_key", "");
            CHECK_THAT(error.to_string(), !Catch::Contains(secret));
        }
        check_error(only_error_in("acme:\n  eab: {kid: k, hmac_key: \"\"}\n"), 2, 27,
                    "acme.eab.hmac_key", "cannot be empty");
    }
    SECTION("an unknown key")
    {
        check_error(only_error_in("acme:\n  eab: {kid: k, hmac_key: a2V5, key: x}\n"), 2, 33,
                    "acme.eab.key", "unknown key \"key\"");
    }
}

TEST_CASE("acme.key_type names one of four certificate key types", "[config]")
{
    CHECK(parse_acme_key_type("ecdsa-p256").value() == acme_key_type::ecdsa_p256);
    CHECK(parse_acme_key_type("ecdsa-p384").value() == acme_key_type::ecdsa_p384);
    CHECK(parse_acme_key_type("rsa2048").value() == acme_key_type::rsa2048);
    CHECK(parse_acme_key_type("rsa4096").value() == acme_key_type::rsa4096);
    check_error(only_error_in("acme:\n  key_type: rsa1024\n"), 2, 13, "acme.key_type",
                "expected ecdsa-p256, ecdsa-p384, rsa2048 or rsa4096");
}

TEST_CASE("renew_when_remaining is a percentage from 1% to 99% or a duration", "[config]")
{
    CHECK(parse_percentage("33%").value() == Approx(0.33));
    CHECK(parse_percentage("12.5%").value() == Approx(0.125));
    CHECK(parse_percentage("1%").value() == Approx(0.01));
    CHECK(parse_percentage("99%").value() == Approx(0.99));
    for (const char* text : {"", "%", "33", "0%", "0.5%", "99.5%", "100%", "-5%", "+5%", "1e1%",
                             ".5%", "5.%", "5 %", "inf%", "33%%"}) {
        INFO(text);
        CHECK_FALSE(parse_percentage(text).ok());
    }

    SECTION("a percentage")
    {
        const auto acme = parse_config("acme: {renew_when_remaining: 50%}\n", "t").acme;
        CHECK(acme.renew_remaining_fraction == Approx(0.5));
        CHECK_FALSE(acme.renew_before.has_value());
    }
    SECTION("a duration")
    {
        const auto acme = parse_config("acme: {renew_when_remaining: 30d}\n", "t").acme;
        REQUIRE(acme.renew_before.has_value());
        CHECK(*acme.renew_before == std::chrono::hours(24 * 30));
    }
    SECTION("a percentage out of range")
    {
        check_error(only_error_in("acme:\n  renew_when_remaining: 100%\n"), 2, 25,
                    "acme.renew_when_remaining", "must be from 1% to 99%");
    }
    SECTION("a bare number")
    {
        check_error(only_error_in("acme:\n  renew_when_remaining: 33\n"), 2, 25,
                    "acme.renew_when_remaining", "expected a percentage such as 33% or a duration");
    }
    SECTION("a duration under a second")
    {
        check_error(only_error_in("acme:\n  renew_when_remaining: 500ms\n"), 2, 25,
                    "acme.renew_when_remaining", "must be at least 1s");
    }
}

TEST_CASE("acme durations are at least a second and retry.max is at least retry.min", "[config]")
{
    SECTION("check_every under a second")
    {
        check_error(only_error_in("acme:\n  check_every: 500ms\n"), 2, 16, "acme.check_every",
                    "must be at least 1s");
    }
    SECTION("check_every without a unit")
    {
        check_error(only_error_in("acme:\n  check_every: 10\n"), 2, 16, "acme.check_every",
                    "needs a unit");
    }
    SECTION("retry.min of zero")
    {
        check_error(only_error_in("acme:\n  retry: {min: 0s}\n"), 2, 16, "acme.retry.min",
                    "must be greater than zero");
    }
    SECTION("retry.max under retry.min")
    {
        check_error(only_error_in("acme:\n  retry: {min: 10m, max: 5m}\n"), 2, 26, "acme.retry.max",
                    "must be at least retry.min (10m), found 5m");
    }
    SECTION("retry.max under the default retry.min")
    {
        check_error(only_error_in("acme:\n  retry: {max: 30s}\n"), 2, 16, "acme.retry.max",
                    "must be at least retry.min (1m), found 30s");
    }
    SECTION("retry.min over the default retry.max")
    {
        check_error(only_error_in("acme:\n  retry: {min: 12h}\n"), 2, 16, "acme.retry.min",
                    "must be at most retry.max, which is 6h unless set");
    }
    SECTION("retry.min equal to retry.max")
    {
        const auto acme = parse_config("acme: {retry: {min: 5m, max: 5m}}\n", "t").acme;
        CHECK(acme.retry_min == 5min);
        CHECK(acme.retry_max == 5min);
    }
}

TEST_CASE("acme.orders_per_minute is a whole number of at least one", "[config]")
{
    check_error(only_error_in("acme:\n  orders_per_minute: 0\n"), 2, 22, "acme.orders_per_minute",
                "must be greater than zero");
    check_error(only_error_in("acme:\n  orders_per_minute: ten\n"), 2, 22, "acme.orders_per_minute",
                "expected a whole number");
}

TEST_CASE("acme.order_lock_ttl is a duration of at least 6s", "[config]")
{
    SECTION("the minimum and longer values are taken as written")
    {
        CHECK(parse_config("acme: {order_lock_ttl: 6s}\n", "t").acme.order_lock_ttl == 6s);
        CHECK(parse_config("acme: {order_lock_ttl: 1m30s}\n", "t").acme.order_lock_ttl == 90s);
        CHECK(parse_config("acme: {order_lock_ttl: 1h}\n", "t").acme.order_lock_ttl == 1h);
    }
    SECTION("a fraction of a second is dropped, as for every acme duration")
    {
        CHECK(parse_config("acme: {order_lock_ttl: 9500ms}\n", "t").acme.order_lock_ttl == 9s);
    }
    SECTION("below the minimum")
    {
        check_error(only_error_in("acme:\n  order_lock_ttl: 5s\n"), 2, 19, "acme.order_lock_ttl",
                    "must be at least 6s, found 5s: the CA's request deadlines are derived");
        // Dropping the fraction first: 5999ms is 5s, under the minimum too.
        check_error(only_error_in("acme:\n  order_lock_ttl: 5999ms\n"), 2, 19,
                    "acme.order_lock_ttl", "must be at least 6s, found 5999ms");
    }
    SECTION("under a second, zero, or without a unit")
    {
        check_error(only_error_in("acme:\n  order_lock_ttl: 500ms\n"), 2, 19, "acme.order_lock_ttl",
                    "must be at least 1s");
        check_error(only_error_in("acme:\n  order_lock_ttl: 0s\n"), 2, 19, "acme.order_lock_ttl",
                    "must be greater than zero");
        check_error(only_error_in("acme:\n  order_lock_ttl: 150\n"), 2, 19, "acme.order_lock_ttl",
                    "needs a unit");
    }
}

TEST_CASE("the CA deadlines let an order that lost its lock finish before the lock runs out",
          "[config]")
{
    using gatehouse::proxy::transport_options_for;
    using std::chrono::milliseconds;

    SECTION("150 s, the default, keeps 5 s to connect and 20 s to answer")
    {
        const auto options = transport_options_for(parse_config("", "t").acme);
        CHECK(options.connect_timeout == 5s);
        CHECK(options.request_timeout == 20s);
    }
    SECTION("a shorter ttl shrinks both, a longer one keeps them")
    {
        acme_settings settings;
        settings.order_lock_ttl = 9s;
        CHECK(transport_options_for(settings).connect_timeout == 300ms);
        CHECK(transport_options_for(settings).request_timeout == 1200ms);
        settings.order_lock_ttl = min_order_lock_ttl;
        CHECK(transport_options_for(settings).connect_timeout == 200ms);
        CHECK(transport_options_for(settings).request_timeout == 800ms);
        settings.order_lock_ttl = 1h;
        CHECK(transport_options_for(settings).connect_timeout == 5s);
        CHECK(transport_options_for(settings).request_timeout == 20s);
    }
    SECTION("the heartbeat's give-up point plus the longest request stays within the ttl")
    {
        // The longest request is connect + answer, twice when net::http_client sends it again
        // on a fresh connection; the heartbeat gives up at two thirds of the ttl.
        for (const auto ttl : {6s, 7s, 9s, 10s, 31s, 100s, 149s, 150s, 151s, 600s, 86400s}) {
            INFO(ttl.count() << " s");
            acme_settings settings;
            settings.order_lock_ttl = ttl;
            const auto options = transport_options_for(settings);
            const milliseconds give_up = std::chrono::duration_cast<milliseconds>(ttl) * 2 / 3;
            CHECK(options.connect_timeout > 0ms);
            CHECK(options.request_timeout > 0ms);
            CHECK(give_up + 2 * (options.connect_timeout + options.request_timeout) <= ttl);
        }
    }
}

TEST_CASE("acme.preferred_chain names a root and may not be empty", "[config]")
{
    CHECK(parse_config("", "t").acme.preferred_chain.empty());
    CHECK(parse_config("acme: {preferred_chain: ISRG Root X1}\n", "t").acme.preferred_chain ==
          "ISRG Root X1");
    check_error(only_error_in("acme:\n  preferred_chain: \"\"\n"), 2, 20, "acme.preferred_chain",
                "must name a CA");
}

TEST_CASE("an unknown key in the acme section is an error at the key", "[config]")
{
    check_error(only_error_in("acme:\n  directories: letsencrypt\n"), 2, 3, "acme.directories",
                "unknown key \"directories\"; expected one of: email, directory,");
}

TEST_CASE("a route takes its certificate from ACME with tls: acme or tls: {acme: ...}", "[config]")
{
    const auto config = parse_config(yaml(R"(
listen: {https: ":443"}
routes:
  - host: app.example.com
    tls: acme
    hsts: true
    paths: [{upstream: "http://backend"}]
  - host: api.example.com
    tls:
      acme:
        extra_names: [WWW.Example.com., api2.example.com]
    paths: [{upstream: "http://backend"}]
  - host: c.example.com
    tls: {acme: {}}
    redirect_http: false
    paths: [{upstream: "http://backend"}]
  - host: d.example.com
    tls:
      acme:
    paths: [{upstream: "http://backend"}]
)"),
                                     "t");
    REQUIRE(config.routes.size() == 4);
    for (const route& each : config.routes) {
        INFO(each.host);
        CHECK(each.tls.source == tls_source::acme);
    }
    CHECK(config.routes[0].tls.extra_names.empty());
    CHECK(config.routes[0].redirect_http);
    CHECK(config.routes[0].hsts.enabled);
    CHECK(config.routes[1].tls.extra_names ==
          std::vector<std::string>{"www.example.com", "api2.example.com"});
    CHECK(config.routes[2].tls.extra_names.empty());
    CHECK_FALSE(config.routes[2].redirect_http);
    CHECK(config.routes[3].tls.extra_names.empty());
}

TEST_CASE("an acme route needs the https listener and a host that is not a wildcard", "[config]")
{
    SECTION("without listen.https")
    {
        check_error(only_error_in(yaml(R"(
routes:
  - host: a.example.com
    tls: {acme: {extra_names: [b.example.com]}}
    paths: [{upstream: "http://backend"}]
)")),
                    3, 10, "routes[0].tls", "listen.https is not set");
    }
    SECTION("a wildcard host")
    {
        check_error(
            only_error_in(yaml(R"(
listen: {https: ":443"}
routes:
  - host: "*.example.com"
    tls: acme
    paths: [{upstream: "http://backend"}]
)")),
            4, 10, "routes[0].tls",
            "HTTP-01 cannot validate wildcard names; use tls: internal or tls: {cert, key}");
    }
    SECTION("acme mixed with cert and key")
    {
        check_error(only_error_in(yaml(R"(
listen: {https: ":443"}
routes:
  - host: a.example.com
    tls: {acme: {}, cert: a.crt, key: a.key}
    paths: [{upstream: "http://backend"}]
)")),
                    4, 11, "routes[0].tls.acme", "either from acme or from cert and key");
    }
    SECTION("an unknown key under acme")
    {
        check_error(only_error_in(yaml(R"(
listen: {https: ":443"}
routes:
  - host: a.example.com
    tls: {acme: {names: [b.example.com]}}
    paths: [{upstream: "http://backend"}]
)")),
                    4, 18, "routes[0].tls.acme.names", "unknown key \"names\"");
    }
}

TEST_CASE("extra names are distinct DNS names other than the route's host", "[config]")
{
    CHECK(parse_acme_dns_name("WWW.Example.COM.").value() == "www.example.com");
    for (const char* text :
         {"", "*.example.com", "a.*.example.com", "10.0.0.1", "bad_name.example.com",
          "www.example.com:443", "-a.example.com", "[::1]"}) {
        INFO(text);
        CHECK_FALSE(parse_acme_dns_name(text).ok());
    }

    const auto errors = errors_in(yaml(R"(
listen: {https: ":443"}
routes:
  - host: a.example.com
    tls:
      acme:
        extra_names:
          - "*.example.com"
          - 10.0.0.1
          - bad_name.example.com
          - A.example.com
          - b.example.com
          - B.Example.com.
    paths: [{upstream: "http://backend"}]
)"));
    for (const auto& error : errors) {
        UNSCOPED_INFO(error.to_string());
    }
    REQUIRE(errors.size() == 5);
    const std::string names = "routes[0].tls.acme.extra_names";
    check_error(errors[0], 7, 13, names + "[0]", "HTTP-01 cannot validate wildcard names");
    check_error(errors[1], 8, 13, names + "[1]", "invalid DNS name \"10.0.0.1\"");
    check_error(errors[2], 9, 13, names + "[2]", "invalid DNS name \"bad_name.example.com\"");
    check_error(errors[3], 10, 13, names + "[3]", "is the route's host");
    check_error(errors[4], 12, 13, names + "[5]",
                "duplicate extra name \"b.example.com\"; it is already on line 11");
}

TEST_CASE("a name is on one certificate only: no extra name is another route's", "[config]")
{
    const auto errors = errors_in(yaml(R"(
listen: {https: ":443"}
routes:
  - host: a.example.com
    tls: {acme: {extra_names: [www.example.com, b.example.com]}}
    paths: [{upstream: "http://backend"}]
  - host: b.example.com
    tls: internal
    paths: [{upstream: "http://backend"}]
  - host: c.example.com
    tls: {acme: {extra_names: [WWW.example.com]}}
    paths: [{upstream: "http://backend"}]
)"));
    for (const auto& error : errors) {
        UNSCOPED_INFO(error.to_string());
    }
    REQUIRE(errors.size() == 2);
    check_error(errors[0], 4, 49, "routes[0].tls.acme.extra_names[1]",
                "\"b.example.com\" is the host of the route on line 6;");
    check_error(errors[1], 10, 32, "routes[2].tls.acme.extra_names[0]",
                "\"www.example.com\" is already an extra name on line 4;");
    for (const auto& error : errors) {
        CHECK_THAT(error.message, Catch::EndsWith("; a name can be on only one certificate"));
    }
}

TEST_CASE("the acme example in docs/configuration.md parses with the values it shows", "[config]")
{
    const auto folder = std::filesystem::temp_directory_path() / "gatehouse-config-acme-docs";
    std::filesystem::create_directories(folder);
    std::ofstream(folder / "extra-ca.pem") << "certificate";
    const std::string markdown = read_text(repository_root / "docs" / "configuration.md");
    const auto config =
        parse_config(yaml_block_after(markdown, "### acme"), (folder / "gatehouse.yaml").string());
    std::filesystem::remove_all(folder);

    CHECK(config.acme.email == "ops@example.com");
    CHECK(config.acme.directories ==
          std::vector<std::string>{"https://acme-v02.api.letsencrypt.org/directory"});
    CHECK(config.acme.ca_bundle_file == (folder / "extra-ca.pem").string());
    REQUIRE(config.acme.eab.has_value());
    CHECK(config.acme.eab->key_id == "KID");
    CHECK(config.acme.renew_remaining_fraction == Approx(0.33));
    CHECK(config.acme.order_lock_ttl == 150s);
    REQUIRE(config.routes.size() == 2);
    CHECK(config.routes[0].tls.source == tls_source::acme);
    CHECK(config.routes[0].tls.extra_names == std::vector<std::string>{"www.example.com"});
    CHECK(config.routes[1].tls.source == tls_source::acme);
    CHECK(config.routes[1].tls.extra_names.empty());
}

// ---- hooks ----------------------------------------------------------------------------------

TEST_CASE("no hook runs unless hooks.certificate_updated is set", "[config]")
{
    CHECK_FALSE(parse_config("", "t").hooks.certificate_updated.has_value());
    CHECK_FALSE(parse_config("hooks: {}\n", "t").hooks.certificate_updated.has_value());
}

TEST_CASE("the certificate_updated hook is a command list with a timeout of 60s by default",
          "[config]")
{
    SECTION("an absolute path with arguments, and a timeout")
    {
        const auto hooks = parse_config(yaml(R"(
hooks:
  certificate_updated:
    command: [/bin/sh, -c, "exit 0", ""]
    timeout: 2m
)"),
                                        "t")
                               .hooks;
        REQUIRE(hooks.certificate_updated.has_value());
        CHECK(hooks.certificate_updated->command ==
              std::vector<std::string>{"/bin/sh", "-c", "exit 0", ""});
        CHECK(hooks.certificate_updated->timeout == 2min);
    }
    SECTION("a program name, looked up in PATH when it runs, and the default timeout")
    {
        const auto hooks =
            parse_config("hooks: {certificate_updated: {command: [no-such-program-yet]}}\n", "t")
                .hooks;
        REQUIRE(hooks.certificate_updated.has_value());
        CHECK(hooks.certificate_updated->command ==
              std::vector<std::string>{"no-such-program-yet"});
        CHECK(hooks.certificate_updated->timeout == 60s);
    }
}

TEST_CASE("a certificate_updated hook needs a runnable program and a timeout of at least 1s",
          "[config]")
{
    const std::string hook = "hooks.certificate_updated";
    SECTION("no command")
    {
        check_error(only_error_in("hooks:\n  certificate_updated: {timeout: 5s}\n"), 2, 24, hook,
                    "missing command: the program to run and its arguments, as a list");
    }
    SECTION("an empty value")
    {
        check_error(only_error_in("hooks:\n  certificate_updated:\n"), 2, 3, hook,
                    "missing command");
    }
    SECTION("a command that is not a list")
    {
        check_error(only_error_in("hooks:\n  certificate_updated: {command: /bin/true}\n"), 2, 34,
                    hook + ".command", "expected a list, found \"/bin/true\"");
    }
    SECTION("an empty command")
    {
        check_error(only_error_in("hooks:\n  certificate_updated: {command: []}\n"), 2, 34,
                    hook + ".command", "the command is empty");
    }
    SECTION("an empty program")
    {
        check_error(only_error_in("hooks:\n  certificate_updated: {command: [\"\"]}\n"), 2, 35,
                    hook + ".command[0]", "the program cannot be empty");
    }
    SECTION("a relative path")
    {
        check_error(only_error_in("hooks:\n  certificate_updated: {command: [bin/hook]}\n"), 2, 35,
                    hook + ".command[0]",
                    "expected an absolute path or a program name looked up in PATH, found "
                    "\"bin/hook\"");
    }
    SECTION("an absolute path that does not exist")
    {
        check_error(only_error_in("hooks:\n  certificate_updated: {command: [/no/such/hook]}\n"), 2,
                    35, hook + ".command[0]",
                    "cannot run /no/such/hook: No such file or directory");
    }
    SECTION("a folder")
    {
        check_error(only_error_in("hooks:\n  certificate_updated: {command: [/tmp]}\n"), 2, 35,
                    hook + ".command[0]", "cannot run /tmp: not a regular file");
    }
    SECTION("a file that is not executable")
    {
        const auto script = scratch_file("not-executable-hook.sh", "#!/bin/sh\n");
        std::filesystem::permissions(script, std::filesystem::perms::owner_read |
                                                 std::filesystem::perms::owner_write);
        const auto errors =
            errors_in("hooks:\n  certificate_updated: {command: [" + script.string() + "]}\n");
        REQUIRE(errors.size() == 1);
        // root may run anything with an execute bit; with none set, nobody may.
        CHECK(errors[0].key_path == hook + ".command[0]");
        CHECK_THAT(errors[0].message, Catch::EndsWith(": not executable"));
    }
    SECTION("an argument that is not a string")
    {
        check_error(only_error_in("hooks:\n  certificate_updated: {command: [/bin/sh, [x]]}\n"), 2,
                    44, hook + ".command[1]", "expected a string");
    }
    SECTION("a timeout under a second")
    {
        check_error(only_error_in("hooks:\n  certificate_updated: {command: [/bin/true], timeout: "
                                  "500ms}\n"),
                    2, 56, hook + ".timeout", "must be at least 1s");
    }
    SECTION("a timeout without a unit")
    {
        check_error(only_error_in("hooks:\n  certificate_updated: {command: [/bin/true], timeout: "
                                  "30}\n"),
                    2, 56, hook + ".timeout", "needs a unit");
    }
    SECTION("an unknown key")
    {
        check_error(only_error_in("hooks:\n  certificate_renewed: {command: [/bin/true]}\n"), 2, 3,
                    "hooks.certificate_renewed",
                    "unknown key \"certificate_renewed\"; expected one of: certificate_updated");
    }
}

TEST_CASE("the hooks example in docs/configuration.md parses with the values it shows", "[config]")
{
    const std::string markdown = read_text(repository_root / "docs" / "configuration.md");
    const auto config = parse_config(yaml_block_after(markdown, "### hooks"), "docs");
    REQUIRE(config.hooks.certificate_updated.has_value());
    const auto& hook = *config.hooks.certificate_updated;
    REQUIRE(hook.command.size() == 3);
    CHECK(hook.command[0] == "/bin/sh");
    CHECK(hook.command[1] == "-c");
    CHECK_THAT(hook.command[2], Catch::Contains("$GATEHOUSE_CERTIFICATE_FILE"));
    CHECK(hook.timeout == 30s);
}

TEST_CASE("the store's encryption key file is read against the configuration's folder", "[config]")
{
    CHECK(parse_config("", "test.yaml").store.encryption_key_file.empty());

    const auto folder = std::filesystem::temp_directory_path() / "gatehouse-config-encryption-test";
    std::filesystem::create_directories(folder / "secrets");
    std::ofstream(folder / "secrets" / "store.keys") << "# a key ring\n";
    const auto config =
        parse_config("store: {file: state, encryption_key_file: secrets/store.keys}\n",
                     (folder / "gatehouse.yaml").string());
    CHECK(config.store.encryption_key_file == (folder / "secrets" / "store.keys").string());
    CHECK(config.store.file_directory == (folder / "state").string());
    std::filesystem::remove_all(folder);
}

TEST_CASE("a store encryption key file that cannot be read is an error at its key", "[config]")
{
    const auto folder = std::filesystem::temp_directory_path() / "gatehouse-config-encryption-bad";
    std::filesystem::create_directories(folder);
    const std::string file_name = (folder / "gatehouse.yaml").string();

    SECTION("a missing file")
    {
        const auto errors = errors_in_file(
            "store:\n  file: state\n  encryption_key_file: missing.keys\n", file_name);
        REQUIRE(errors.size() == 1);
        INFO(errors[0].to_string());
        CHECK(errors[0].line == 3);
        CHECK(errors[0].column == 24);
        CHECK(errors[0].key_path == "store.encryption_key_file");
        CHECK_THAT(errors[0].message,
                   Catch::Contains("cannot read " + (folder / "missing.keys").string()));
    }
    SECTION("a folder")
    {
        const auto errors =
            errors_in_file("store: {file: state, encryption_key_file: .}\n", file_name);
        REQUIRE(errors.size() == 1);
        CHECK(errors[0].key_path == "store.encryption_key_file");
        CHECK_THAT(errors[0].message, Catch::Contains("not a regular file"));
    }
    SECTION("not a string")
    {
        const auto errors =
            errors_in_file("store: {file: state, encryption_key_file: [a, b]}\n", file_name);
        REQUIRE(errors.size() == 1);
        CHECK(errors[0].key_path == "store.encryption_key_file");
    }
    std::filesystem::remove_all(folder);
}

TEST_CASE("the store lives in files unless an etcd section names a cluster", "[config]")
{
    CHECK_FALSE(parse_config("", "test.yaml").store.etcd.has_value());

    const auto config = parse_config(yaml(R"(
store:
  etcd:
    endpoints: [http://127.0.0.1:2379, HTTPS://etcd-1.internal:2379/, "https://[::1]:2379"]
)"),
                                     "test.yaml");

    REQUIRE(config.store.etcd.has_value());
    const auto& etcd = *config.store.etcd;
    CHECK(etcd.endpoints == std::vector<std::string>{"http://127.0.0.1:2379",
                                                     "https://etcd-1.internal:2379",
                                                     "https://[::1]:2379"});
    CHECK(etcd.prefix == "/gatehouse/");
    CHECK(etcd.ca_file.empty());
    CHECK(etcd.username.empty());
    CHECK(parse_config("store: {etcd: {endpoints: http://10.0.0.5:2379}}\n", "test.yaml")
              .store.etcd->endpoints == std::vector<std::string>{"http://10.0.0.5:2379"});
}

TEST_CASE("an etcd store reads its prefix, TLS files against the folder, and credentials",
          "[config]")
{
    const auto folder = std::filesystem::temp_directory_path() / "gatehouse-config-etcd-test";
    std::filesystem::create_directories(folder / "etcd");
    for (const char* name : {"ca.pem", "client.pem", "client.key"}) {
        std::ofstream(folder / "etcd" / name) << "-----BEGIN TEST-----\n";
    }
    const auto config = parse_config(yaml(R"(
store:
  encryption_key_file: etcd/ca.pem
  etcd:
    endpoints: [https://etcd-0:2379, https://etcd-1:2379]
    prefix: /prod/gatehouse/
    tls: {ca: etcd/ca.pem, cert: etcd/client.pem, key: etcd/client.key}
    username: gatehouse
    password: "s3cret: with a colon"
)"),
                                     (folder / "gatehouse.yaml").string());

    REQUIRE(config.store.etcd.has_value());
    const auto& etcd = *config.store.etcd;
    CHECK(etcd.prefix == "/prod/gatehouse/");
    CHECK(etcd.ca_file == (folder / "etcd" / "ca.pem").string());
    CHECK(etcd.certificate_file == (folder / "etcd" / "client.pem").string());
    CHECK(etcd.key_file == (folder / "etcd" / "client.key").string());
    CHECK(etcd.username == "gatehouse");
    CHECK(etcd.password == "s3cret: with a colon");
    CHECK(config.store.encryption_key_file == (folder / "etcd" / "ca.pem").string());
    std::filesystem::remove_all(folder);
}

TEST_CASE("an etcd store section with a mistake is an error at its key", "[config]")
{
    SECTION("both file and etcd")
    {
        check_error(only_error_in(yaml(R"(
store:
  file: /var/lib/gatehouse
  etcd: {endpoints: [http://127.0.0.1:2379]}
)")),
                    3, 3, "store.etcd", "set either file or etcd, not both");
    }
    SECTION("no endpoints")
    {
        check_error(only_error_in("store: {etcd: {prefix: /x/}}\n"), 1, 15, "store.etcd",
                    "missing endpoints");
    }
    SECTION("an empty endpoint list")
    {
        check_error(only_error_in("store: {etcd: {endpoints: []}}\n"), 1, 27,
                    "store.etcd.endpoints", "the endpoint list is empty");
    }
    SECTION("an endpoint that is not an http or https URL")
    {
        check_error(only_error_in("store: {etcd: {endpoints: [etcd-0:2379]}}\n"), 1, 28,
                    "store.etcd.endpoints[0]", "expected an etcd client URL");
    }
    SECTION("an endpoint with a path")
    {
        check_error(only_error_in("store: {etcd: {endpoints: [http://etcd-0:2379/v3]}}\n"), 1, 28,
                    "store.etcd.endpoints[0]", "without a path");
    }
    SECTION("an endpoint without a port")
    {
        check_error(only_error_in("store: {etcd: {endpoints: [http://etcd-0]}}\n"), 1, 28,
                    "store.etcd.endpoints[0]", "needs a host and a port");
    }
    SECTION("a duplicate endpoint")
    {
        check_error(only_error_in("store: {etcd: {endpoints: [http://a:2379, http://a:2379/]}}\n"),
                    1, 43, "store.etcd.endpoints[1]", "duplicate endpoint");
    }
    SECTION("a prefix without its slashes")
    {
        check_error(
            only_error_in("store: {etcd: {endpoints: [http://a:2379], prefix: gatehouse}}\n"), 1,
            52, "store.etcd.prefix", "must start and end with '/'");
    }
    SECTION("an unknown key")
    {
        check_error(
            only_error_in("store: {etcd: {endpoints: [http://a:2379], endpoint: http://b:1}}\n"), 1,
            44, "store.etcd.endpoint", "endpoint");
    }
    SECTION("tls for plain http endpoints")
    {
        const auto error = only_error_in(
            "store: {etcd: {endpoints: [http://a:2379], tls: {ca: /etc/hostname}}}\n");
        check_error(error, 1, 49, "store.etcd.tls", "no endpoint is one");
    }
}

TEST_CASE("etcd TLS files must be readable and the client certificate needs its key", "[config]")
{
    SECTION("a missing CA file")
    {
        const auto error = only_error_in(
            "store: {etcd: {endpoints: [https://a:2379], tls: {ca: /nonexistent/ca.pem}}}\n");
        CHECK(error.key_path == "store.etcd.tls.ca");
        CHECK_THAT(error.message, Catch::Contains("cannot read /nonexistent/ca.pem"));
    }
    SECTION("a certificate without its key")
    {
        const auto error = only_error_in(
            "store: {etcd: {endpoints: [https://a:2379], tls: {cert: /etc/hostname}}}\n");
        CHECK(error.key_path == "store.etcd.tls");
        CHECK_THAT(error.message, Catch::Contains("give both cert and key"));
    }
}

TEST_CASE("an etcd password needs a username and is never quoted in an error", "[config]")
{
    SECTION("a password alone")
    {
        const auto error = only_error_in(
            "store: {etcd: {endpoints: [http://a:2379], password: hunter2-secret}}\n");
        CHECK(error.key_path == "store.etcd.password");
        CHECK_THAT(error.message, Catch::Contains("a password needs a username"));
        CHECK_THAT(error.to_string(), !Catch::Contains("hunter2-secret"));
    }
    SECTION("a password that is not a string")
    {
        const auto error = only_error_in(
            "store: {etcd: {endpoints: [http://a:2379], username: u, password: [hunter2]}}\n");
        CHECK(error.key_path == "store.etcd.password");
        CHECK_THAT(error.to_string(), !Catch::Contains("hunter2"));
    }
    SECTION("an empty username")
    {
        const auto error =
            only_error_in("store: {etcd: {endpoints: [http://a:2379], username: \"\"}}\n");
        CHECK(error.key_path == "store.etcd.username");
    }
}

TEST_CASE("the etcd example in docs/configuration.md parses with the values it shows", "[config]")
{
    const auto folder = std::filesystem::temp_directory_path() / "gatehouse-config-etcd-docs";
    std::filesystem::create_directories(folder / "etcd");
    for (const char* name : {"ca.pem", "client.pem", "client.key"}) {
        std::ofstream(folder / "etcd" / name) << "pem";
    }
    const std::string markdown = read_text(repository_root / "docs" / "configuration.md");
    const auto config =
        parse_config(yaml_block_after(markdown, "### store"), (folder / "gatehouse.yaml").string());
    std::filesystem::remove_all(folder);

    REQUIRE(config.store.etcd.has_value());
    const auto& etcd = *config.store.etcd;
    CHECK(etcd.endpoints.size() == 3);
    CHECK(etcd.endpoints[0] == "https://etcd-0.etcd:2379");
    CHECK(etcd.prefix == "/gatehouse/");
    CHECK(etcd.ca_file == (folder / "etcd" / "ca.pem").string());
    CHECK(etcd.key_file == (folder / "etcd" / "client.key").string());
    CHECK(etcd.username == "gatehouse");
}
