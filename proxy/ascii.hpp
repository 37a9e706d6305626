// ASCII helpers for HTTP's case-insensitive tokens and optional whitespace.
//
// Field names, Connection options and the like are ASCII and compare without regard to case
// (RFC 9110 section 5.1). std::tolower would be a library call per character that consults the
// C locale, on every field of every message; folding A-Z inline is both correct and cheap.
#pragma once

#include <algorithm>
#include <string_view>

namespace gatehouse::proxy {

constexpr char ascii_lower(char c) noexcept
{
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

constexpr bool iequals(std::string_view a, std::string_view b) noexcept
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return ascii_lower(x) == ascii_lower(y);
           });
}

// Without the spaces and tabs HTTP allows around a value (OWS, RFC 9110 section 5.6.3).
constexpr std::string_view trim_ows(std::string_view text) noexcept
{
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
        text.remove_prefix(1);
    }
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
        text.remove_suffix(1);
    }
    return text;
}

} // namespace gatehouse::proxy
