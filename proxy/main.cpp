// gatehouse: an ingress that is both a reverse proxy and a certificate manager.
// main() only reads the command line and wires the pieces together.
#include "config/config_loader.hpp"
#include "proxy/acme_commands.hpp"
#include "proxy/allocator.hpp"
#include "proxy/certificate_manager.hpp"
#include "proxy/log.hpp"
#include "proxy/server.hpp"
#include "proxy/store_commands.hpp"
#include "proxy/store_factory.hpp"
#include "proxy/version.hpp"
#include "store/store.hpp"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace {

// Exit codes promised by the usage text and docs.
constexpr int exit_ok = 0;
constexpr int exit_runtime_failure = 1;
constexpr int exit_usage = 2;

constexpr std::string_view usage_text =
    R"(usage: gatehouse COMMAND [OPTIONS]

commands:
  run --config FILE        serve with the configuration in FILE
  validate --config FILE   check FILE and list every error in it
  trust --config FILE [--install]
                           print the internal CA's certificate (PEM), creating the CA in the
                           store first if needed; --install adds it to the system trust store
  revoke HOST --config FILE [--reason REASON]
                           revoke HOST's ACME certificate (REASON: an RFC 5280 name such as
                           keyCompromise or superseded, or its number) and remove it from the
                           store, so running instances order a new one
  account rollover --config FILE
                           replace the ACME account key at every configured CA
  diagnose HOST --config FILE [--port PORT]
                           explain why an HTTP-01 validation of HOST would fail (configuration,
                           DNS, port PORT (80) reaching gatehouse, redirects); changes nothing
  store export --config FILE
                           write every certificate, the internal CA and the ACME accounts in
                           the store as one JSON document to stdout (it holds private keys)
  store import --config FILE [--overwrite]
                           write an export read from stdin into the store; refused whole if it
                           is not valid; an entry the store holds with another value is kept
                           (exit 1) unless --overwrite
  version                  print the version
  help                     print this text

exit codes: 0 success, 1 runtime failure, 2 bad usage, configuration or input (store import)
signals (run): SIGTERM/SIGINT drain and exit, a second one exits at once; SIGHUP reloads FILE
)";

int usage_error(std::string_view message)
{
    std::cerr << "gatehouse: " << message << "\n\n" << usage_text;
    return exit_usage;
}

// Reads "--config FILE" or "--config=FILE"; nothing else is accepted.
bool parse_config_option(const std::vector<std::string_view>& args, std::string& path)
{
    for (std::size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--config" && i + 1 < args.size()) {
            path = args[++i];
        } else if (args[i].starts_with("--config=")) {
            path = args[i].substr(9);
        } else {
            return false;
        }
    }
    return !path.empty();
}

void print_errors(const gatehouse::config::config_load_error& failure)
{
    for (const auto& error : failure.errors()) {
        std::cerr << error.to_string() << '\n';
    }
    std::cerr << "gatehouse: " << failure.errors().size() << " configuration error"
              << (failure.errors().size() == 1 ? "" : "s") << '\n';
}

int validate(const std::string& path)
{
    try {
        auto loaded = gatehouse::config::load_config_file(path);
        std::cout << path << ": configuration is valid (" << loaded.routes.size() << " routes)\n";
        return exit_ok;
    } catch (const gatehouse::config::config_load_error& failure) {
        print_errors(failure);
        return exit_usage;
    }
}

// Where Debian's update-ca-certificates picks up local CAs.
constexpr const char* system_ca_path = "/usr/local/share/ca-certificates/gatehouse-local-ca.crt";

int install_ca(const std::string& certificate_pem)
{
    {
        std::ofstream file(system_ca_path, std::ios::trunc);
        file << certificate_pem;
        if (!file) {
            std::cerr << "gatehouse: cannot write " << system_ca_path << " (run as root)\n";
            return exit_runtime_failure;
        }
    }
    if (std::system("update-ca-certificates >/dev/null") != 0) {
        std::cerr << "gatehouse: update-ca-certificates failed\n";
        return exit_runtime_failure;
    }
    std::cerr << "gatehouse: installed the internal CA as " << system_ca_path << '\n';
    return exit_ok;
}

int trust(const std::string& path, bool install)
{
    gatehouse::config::gatehouse_config loaded;
    try {
        loaded = gatehouse::config::load_config_file(path);
    } catch (const gatehouse::config::config_load_error& failure) {
        print_errors(failure);
        return exit_usage;
    }
    try {
        auto store = gatehouse::proxy::open_configured_store(loaded);
        const auto ca = gatehouse::proxy::load_or_create_internal_ca(*store);
        std::cout << ca.certificate_pem;
        return install ? install_ca(ca.certificate_pem) : exit_ok;
    } catch (const std::exception& failure) {
        std::cerr << "gatehouse: " << failure.what() << '\n';
        return exit_runtime_failure;
    }
}

// Loads the configuration for a command that only reads it; prints the errors when it fails.
std::optional<gatehouse::config::gatehouse_config> load_for_command(const std::string& path)
{
    try {
        return gatehouse::config::load_config_file(path);
    } catch (const gatehouse::config::config_load_error& failure) {
        print_errors(failure);
        return std::nullopt;
    }
}

// Takes "--NAME VALUE" or "--NAME=VALUE" out of `options`; nullopt when absent, and an empty
// string when the value is missing.
std::optional<std::string> take_option(std::vector<std::string_view>& options,
                                       std::string_view name)
{
    const std::string flag = "--" + std::string(name);
    for (std::size_t i = 0; i < options.size(); ++i) {
        if (options[i] == flag) {
            std::string value = i + 1 < options.size() ? std::string(options[i + 1]) : "";
            options.erase(options.begin() + static_cast<long>(i),
                          options.begin() + static_cast<long>(std::min(i + 2, options.size())));
            return value;
        }
        if (options[i].starts_with(flag + "=")) {
            std::string value(options[i].substr(flag.size() + 1));
            options.erase(options.begin() + static_cast<long>(i));
            return value;
        }
    }
    return std::nullopt;
}

int acme_command(std::string_view command, std::vector<std::string_view> options)
{
    std::string host;
    if (command == "account") {
        if (options.empty() || options.front() != "rollover") {
            return usage_error("account needs a subcommand: account rollover --config FILE");
        }
    } else {
        if (options.empty() || options.front().starts_with("--")) {
            return usage_error(std::string(command) + " needs a HOST");
        }
        host = options.front();
    }
    options.erase(options.begin());

    const auto reason_text = take_option(options, "reason");
    const auto port_text = take_option(options, "port");
    if ((reason_text && command != "revoke") || (port_text && command != "diagnose")) {
        return usage_error("unexpected option for " + std::string(command));
    }
    std::string path;
    if (!parse_config_option(options, path)) {
        return usage_error(std::string(command) + " needs --config FILE");
    }
    std::optional<int> reason;
    if (reason_text) {
        reason = gatehouse::proxy::parse_revocation_reason(*reason_text);
        if (!reason) {
            return usage_error("unknown revocation reason '" + *reason_text + "'");
        }
    }
    std::uint16_t port = 80;
    if (port_text) {
        char* end = nullptr;
        const long value = std::strtol(port_text->c_str(), &end, 10);
        if (port_text->empty() || *end != '\0' || value < 1 || value > 65535) {
            return usage_error("--port needs a number from 1 to 65535");
        }
        port = static_cast<std::uint16_t>(value);
    }

    const auto loaded = load_for_command(path);
    if (!loaded) {
        return exit_usage;
    }
    if (command == "revoke") {
        return gatehouse::proxy::revoke_certificate(*loaded, host, reason, std::cout, std::cerr);
    }
    if (command == "account") {
        return gatehouse::proxy::rollover_account_keys(*loaded, std::cout, std::cerr);
    }
    return gatehouse::proxy::diagnose_host(*loaded, host, port, std::cout, std::cerr);
}

// store export --config FILE | store import --config FILE [--overwrite]
int store_command(std::vector<std::string_view> options)
{
    if (options.empty() || (options.front() != "export" && options.front() != "import")) {
        return usage_error("store needs a subcommand: store export or store import");
    }
    const std::string subcommand(options.front());
    options.erase(options.begin());
    const bool overwrite = std::erase(options, std::string_view("--overwrite")) > 0;
    if (overwrite && subcommand != "import") {
        return usage_error("--overwrite is an option of store import only");
    }
    std::string path;
    if (!parse_config_option(options, path)) {
        return usage_error("store " + subcommand + " needs --config FILE");
    }
    const auto loaded = load_for_command(path);
    if (!loaded) {
        return exit_usage;
    }
    if (subcommand == "export") {
        return gatehouse::proxy::export_store(*loaded, std::cout, std::cerr);
    }
    return gatehouse::proxy::import_store(*loaded, std::cin, overwrite, std::cout, std::cerr);
}

int run(const std::string& path)
{
    gatehouse::config::gatehouse_config loaded;
    try {
        loaded = gatehouse::config::load_config_file(path);
    } catch (const gatehouse::config::config_load_error& failure) {
        print_errors(failure);
        return exit_usage;
    }

    gatehouse::log::configure(loaded.log);
    auto logger = gatehouse::log::get("main");
    gatehouse::log::write(*logger, spdlog::level::info, "gatehouse starting",
                          {{"version", gatehouse::version_string},
                           {"allocator", gatehouse::proxy::allocator_description()},
                           {"config", path}});
    try {
        gatehouse::proxy::server server(path, std::move(loaded));
        return server.run();
    } catch (const std::system_error& failure) {
        gatehouse::log::write(*logger, spdlog::level::critical, "cannot start",
                              {{"error", failure.what()}});
        return exit_runtime_failure;
    } catch (const std::exception& failure) {
        gatehouse::log::write(*logger, spdlog::level::critical, "fatal error",
                              {{"error", failure.what()}});
        return exit_runtime_failure;
    }
}

} // namespace

int main(int argc, char** argv)
{
    std::vector<std::string_view> args(argv + 1, argv + argc);
    if (args.empty()) {
        return usage_error("a command is required");
    }

    std::string_view command = args.front();
    std::vector<std::string_view> options(args.begin() + 1, args.end());

    if (command == "help" || command == "--help" || command == "-h") {
        std::cout << usage_text;
        return exit_ok;
    }
    if (command == "version" || command == "--version") {
        std::cout << "gatehouse " << gatehouse::version_string << '\n'
                  << "allocator: " << gatehouse::proxy::allocator_description() << '\n';
        return exit_ok;
    }
    if (command == "run" || command == "validate") {
        std::string path;
        if (!parse_config_option(options, path)) {
            return usage_error(std::string(command) + " needs --config FILE");
        }
        return command == "run" ? run(path) : validate(path);
    }
    if (command == "trust") {
        // --install may stand anywhere; the rest is the usual --config FILE.
        const bool install = std::erase(options, std::string_view("--install")) > 0;
        std::string path;
        if (!parse_config_option(options, path)) {
            return usage_error("trust needs --config FILE");
        }
        return trust(path, install);
    }
    if (command == "revoke" || command == "account" || command == "diagnose") {
        return acme_command(command, std::move(options));
    }
    if (command == "store") {
        return store_command(std::move(options));
    }
    return usage_error("unknown command '" + std::string(command) + "'");
}
