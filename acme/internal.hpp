// Helpers shared by the acme/*.cpp files for reading JSON without exceptions. Not part of the
// library's interface: nothing outside acme/ includes this header, so nlohmann::json stays out
// of the public headers.
#pragma once

#include "acme/error.hpp"
#include "acme/problem.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace gatehouse::acme::internal {

using json = nlohmann::json;

inline acme_error make_error(errc code, std::string message)
{
    return acme_error{code, std::move(message)};
}

// `text` parsed as a JSON object; `what` names the message in the error ("directory").
result<json> parse_object(std::string_view text, std::string_view what);

// The string member `name`; missing_field when absent, invalid_field when not a string.
result<std::string> required_string(const json& object, const char* name, std::string_view what);

// The string member `name`, or nullopt when it is absent or not a string: optional members of
// the wrong type are ignored, since RFC 8555 section 7.1 lets servers add what they like.
std::optional<std::string> optional_string(const json& object, const char* name);

// The strings in the array member `name`; other elements, and a member that is not an array,
// are skipped.
std::vector<std::string> string_array(const json& object, const char* name);

// A problem document already parsed as JSON (see parse_problem).
problem problem_from_json(const json& object);

} // namespace gatehouse::acme::internal
