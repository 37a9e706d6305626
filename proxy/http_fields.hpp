// The field lines of an HTTP/1 head, as gatehouse's own parsers hand them out, and the syntax
// rules the request and response parsers share (RFC 9110 section 5, RFC 9112 section 5).
//
// Fields are views into the text of the head they came from: the head must outlive them.
// Most heads have a dozen fields or fewer, so the list keeps that many without allocating.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include <boost/container/small_vector.hpp>

namespace gatehouse::proxy {

struct header_field {
    std::string_view name;
    // Without the whitespace around it.
    std::string_view value;
};

using header_fields = boost::container::small_vector<header_field, 16>;

// The first field called `name`, ignoring case, or nullptr.
const header_field* find_field(const header_fields& fields, std::string_view name);

// True when a Connection field of the head lists `token` (RFC 9110 section 7.6.1).
bool connection_has(const header_fields& fields, std::string_view token);

// tchar (RFC 9110 section 5.6.2). ASCII only: std::isalnum would consult the C locale, a
// library call per byte.
constexpr bool is_token_char(unsigned char c) noexcept
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        return true;
    }
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return true;
    default:
        return false;
    }
}

constexpr bool is_token(std::string_view text) noexcept
{
    if (text.empty()) {
        return false;
    }
    for (char c : text) {
        if (!is_token_char(static_cast<unsigned char>(c))) {
            return false;
        }
    }
    return true;
}

// Bytes a head may hold outside its line ends: visible ASCII, space, tab and obs-text
// (RFC 9110 section 5.5). Other control bytes, NUL and DEL among them, are refused.
constexpr bool is_head_byte(unsigned char c) noexcept
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

// Content-Length is 1*DIGIT (RFC 9110 section 8.6); signs, hex, lists and overflow are refused.
std::optional<std::uint64_t> parse_content_length(std::string_view text);

} // namespace gatehouse::proxy
