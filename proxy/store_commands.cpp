#include "proxy/store_commands.hpp"

#include "proxy/store_factory.hpp"
#include "store/certificate_bundle.hpp"
#include "store/keys.hpp"
#include "store/rfc3339.hpp"
#include "store/store.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gatehouse::proxy {

namespace {

constexpr int exit_ok = 0;
constexpr int exit_runtime_failure = 1;
constexpr int exit_usage = 2;

constexpr std::string_view export_format = "gatehouse-store-export";
constexpr int export_version = 1;

// A refused import lists this many problems and counts the rest, so a document of the wrong
// kind does not flood the terminal.
constexpr std::size_t max_listed_problems = 20;

// Key order is the order in which an import writes: accounts, then the CA, then certificates,
// so an instance watching the target sees a certificate only once its CA is there.
using entry_map = std::map<std::string, std::string>;

// The folder of a key that store/keys.hpp builds: "ca/internal" gives "ca/".
std::string prefix_of(const std::string& key)
{
    return key.substr(0, key.find('/') + 1);
}

// What an export holds: what cannot be made again. Challenge tokens expire within minutes.
std::array<std::string, 3> exported_prefixes()
{
    return {store::keys::accounts_prefix(), prefix_of(store::keys::internal_ca()),
            store::keys::certificates_prefix()};
}

bool is_exported_key(const std::string& key)
{
    const auto prefixes = exported_prefixes();
    return std::any_of(prefixes.begin(), prefixes.end(),
                       [&](const std::string& prefix) { return key.starts_with(prefix); });
}

// Values under these keys are certificate bundles, which gatehouse must be able to read back.
bool holds_bundle(const std::string& key)
{
    return key.starts_with(store::keys::certificates_prefix()) || key == store::keys::internal_ca();
}

// "1 entry", "3 entries".
std::string counted(std::size_t count, std::string_view one, std::string_view many)
{
    return std::to_string(count) + " " + std::string(count == 1 ? one : many);
}

// Every exported key and its value; nothing when the store cannot be read (said on `err`).
std::optional<entry_map> read_entries(store::store& store, std::ostream& err)
{
    entry_map entries;
    for (const auto& prefix : exported_prefixes()) {
        auto keys = store.list(prefix);
        if (!keys) {
            err << "gatehouse: listing " << prefix << " in " << store.describe() << ": "
                << keys.error().message() << '\n';
            return std::nullopt;
        }
        for (const auto& key : *keys) {
            auto value = store.get(key);
            if (!value) {
                err << "gatehouse: reading " << key << " from " << store.describe() << ": "
                    << value.error().message() << '\n';
                return std::nullopt;
            }
            // Removed since it was listed: there is nothing to move.
            if (*value) {
                entries.emplace(key, std::move(**value));
            }
        }
    }
    return entries;
}

// JSON strings are UTF-8; gatehouse writes only text, but the store itself takes any bytes.
bool is_json_text(const std::string& value)
{
    try {
        (void)nlohmann::json(value).dump();
        return true;
    } catch (const nlohmann::json::type_error&) {
        return false;
    }
}

// ---- checking a document ----------------------------------------------------------------

// Collects what is wrong with a document, to list all of it at once.
class problem_list {
public:
    void add(std::string problem) { problems_.push_back(std::move(problem)); }
    bool empty() const noexcept { return problems_.empty(); }

    void print(std::ostream& err) const
    {
        const std::size_t listed = std::min(problems_.size(), max_listed_problems);
        for (std::size_t i = 0; i < listed; ++i) {
            err << "gatehouse: " << problems_[i] << '\n';
        }
        if (problems_.size() > listed) {
            err << "gatehouse: and "
                << counted(problems_.size() - listed, "more problem", "more problems") << '\n';
        }
        err << "gatehouse: refusing the import ("
            << counted(problems_.size(), "problem", "problems") << "); nothing was written\n";
    }

private:
    std::vector<std::string> problems_;
};

void check_header(const nlohmann::json& document, problem_list& problems)
{
    const auto format = document.find("format");
    if (format == document.end() || !format->is_string() ||
        format->get<std::string>() != export_format) {
        problems.add("not a store export: \"format\" must be \"" + std::string(export_format) +
                     "\"");
    }
    const auto version = document.find("version");
    if (version == document.end() || !version->is_number_integer()) {
        problems.add("\"version\" is missing or not a whole number");
    } else if (version->get<std::int64_t>() != export_version) {
        problems.add("version " + version->dump() + " is not supported; this gatehouse reads " +
                     "version " + std::to_string(export_version));
    }
}

void check_entry(const std::string& key, const nlohmann::json& value, problem_list& problems)
{
    if (!store::is_valid_key(key)) {
        problems.add("entry \"" + key + "\": not a valid store key");
        return;
    }
    if (!is_exported_key(key)) {
        problems.add("entry \"" + key + "\": not under certificates/, accounts/ or ca/");
        return;
    }
    if (!value.is_string()) {
        problems.add("entry \"" + key + "\": the value is not a string");
        return;
    }
    if (holds_bundle(key) && !store::parse_bundle(value.get_ref<const std::string&>())) {
        problems.add("entry \"" + key + "\": not a readable certificate bundle");
    }
}

// The entries of an export document, or nothing when anything in it is wrong (every problem
// is then in `problems`).
std::optional<entry_map> read_document(const std::string& text, problem_list& problems)
{
    nlohmann::json document;
    try {
        document = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& failure) {
        problems.add("the input is not a whole JSON document (truncated?): " +
                     std::string(failure.what()));
        return std::nullopt;
    }
    if (!document.is_object()) {
        problems.add("not a store export: expected a JSON object");
        return std::nullopt;
    }
    check_header(document, problems);
    const auto entries = document.find("entries");
    if (entries == document.end() || !entries->is_object()) {
        problems.add("\"entries\" is missing or not an object");
        return std::nullopt;
    }
    entry_map out;
    for (const auto& [key, value] : entries->items()) {
        check_entry(key, value, problems);
        if (value.is_string()) {
            out.emplace(key, value.get<std::string>());
        }
    }
    if (!problems.empty()) {
        return std::nullopt;
    }
    return out;
}

// ---- writing ------------------------------------------------------------------------------

struct import_counts {
    std::size_t written = 0;
    std::size_t unchanged = 0;
    std::size_t skipped = 0;
};

// Puts one entry unless the store holds it already. False when the store failed (said on
// `err`).
bool import_entry(store::store& store, const std::string& key, const std::string& value,
                  bool overwrite, import_counts& counts, std::ostream& out, std::ostream& err)
{
    auto existing = store.get(key);
    if (!existing) {
        err << "gatehouse: reading " << key << ": " << existing.error().message() << '\n';
        return false;
    }
    if (*existing && **existing == value) {
        ++counts.unchanged;
        return true;
    }
    if (*existing && !overwrite) {
        err << "gatehouse: " << key
            << " already holds another value in the store; kept it (--overwrite replaces it)\n";
        ++counts.skipped;
        return true;
    }
    if (auto written = store.put(key, value); !written) {
        err << "gatehouse: writing " << key << ": " << written.error().message() << '\n';
        return false;
    }
    if (*existing) {
        out << "replaced " << key << '\n';
    }
    ++counts.written;
    return true;
}

void print_summary(const import_counts& counts, const std::string& target, std::ostream& out)
{
    out << "imported into " << target << ": " << counts.written << " written, " << counts.unchanged
        << " unchanged, " << counts.skipped << " skipped\n";
}

} // namespace

int export_store(const config::gatehouse_config& config, std::ostream& out, std::ostream& err)
{
    auto store = open_store_for_command(config, err);
    if (!store) {
        return exit_runtime_failure;
    }
    const auto entries = read_entries(*store, err);
    if (!entries) {
        return exit_runtime_failure;
    }

    nlohmann::ordered_json document;
    document["format"] = export_format;
    document["version"] = export_version;
    document["exported_at"] = store::format_rfc3339(std::chrono::system_clock::now());
    document["source"] = store->describe();
    document["entries"] = nlohmann::ordered_json::object();
    for (const auto& [key, value] : *entries) {
        if (!is_json_text(value)) {
            err << "gatehouse: " << key << " is not UTF-8 text and cannot be exported; nothing "
                << "was written\n";
            return exit_runtime_failure;
        }
        document["entries"][key] = value;
    }
    const std::string text = document.dump(2) + "\n";

    err << "gatehouse: the export holds private keys (certificates, the internal CA, ACME "
           "accounts): keep it as secret as the store itself\n";
    out << text;
    out.flush();
    if (!out) {
        err << "gatehouse: writing the export failed\n";
        return exit_runtime_failure;
    }
    err << "gatehouse: exported " << counted(entries->size(), "entry", "entries") << " from "
        << store->describe() << '\n';
    return exit_ok;
}

int import_store(const config::gatehouse_config& config, std::istream& in, bool overwrite,
                 std::ostream& out, std::ostream& err)
{
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (in.bad()) {
        err << "gatehouse: reading the export from standard input failed\n";
        return exit_runtime_failure;
    }

    // Everything is checked before the store is even opened, so a bad document changes
    // nothing anywhere.
    problem_list problems;
    const auto entries = read_document(text, problems);
    if (!entries) {
        problems.print(err);
        return exit_usage;
    }

    auto store = open_store_for_command(config, err);
    if (!store) {
        return exit_runtime_failure;
    }
    import_counts counts;
    for (const auto& [key, value] : *entries) {
        if (!import_entry(*store, key, value, overwrite, counts, out, err)) {
            print_summary(counts, store->describe(), out);
            err << "gatehouse: the import stopped there; running it again completes it\n";
            return exit_runtime_failure;
        }
    }
    print_summary(counts, store->describe(), out);
    if (counts.skipped != 0) {
        err << "gatehouse: " << counted(counts.skipped, "entry", "entries")
            << " kept a value that differs from the export; --overwrite replaces them\n";
        return exit_runtime_failure;
    }
    return exit_ok;
}

} // namespace gatehouse::proxy
