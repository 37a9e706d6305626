// Tests for the process counters: how responses are bucketed by status class, and the
// Prometheus text exposition the admin listener serves.
#include "proxy/metrics.hpp"

#include <cstdint>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

using gatehouse::proxy::metrics;

namespace {

std::uint64_t responses_in_class(const metrics& counters, unsigned status_class)
{
    return counters.responses_by_class[status_class].load();
}

std::vector<std::string> lines_of(const std::string& text)
{
    std::vector<std::string> lines;
    std::istringstream stream(text);
    for (std::string line; std::getline(stream, line);) {
        lines.push_back(line);
    }
    return lines;
}

bool has_line(const std::string& text, const std::string& wanted)
{
    for (const auto& line : lines_of(text)) {
        if (line == wanted) {
            return true;
        }
    }
    return false;
}

} // namespace

TEST_CASE("count_response adds each status to its class", "[proxy]")
{
    // RFC 9110 section 15: the first digit of a status code is its class.
    metrics counters;
    for (unsigned status :
         {100u, 101u, 199u, 200u, 204u, 301u, 304u, 400u, 404u, 431u, 499u, 500u, 502u, 599u}) {
        counters.count_response(status);
    }

    CHECK(responses_in_class(counters, 1) == 3);
    CHECK(responses_in_class(counters, 2) == 2);
    CHECK(responses_in_class(counters, 3) == 2);
    CHECK(responses_in_class(counters, 4) == 4);
    CHECK(responses_in_class(counters, 5) == 3);
}

TEST_CASE("count_response ignores codes outside 100 to 599", "[proxy]")
{
    metrics counters;
    for (unsigned status : {0u, 1u, 99u, 600u, 999u, 1000u, 4294967295u}) {
        INFO("status " << status);
        counters.count_response(status);
    }

    for (unsigned status_class = 0; status_class <= 5; ++status_class) {
        INFO("class " << status_class);
        CHECK(responses_in_class(counters, status_class) == 0);
    }

    // The same counters still count a real code, so the loop above had something to miss.
    counters.count_response(503);
    CHECK(responses_in_class(counters, 5) == 1);
}

TEST_CASE("render_prometheus gives HELP and TYPE lines for every metric", "[proxy]")
{
    metrics counters;
    const auto text = counters.render_prometheus();

    const std::pair<const char*, const char*> expected[] = {
        {"gatehouse_requests_total", "counter"},
        {"gatehouse_connections_accepted_total", "counter"},
        {"gatehouse_connections_refused_total", "counter"},
        {"gatehouse_connections_open", "gauge"},
        {"gatehouse_upstream_connects_total", "counter"},
        {"gatehouse_upstream_failures_total", "counter"},
        {"gatehouse_upstream_ejections_total", "counter"},
        {"gatehouse_request_body_bytes_total", "counter"},
        {"gatehouse_response_body_bytes_total", "counter"},
        {"gatehouse_config_reloads_total", "counter"},
        {"gatehouse_config_reload_failures_total", "counter"},
    };
    for (const auto& [name, type] : expected) {
        INFO("metric " << name);
        CHECK_THAT(text, Catch::Contains(std::string("# HELP ") + name + " "));
        CHECK(has_line(text, std::string("# TYPE ") + name + " " + type));
    }

    // The exposition format ends every line, the last one included, with a newline.
    REQUIRE_FALSE(text.empty());
    CHECK(text.back() == '\n');
}

TEST_CASE("render_prometheus shows the current value of every counter", "[proxy]")
{
    metrics counters;
    counters.count_response(200);
    counters.count_response(201);
    counters.count_response(404);
    counters.count_response(502);
    counters.connections_accepted = 12;
    counters.connections_refused = 3;
    counters.connections_open = 5;
    counters.upstream_connects = 9;
    counters.upstream_failures = 2;
    counters.upstream_ejections = 1;
    counters.request_bytes = 1024;
    counters.response_bytes = 18446744073709551615ULL;
    counters.config_reloads = 4;
    counters.config_reload_failures = 6;

    const auto text = counters.render_prometheus();
    CHECK(has_line(text, R"(gatehouse_requests_total{code="1xx"} 0)"));
    CHECK(has_line(text, R"(gatehouse_requests_total{code="2xx"} 2)"));
    CHECK(has_line(text, R"(gatehouse_requests_total{code="3xx"} 0)"));
    CHECK(has_line(text, R"(gatehouse_requests_total{code="4xx"} 1)"));
    CHECK(has_line(text, R"(gatehouse_requests_total{code="5xx"} 1)"));
    CHECK(has_line(text, "gatehouse_connections_accepted_total 12"));
    CHECK(has_line(text, "gatehouse_connections_refused_total 3"));
    CHECK(has_line(text, "gatehouse_connections_open 5"));
    CHECK(has_line(text, "gatehouse_upstream_connects_total 9"));
    CHECK(has_line(text, "gatehouse_upstream_failures_total 2"));
    CHECK(has_line(text, "gatehouse_upstream_ejections_total 1"));
    CHECK(has_line(text, "gatehouse_request_body_bytes_total 1024"));
    CHECK(has_line(text, "gatehouse_response_body_bytes_total 18446744073709551615"));
    CHECK(has_line(text, "gatehouse_config_reloads_total 4"));
    CHECK(has_line(text, "gatehouse_config_reload_failures_total 6"));
}

TEST_CASE("render_prometheus writes every sample after its own TYPE line", "[proxy]")
{
    // Prometheus text format 0.0.4: a metric's HELP and TYPE come before its first sample.
    metrics counters;
    counters.connections_open = -1;
    const auto lines = lines_of(counters.render_prometheus());

    std::string typed_metric;
    for (const auto& line : lines) {
        INFO("line: " << line);
        REQUIRE_FALSE(line.empty());
        if (line.rfind("# TYPE ", 0) == 0) {
            typed_metric = line.substr(7, line.find(' ', 7) - 7);
            continue;
        }
        if (line.rfind("# HELP ", 0) == 0) {
            continue;
        }
        auto name_end = line.find_first_of("{ ");
        CHECK(line.substr(0, name_end) == typed_metric);
    }
    CHECK(has_line(counters.render_prometheus(), "gatehouse_connections_open -1"));
}
