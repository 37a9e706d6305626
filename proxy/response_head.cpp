#include "proxy/response_head.hpp"

#include "proxy/ascii.hpp"

#include <cstring>

namespace gatehouse::proxy {

head_end find_head_end(std::string_view bytes, std::size_t& scanned)
{
    while (scanned < bytes.size()) {
        const void* found = std::memchr(bytes.data() + scanned, '\n', bytes.size() - scanned);
        if (found == nullptr) {
            scanned = bytes.size();
            break;
        }
        const auto lf = static_cast<std::size_t>(static_cast<const char*>(found) - bytes.data());
        scanned = lf + 1;
        if (lf == 0 || bytes[lf - 1] != '\r') {
            return {head_end::state::malformed, 0};
        }
        // An empty line: CRLF right after the previous line's CRLF, or at the very start,
        // which parse_response_head then refuses as a missing status line.
        if (lf == 1 || bytes[lf - 2] == '\n') {
            return {head_end::state::complete, lf + 1};
        }
    }
    return {};
}

namespace {

// status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 section 4). A
// missing space after the code, with no reason, is accepted: some servers send "HTTP/1.1 200".
bool parse_status_line(std::string_view line, response_head& head)
{
    if (line.size() < 12 || line[8] != ' ') {
        return false;
    }
    const auto version = line.substr(0, 8);
    if (version == "HTTP/1.1") {
        head.version = 11;
    } else if (version == "HTTP/1.0") {
        head.version = 10;
    } else {
        return false;
    }
    unsigned status = 0;
    for (std::size_t i = 9; i < 12; ++i) {
        if (line[i] < '0' || line[i] > '9') {
            return false;
        }
        status = status * 10 + static_cast<unsigned>(line[i] - '0');
    }
    if (status < 100) {
        return false;
    }
    head.status = status;
    if (line.size() > 12) {
        if (line[12] != ' ') {
            return false;
        }
        head.reason = line.substr(13);
    }
    return true;
}

} // namespace

response_check_result parse_response_head(std::string_view text)
{
    response_check_result result;
    auto refuse = [&result](std::string_view reason) {
        result.head.reset();
        result.reason = reason;
        return result;
    };

    // Built in place: the field list is too large to copy around.
    response_head& head = result.head.emplace();
    int length_count = 0;
    int coding_count = 0;
    std::string_view coding;

    // One pass, a line at a time: the status line, then field lines up to the empty one.
    for (std::size_t pos = 0;;) {
        const auto lf = text.find('\n', pos);
        if (lf == std::string_view::npos) {
            return refuse("response head without its empty line");
        }
        if (lf == pos || text[lf - 1] != '\r') {
            return refuse("bare LF in response head");
        }
        const auto line = text.substr(pos, lf - 1 - pos);
        const bool status_line = pos == 0;
        pos = lf + 1;
        if (!is_head_line(line)) {
            return refuse(line.find('\r') != std::string_view::npos
                              ? "bare CR in response head"
                              : "control byte in response head");
        }
        if (status_line) {
            if (!parse_status_line(line, head)) {
                return refuse("malformed status line");
            }
            continue;
        }
        if (line.empty()) {
            break;
        }
        // RFC 9112 section 5.2 lets a proxy refuse obs-fold in a response, and it does.
        if (line.front() == ' ' || line.front() == '\t') {
            return refuse("obs-fold line in response head");
        }
        const auto colon = line.find(':');
        if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) {
            return refuse("malformed header field in response");
        }
        const header_field field{line.substr(0, colon), trim_ows(line.substr(colon + 1))};
        head.fields.push_back(field);

        if (iequals(field.name, "content-length")) {
            ++length_count;
            head.content_length = parse_content_length(field.value);
            if (!head.content_length) {
                return refuse("invalid Content-Length in response");
            }
        } else if (iequals(field.name, "transfer-encoding")) {
            ++coding_count;
            coding = field.value;
        }
    }

    if (length_count > 1) {
        return refuse("repeated Content-Length in response");
    }
    if (coding_count > 0) {
        // RFC 9112 section 6.1 and 6.3: a body framed by anything but one final "chunked",
        // or by both codings and a length, cannot be relayed safely.
        if (coding_count > 1 || !iequals(coding, "chunked")) {
            return refuse("unsupported Transfer-Encoding in response");
        }
        if (length_count > 0) {
            return refuse("both Content-Length and Transfer-Encoding in response");
        }
        if (head.version == 10) {
            return refuse("Transfer-Encoding in HTTP/1.0 response");
        }
        head.chunked = true;
    }

    head.keep_alive = head.version == 11 ? !connection_has(head.fields, "close")
                                         : connection_has(head.fields, "keep-alive");
    return result;
}

} // namespace gatehouse::proxy
