#include "store/rfc3339.hpp"

#include <cstdint>
#include <cstdio>

namespace gatehouse::store {

namespace {

using std::chrono::system_clock;

// Reads exactly `digits` decimal digits from the front of `text`.
std::optional<int> take_digits(std::string_view& text, std::size_t digits)
{
    if (text.size() < digits) {
        return std::nullopt;
    }
    int value = 0;
    for (std::size_t i = 0; i < digits; ++i) {
        if (text[i] < '0' || text[i] > '9') {
            return std::nullopt;
        }
        value = value * 10 + (text[i] - '0');
    }
    text.remove_prefix(digits);
    return value;
}

bool take_char(std::string_view& text, std::string_view accepted)
{
    if (text.empty() || accepted.find(text.front()) == std::string_view::npos) {
        return false;
    }
    text.remove_prefix(1);
    return true;
}

// Nanoseconds of a fraction of a second after the '.', reading at most nine digits and
// ignoring the rest.
std::optional<std::int64_t> take_fraction(std::string_view& text)
{
    std::int64_t nanoseconds = 0;
    std::size_t digits = 0;
    while (!text.empty() && text.front() >= '0' && text.front() <= '9') {
        if (digits < 9) {
            nanoseconds = nanoseconds * 10 + (text.front() - '0');
            ++digits;
        }
        text.remove_prefix(1);
    }
    if (digits == 0) {
        return std::nullopt;
    }
    for (; digits < 9; ++digits) {
        nanoseconds *= 10;
    }
    return nanoseconds;
}

// Seconds east of UTC for "Z", "+HH:MM" or "-HH:MM".
std::optional<std::int64_t> take_offset(std::string_view& text)
{
    if (take_char(text, "Zz")) {
        return 0;
    }
    if (text.empty() || (text.front() != '+' && text.front() != '-')) {
        return std::nullopt;
    }
    const std::int64_t sign = text.front() == '-' ? -1 : 1;
    text.remove_prefix(1);
    const auto hours = take_digits(text, 2);
    const bool colon = take_char(text, ":");
    const auto minutes = take_digits(text, 2);
    if (!hours || !colon || !minutes || *hours > 23 || *minutes > 59) {
        return std::nullopt;
    }
    return sign * (*hours * 3600 + *minutes * 60);
}

// Seconds since the Unix epoch, computed in 64 bits so that year 9999 does not overflow.
system_clock::time_point clamp_to_clock(std::chrono::sys_seconds seconds, std::int64_t nanos)
{
    using nanoseconds = std::chrono::nanoseconds;
    const std::int64_t count = seconds.time_since_epoch().count();
    constexpr std::int64_t limit =
        std::chrono::duration_cast<std::chrono::seconds>(system_clock::duration::max()).count() - 1;
    if (count > limit) {
        return system_clock::time_point::max();
    }
    if (count < -limit) {
        return system_clock::time_point::min();
    }
    return system_clock::time_point(std::chrono::duration_cast<system_clock::duration>(
        seconds.time_since_epoch() + nanoseconds(nanos)));
}

} // namespace

std::string format_rfc3339(system_clock::time_point time)
{
    const auto seconds = std::chrono::floor<std::chrono::seconds>(time);
    const auto days = std::chrono::floor<std::chrono::days>(seconds);
    const std::chrono::year_month_day date(days);
    const std::chrono::hh_mm_ss clock(seconds - days);
    char text[32];
    std::snprintf(text, sizeof text, "%04d-%02u-%02uT%02d:%02d:%02dZ", int(date.year()),
                  unsigned(date.month()), unsigned(date.day()), int(clock.hours().count()),
                  int(clock.minutes().count()), int(clock.seconds().count()));
    return text;
}

std::optional<system_clock::time_point> parse_rfc3339(std::string_view text)
{
    const auto year = take_digits(text, 4);
    const bool dash1 = take_char(text, "-");
    const auto month = take_digits(text, 2);
    const bool dash2 = take_char(text, "-");
    const auto day = take_digits(text, 2);
    const bool separator = take_char(text, "Tt ");
    const auto hour = take_digits(text, 2);
    const bool colon1 = take_char(text, ":");
    const auto minute = take_digits(text, 2);
    const bool colon2 = take_char(text, ":");
    const auto second = take_digits(text, 2);
    if (!year || !dash1 || !month || !dash2 || !day || !separator || !hour || !colon1 || !minute ||
        !colon2 || !second) {
        return std::nullopt;
    }
    std::int64_t nanos = 0;
    if (take_char(text, ".")) {
        const auto fraction = take_fraction(text);
        if (!fraction) {
            return std::nullopt;
        }
        nanos = *fraction;
    }
    const auto offset = take_offset(text);
    if (!offset || !text.empty()) {
        return std::nullopt;
    }

    const std::chrono::year_month_day date{std::chrono::year(*year),
                                           std::chrono::month(unsigned(*month)),
                                           std::chrono::day(unsigned(*day))};
    if (!date.ok() || *hour > 23 || *minute > 59 || *second > 60) {
        return std::nullopt;
    }
    const int whole_second = *second == 60 ? 59 : *second;
    const std::chrono::sys_seconds utc =
        std::chrono::sys_days(date) + std::chrono::hours(*hour) + std::chrono::minutes(*minute) +
        std::chrono::seconds(whole_second) - std::chrono::seconds(*offset);
    return clamp_to_clock(utc, nanos);
}

} // namespace gatehouse::store
