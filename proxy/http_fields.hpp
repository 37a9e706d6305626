// The field lines of an HTTP/1 head, as gatehouse's own parsers hand them out, and the syntax
// rules the request and response parsers share (RFC 9110 section 5, RFC 9112 section 5).
//
// Fields are views into the text of the head they came from: the head must outlive them.
// Most heads have a dozen fields or fewer, so the list keeps that many without allocating.
#pragma once

#include <array>
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

namespace detail {

// tchar (RFC 9110 section 5.6.2), as a table: heads are checked a byte at a time, and one
// load per byte is cheaper than a chain of comparisons.
constexpr std::array<bool, 256> make_token_table()
{
    std::array<bool, 256> table{};
    for (int c = '0'; c <= '9'; ++c) {
        table[c] = true;
    }
    for (int c = 'a'; c <= 'z'; ++c) {
        table[c] = true;
        table[c - 'a' + 'A'] = true;
    }
    for (char c : std::string_view("!#$%&'*+-.^_`|~")) {
        table[static_cast<unsigned char>(c)] = true;
    }
    return table;
}

// Bytes a head may hold outside its line ends: visible ASCII, space, tab and obs-text
// (RFC 9110 section 5.5). Other control bytes, CR, LF, NUL and DEL among them, are not.
constexpr std::array<bool, 256> make_line_byte_table()
{
    std::array<bool, 256> table{};
    for (int c = 0x20; c < 256; ++c) {
        table[c] = c != 0x7f;
    }
    table['\t'] = true;
    return table;
}

inline constexpr std::array<bool, 256> token_table = make_token_table();
inline constexpr std::array<bool, 256> line_byte_table = make_line_byte_table();

} // namespace detail

constexpr bool is_token_char(unsigned char c) noexcept
{
    return detail::token_table[c];
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

// True for the bytes a head may hold inside a line (see make_line_byte_table).
constexpr bool is_head_byte(unsigned char c) noexcept
{
    return detail::line_byte_table[c];
}

// True when every byte of `line`, a head line without its CRLF, may stand there.
constexpr bool is_head_line(std::string_view line) noexcept
{
    for (char c : line) {
        if (!is_head_byte(static_cast<unsigned char>(c))) {
            return false;
        }
    }
    return true;
}

// Content-Length is 1*DIGIT (RFC 9110 section 8.6); signs, hex, lists and overflow are refused.
std::optional<std::uint64_t> parse_content_length(std::string_view text);

} // namespace gatehouse::proxy
