#include "acme/internal.hpp"

namespace gatehouse::acme::internal {

result<json> parse_object(std::string_view text, std::string_view what)
{
    json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) {
        return make_error(errc::invalid_json, std::string(what) + " is not JSON");
    }
    if (!value.is_object()) {
        return make_error(errc::invalid_json, std::string(what) + " is not a JSON object");
    }
    // json converts implicitly to almost anything, so name the alternative explicitly.
    return result<json>(boost::system::in_place_value, std::move(value));
}

result<std::string> required_string(const json& object, const char* name, std::string_view what)
{
    const auto member = object.find(name);
    if (member == object.end()) {
        return make_error(errc::missing_field,
                          std::string(what) + " has no \"" + name + "\" member");
    }
    if (!member->is_string()) {
        return make_error(errc::invalid_field,
                          std::string(what) + " member \"" + name + "\" is not a string");
    }
    return member->get<std::string>();
}

std::optional<std::string> optional_string(const json& object, const char* name)
{
    const auto member = object.find(name);
    if (member == object.end() || !member->is_string()) {
        return std::nullopt;
    }
    return member->get<std::string>();
}

std::vector<std::string> string_array(const json& object, const char* name)
{
    std::vector<std::string> strings;
    const auto member = object.find(name);
    if (member == object.end() || !member->is_array()) {
        return strings;
    }
    for (const auto& element : *member) {
        if (element.is_string()) {
            strings.push_back(element.get<std::string>());
        }
    }
    return strings;
}

} // namespace gatehouse::acme::internal
