#include "store/certificate_bundle.hpp"

#include "store/rfc3339.hpp"

#include <nlohmann/json.hpp>

namespace gatehouse::store {

namespace {

using nlohmann::json;
using std::chrono::system_clock;

// Written so a future format can be told apart; a record without it is format 1.
constexpr int current_format = 1;

bool is_unknown(system_clock::time_point time)
{
    return time == system_clock::time_point{};
}

void put_time(json& object, const char* field, system_clock::time_point time)
{
    if (!is_unknown(time)) {
        object[field] = format_rfc3339(time);
    }
}

// Reads an optional string field into `target`; false when the field has another type.
bool get_string(const json& object, const char* field, std::string& target)
{
    const auto found = object.find(field);
    if (found == object.end() || found->is_null()) {
        return true;
    }
    if (!found->is_string()) {
        return false;
    }
    target = found->get<std::string>();
    return true;
}

bool get_time(const json& object, const char* field, system_clock::time_point& target)
{
    std::string text;
    if (!get_string(object, field, text)) {
        return false;
    }
    if (text.empty()) {
        return true;
    }
    const auto parsed = parse_rfc3339(text);
    if (!parsed) {
        return false;
    }
    target = *parsed;
    return true;
}

bool get_names(const json& object, std::vector<std::string>& names)
{
    const auto found = object.find("names");
    if (found == object.end() || found->is_null()) {
        return true;
    }
    if (!found->is_array()) {
        return false;
    }
    for (const auto& name : *found) {
        if (!name.is_string()) {
            return false;
        }
        names.push_back(name.get<std::string>());
    }
    return true;
}

bool has_supported_format(const json& object)
{
    const auto found = object.find("format");
    return found == object.end() || (found->is_number_integer() && *found == current_format);
}

} // namespace

std::string serialize_bundle(const certificate_bundle& bundle)
{
    json object = json::object();
    object["format"] = current_format;
    object["names"] = bundle.names;
    object["issuer"] = bundle.issuer;
    object["serial"] = bundle.serial;
    if (!bundle.acme_directory.empty()) {
        object["acme_directory"] = bundle.acme_directory;
    }
    put_time(object, "not_before", bundle.not_before);
    put_time(object, "not_after", bundle.not_after);
    put_time(object, "obtained_at", bundle.obtained_at);
    object["certificate_chain_pem"] = bundle.certificate_chain_pem;
    object["private_key_pem"] = bundle.private_key_pem;
    // Replacing invalid UTF-8 rather than throwing: PEM is ASCII, so only free-text fields can
    // hold such bytes, and a record that round-trips imperfectly beats one that is not written.
    return object.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

result<certificate_bundle> parse_bundle(std::string_view text)
{
    const json object = json::parse(text, nullptr, false);
    if (object.is_discarded() || !object.is_object() || !has_supported_format(object)) {
        return errc::corrupt;
    }
    certificate_bundle bundle;
    const bool well_typed =
        get_names(object, bundle.names) &&
        get_string(object, "certificate_chain_pem", bundle.certificate_chain_pem) &&
        get_string(object, "private_key_pem", bundle.private_key_pem) &&
        get_string(object, "issuer", bundle.issuer) &&
        get_string(object, "serial", bundle.serial) &&
        get_string(object, "acme_directory", bundle.acme_directory) &&
        get_time(object, "not_before", bundle.not_before) &&
        get_time(object, "not_after", bundle.not_after) &&
        get_time(object, "obtained_at", bundle.obtained_at);
    if (!well_typed || bundle.certificate_chain_pem.empty() || bundle.private_key_pem.empty()) {
        return errc::corrupt;
    }
    return bundle;
}

} // namespace gatehouse::store
