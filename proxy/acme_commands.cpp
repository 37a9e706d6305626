#include "proxy/acme_commands.hpp"

#include "acme/client.hpp"
#include "acme/http_transport.hpp"
#include "net/http_client.hpp"
#include "pki/certificate.hpp"
#include "pki/jose.hpp"
#include "proxy/acme_worker.hpp"
#include "proxy/store_factory.hpp"
#include "store/certificate_bundle.hpp"
#include "store/keys.hpp"
#include "store/store.hpp"

#include <arpa/inet.h>
#include <array>
#include <chrono>
#include <ifaddrs.h>
#include <netdb.h>
#include <random>
#include <set>
#include <thread>
#include <utility>

namespace gatehouse::proxy {

namespace {

constexpr int exit_ok = 0;
constexpr int exit_runtime_failure = 1;
constexpr int exit_usage = 2;

// RFC 5280 section 5.3.1; 7 is unused.
constexpr std::array<std::pair<std::string_view, int>, 10> revocation_reasons{{
    {"unspecified", 0},
    {"keyCompromise", 1},
    {"cACompromise", 2},
    {"affiliationChanged", 3},
    {"superseded", 4},
    {"cessationOfOperation", 5},
    {"certificateHold", 6},
    {"removeFromCRL", 8},
    {"privilegeWithdrawn", 9},
    {"aACompromise", 10},
}};

bool sleep_plainly(std::chrono::milliseconds duration)
{
    std::this_thread::sleep_for(duration);
    return true;
}

const config::route* route_for(const config::gatehouse_config& config, const std::string& host)
{
    for (const auto& route : config.routes) {
        if (route.host == host) {
            return &route;
        }
        for (const auto& extra : route.tls.extra_names) {
            if (extra == host) {
                return &route;
            }
        }
    }
    return nullptr;
}

std::string lower(std::string text)
{
    for (auto& c : text) {
        c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    return text;
}

// An IPv4 or IPv6 socket address as text ("192.0.2.1", "2001:db8::1"); nullopt for others.
std::optional<std::string> address_text(const sockaddr* address)
{
    char text[INET6_ADDRSTRLEN] = {};
    if (address->sa_family == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(address)->sin_addr, text,
                  sizeof text);
    } else if (address->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr, text,
                  sizeof text);
    } else {
        return std::nullopt;
    }
    return std::string(text);
}

// Every address this machine has on an interface, as text.
std::set<std::string> local_addresses()
{
    std::set<std::string> found;
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) {
        return found;
    }
    for (ifaddrs* each = list; each != nullptr; each = each->ifa_next) {
        if (each->ifa_addr == nullptr) {
            continue;
        }
        if (auto text = address_text(each->ifa_addr)) {
            found.insert(std::move(*text));
        }
    }
    freeifaddrs(list);
    return found;
}

// The addresses `host` resolves to here, or the resolver's complaint.
std::pair<std::vector<std::string>, std::string> resolve(const std::string& host)
{
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* results = nullptr;
    const int code = getaddrinfo(host.c_str(), nullptr, &hints, &results);
    if (code != 0) {
        return {{}, gai_strerror(code)};
    }
    std::set<std::string> seen;
    std::vector<std::string> addresses;
    for (addrinfo* each = results; each != nullptr; each = each->ai_next) {
        auto text = address_text(each->ai_addr);
        if (text && seen.insert(*text).second) {
            addresses.push_back(std::move(*text));
        }
    }
    freeaddrinfo(results);
    return {addresses, ""};
}

} // namespace

std::optional<int> parse_revocation_reason(std::string_view text)
{
    for (const auto& [name, code] : revocation_reasons) {
        if (text == name || text == std::to_string(code)) {
            return code;
        }
    }
    return std::nullopt;
}

int revoke_certificate(const config::gatehouse_config& config, const std::string& host,
                       std::optional<int> reason, std::ostream& out, std::ostream& err)
{
    const auto* route = route_for(config, host);
    if (route == nullptr || route->tls.source != config::tls_source::acme) {
        err << "gatehouse: " << host << " is not a route with tls: acme in this configuration\n";
        return exit_usage;
    }
    auto store = open_store_for_command(config, err);
    if (!store) {
        return exit_runtime_failure;
    }
    const std::string key = store::keys::certificate(route->host);
    auto text = store->get(key);
    if (!text) {
        err << "gatehouse: reading " << key << ": " << text.error().message() << '\n';
        return exit_runtime_failure;
    }
    if (!*text) {
        err << "gatehouse: the store holds no certificate for " << route->host << '\n';
        return exit_runtime_failure;
    }
    auto bundle = store::parse_bundle(**text);
    if (!bundle) {
        err << "gatehouse: the stored certificate for " << route->host << " is unreadable\n";
        return exit_runtime_failure;
    }
    const std::string directory =
        !bundle->acme_directory.empty() ? bundle->acme_directory : config.acme.directories.front();
    try {
        auto transport = acme::make_http_transport(transport_options_for(config.acme));
        acme::client client(*store, *transport, client_settings_for(config.acme, directory),
                            &sleep_plainly);
        auto revoked = client.revoke(bundle->certificate_chain_pem, reason);
        if (!revoked) {
            err << "gatehouse: revoking the certificate for " << route->host << " at " << directory
                << " failed: " << acme::to_string(revoked.error().problem) << '\n';
            return exit_runtime_failure;
        }
    } catch (const std::exception& failure) {
        err << "gatehouse: " << failure.what() << '\n';
        return exit_runtime_failure;
    }
    out << "revoked the certificate for " << route->host << " (serial " << bundle->serial << ") at "
        << directory << '\n';

    // Running instances see the bundle go and order a replacement at once.
    if (auto removed = store->remove(key); !removed) {
        err << "gatehouse: the certificate is revoked but removing it from the store failed: "
            << removed.error().message() << "; running instances keep serving it until renewal\n";
        return exit_runtime_failure;
    }
    out << "removed it from the store; running instances order a new one now\n";
    return exit_ok;
}

int rollover_account_keys(const config::gatehouse_config& config, std::ostream& out,
                          std::ostream& err)
{
    auto store = open_store_for_command(config, err);
    if (!store) {
        return exit_runtime_failure;
    }
    int rolled = 0;
    int failed = 0;
    for (const auto& directory : config.acme.directories) {
        auto existing = store->get(store::keys::account(directory));
        if (!existing || !*existing) {
            out << "no account at " << directory << " yet; nothing to roll over\n";
            continue;
        }
        try {
            auto transport = acme::make_http_transport(transport_options_for(config.acme));
            acme::client client(*store, *transport, client_settings_for(config.acme, directory),
                                &sleep_plainly);
            auto done = client.rollover_account_key();
            if (!done) {
                err << "gatehouse: rolling over the account key at " << directory
                    << " failed: " << acme::to_string(done.error().problem) << '\n';
                ++failed;
                continue;
            }
            out << "replaced the account key at " << directory << " (account "
                << client.account_url().value_or("?") << ")\n";
            ++rolled;
        } catch (const std::exception& failure) {
            err << "gatehouse: " << failure.what() << '\n';
            ++failed;
        }
    }
    return failed > 0 ? exit_runtime_failure : exit_ok;
}

int diagnose_host(const config::gatehouse_config& config, const std::string& requested,
                  std::uint16_t port, std::ostream& out, std::ostream& err)
{
    const std::string host = lower(requested);
    int problems = 0;
    const auto fail = [&](const std::string& what) {
        out << "FAIL  " << what << '\n';
        ++problems;
    };
    const auto pass = [&](const std::string& what) {
        out << "ok    " << what << '\n';
    };

    // 1. Configuration.
    const auto* route = route_for(config, host);
    if (route == nullptr) {
        fail("no route serves " + host + ": the CA's request would get a 404 for the name");
    } else if (route->tls.source != config::tls_source::acme) {
        fail(host + " is routed, but not with tls: acme, so gatehouse never orders for it");
    } else {
        pass(host + " is routed with tls: acme");
    }

    // 2. DNS: the CA connects to whatever the name resolves to.
    auto [addresses, resolve_error] = resolve(host);
    if (addresses.empty()) {
        fail("DNS: " + host + " does not resolve here (" + resolve_error +
             "); the CA's resolver will likely fail too");
    } else {
        const auto mine = local_addresses();
        std::string list;
        bool any_local = false;
        for (const auto& address : addresses) {
            list += (list.empty() ? "" : ", ") + address;
            any_local = any_local || mine.contains(address);
        }
        if (any_local) {
            pass("DNS: " + host + " resolves to " + list + ", an address of this machine");
        } else {
            // Behind a load balancer this is expected, so it is a hint, not a failure.
            out << "note  DNS: " << host << " resolves to " << list
                << ", none of them on this machine; fine behind a load balancer that forwards "
                   "port "
                << port << " here, otherwise the CA reaches someone else\n";
        }
    }

    // 3. The round trip the CA makes: a probe answer put in the store must come back over
    // plain HTTP from the name, through whatever load balancer and redirects are in the way.
    auto store = open_store_for_command(config, err);
    if (!store) {
        return exit_runtime_failure;
    }
    std::random_device random;
    std::string raw(24, '\0');
    for (auto& byte : raw) {
        byte = static_cast<char>(random() & 0xff);
    }
    const std::string token = "gatehouse-diagnose-" + pki::base64url_encode(raw);
    const std::string expected = token + ".diagnose";
    if (auto written = store->put(store::keys::challenge_token(token), expected); !written) {
        err << "gatehouse: writing the probe to the store: " << written.error().message() << '\n';
        return exit_runtime_failure;
    }
    // Running instances pick the probe up through the store's watch.
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    const std::string url = "http://" + host + (port == 80 ? "" : ":" + std::to_string(port)) +
                            "/.well-known/acme-challenge/" + token;
    try {
        net::client_options options;
        options.connect_timeout = std::chrono::seconds(5);
        options.request_timeout = std::chrono::seconds(10);
        options.user_agent = "gatehouse diagnose";
        net::http_client client(options);
        auto answer = client.send({"GET", url, {}, ""});
        if (!answer) {
            fail("HTTP: " + url + ": " + answer.error().message + " (is port " +
                 std::to_string(port) + " open and forwarded to gatehouse?)");
        } else if (answer->status >= 300 && answer->status < 400) {
            fail("HTTP: " + url + " answered " + std::to_string(answer->status) +
                 " redirecting to " + answer->header_value("location").value_or("?") +
                 "; something in front of gatehouse redirects challenges");
        } else if (answer->status != 200 || answer->body != expected) {
            fail("HTTP: " + url + " answered " + std::to_string(answer->status) +
                 " without the probe's answer: the name reaches another server, or no "
                 "gatehouse instance shares this store");
        } else {
            pass("HTTP: " + url + " returned the probe's answer from the store");
        }
    } catch (const std::exception& failure) {
        fail(std::string("HTTP: ") + failure.what());
    }
    (void)store->remove(store::keys::challenge_token(token));

    out << (problems == 0 ? "every check passed\n"
                          : std::to_string(problems) + " check(s) failed\n");
    return problems == 0 ? exit_ok : exit_runtime_failure;
}

} // namespace gatehouse::proxy
