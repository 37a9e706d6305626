#include "proxy/request_head.hpp"

#include "proxy/ascii.hpp"
#include "proxy/http_fields.hpp"

#include <algorithm>

namespace gatehouse::proxy {

namespace {

struct request_line {
    std::string_view method;
    std::string_view target;
    int version = 0;
};

// request-line = method SP request-target SP HTTP-version (RFC 9112 section 3), single spaces.
std::optional<request_line> parse_request_line(std::string_view line)
{
    auto first_space = line.find(' ');
    auto last_space = line.rfind(' ');
    if (first_space == std::string_view::npos || first_space == last_space) {
        return std::nullopt;
    }

    request_line parsed;
    parsed.method = line.substr(0, first_space);
    parsed.target = line.substr(first_space + 1, last_space - first_space - 1);
    std::string_view version = line.substr(last_space + 1);

    if (!is_token(parsed.method) || parsed.target.empty() ||
        parsed.target.find_first_of(" \t") != std::string_view::npos) {
        return std::nullopt;
    }
    if (version == "HTTP/1.1") {
        parsed.version = 11;
    } else if (version == "HTTP/1.0") {
        parsed.version = 10;
    } else {
        return std::nullopt;
    }
    return parsed;
}

int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = ascii_lower(c);
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

// Decodes %2E and %2e (and only those) so encoded dot segments look like plain ones.
std::string decode_dots(std::string_view path)
{
    std::string decoded;
    decoded.reserve(path.size());
    for (std::size_t i = 0; i < path.size(); ++i) {
        if (path[i] == '%' && i + 2 < path.size() && hex_value(path[i + 1]) == 2 &&
            hex_value(path[i + 2]) == 14) {
            decoded.push_back('.');
            i += 2;
            continue;
        }
        decoded.push_back(path[i]);
    }
    return decoded;
}

} // namespace

request_head_scanner::request_head_scanner(std::size_t max_header_bytes, std::size_t max_uri_bytes)
    : max_header_bytes_(max_header_bytes), max_uri_bytes_(max_uri_bytes)
{}

void request_head_scanner::reset()
{
    scanned_ = 0;
    line_start_ = 0;
    leading_blank_bytes_ = 0;
    in_request_line_ = true;
}

head_scan_result request_head_scanner::fail(head_status status, std::string_view reason)
{
    head_scan_result result;
    result.status = status;
    result.reason = reason;
    return result;
}

head_scan_result request_head_scanner::scan(std::string_view bytes)
{
    for (; scanned_ < bytes.size(); ++scanned_) {
        auto c = static_cast<unsigned char>(bytes[scanned_]);
        if (is_head_byte(c)) {
            continue;
        }

        // A CR must be the first half of a CRLF; wait for the next byte to know.
        if (c == '\r') {
            if (scanned_ + 1 == bytes.size()) {
                break;
            }
            if (bytes[scanned_ + 1] != '\n') {
                return fail(head_status::bad_request, "bare CR in request head");
            }
            continue;
        }
        if (c == '\n') {
            if (scanned_ == 0 || bytes[scanned_ - 1] != '\r') {
                return fail(head_status::bad_request, "bare LF in request head");
            }
            std::string_view line = bytes.substr(line_start_, scanned_ - 1 - line_start_);
            line_start_ = scanned_ + 1;

            if (line.empty() && in_request_line_) {
                // Blank lines before the request line are tolerated (RFC 9112 section 2.2).
                leading_blank_bytes_ = line_start_;
                continue;
            }
            if (line.empty()) {
                if (line_start_ - leading_blank_bytes_ > max_header_bytes_) {
                    return fail(head_status::header_too_large, "request head too large");
                }
                head_scan_result done;
                done.status = head_status::complete;
                done.head_length = line_start_;
                done.leading_blank_bytes = leading_blank_bytes_;
                return done;
            }
            if (auto refused = check_line(line); refused.status != head_status::incomplete) {
                return refused;
            }
            continue;
        }
        return fail(head_status::bad_request, "control byte in request head");
    }

    // Limits are checked against what has arrived so far, so an endless head is cut off early.
    if (in_request_line_ && scanned_ - leading_blank_bytes_ > max_uri_bytes_ + 64) {
        return fail(head_status::uri_too_long, "request line too long");
    }
    if (scanned_ - leading_blank_bytes_ > max_header_bytes_) {
        return fail(head_status::header_too_large, "request head too large");
    }
    return {};
}

// Checks one complete line. Returns `incomplete` when the line is acceptable.
head_scan_result request_head_scanner::check_line(std::string_view line)
{
    if (in_request_line_) {
        in_request_line_ = false;
        auto first_space = line.find(' ');
        auto last_space = line.rfind(' ');
        if (first_space != std::string_view::npos && last_space > first_space &&
            last_space - first_space - 1 > max_uri_bytes_) {
            return fail(head_status::uri_too_long, "request target too long");
        }
        return {};
    }

    if (line.front() == ' ' || line.front() == '\t') {
        return fail(head_status::bad_request, "obs-fold line in request head");
    }
    auto colon = line.find(':');
    if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) {
        return fail(head_status::bad_request, "malformed header field");
    }
    return {};
}

head_check_result check_request_head(std::string_view head)
{
    head_check_result result;
    auto refuse = [&result](std::string_view reason) {
        result.head.reset();
        result.reason = reason;
        return result;
    };

    auto line_end = head.find("\r\n");
    auto line = parse_request_line(head.substr(0, line_end));
    if (!line) {
        return refuse("malformed request line");
    }

    // Built in place: the field list is too large to copy around.
    request_head& parsed = result.head.emplace();
    parsed.method = line->method;
    parsed.target = line->target;
    parsed.version = line->version;

    int host_count = 0;
    int length_count = 0;
    int coding_count = 0;
    std::string_view coding;

    // Each field line was checked by the scanner: it has a token name and a colon.
    std::size_t pos = line_end + 2;
    while (pos < head.size()) {
        auto end = head.find("\r\n", pos);
        std::string_view field = head.substr(pos, end - pos);
        pos = end + 2;
        if (field.empty()) {
            break;
        }
        auto colon = field.find(':');
        std::string_view name = field.substr(0, colon);
        std::string_view value = trim_ows(field.substr(colon + 1));
        parsed.fields.push_back({name, value});

        if (iequals(name, "host")) {
            ++host_count;
            parsed.host = value;
        } else if (iequals(name, "content-length")) {
            ++length_count;
            parsed.content_length = parse_content_length(value);
            if (!parsed.content_length) {
                return refuse("invalid Content-Length");
            }
        } else if (iequals(name, "transfer-encoding")) {
            ++coding_count;
            coding = value;
        }
    }

    // RFC 9112 section 3.2: exactly one Host in HTTP/1.1; more than one is always an error.
    if (host_count > 1 || (parsed.version == 11 && host_count == 0)) {
        return refuse("missing or repeated Host");
    }
    if (length_count > 1) {
        return refuse("repeated Content-Length");
    }
    if (coding_count > 0) {
        // Section 6.1: only a final "chunked" frames a request; anything else is unframeable,
        // and an HTTP/1.0 request with a transfer coding is faulty.
        if (coding_count > 1 || !iequals(coding, "chunked")) {
            return refuse("unsupported Transfer-Encoding");
        }
        if (parsed.version == 10) {
            return refuse("Transfer-Encoding in HTTP/1.0 request");
        }
        if (length_count > 0) {
            return refuse("both Content-Length and Transfer-Encoding");
        }
        parsed.chunked = true;
    }

    return result;
}

bool has_dot_segment(std::string_view path)
{
    std::string decoded = decode_dots(path.substr(0, path.find('?')));
    std::string_view rest = decoded;
    while (!rest.empty()) {
        if (rest.front() == '/') {
            rest.remove_prefix(1);
            continue;
        }
        auto slash = rest.find('/');
        std::string_view segment = rest.substr(0, slash);
        if (segment == "." || segment == "..") {
            return true;
        }
        if (slash == std::string_view::npos) {
            break;
        }
        rest.remove_prefix(slash);
    }
    return false;
}

std::optional<resolved_target> resolve_target(std::string_view target)
{
    resolved_target resolved;

    if (!target.empty() && target.front() != '/') {
        // Absolute-form: only http and https, an authority without user info, then a path.
        std::string_view rest;
        if (target.size() > 7 && iequals(target.substr(0, 7), "http://")) {
            rest = target.substr(7);
        } else if (target.size() > 8 && iequals(target.substr(0, 8), "https://")) {
            rest = target.substr(8);
        } else {
            return std::nullopt;
        }
        auto path_start = rest.find_first_of("/?");
        std::string_view authority = rest.substr(0, path_start);
        if (authority.empty() || authority.find('@') != std::string_view::npos) {
            return std::nullopt;
        }
        resolved.authority = std::string(authority);
        std::transform(resolved.authority.begin(), resolved.authority.end(),
                       resolved.authority.begin(), ascii_lower);
        target =
            path_start == std::string_view::npos ? std::string_view{} : rest.substr(path_start);
        resolved.origin_form = target.empty() || target.front() != '/' ? "/" + std::string(target)
                                                                       : std::string(target);
    } else if (target.empty()) {
        return std::nullopt;
    } else {
        resolved.origin_form = std::string(target);
    }

    if (has_dot_segment(resolved.origin_form)) {
        return std::nullopt;
    }
    return resolved;
}

} // namespace gatehouse::proxy
