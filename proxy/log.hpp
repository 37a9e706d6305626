// Structured logging on top of spdlog: named loggers per module and one event format.
//
// Every line is an action phrase followed by key=value fields whose names are reused across
// the code base (host, conn, upstream, error, ...). In text format a line reads
//   2026-12-03T21:00:00.000Z info proxy: listener up address=127.0.0.1:8080
// and in JSON format the same event is one object per line:
//   {"time":"...","level":"info","logger":"proxy","msg":"listener up","address":"..."}
// Secrets (private keys, account keys, passwords) are never passed to these functions.
#pragma once

#include "config/config.hpp"

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

#include <spdlog/spdlog.h>

namespace gatehouse::log {

// One key=value field of an event.
struct field {
    std::string_view key;
    std::variant<std::string_view, std::int64_t, std::uint64_t, double, bool> value;

    field(std::string_view k, std::string_view v) : key(k), value(v) {}
    field(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
    field(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
    field(std::string_view k, int v) : key(k), value(std::int64_t{v}) {}
    field(std::string_view k, long v) : key(k), value(std::int64_t{v}) {}
    field(std::string_view k, long long v) : key(k), value(std::int64_t{v}) {}
    field(std::string_view k, unsigned v) : key(k), value(std::uint64_t{v}) {}
    field(std::string_view k, unsigned long v) : key(k), value(std::uint64_t{v}) {}
    field(std::string_view k, unsigned long long v) : key(k), value(std::uint64_t{v}) {}
    field(std::string_view k, double v) : key(k), value(v) {}
    field(std::string_view k, bool v) : key(k), value(v) {}
};

// Sets the format and level of every gatehouse logger. Call once at start-up before other
// threads log, and again on reload (spdlog makes level and pattern changes thread-safe).
void configure(const config::log_settings& settings);

// The named logger for a module ("main", "config", "proxy", "admin", "access"). Loggers are
// created on first use and live for the whole process. Thread-safe.
std::shared_ptr<spdlog::logger> get(const std::string& name);

// Renders an event's message and fields in the configured format. Exposed for tests.
std::string render(std::string_view message, std::initializer_list<field> fields);

// Logs an event if `level` is enabled on `logger`; nothing is formatted otherwise.
inline void write(spdlog::logger& logger, spdlog::level::level_enum level, std::string_view message,
                  std::initializer_list<field> fields = {})
{
    if (logger.should_log(level)) {
        logger.log(level, "{}", render(message, fields));
    }
}

} // namespace gatehouse::log
