#include "proxy/admin_server.hpp"

#include "proxy/certificate_manager.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"
#include "proxy/version.hpp"
#include "store/rfc3339.hpp"
#include "store/store.hpp"

#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace gatehouse::proxy {

namespace http = beast::http;

namespace {

nlohmann::json store_json(const store::store* store)
{
    if (store == nullptr) {
        return nullptr;
    }
    const auto degraded = store->degraded();
    return {{"backend", store->describe()},
            {"state", degraded ? "degraded" : "ok"},
            {"detail", degraded ? nlohmann::json(*degraded) : nlohmann::json(nullptr)}};
}

// "3 of 4 loaded; waiting for a.example.com" for /readyz: certificates still being obtained
// (ACME ones, after a start with the CA out of reach) do not hold readiness back, since the
// other routes must keep serving, but the probe says so.
std::string certificates_line(const certificate_manager* certificates)
{
    if (certificates == nullptr) {
        return "";
    }
    std::size_t loaded = 0;
    std::string waiting;
    const auto all = certificates->status();
    for (const auto& each : all) {
        if (!each.serial.empty()) {
            ++loaded;
        } else {
            waiting += (waiting.empty() ? "" : ", ") + each.host;
        }
    }
    std::string line =
        "certificates: " + std::to_string(loaded) + " of " + std::to_string(all.size()) + " loaded";
    if (!waiting.empty()) {
        line += "; waiting for " + waiting;
    }
    return line + "\n";
}

constexpr std::chrono::seconds admin_timeout{10};
constexpr std::uint32_t admin_header_limit = 8 * 1024;

struct admin_answer {
    http::status status = http::status::ok;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
};

admin_answer answer_for(std::string_view path, const server_status& status)
{
    const auto& config = *status.settings->config;
    if (path == config.health_path) {
        return {http::status::ok, "text/plain; charset=utf-8", "ok\n"};
    }
    if (path == "/readyz") {
        if (status.ready()) {
            return {http::status::ok, "text/plain; charset=utf-8",
                    "ready\n" + certificates_line(status.certificates)};
        }
        return {http::status::service_unavailable, "text/plain; charset=utf-8",
                status.draining ? "draining\n" : "starting\n"};
    }
    if (path == "/status") {
        return {http::status::ok, "application/json", render_status_json(status)};
    }
    if (path == "/metrics") {
        return {http::status::ok, "text/plain; version=0.0.4; charset=utf-8",
                process_metrics().render_prometheus()};
    }
    if (path == "/") {
        nlohmann::json index = {
            {"service", "gatehouse"},
            {"version", version_string},
            {"endpoints", {config.health_path, "/readyz", "/status", "/metrics"}},
        };
        return {http::status::ok, "application/json", index.dump(2) + "\n"};
    }
    return {http::status::not_found, "text/plain; charset=utf-8", "not found\n"};
}

nlohmann::json optional_time(const std::optional<std::chrono::system_clock::time_point>& time)
{
    return time ? nlohmann::json(store::format_rfc3339(*time)) : nlohmann::json(nullptr);
}

nlohmann::json certificates_json(const certificate_manager* certificates)
{
    nlohmann::json list = nlohmann::json::array();
    if (certificates == nullptr) {
        return list;
    }
    for (const auto& each : certificates->status()) {
        const bool loaded = !each.serial.empty();
        list.push_back({
            {"host", each.host},
            {"source", each.source},
            {"ca", each.ca.empty() ? nlohmann::json(nullptr) : nlohmann::json(each.ca)},
            {"names", each.names},
            {"issuer", each.issuer},
            {"serial", each.serial},
            {"not_before", loaded ? nlohmann::json(store::format_rfc3339(each.not_before))
                                  : nlohmann::json(nullptr)},
            {"not_after", loaded ? nlohmann::json(store::format_rfc3339(each.not_after))
                                 : nlohmann::json(nullptr)},
            {"renew_at", optional_time(each.renew_at)},
            {"last_error",
             each.last_error.empty() ? nlohmann::json(nullptr) : nlohmann::json(each.last_error)},
            {"failed_attempts", each.failed_attempts},
            {"next_attempt", optional_time(each.next_attempt)},
        });
    }
    return list;
}

} // namespace

std::string render_status_json(const server_status& status)
{
    const auto& config = *status.settings->config;
    auto uptime = std::chrono::duration_cast<std::chrono::seconds>(
        std::chrono::system_clock::now() - status.started_at);

    nlohmann::json routes = nlohmann::json::array();
    for (const auto& route : config.routes) {
        nlohmann::json paths = nlohmann::json::array();
        for (const auto& path : route.paths) {
            nlohmann::json upstreams = nlohmann::json::array();
            for (const auto& upstream : path.upstreams) {
                upstreams.push_back(upstream.text);
            }
            paths.push_back({{"prefix", path.prefix},
                             {"strip_prefix", path.strip_prefix},
                             {"upstreams", upstreams}});
        }
        const char* tls = route.tls.source == config::tls_source::internal ? "internal"
                          : route.tls.source == config::tls_source::files  ? "files"
                          : route.tls.source == config::tls_source::acme   ? "acme"
                                                                           : "off";
        routes.push_back({{"host", route.host}, {"tls", tls}, {"paths", paths}});
    }

    nlohmann::json document = {
        {"version", version_string},
        {"ready", status.ready()},
        {"draining", status.draining.load()},
        {"uptime_seconds", uptime.count()},
        {"threads", status.threads},
        {"config_file", status.config_path},
        {"connections_open", process_metrics().connections_open.load()},
        {"listeners",
         {{"http", config.http_listener.text},
          {"https", config.https_listener ? nlohmann::json(config.https_listener->text)
                                          : nlohmann::json(nullptr)}}},
        {"routes", routes},
        {"certificates", certificates_json(status.certificates)},
        {"store", store_json(status.store)},
        {"last_reload", {{"at", status.last_reload_at}, {"error", status.last_reload_error}}},
    };
    return document.dump(2) + "\n";
}

admin_server::admin_server(asio::io_context& context, server_status& status)
    : context_(context), status_(status), acceptor_(context)
{}

void admin_server::start(const config::listen_address& address)
{
    auto ip = address.host.empty() ? asio::ip::address(asio::ip::address_v6::any())
                                   : asio::ip::make_address(address.host);
    tcp::endpoint endpoint(ip, address.port);
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    if (endpoint.protocol() == tcp::v6()) {
        acceptor_.set_option(asio::ip::v6_only(false));
    }
    acceptor_.bind(endpoint);
    acceptor_.listen();
    asio::co_spawn(context_, accept_loop(), asio::detached);
    log::write(*log::get("admin"), spdlog::level::info, "admin listener up",
               {{"address", address.text}});
}

void admin_server::stop()
{
    error_code ignored;
    acceptor_.close(ignored);
}

task<void> admin_server::accept_loop()
{
    for (;;) {
        auto [ec, socket] = co_await acceptor_.async_accept(use_nothrow);
        if (!acceptor_.is_open()) {
            co_return;
        }
        if (ec) {
            continue;
        }
        asio::co_spawn(context_, serve(std::move(socket)), asio::detached);
    }
}

task<void> admin_server::serve(tcp_socket socket)
{
    tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer(admin_header_limit + 1024);

    for (;;) {
        http::request_parser<http::empty_body> parser;
        parser.header_limit(admin_header_limit);
        stream.expires_after(admin_timeout);
        auto [read_error, n] = co_await http::async_read(stream, buffer, parser, use_nothrow);
        if (read_error) {
            break;
        }
        const auto& request = parser.get();

        admin_answer answer;
        if (request.method() != http::verb::get && request.method() != http::verb::head) {
            answer = {http::status::method_not_allowed, "text/plain; charset=utf-8",
                      "only GET and HEAD\n"};
        } else {
            auto target = std::string_view(request.target());
            answer = answer_for(target.substr(0, target.find('?')), status_);
        }

        http::response<http::string_body> response(answer.status, request.version());
        response.set(http::field::content_type, answer.content_type);
        response.set(http::field::cache_control, "no-store");
        response.keep_alive(request.keep_alive());
        response.body() = std::move(answer.body);
        response.prepare_payload();
        if (request.method() == http::verb::head) {
            response.body().clear();
        }

        auto [write_error, written] = co_await http::async_write(stream, response, use_nothrow);
        if (write_error || !response.keep_alive()) {
            break;
        }
    }
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

} // namespace gatehouse::proxy
