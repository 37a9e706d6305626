#include "proxy/server.hpp"

#include "config/config_loader.hpp"
#include "proxy/admin_server.hpp"
#include "proxy/certificate_manager.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"
#include "proxy/store_factory.hpp"
#include "proxy/worker.hpp"
#include "store/rfc3339.hpp"
#include "store/store.hpp"

#include <csignal>
#include <thread>

#include <boost/asio/signal_set.hpp>

namespace gatehouse::proxy {

namespace {

// How often a drain checks whether every connection has finished.
constexpr std::chrono::milliseconds drain_poll_interval{50};

constexpr int listen_backlog = 1024;

tcp::endpoint endpoint_for(const config::listen_address& address)
{
    if (address.host.empty()) {
        return {asio::ip::address_v6::any(), address.port};
    }
    error_code ec;
    auto ip = asio::ip::make_address(address.host, ec);
    if (!ec) {
        return {ip, address.port};
    }
    // A name such as "localhost": listen on the first address it resolves to.
    asio::io_context resolver_context;
    tcp::resolver resolver(resolver_context);
    auto results = resolver.resolve(address.host, std::to_string(address.port));
    return results.begin()->endpoint();
}

// Whether two configurations name the same store, opened the same way.
bool same_store(const config::store_settings& a, const config::store_settings& b)
{
    const auto where = [](const config::store_settings& s) {
        std::string text = s.file_directory + "\n" + s.encryption_key_file;
        if (s.etcd) {
            text += "\netcd " + s.etcd->prefix + " " + s.etcd->cache_dir + " " + s.etcd->username;
            for (const auto& endpoint : s.etcd->endpoints) {
                text += " " + endpoint;
            }
        }
        return text;
    };
    return where(a) == where(b);
}

unsigned worker_count(const config::gatehouse_config& config)
{
    if (config.threads > 0) {
        return config.threads;
    }
    return std::max(1u, std::thread::hardware_concurrency());
}

} // namespace

struct server::impl {
    impl(std::string path, config::gatehouse_config initial)
    {
        status.config_path = std::move(path);
        status.settings = std::make_shared<proxy_settings>(
            std::make_shared<const config::gatehouse_config>(std::move(initial)));
        status.threads = worker_count(*status.settings->config);
    }

    void open_listener(tcp::acceptor& acceptor, const config::listen_address& address,
                       std::string_view name);
    void create_workers();
    void start_certificates();
    void start_workers();
    void wait_for_signal();
    void on_signal(int signal_number);
    void reload();
    void begin_drain();
    void check_drained();
    void finish();

    asio::io_context context{1};
    server_status status;
    shared_server_state shared;
    // The listening sockets belong to a context that never runs. Every worker accepts on its
    // own copy of them; were they registered with the main thread's running context too,
    // every new connection would also wake the main thread, which on a one-core setup takes
    // its turn on the worker's core.
    asio::io_context listener_context{1};
    tcp::acceptor http_acceptor{listener_context};
    tcp::acceptor https_acceptor{listener_context};
    std::unique_ptr<store::store> certificate_store;
    std::unique_ptr<certificate_manager> certificates;
    std::unique_ptr<admin_server> admin;
    std::vector<std::unique_ptr<worker>> workers;
    asio::signal_set signals{context, SIGINT, SIGTERM, SIGHUP};
    asio::steady_timer drain_timer{context};
    std::chrono::steady_clock::time_point drain_deadline;
    std::shared_ptr<spdlog::logger> logger = log::get("main");
};

server::server(std::string config_path, config::gatehouse_config initial)
    : impl_(std::make_unique<impl>(std::move(config_path), std::move(initial)))
{}

server::~server() = default;

int server::run()
{
    auto& self = *impl_;
    const auto& config = *self.status.settings->config;

    // Certificates come before listeners: a TLS listener that accepted before it had them could
    // only fail handshakes.
    self.create_workers();
    self.start_certificates();
    self.open_listener(self.http_acceptor, config.http_listener, "http");
    if (config.https_listener) {
        self.open_listener(self.https_acceptor, *config.https_listener, "https");
    }
    if (config.admin_listener) {
        self.admin = std::make_unique<admin_server>(self.context, self.status);
        self.admin->start(*config.admin_listener);
    }
    self.start_workers();
    self.wait_for_signal();
    self.status.listeners_up = true;
    log::write(*self.logger, spdlog::level::info, "gatehouse ready",
               {{"threads", self.status.threads},
                {"routes", self.status.settings->routes.size()},
                {"config", self.status.config_path}});

    self.context.run();
    return 0;
}

void server::impl::open_listener(tcp::acceptor& acceptor, const config::listen_address& address,
                                 std::string_view name)
{
    auto endpoint = endpoint_for(address);
    acceptor.open(endpoint.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    if (endpoint.protocol() == tcp::v6()) {
        // ":80" means every address, IPv4 included.
        acceptor.set_option(asio::ip::v6_only(false));
    }
    acceptor.bind(endpoint);
    // Responses leave as soon as they are written, not after the client's ACK of the last
    // segment (Nagle). Set here, once: Linux copies it to every socket accept() returns.
    acceptor.set_option(tcp::no_delay(true));
    // No TCP_DEFER_ACCEPT (nginx's `deferred`), although clients speak first: holding a
    // connection until its first bytes saves the first read's EAGAIN, yet measured more CPU per
    // connection than it saved (about 5% per TLS handshake, 2% per short HTTP connection).
    acceptor.listen(listen_backlog);
    log::write(*log::get("proxy"), spdlog::level::info, "listener up",
               {{"listener", name}, {"address", endpoint_text(acceptor.local_endpoint())}});
}

void server::impl::create_workers()
{
    for (unsigned index = 0; index < status.threads; ++index) {
        workers.push_back(std::make_unique<worker>(index, status.settings, shared));
    }
}

void server::impl::start_certificates()
{
    const auto& config = status.settings->config;
    if (!config->https_listener) {
        return;
    }
    certificate_store = open_configured_store(*config);
    certificates = std::make_unique<certificate_manager>(
        *certificate_store,
        [this](std::shared_ptr<const tls_table> table) {
            for (auto& each : workers) {
                each->apply_certificates(table);
            }
        },
        &shared.challenges);
    certificates->start(config);
    status.certificates = certificates.get();
    status.store = certificate_store.get();
    log::write(
        *logger, spdlog::level::info, "certificates loaded",
        {{"count", certificates->status().size()}, {"store", certificate_store->describe()}});
}

void server::impl::start_workers()
{
    for (auto& each : workers) {
        each->listen_on(http_acceptor.native_handle(), http_acceptor.local_endpoint().protocol(),
                        false);
        if (https_acceptor.is_open()) {
            each->listen_on(https_acceptor.native_handle(),
                            https_acceptor.local_endpoint().protocol(), true);
        }
    }
    for (auto& each : workers) {
        each->start();
    }
}

void server::impl::wait_for_signal()
{
    signals.async_wait([this](error_code ec, int signal_number) {
        if (!ec) {
            on_signal(signal_number);
        }
    });
}

void server::impl::on_signal(int signal_number)
{
    if (signal_number == SIGHUP) {
        reload();
        wait_for_signal();
        return;
    }
    if (status.draining) {
        // The operator asked twice: stop now, whatever is in flight.
        log::write(*logger, spdlog::level::warn, "second stop signal, exiting at once",
                   {{"signal", signal_number}});
        std::_Exit(1);
    }
    log::write(
        *logger, spdlog::level::info, "stop signal received, draining",
        {{"signal", signal_number},
         {"drain_ms", static_cast<std::int64_t>(status.settings->config->timeouts.drain.count())}});
    begin_drain();
    wait_for_signal();
}

void server::impl::reload()
{
    config::gatehouse_config next;
    try {
        next = config::load_config_file(status.config_path);
    } catch (const config::config_load_error& failure) {
        process_metrics().config_reload_failures.fetch_add(1, std::memory_order_relaxed);
        status.last_reload_at = store::format_rfc3339(std::chrono::system_clock::now());
        status.last_reload_error.clear();
        for (const auto& error : failure.errors()) {
            log::write(*logger, spdlog::level::err, "configuration reload refused",
                       {{"error", error.to_string()}});
            status.last_reload_error += error.to_string() + "\n";
        }
        log::write(*logger, spdlog::level::warn, "keeping the running configuration",
                   {{"errors", failure.errors().size()}});
        return;
    }

    // Sockets and threads are set up once; changing them needs a restart.
    const auto& running = *status.settings->config;
    const auto text_of = [](const std::optional<config::listen_address>& address) {
        return address ? address->text : std::string();
    };
    if (next.http_listener.text != running.http_listener.text || next.threads != running.threads ||
        text_of(next.admin_listener) != text_of(running.admin_listener) ||
        text_of(next.https_listener) != text_of(running.https_listener) ||
        !same_store(next.store, running.store)) {
        log::write(*logger, spdlog::level::warn,
                   "listen addresses, threads and the store change only on restart; keeping the "
                   "old ones");
        next.http_listener = running.http_listener;
        next.https_listener = running.https_listener;
        next.admin_listener = running.admin_listener;
        next.threads = running.threads;
        next.store = running.store;
        if (!next.https_listener) {
            // Without the listener, routes cannot have TLS; keep them plain as before.
            for (auto& route : next.routes) {
                route.tls.source = config::tls_source::off;
            }
        }
    }

    log::configure(next.log);
    auto loaded = std::make_shared<const config::gatehouse_config>(std::move(next));
    if (certificates) {
        certificates->apply(loaded);
    }
    status.settings = std::make_shared<proxy_settings>(std::move(loaded));
    for (auto& each : workers) {
        each->apply_settings(status.settings);
    }
    process_metrics().config_reloads.fetch_add(1, std::memory_order_relaxed);
    status.last_reload_at = store::format_rfc3339(std::chrono::system_clock::now());
    status.last_reload_error.clear();
    log::write(*logger, spdlog::level::info, "configuration reloaded",
               {{"routes", status.settings->routes.size()}, {"config", status.config_path}});
}

void server::impl::begin_drain()
{
    // Readiness fails first, so the load balancer stops sending before listeners close.
    status.draining = true;
    error_code ignored;
    http_acceptor.close(ignored);
    https_acceptor.close(ignored);
    for (auto& each : workers) {
        each->begin_drain();
    }
    drain_deadline = std::chrono::steady_clock::now() + status.settings->config->timeouts.drain;
    check_drained();
}

void server::impl::check_drained()
{
    std::int64_t open = 0;
    for (auto& each : workers) {
        open += each->open_sessions();
    }
    if (open == 0) {
        log::write(*logger, spdlog::level::info, "drained, exiting");
        finish();
        return;
    }
    if (std::chrono::steady_clock::now() >= drain_deadline) {
        log::write(*logger, spdlog::level::warn, "drain timed out, closing remaining connections",
                   {{"remaining", open}});
        finish();
        return;
    }
    drain_timer.expires_after(drain_poll_interval);
    drain_timer.async_wait([this](error_code ec) {
        if (!ec) {
            check_drained();
        }
    });
}

void server::impl::finish()
{
    // The manager's thread publishes to the workers, so it stops before they do.
    status.certificates = nullptr;
    certificates.reset();
    if (admin) {
        admin->stop();
    }
    for (auto& each : workers) {
        each->stop();
    }
    signals.cancel();
    context.stop();
}

} // namespace gatehouse::proxy
