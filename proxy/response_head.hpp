// An upstream's response head, read by gatehouse itself rather than by a general parser.
//
// A proxy must know exactly where each response ends, or one response's bytes become the
// start of the next and responses go to the wrong clients. So, like request heads, response
// heads are held to the strict reading of RFC 9112: bare CR or LF, control bytes, obs-fold
// lines, malformed field lines, repeated or malformed Content-Length, Content-Length beside
// Transfer-Encoding, and any transfer coding other than a single "chunked" are all refused,
// and the caller answers its client 502, as nginx does. Sans-io, like request_head.hpp.
#pragma once

#include "proxy/http_fields.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace gatehouse::proxy {

// Where a head ends in bytes read so far, found without parsing it.
struct head_end {
    enum class state { incomplete = 1, complete, malformed };
    state status = state::incomplete;
    // With `complete`: the head's length, its final empty line included.
    std::size_t length = 0;
};

// Looks for the empty line that ends a head in `bytes`, which grows as reads add to it.
// `scanned` carries where the previous call stopped, so a head that arrives in many small
// reads is scanned once; start it at 0 for each head. A LF without its CR is `malformed`
// at once, rather than a head that never ends.
head_end find_head_end(std::string_view bytes, std::size_t& scanned);

struct response_head {
    // 10 for HTTP/1.0, 11 for HTTP/1.1.
    int version = 11;
    unsigned status = 0;
    std::string_view reason;

    // Framing, as RFC 9112 section 6.3 reads it; the caller decides what a HEAD request or a
    // bodiless status makes of it.
    std::optional<std::uint64_t> content_length;
    bool chunked = false;

    // Whether the upstream lets its connection carry another request (RFC 9112 section 9.3):
    // HTTP/1.1 unless Connection lists close, HTTP/1.0 only when it lists keep-alive.
    bool keep_alive = true;

    // Every field line, in order.
    header_fields fields;
};

struct response_check_result {
    std::optional<response_head> head;
    // Why the head was refused, when `head` is empty. Static text.
    std::string_view reason;
};

// Parses a complete head, as find_head_end delimited it. Views in the result point into `head`.
response_check_result parse_response_head(std::string_view head);

} // namespace gatehouse::proxy
