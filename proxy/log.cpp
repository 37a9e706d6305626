#include "proxy/log.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace gatehouse::log {

namespace {

std::atomic<config::log_format> current_format{config::log_format::text};

// The format is read by every render() call, so keep its lookup a single atomic load.
bool json_output()
{
    return current_format.load(std::memory_order_relaxed) == config::log_format::json;
}

std::mutex registry_mutex;

std::shared_ptr<spdlog::sinks::stderr_sink_mt>& shared_sink()
{
    static auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    return sink;
}

std::string pattern_for(config::log_format format)
{
    // Times are UTC with milliseconds; the message already carries the fields.
    if (format == config::log_format::json) {
        return R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","logger":"%n",%v})";
    }
    return "%Y-%m-%dT%H:%M:%S.%eZ %l %n: %v";
}

// Length of the well-formed UTF-8 sequence (RFC 3629) that starts text, or 0 when the bytes
// there are not one: a stray continuation byte, an overlong form, a surrogate, or a code point
// past U+10FFFF.
std::size_t utf8_sequence_length(std::string_view text)
{
    const auto byte = [&text](std::size_t i) {
        return static_cast<unsigned char>(text[i]);
    };
    const unsigned char lead = byte(0);
    std::size_t length = 0;
    unsigned char second_min = 0x80;
    unsigned char second_max = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
        length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        length = 3;
        if (lead == 0xE0) {
            second_min = 0xA0; // overlong below U+0800
        } else if (lead == 0xED) {
            second_max = 0x9F; // UTF-16 surrogates
        }
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        length = 4;
        if (lead == 0xF0) {
            second_min = 0x90; // overlong below U+10000
        } else if (lead == 0xF4) {
            second_max = 0x8F; // past U+10FFFF
        }
    } else {
        return 0;
    }
    if (text.size() < length || byte(1) < second_min || byte(1) > second_max) {
        return 0;
    }
    for (std::size_t i = 2; i < length; ++i) {
        if (byte(i) < 0x80 || byte(i) > 0xBF) {
            return 0;
        }
    }
    return length;
}

void append_unicode_escape(std::string& out, unsigned char byte)
{
    char escaped[8];
    std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(byte));
    out += escaped;
}

// JSON text must be UTF-8 (RFC 8259 section 8.1), but logged values such as a request target
// may hold any byte a client sent. Well-formed UTF-8 is kept as it is; every other byte above
// 0x7F is written as the code point of the same number, so the line always parses and the
// byte stays visible.
void append_json_string(std::string& out, std::string_view text)
{
    out.push_back('"');
    std::size_t i = 0;
    while (i < text.size()) {
        const char c = text[i];
        const auto byte = static_cast<unsigned char>(c);
        if (byte >= 0x80) {
            if (const std::size_t length = utf8_sequence_length(text.substr(i)); length > 0) {
                out.append(text.substr(i, length));
                i += length;
            } else {
                append_unicode_escape(out, byte);
                ++i;
            }
            continue;
        }
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\r':
            out += "\\r";
            break;
        case '\t':
            out += "\\t";
            break;
        default:
            if (byte < 0x20 || byte == 0x7F) {
                append_unicode_escape(out, byte);
            } else {
                out.push_back(c);
            }
        }
        ++i;
    }
    out.push_back('"');
}

// Text values are quoted only when they would otherwise be ambiguous to a reader or a parser.
void append_text_value(std::string& out, std::string_view text)
{
    bool needs_quotes = text.empty() || text.find_first_of(" \"=\t\r\n") != std::string_view::npos;
    if (needs_quotes) {
        append_json_string(out, text);
    } else {
        out += text;
    }
}

void append_value(std::string& out, const field& f, bool json)
{
    std::visit(
        [&out, json](const auto& value) {
            using value_type = std::decay_t<decltype(value)>;
            if constexpr (std::is_same_v<value_type, std::string_view>) {
                json ? append_json_string(out, value) : append_text_value(out, value);
            } else if constexpr (std::is_same_v<value_type, bool>) {
                out += value ? "true" : "false";
            } else if constexpr (std::is_same_v<value_type, double>) {
                char number[32];
                std::snprintf(number, sizeof number, "%.3f", value);
                out += number;
            } else {
                out += std::to_string(value);
            }
        },
        f.value);
}

} // namespace

void configure(const config::log_settings& settings)
{
    current_format.store(settings.format, std::memory_order_relaxed);

    auto level = spdlog::level::from_str(settings.level);
    std::lock_guard lock(registry_mutex);
    spdlog::set_formatter(std::make_unique<spdlog::pattern_formatter>(
        pattern_for(settings.format), spdlog::pattern_time_type::utc));
    spdlog::set_level(level);
    spdlog::flush_on(spdlog::level::trace);
}

std::shared_ptr<spdlog::logger> get(const std::string& name)
{
    std::lock_guard lock(registry_mutex);
    if (auto existing = spdlog::get(name)) {
        return existing;
    }
    auto logger = std::make_shared<spdlog::logger>(name, shared_sink());
    logger->set_formatter(std::make_unique<spdlog::pattern_formatter>(
        pattern_for(current_format.load()), spdlog::pattern_time_type::utc));
    logger->set_level(spdlog::get_level());
    logger->flush_on(spdlog::level::trace);
    spdlog::register_logger(logger);
    return logger;
}

std::string render(std::string_view message, std::initializer_list<field> fields)
{
    const bool json = json_output();
    std::string out;
    out.reserve(64 + fields.size() * 24);

    if (json) {
        out += "\"msg\":";
        append_json_string(out, message);
    } else {
        out += message;
    }

    for (const auto& f : fields) {
        if (json) {
            out.push_back(',');
            append_json_string(out, f.key);
            out.push_back(':');
        } else {
            out.push_back(' ');
            out += f.key;
            out.push_back('=');
        }
        append_value(out, f, json);
    }
    return out;
}

} // namespace gatehouse::log
