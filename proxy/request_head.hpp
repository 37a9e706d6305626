// Strict checks on the raw bytes of an HTTP/1.x request head, before any parser sees them.
//
// Request smuggling lives in the gaps between how two HTTP implementations read the same bytes.
// Gatehouse closes those gaps by refusing anything ambiguous outright (RFC 9112 sections 2.2,
// 5.2, 6.1 and 6.3): bare CR or LF, NUL and other control bytes, obs-fold continuation lines,
// whitespace before a colon, more than one Content-Length or Transfer-Encoding, both at once,
// any transfer coding other than a single "chunked", and chunked bodies from HTTP/1.0 clients.
//
// Everything here is sans-io: it works on bytes already read, so tests drive it without sockets.
#pragma once

#include "proxy/http_fields.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gatehouse::proxy {

enum class head_status {
    // The head has not ended yet; read more bytes and scan again.
    incomplete = 1,

    // The head ended cleanly; head_length says where.
    complete,

    // Malformed or ambiguous: answer 400 and close.
    bad_request,

    // The request line is longer than the URI limit allows: answer 414 and close.
    uri_too_long,

    // The head is larger than the header limit allows: answer 431 and close.
    header_too_large,
};

struct head_scan_result {
    head_status status = head_status::incomplete;

    // Bytes of the head, counted from the first byte given to scan(), including the blank
    // lines that may precede a request and the final empty line. Valid when complete.
    std::size_t head_length = 0;

    // Blank lines before the request line (RFC 9112 section 2.2 lets a server ignore them).
    std::size_t leading_blank_bytes = 0;

    // Why the head was refused, for the log. Static text.
    std::string_view reason;
};

// Scans a request head as it arrives. Feed it the same growing buffer each time more bytes are
// read; it resumes where it stopped, so a head trickled in byte by byte costs linear time.
// One scanner serves one request; reset() readies it for the next one on the connection.
class request_head_scanner {
public:
    request_head_scanner(std::size_t max_header_bytes, std::size_t max_uri_bytes);

    // `bytes` starts at the first byte of this request and holds everything read so far.
    head_scan_result scan(std::string_view bytes);

    void reset();

private:
    head_scan_result fail(head_status status, std::string_view reason);
    head_scan_result check_line(std::string_view line);

    std::size_t max_header_bytes_;
    std::size_t max_uri_bytes_;

    std::size_t scanned_ = 0;
    std::size_t line_start_ = 0;
    std::size_t leading_blank_bytes_ = 0;
    bool in_request_line_ = true;
};

// What gatehouse needs from a complete, scanned request head.
struct request_head {
    std::string_view method;

    // As sent: origin-form ("/a?b"), absolute-form ("http://host/a"), authority-form or "*".
    std::string_view target;

    // 10 for HTTP/1.0, 11 for HTTP/1.1.
    int version = 11;

    // The Host header, if there was exactly one.
    std::optional<std::string_view> host;

    std::optional<std::uint64_t> content_length;
    bool chunked = false;

    // Every field line, in order, the ones above included.
    header_fields fields;
};

struct head_check_result {
    std::optional<request_head> head;

    // Why the head was refused, when `head` is empty.
    std::string_view reason;
};

// Parses a head that scan() reported complete (leading blank lines already removed) and applies
// the framing rules of RFC 9112 section 6. Views in the result point into `head`.
head_check_result check_request_head(std::string_view head);

// An origin-form target and the host it names, resolved from an absolute-form target.
struct resolved_target {
    // Lower-cased authority of an absolute-form target; empty for origin-form.
    std::string authority;

    // Always origin-form: "/path?query".
    std::string origin_form;
};

// Turns a request target into origin-form, taking the host from an absolute-form target as
// RFC 9112 section 3.2.2 requires. Returns nothing for targets gatehouse does not route:
// authority-form, asterisk-form, non-HTTP schemes, user info, and paths with dot segments
// ("/a/../b", also percent-encoded), which could otherwise slip past a prefix route.
std::optional<resolved_target> resolve_target(std::string_view target);

// True when a path has a "." or ".." segment, plain or percent-encoded.
bool has_dot_segment(std::string_view path);

} // namespace gatehouse::proxy
