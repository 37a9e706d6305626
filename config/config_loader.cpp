#include "config/config_loader.hpp"

#include "config/value_parsers.hpp"
#include "config/yaml_reader.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>
#include <utility>

namespace gatehouse::config {

namespace {

constexpr unsigned max_threads = 1024;
constexpr std::uint64_t min_header_bytes = 1024;

// The shortest lifetime the internal CA may be asked for: renewal starts when a third is left,
// and each check runs every few seconds.
constexpr std::chrono::seconds min_internal_lifetime{60};

// Where each host or prefix was first seen, to name that line when it appears again.
using first_lines = std::map<std::string, int>;

// Records `name` as seen at `at`; reports it and returns false when it was seen before.
bool check_unique(const std::string& name, const located_node& at, std::string_view what,
                  first_lines& seen, error_collector& errors)
{
    const auto [first, inserted] = seen.emplace(name, line_of(at.node));
    if (!inserted) {
        errors.add(at, "duplicate " + std::string(what) + " \"" + name +
                           "\"; it is already on line " + std::to_string(first->second));
    }
    return inserted;
}

// ---- listen ---------------------------------------------------------------------------------

// An empty value or "off" turns an optional listener off.
bool is_switched_off(const YAML::Node& node)
{
    return node.IsNull() || (node.IsScalar() && (node.Scalar().empty() || node.Scalar() == "off"));
}

bool is_any_address(const std::string& host)
{
    return host.empty() || host == "0.0.0.0" || host == "::";
}

// Two listeners cannot bind the same port when their hosts are equal or either is a wildcard.
// Port 0 picks a free port each time, so it never collides.
bool listeners_collide(const listen_address& a, const listen_address& b)
{
    const bool hosts_overlap = a.host == b.host || is_any_address(a.host) || is_any_address(b.host);
    return a.port != 0 && a.port == b.port && hosts_overlap;
}

// An optional listener: an empty value or "off" leaves it unset.
void parse_optional_listener(const std::optional<located_node>& field,
                             std::optional<listen_address>& out, error_collector& errors)
{
    if (field && is_switched_off(field->node)) {
        out.reset();
        return;
    }
    assign_if_valid(out, read_parsed(field, errors, parse_listen_address));
}

void parse_listen(const located_node& at, gatehouse_config& config, error_collector& errors)
{
    const std::size_t errors_before = errors.count();
    const mapping_reader section(at, {"http", "https", "admin"}, errors);
    assign_if_valid(config.http_listener,
                    read_parsed(section.find("http"), errors, parse_listen_address));
    parse_optional_listener(section.find("https"), config.https_listener, errors);
    parse_optional_listener(section.find("admin"), config.admin_listener, errors);

    // Only compare addresses that were all read successfully, or a typo in one would also
    // raise a confusing collision with another's default.
    if (errors.count() != errors_before) {
        return;
    }
    struct named_listener {
        std::string_view key;
        const std::optional<listen_address>& address;
    };
    const std::optional<listen_address> http = config.http_listener;
    const std::array<named_listener, 3> listeners{
        {{"http", http}, {"https", config.https_listener}, {"admin", config.admin_listener}}};
    for (std::size_t i = 0; i < listeners.size(); ++i) {
        for (std::size_t j = i + 1; j < listeners.size(); ++j) {
            const auto& [first_key, first] = listeners[i];
            const auto& [second_key, second] = listeners[j];
            if (!first || !second || !listeners_collide(*first, *second)) {
                continue;
            }
            const auto where =
                section.find(second_key) ? section.find(second_key) : section.find(first_key);
            errors.add(where.value_or(at), "listen." + std::string(first_key) + " and listen." +
                                               std::string(second_key) + " would both bind " +
                                               second->text);
        }
    }
}

// ---- top-level scalars ----------------------------------------------------------------------

std::optional<unsigned> read_threads(const std::optional<located_node>& field,
                                     error_collector& errors)
{
    const std::string text = field && field->node.IsScalar() ? field->node.Scalar() : "";
    if (text == "auto") {
        return 0;
    }

    // Anything else must be a count; say that "auto" was an option too.
    if (!text.empty() && text.find_first_not_of("0123456789") != std::string::npos) {
        errors.add(*field, "expected \"auto\" or a number of threads, found \"" + text + "\"");
        return std::nullopt;
    }
    const auto count = read_whole_number(field, 1, max_threads, errors);
    return count ? std::optional<unsigned>(static_cast<unsigned>(*count)) : std::nullopt;
}

// ---- timeouts, limits, upstream_health ------------------------------------------------------

void parse_timeouts(const located_node& at, timeouts& out, error_collector& errors)
{
    const mapping_reader section(
        at, {"header_read", "idle", "upstream_connect", "upstream_response", "drain"}, errors);
    assign_if_valid(out.header_read, read_positive_duration(section.find("header_read"), errors));
    assign_if_valid(out.idle, read_positive_duration(section.find("idle"), errors));
    assign_if_valid(out.upstream_connect,
                    read_positive_duration(section.find("upstream_connect"), errors));
    assign_if_valid(out.upstream_response,
                    read_positive_duration(section.find("upstream_response"), errors));
    assign_if_valid(out.drain, read_positive_duration(section.find("drain"), errors));
}

void parse_limits(const located_node& at, limits& out, error_collector& errors)
{
    const mapping_reader section(
        at, {"max_header_bytes", "max_uri_bytes", "max_body_bytes", "max_connections"}, errors);
    assign_if_valid(out.max_header_bytes,
                    read_size(section.find("max_header_bytes"), min_header_bytes, errors));
    assign_if_valid(out.max_uri_bytes, read_size(section.find("max_uri_bytes"), 1, errors));

    // Zero is allowed here: it means no limit.
    assign_if_valid(out.max_body_bytes, read_size(section.find("max_body_bytes"), 0, errors));

    assign_if_valid(out.max_connections,
                    read_whole_number(section.find("max_connections"), 1,
                                      std::numeric_limits<std::size_t>::max(), errors));
}

void parse_upstream_health(const located_node& at, upstream_health& out, error_collector& errors)
{
    const mapping_reader section(at, {"max_fails", "cooldown"}, errors);
    assign_if_valid(out.max_fails, read_whole_number(section.find("max_fails"), 1,
                                                     std::numeric_limits<unsigned>::max(), errors));
    assign_if_valid(out.cooldown, read_positive_duration(section.find("cooldown"), errors));
}

// ---- log and trusted_proxies ----------------------------------------------------------------

parse_result<log_format> parse_log_format(std::string_view text)
{
    if (text == "text") {
        return log_format::text;
    }
    if (text == "json") {
        return log_format::json;
    }
    return rejection{"unknown log format \"" + std::string(text) + "\"; expected text or json"};
}

parse_result<std::string> parse_log_level(std::string_view text)
{
    constexpr std::array<std::string_view, 7> levels{"trace", "debug",    "info", "warn",
                                                     "error", "critical", "off"};
    if (std::find(levels.begin(), levels.end(), text) == levels.end()) {
        return rejection{"unknown log level \"" + std::string(text) +
                         "\"; expected trace, debug, info, warn, error, critical or off"};
    }
    return std::string(text);
}

void parse_log(const located_node& at, log_settings& out, error_collector& errors)
{
    const mapping_reader section(at, {"format", "level", "access"}, errors);
    assign_if_valid(out.format, read_parsed(section.find("format"), errors, parse_log_format));
    assign_if_valid(out.level, read_parsed(section.find("level"), errors, parse_log_level));
    assign_if_valid(out.access, read_bool(section.find("access"), errors));
}

void parse_trusted_proxies(const located_node& at, std::vector<ip_network>& out,
                           error_collector& errors)
{
    for (const located_node& item : read_list(at, errors).value_or(std::vector<located_node>{})) {
        if (auto network = read_parsed(item, errors, parse_ip_network)) {
            out.push_back(std::move(*network));
        }
    }
}

// ---- tls ------------------------------------------------------------------------------------

parse_result<unknown_sni_action> parse_unknown_sni(std::string_view text)
{
    if (text == "reject") {
        return unknown_sni_action::reject;
    }
    if (text == "default") {
        return unknown_sni_action::serve_default;
    }
    return rejection{"unknown value \"" + std::string(text) + "\"; expected reject or default"};
}

parse_result<int> parse_tls_version(std::string_view text)
{
    if (text == "1.2") {
        return 2;
    }
    if (text == "1.3") {
        return 3;
    }
    return rejection{"unsupported TLS version \"" + std::string(text) +
                     "\"; expected \"1.2\" or \"1.3\" (older versions are never offered)"};
}

void parse_tls_settings(const located_node& at, tls_settings& out, error_collector& errors)
{
    const mapping_reader section(at,
                                 {"unknown_sni", "default_certificate", "min_version",
                                  "session_tickets", "internal_certificate_lifetime"},
                                 errors);
    assign_if_valid(out.unknown_sni,
                    read_parsed(section.find("unknown_sni"), errors, parse_unknown_sni));
    assign_if_valid(out.default_certificate,
                    read_parsed(section.find("default_certificate"), errors, parse_route_host));
    assign_if_valid(out.min_version,
                    read_parsed(section.find("min_version"), errors, parse_tls_version));
    assign_if_valid(out.session_tickets, read_bool(section.find("session_tickets"), errors));

    const auto lifetime_field = section.find("internal_certificate_lifetime");
    if (const auto lifetime = read_positive_duration(lifetime_field, errors)) {
        if (*lifetime < min_internal_lifetime) {
            errors.add(*lifetime_field, "must be at least 1m");
        } else {
            out.internal_certificate_lifetime =
                std::chrono::duration_cast<std::chrono::seconds>(*lifetime);
        }
    }
}

// ---- files and store ------------------------------------------------------------------------

// Relative paths in the file are read against the file's own folder, so a configuration and
// the files it names can move together.
std::string resolve_path(const std::string& path, const std::string& config_file)
{
    const std::filesystem::path written(path);
    if (written.is_absolute()) {
        return written.lexically_normal().string();
    }
    const std::filesystem::path base = std::filesystem::path(config_file).parent_path();
    std::error_code ignored;
    return std::filesystem::absolute(base / written, ignored).lexically_normal().string();
}

// Why `path` cannot be opened for reading, or nothing when it can.
std::optional<std::string> unreadable_because(const std::string& path)
{
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) {
        return ec ? ec.message() : std::string("not a regular file");
    }

    // Permissions are only known by trying, as the user gatehouse runs as.
    const std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                               &std::fclose);
    if (!file) {
        return std::generic_category().message(errno);
    }
    return std::nullopt;
}

// A PEM file named in the configuration must be readable now, so `gatehouse validate` and a
// reload catch a typo before it turns into a failed handshake.
std::optional<std::string> read_pem_path(const std::optional<located_node>& field,
                                         const std::string& config_file, error_collector& errors)
{
    const auto text = read_string(field, errors);
    if (!text) {
        return std::nullopt;
    }
    const std::string path = resolve_path(*text, config_file);
    if (const auto problem = unreadable_because(path)) {
        errors.add(*field, "cannot read " + path + ": " + *problem);
        return std::nullopt;
    }
    return path;
}

// An etcd endpoint: http:// or https://, then host:port and at most a trailing '/'. The port is
// required, as etcd's (2379) is no scheme's default. Returned with a lower-case scheme and
// without the slash.
parse_result<std::string> parse_etcd_endpoint(std::string_view text)
{
    const auto scheme_end = text.find("://");
    std::string scheme(text.substr(0, scheme_end == std::string_view::npos ? 0 : scheme_end));
    std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (scheme_end == std::string_view::npos || (scheme != "http" && scheme != "https")) {
        return rejection{"expected an etcd client URL such as http://127.0.0.1:2379, found \"" +
                         std::string(text) + "\""};
    }
    std::string_view authority = text.substr(scheme_end + 3);
    if (authority.ends_with('/')) {
        authority.remove_suffix(1);
    }
    if (authority.find_first_of("/?#@") != std::string_view::npos) {
        return rejection{"an etcd endpoint is scheme://host:port only, without a path, query, "
                         "fragment or user name"};
    }
    const auto address = parse_listen_address(authority);
    if (!address.ok() || address.value().host.empty() || address.value().port == 0) {
        return rejection{"an etcd endpoint needs a host and a port from 1 to 65535, such as "
                         "http://etcd-0:2379; found \"" +
                         std::string(text) + "\""};
    }
    return scheme + "://" + std::string(authority);
}

// endpoints: URL | [URL, ...], at least one, no duplicates.
void read_etcd_endpoints(const located_node& at, std::vector<std::string>& out,
                         error_collector& errors)
{
    if (!at.node.IsSequence()) {
        if (auto endpoint = read_parsed(at, errors, parse_etcd_endpoint)) {
            out = {std::move(*endpoint)};
        }
        return;
    }
    const auto items = read_list(at, errors).value_or(std::vector<located_node>{});
    if (items.empty()) {
        errors.add(at, "the endpoint list is empty; give at least one, e.g. http://127.0.0.1:2379");
        return;
    }
    first_lines seen;
    for (const located_node& item : items) {
        auto endpoint = read_parsed(item, errors, parse_etcd_endpoint);
        if (endpoint && check_unique(*endpoint, item, "endpoint", seen, errors)) {
            out.push_back(std::move(*endpoint));
        }
    }
}

// prefix: /PATH/, visible ASCII only, so the keys it makes can be read in etcdctl.
void read_etcd_prefix(const located_node& at, std::string& out, error_collector& errors)
{
    const auto text = read_string(at, errors);
    if (!text) {
        return;
    }
    const bool visible =
        std::all_of(text->begin(), text->end(), [](char c) { return c > 0x20 && c < 0x7f; });
    if (text->empty() || !text->starts_with('/') || !text->ends_with('/') || !visible) {
        errors.add(at, "the etcd prefix must start and end with '/' and hold no spaces, e.g. "
                       "/gatehouse/; found \"" +
                           *text + "\"");
        return;
    }
    out = *text;
}

// tls: {ca: FILE, cert: FILE, key: FILE}, each read against the configuration's folder.
void read_etcd_tls(const located_node& at, const std::string& config_file, etcd_store_settings& out,
                   error_collector& errors)
{
    const mapping_reader fields(at, {"ca", "cert", "key"}, errors);
    assign_if_valid(out.ca_file, read_pem_path(fields.find("ca"), config_file, errors));
    const auto cert_field = fields.find("cert");
    const auto key_field = fields.find("key");
    if (cert_field.has_value() != key_field.has_value()) {
        errors.add(at, "a client certificate needs its key: give both cert and key, or neither");
        return;
    }
    assign_if_valid(out.certificate_file, read_pem_path(cert_field, config_file, errors));
    assign_if_valid(out.key_file, read_pem_path(key_field, config_file, errors));
}

// etcd: {endpoints, prefix, tls, username, password}. The password is a secret: no message
// quotes it.
etcd_store_settings parse_etcd_store(const located_node& at, const std::string& config_file,
                                     error_collector& errors)
{
    etcd_store_settings out;
    const mapping_reader fields(
        at, {"endpoints", "prefix", "tls", "username", "password", "cache_dir"}, errors);
    if (const auto text = read_string(fields.find("cache_dir"), errors)) {
        out.cache_dir = text->empty() ? std::string() : resolve_path(*text, config_file);
    }
    if (const auto field = fields.find("endpoints")) {
        read_etcd_endpoints(*field, out.endpoints, errors);
    } else {
        errors.add(at, "missing endpoints: the etcd client URLs, e.g. [http://127.0.0.1:2379]");
    }
    if (const auto field = fields.find("prefix")) {
        read_etcd_prefix(*field, out.prefix, errors);
    }
    if (const auto field = fields.find("tls")) {
        read_etcd_tls(*field, config_file, out, errors);
        const bool any_https =
            std::any_of(out.endpoints.begin(), out.endpoints.end(),
                        [](const auto& url) { return url.starts_with("https"); });
        if (!any_https && !out.endpoints.empty()) {
            errors.add(*field, "tls applies to https:// endpoints, and no endpoint is one");
        }
    }
    const auto username = read_string(fields.find("username"), errors);
    if (username && username->empty()) {
        errors.add(*fields.find("username"), "cannot be empty");
    }
    assign_if_valid(out.username, username);
    if (const auto field = fields.find("password")) {
        if (out.username.empty()) {
            errors.add(fields.key_of("password"), "a password needs a username");
        }
        if (!field->node.IsScalar()) {
            errors.add(*field, "expected the password as a string");
        } else {
            out.password = field->node.Scalar();
        }
    }
    return out;
}

void parse_store(const located_node& at, store_settings& out, const std::string& config_file,
                 error_collector& errors)
{
    const mapping_reader section(at, {"file", "etcd", "encryption_key_file"}, errors);

    // Encryption wraps any backend, so it is read apart from the backend's own keys. Like a PEM
    // file it must be readable now; its mode and keys are checked when the store opens.
    assign_if_valid(out.encryption_key_file,
                    read_pem_path(section.find("encryption_key_file"), config_file, errors));

    const auto directory = section.find("file");
    if (const auto etcd = section.find("etcd")) {
        if (directory) {
            errors.add(section.key_of("etcd"),
                       "set either file or etcd, not both: the store lives in one place");
            return;
        }
        out.etcd = parse_etcd_store(*etcd, config_file, errors);
        return;
    }
    if (!directory) {
        errors.add(at, "missing file: the folder that holds certificates and keys (or etcd: the "
                       "cluster that does)");
        return;
    }
    if (const auto text = read_string(directory, errors)) {
        if (text->empty()) {
            errors.add(*directory, "the store folder cannot be empty");
            return;
        }
        out.file_directory = resolve_path(*text, config_file);
    }
}

// ---- acme -----------------------------------------------------------------------------------

// `value` in the largest unit that divides it, as the file would write it: 6h, 1m, 90s.
std::string duration_text(std::chrono::seconds value)
{
    constexpr std::array<std::pair<std::chrono::seconds::rep, char>, 3> units{
        {{86'400, 'd'}, {3'600, 'h'}, {60, 'm'}}};
    for (const auto& [seconds, unit] : units) {
        if (value.count() % seconds == 0) {
            return std::to_string(value.count() / seconds) + unit;
        }
    }
    return std::to_string(value.count()) + 's';
}

// A duration of at least a second, in whole seconds (a fraction of a second is dropped).
std::optional<std::chrono::seconds> read_seconds(const std::optional<located_node>& field,
                                                 error_collector& errors)
{
    const auto value = read_positive_duration(field, errors);
    if (!value) {
        return std::nullopt;
    }
    if (*value < std::chrono::seconds(1)) {
        errors.add(*field, "must be at least 1s");
        return std::nullopt;
    }
    return std::chrono::duration_cast<std::chrono::seconds>(*value);
}

// directory: NAME_OR_URL | [NAME_OR_URL, ...]
void parse_acme_directories(const located_node& at, std::vector<std::string>& out,
                            error_collector& errors)
{
    if (!at.node.IsSequence()) {
        if (auto url = read_parsed(at, errors, parse_acme_directory)) {
            out = {std::move(*url)};
        }
        return;
    }
    const auto items = read_list(at, errors).value_or(std::vector<located_node>{});
    if (items.empty()) {
        errors.add(at, "the directory list is empty; give at least one, e.g. letsencrypt");
        return;
    }

    // Compared after names become URLs, so "letsencrypt" and its URL are the same directory.
    first_lines seen;
    std::vector<std::string> urls;
    for (const located_node& item : items) {
        auto url = read_parsed(item, errors, parse_acme_directory);
        if (url && check_unique(*url, item, "directory", seen, errors)) {
            urls.push_back(std::move(*url));
        }
    }
    out = std::move(urls);
}

// eab: {kid: KEY_ID, hmac_key: BASE64URL}. The key is a secret: no message quotes it.
std::optional<external_account_binding_settings> parse_eab(const located_node& at,
                                                           error_collector& errors)
{
    if (!at.node.IsMap() && !at.node.IsNull()) {
        errors.add(at, "expected {kid: KEY_ID, hmac_key: BASE64URL}, found " + describe(at.node));
        return std::nullopt;
    }
    const mapping_reader fields(at, {"kid", "hmac_key"}, errors);
    const auto kid_field = fields.find("kid");
    const auto key_field = fields.find("hmac_key");
    if (!kid_field || !key_field) {
        errors.add(at, "an external account binding needs both kid and hmac_key");
    }
    const auto kid = read_string(kid_field, errors);
    if (kid && kid->empty()) {
        errors.add(*kid_field, "cannot be empty");
    }
    const auto key = read_parsed(key_field, errors, parse_base64url_secret);
    if (!kid || kid->empty() || !key) {
        return std::nullopt;
    }
    return external_account_binding_settings{*kid, *key};
}

// renew_when_remaining: PERCENTAGE | DURATION
void parse_renewal_threshold(const located_node& at, acme_settings& out, error_collector& errors)
{
    const auto text = read_string(at, errors);
    if (!text) {
        return;
    }
    if (text->ends_with('%')) {
        assign_if_valid(out.renew_remaining_fraction, read_parsed(at, errors, parse_percentage));
        return;
    }
    if (!parse_duration(*text)) {
        errors.add(at, "expected a percentage such as 33% or a duration such as 30d, found \"" +
                           *text + "\"");
        return;
    }
    out.renew_before = read_seconds(at, errors);
}

// retry: {min: DURATION, max: DURATION}, compared with the defaults of what is left out.
void parse_acme_retry(const located_node& at, acme_settings& out, error_collector& errors)
{
    const std::size_t errors_before = errors.count();
    const mapping_reader fields(at, {"min", "max"}, errors);
    const auto min_field = fields.find("min");
    const auto max_field = fields.find("max");
    assign_if_valid(out.retry_min, read_seconds(min_field, errors));
    assign_if_valid(out.retry_max, read_seconds(max_field, errors));
    if (errors.count() != errors_before || out.retry_max >= out.retry_min) {
        return;
    }
    if (max_field) {
        errors.add(*max_field, "must be at least retry.min (" + duration_text(out.retry_min) +
                                   "), found " + max_field->node.Scalar());
    } else {
        errors.add(*min_field, "must be at most retry.max, which is " +
                                   duration_text(out.retry_max) + " unless set; set max too");
    }
}

void parse_acme(const located_node& at, const std::string& config_file, acme_settings& out,
                error_collector& errors)
{
    const mapping_reader section(at,
                                 {"email", "directory", "ca_bundle", "eab", "key_type",
                                  "renew_when_remaining", "check_every", "retry",
                                  "orders_per_minute", "preferred_chain", "order_lock_ttl"},
                                 errors);
    assign_if_valid(out.email, read_parsed(section.find("email"), errors, parse_email_address));
    if (const auto field = section.find("directory")) {
        parse_acme_directories(*field, out.directories, errors);
    }
    assign_if_valid(out.ca_bundle_file,
                    read_pem_path(section.find("ca_bundle"), config_file, errors));
    if (const auto field = section.find("eab")) {
        out.eab = parse_eab(*field, errors);
    }
    assign_if_valid(out.key_type,
                    read_parsed(section.find("key_type"), errors, parse_acme_key_type));
    if (const auto field = section.find("renew_when_remaining")) {
        parse_renewal_threshold(*field, out, errors);
    }
    assign_if_valid(out.check_every, read_seconds(section.find("check_every"), errors));
    if (const auto field = section.find("retry")) {
        parse_acme_retry(*field, out, errors);
    }
    assign_if_valid(out.orders_per_minute,
                    read_whole_number(section.find("orders_per_minute"), 1,
                                      std::numeric_limits<unsigned>::max(), errors));
    if (const auto field = section.find("preferred_chain")) {
        if (auto name = read_string(field, errors)) {
            if (name->empty()) {
                errors.add(*field, "preferred_chain must name a CA, such as \"ISRG Root X1\"");
            } else {
                out.preferred_chain = std::move(*name);
            }
        }
    }
    if (const auto field = section.find("order_lock_ttl")) {
        if (const auto ttl = read_seconds(field, errors)) {
            if (*ttl < min_order_lock_ttl) {
                errors.add(*field, "must be at least " + duration_text(min_order_lock_ttl) +
                                       ", found " + field->node.Scalar() +
                                       ": the CA's request deadlines are derived from it");
            } else {
                out.order_lock_ttl = *ttl;
            }
        }
    }
}

// ---- hooks ----------------------------------------------------------------------------------

// A hook's program: a name looked up in PATH when it runs, or an absolute path that must name
// an executable file now, so `gatehouse validate` and a reload catch a typo before the first
// renewal does. A relative path would depend on the directory gatehouse was started in.
std::optional<std::string> read_hook_program(const located_node& at, error_collector& errors)
{
    const auto text = read_string(at, errors);
    if (!text) {
        return std::nullopt;
    }
    if (text->empty()) {
        errors.add(at, "the program cannot be empty");
        return std::nullopt;
    }
    if (text->find('/') == std::string::npos) {
        return text;
    }
    if (!text->starts_with('/')) {
        errors.add(at, "expected an absolute path or a program name looked up in PATH, found \"" +
                           *text + "\"");
        return std::nullopt;
    }
    struct stat info {};
    std::string why;
    if (::stat(text->c_str(), &info) != 0) {
        why = std::generic_category().message(errno);
    } else if (!S_ISREG(info.st_mode)) {
        why = "not a regular file";
    } else if (::access(text->c_str(), X_OK) != 0) {
        why = "not executable";
    }
    if (!why.empty()) {
        errors.add(at, "cannot run " + *text + ": " + why);
        return std::nullopt;
    }
    return text;
}

// command: [PROGRAM, ARGUMENT, ...]
std::vector<std::string> read_hook_command(const located_node& at, error_collector& errors)
{
    const auto items = read_list(at, errors);
    if (!items) {
        return {};
    }
    if (items->empty()) {
        errors.add(at, "the command is empty; give the program and its arguments");
        return {};
    }
    std::vector<std::string> command;
    const auto program = read_hook_program(items->front(), errors);
    command.push_back(program.value_or(""));
    for (std::size_t i = 1; i < items->size(); ++i) {
        command.push_back(read_string((*items)[i], errors).value_or(""));
    }
    return program ? command : std::vector<std::string>{};
}

// certificate_updated: {command: [PROGRAM, ...], timeout: DURATION}
std::optional<certificate_hook_settings> parse_certificate_hook(const located_node& at,
                                                                error_collector& errors)
{
    const std::size_t errors_before = errors.count();
    const mapping_reader fields(at, {"command", "timeout"}, errors);
    certificate_hook_settings out;
    const auto command = fields.find("command");
    if (!command) {
        errors.add(at, "missing command: the program to run and its arguments, as a list");
    } else {
        out.command = read_hook_command(*command, errors);
    }
    assign_if_valid(out.timeout, read_seconds(fields.find("timeout"), errors));
    if (errors.count() != errors_before) {
        return std::nullopt;
    }
    return out;
}

void parse_hooks(const located_node& at, hook_settings& out, error_collector& errors)
{
    const mapping_reader section(at, {"certificate_updated"}, errors);
    if (const auto field = section.find("certificate_updated")) {
        out.certificate_updated = parse_certificate_hook(*field, errors);
    }
}

// ---- routes ---------------------------------------------------------------------------------

// Where each of a route's extra names is written, in the order of route_tls::extra_names. Kept
// until every route is read, because a name may clash with a route further down the file.
using name_positions = std::vector<located_node>;

// extra_names: [NAME, ...] of a route whose host is `host`.
void read_extra_names(const located_node& at, const std::string& host, route_tls& out,
                      name_positions& extra_at, error_collector& errors)
{
    first_lines seen;
    for (const located_node& item : read_list(at, errors).value_or(std::vector<located_node>{})) {
        const auto name = read_parsed(item, errors, parse_acme_dns_name);
        if (!name) {
            continue;
        }
        if (*name == host) {
            errors.add(item, "\"" + *name + "\" is the route's host; list only other names");
            continue;
        }
        if (check_unique(*name, item, "extra name", seen, errors)) {
            out.extra_names.push_back(*name);
            extra_at.push_back(item);
        }
    }
}

// acme: {extra_names: [NAME, ...]}, or an empty value for the route's host alone.
route_tls parse_acme_route_tls(const located_node& at, const std::string& host,
                               name_positions& extra_at, error_collector& errors)
{
    route_tls out;
    out.source = tls_source::acme;
    const mapping_reader fields(at, {"extra_names"}, errors);
    if (const auto names = fields.find("extra_names")) {
        read_extra_names(*names, host, out, extra_at, errors);
    }
    return out;
}

// {cert: FILE, key: FILE}
route_tls parse_files_route_tls(const located_node& at, const mapping_reader& fields,
                                const std::string& config_file, error_collector& errors)
{
    const auto cert = fields.find("cert");
    const auto key = fields.find("key");
    if (!cert || !key) {
        errors.add(at, "a certificate from files needs both cert and key");
    }
    route_tls out;
    out.source = tls_source::files;
    out.certificate_file = read_pem_path(cert, config_file, errors).value_or("");
    out.key_file = read_pem_path(key, config_file, errors).value_or("");
    return out;
}

// tls: off | internal | acme | {cert: FILE, key: FILE} | {acme: {extra_names: [NAME, ...]}}
route_tls parse_route_tls(const located_node& at, const std::string& host,
                          const std::string& config_file, name_positions& extra_at,
                          error_collector& errors)
{
    if (at.node.IsMap()) {
        const mapping_reader fields(at, {"cert", "key", "acme"}, errors);
        const auto acme = fields.find("acme");
        if (!acme) {
            return parse_files_route_tls(at, fields, config_file, errors);
        }
        if (fields.find("cert") || fields.find("key")) {
            errors.add(fields.key_of("acme"),
                       "a certificate comes either from acme or from cert and key files, not both");
        }
        return parse_acme_route_tls(*acme, host, extra_at, errors);
    }

    route_tls out;
    const auto text = read_string(at, errors);
    if (!text) {
        return out;
    }
    if (*text == "off") {
        out.source = tls_source::off;
    } else if (*text == "internal") {
        out.source = tls_source::internal;
    } else if (*text == "acme") {
        out.source = tls_source::acme;
    } else {
        errors.add(at, "unknown tls source \"" + *text +
                           "\"; expected off, internal, acme or {cert: FILE, key: FILE}");
    }
    return out;
}

// hsts: true | false | {max_age, include_subdomains, preload}
hsts_policy parse_hsts(const located_node& at, error_collector& errors)
{
    hsts_policy out;
    if (!at.node.IsMap()) {
        assign_if_valid(out.enabled, read_bool(at, errors));
        return out;
    }
    out.enabled = true;
    const mapping_reader fields(at, {"max_age", "include_subdomains", "preload"}, errors);
    if (const auto max_age = read_positive_duration(fields.find("max_age"), errors)) {
        out.max_age = std::chrono::duration_cast<std::chrono::seconds>(*max_age);
    }
    assign_if_valid(out.include_subdomains, read_bool(fields.find("include_subdomains"), errors));
    assign_if_valid(out.preload, read_bool(fields.find("preload"), errors));
    return out;
}

// Without an HTTPS listener a route can only be plain HTTP; with one, routes default to a
// certificate from the internal CA, so TLS is on unless a route turns it off.
void parse_route_security(const mapping_reader& fields, const gatehouse_config& config, route& out,
                          name_positions& extra_at, error_collector& errors)
{
    const bool https = config.https_listener.has_value();
    out.tls.source = https ? tls_source::internal : tls_source::off;
    const auto tls_field = fields.find("tls");
    if (tls_field) {
        out.tls = parse_route_tls(*tls_field, out.host, config.source_file, extra_at, errors);
        if (!https && out.tls.source != tls_source::off) {
            errors.add(*tls_field, "this route has TLS but listen.https is not set");
        }

        if (out.tls.source == tls_source::acme && out.host.starts_with("*.")) {
            errors.add(*tls_field, std::string(acme_wildcard_rejection));
        }
    }

    assign_if_valid(out.redirect_http, read_bool(fields.find("redirect_http"), errors));
    if (const auto hsts_field = fields.find("hsts")) {
        out.hsts = parse_hsts(*hsts_field, errors);
        if (out.hsts.enabled && out.tls.source == tls_source::off) {
            errors.add(*hsts_field, "hsts needs TLS; this route is served over plain HTTP only");
        }
    }
}

std::vector<upstream_url> read_upstream_list(const located_node& at, error_collector& errors)
{
    const auto items = read_list(at, errors);
    if (items && items->empty()) {
        errors.add(at, "the upstream list is empty; give at least one URL");
    }

    std::vector<upstream_url> upstreams;
    for (const located_node& item : items.value_or(std::vector<located_node>{})) {
        if (auto upstream = read_parsed(item, errors, parse_upstream_url)) {
            upstreams.push_back(std::move(*upstream));
        }
    }
    return upstreams;
}

// A path names its upstreams with exactly one of "upstream: URL" or "upstreams: [URL, ...]".
std::vector<upstream_url> read_upstreams(const located_node& at, const mapping_reader& fields,
                                         error_collector& errors)
{
    const auto single = fields.find("upstream");
    const auto list = fields.find("upstreams");
    if (single && list) {
        errors.add(fields.key_of("upstreams"), "set either upstream or upstreams, not both");
        return {};
    }
    if (!single && !list) {
        errors.add(at, "missing upstream (one URL) or upstreams (a list of URLs)");
        return {};
    }
    if (list) {
        return read_upstream_list(*list, errors);
    }
    const auto upstream = read_parsed(single, errors, parse_upstream_url);
    return upstream ? std::vector<upstream_url>{*upstream} : std::vector<upstream_url>{};
}

path_route parse_path_route(const located_node& at, first_lines& seen_prefixes,
                            error_collector& errors)
{
    path_route out;
    if (!at.node.IsMap()) {
        errors.add(at, "expected a path (a mapping with prefix and upstream), found " +
                           describe(at.node));
        return out;
    }
    const mapping_reader fields(at, {"prefix", "strip_prefix", "upstream", "upstreams"}, errors);

    // An absent prefix means "/", which still counts towards duplicates.
    const auto prefix_field = fields.find("prefix");
    const auto prefix = prefix_field ? read_parsed(prefix_field, errors, parse_path_prefix)
                                     : std::optional<std::string>(out.prefix);
    if (prefix) {
        out.prefix = *prefix;
        check_unique(out.prefix, prefix_field.value_or(at), "prefix", seen_prefixes, errors);
    }

    assign_if_valid(out.strip_prefix, read_bool(fields.find("strip_prefix"), errors));
    out.upstreams = read_upstreams(at, fields, errors);
    return out;
}

std::vector<path_route> parse_path_routes(const located_node& route_at,
                                          const mapping_reader& fields, error_collector& errors)
{
    const auto field = fields.find("paths");
    if (!field) {
        errors.add(route_at, "a route needs paths: a list with at least one prefix and upstream");
        return {};
    }
    const auto items = read_list(*field, errors);
    if (items && items->empty()) {
        errors.add(*field, "a route needs at least one path");
    }

    first_lines seen_prefixes;
    std::vector<path_route> paths;
    for (const located_node& item : items.value_or(std::vector<located_node>{})) {
        paths.push_back(parse_path_route(item, seen_prefixes, errors));
    }
    return paths;
}

std::string read_route_host(const located_node& route_at, const mapping_reader& fields,
                            first_lines& seen_hosts, error_collector& errors)
{
    const auto field = fields.find("host");
    if (!field) {
        errors.add(route_at, "a route needs a host");
        return {};
    }
    const auto host = read_parsed(field, errors, parse_route_host);
    if (!host) {
        return {};
    }

    // Hosts are compared after lower-casing and dropping the trailing dot, as requests are.
    check_unique(*host, *field, "host", seen_hosts, errors);
    return *host;
}

// A name can be on only one certificate, or which one a handshake gets would depend on lookup
// order: no extra name may be another route's host or another route's extra name. `extra_at`
// holds the positions of each route's extra names; `hosts` where each host is first written.
void check_extra_names_unclaimed(const std::vector<route>& routes,
                                 const std::vector<name_positions>& extra_at,
                                 const first_lines& hosts, error_collector& errors)
{
    first_lines seen;
    for (std::size_t i = 0; i < routes.size(); ++i) {
        const auto& names = routes[i].tls.extra_names;
        for (std::size_t j = 0; j < names.size(); ++j) {
            const located_node& at = extra_at[i][j];
            if (const auto host = hosts.find(names[j]); host != hosts.end()) {
                errors.add(at, "\"" + names[j] + "\" is the host of the route on line " +
                                   std::to_string(host->second) +
                                   "; a name can be on only one certificate");
                continue;
            }
            const auto [first, inserted] = seen.emplace(names[j], line_of(at.node));
            if (!inserted) {
                errors.add(at, "\"" + names[j] + "\" is already an extra name on line " +
                                   std::to_string(first->second) +
                                   "; a name can be on only one certificate");
            }
        }
    }
}

void parse_routes(const located_node& at, const gatehouse_config& config, std::vector<route>& out,
                  error_collector& errors)
{
    first_lines seen_hosts;
    std::vector<name_positions> extra_at;
    for (const located_node& item : read_list(at, errors).value_or(std::vector<located_node>{})) {
        if (!item.node.IsMap()) {
            errors.add(item, "expected a route (a mapping with host and paths), found " +
                                 describe(item.node));
            continue;
        }
        const mapping_reader fields(item, {"host", "paths", "tls", "redirect_http", "hsts"},
                                    errors);
        route parsed;
        parsed.host = read_route_host(item, fields, seen_hosts, errors);
        parsed.paths = parse_path_routes(item, fields, errors);
        parse_route_security(fields, config, parsed, extra_at.emplace_back(), errors);
        out.push_back(std::move(parsed));
    }
    check_extra_names_unclaimed(out, extra_at, seen_hosts, errors);
}

// ---- the whole file -------------------------------------------------------------------------

// The default certificate must be one we hold: the host of a route that has TLS.
void check_default_certificate(const mapping_reader& top, const gatehouse_config& config,
                               error_collector& errors)
{
    const auto section = top.find("tls");
    const auto& tls = config.tls;
    if (tls.unknown_sni == unknown_sni_action::serve_default && tls.default_certificate.empty()) {
        errors.add(section.value_or(located_node{YAML::Node(), "tls"}),
                   "unknown_sni: default needs default_certificate, the host of a route with TLS");
        return;
    }
    if (tls.default_certificate.empty()) {
        return;
    }
    const bool held = std::any_of(config.routes.begin(), config.routes.end(), [&](const route& r) {
        return r.host == tls.default_certificate && r.tls.source != tls_source::off;
    });
    if (!held) {
        errors.add(section.value_or(located_node{YAML::Node(), "tls"}),
                   "default_certificate \"" + tls.default_certificate +
                       "\" is not the host of a route with TLS");
    }
}

gatehouse_config build_config(const YAML::Node& root, const std::string& file_name,
                              error_collector& errors)
{
    gatehouse_config config;
    config.source_file = file_name;
    const mapping_reader top(located_node{root, ""},
                             {"listen", "health_path", "threads", "timeouts", "limits",
                              "upstream_health", "trusted_proxies", "log", "tls", "acme", "store",
                              "hooks", "routes"},
                             errors);

    if (const auto listen = top.find("listen")) {
        parse_listen(*listen, config, errors);
    }
    assign_if_valid(config.health_path,
                    read_parsed(top.find("health_path"), errors, parse_path_prefix));
    assign_if_valid(config.threads, read_threads(top.find("threads"), errors));
    if (const auto section = top.find("timeouts")) {
        parse_timeouts(*section, config.timeouts, errors);
    }
    if (const auto section = top.find("limits")) {
        parse_limits(*section, config.limits, errors);
    }
    if (const auto section = top.find("upstream_health")) {
        parse_upstream_health(*section, config.upstream_health, errors);
    }
    if (const auto section = top.find("trusted_proxies")) {
        parse_trusted_proxies(*section, config.trusted_proxies, errors);
    }
    if (const auto section = top.find("log")) {
        parse_log(*section, config.log, errors);
    }
    if (const auto section = top.find("tls")) {
        parse_tls_settings(*section, config.tls, errors);
    }
    if (const auto section = top.find("acme")) {
        parse_acme(*section, file_name, config.acme, errors);
    }
    if (const auto section = top.find("store")) {
        parse_store(*section, config.store, file_name, errors);
    }
    if (const auto section = top.find("hooks")) {
        parse_hooks(*section, config.hooks, errors);
    }
    if (const auto section = top.find("routes")) {
        parse_routes(*section, config, config.routes, errors);
    }
    check_default_certificate(top, config, errors);
    return config;
}

// The file's one YAML document; an empty file is an empty document. Nothing after a syntax
// error, which yaml-cpp reports only one of.
std::optional<YAML::Node> load_document(std::string_view yaml_text, error_collector& errors)
{
    std::vector<YAML::Node> documents;
    try {
        documents = YAML::LoadAll(std::string(yaml_text));
    } catch (const YAML::Exception& error) {
        errors.add(error.mark, "", "invalid YAML: " + error.msg);
        return std::nullopt;
    }

    if (documents.size() > 1) {
        errors.add(located_node{documents[1], ""},
                   "a configuration file holds one YAML document; remove everything after ---");
    }
    return documents.empty() ? YAML::Node() : documents.front();
}

// The whole content of `path`, or why it could not be read.
parse_result<std::string> read_file(const std::string& path)
{
    const std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                               &std::fclose);
    if (!file) {
        return rejection{std::generic_category().message(errno)};
    }

    std::string text;
    std::array<char, 16 * 1024> buffer{};
    while (const std::size_t count = std::fread(buffer.data(), 1, buffer.size(), file.get())) {
        text.append(buffer.data(), count);
    }

    // A directory opens but fails on the first read, with EISDIR.
    if (std::ferror(file.get()) != 0) {
        return rejection{std::generic_category().message(errno)};
    }
    return text;
}

std::string join_lines(const std::vector<config_error>& errors)
{
    std::string text;
    for (const config_error& error : errors) {
        text += (text.empty() ? "" : "\n") + error.to_string();
    }
    return text.empty() ? "invalid configuration" : text;
}

} // namespace

std::string config_error::to_string() const
{
    std::string text = file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": ";
    if (!key_path.empty()) {
        text += key_path + ": ";
    }
    return text + message;
}

config_load_error::config_load_error(std::vector<config_error> errors)
    : std::runtime_error(join_lines(errors)), errors_(std::move(errors))
{}

gatehouse_config parse_config(std::string_view yaml_text, const std::string& file_name)
{
    error_collector errors(file_name);
    const auto root = load_document(yaml_text, errors);
    gatehouse_config config = root ? build_config(*root, file_name, errors) : gatehouse_config{};
    if (errors.count() != 0) {
        throw config_load_error(errors.take_sorted());
    }
    return config;
}

gatehouse_config load_config_file(const std::string& path)
{
    const auto text = read_file(path);
    if (!text.ok()) {
        throw config_load_error(
            {config_error{path, 0, 0, "", "cannot read file: " + text.error()}});
    }

    gatehouse_config config = parse_config(text.value(), path);
    config.source_file = path;
    return config;
}

} // namespace gatehouse::config
