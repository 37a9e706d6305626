// Times as RFC 3339 text (section 5.6), the form the store writes in JSON records:
// "2026-03-01T12:00:00Z". Pure and thread-safe.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace gatehouse::store {

// `time` in UTC to the second, with a 'Z' suffix; any fraction of a second is dropped.
std::string format_rfc3339(std::chrono::system_clock::time_point time);

// Reads "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)"; 't', 'z' and a space instead of 'T'
// are accepted as RFC 3339 allows. A leap second (":60") reads as ":59". The fraction is kept
// to the precision of system_clock. Times beyond what system_clock can hold (about the years
// 1678 to 2262) are clamped to its minimum or maximum, because certificates may say
// "9999-12-31" (RFC 5280 section 4.1.2.5). Returns nothing on any other input.
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text);

} // namespace gatehouse::store
