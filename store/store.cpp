#include "store/store.hpp"

#include <string>

namespace gatehouse::store {

namespace {

constexpr std::size_t max_key_chars = 1024;

// Leaves room in a 255-byte file name for the file backend's suffix and temporary-file
// decoration (".<segment>.entry.tmp-<16 hex>").
constexpr std::size_t max_segment_chars = 200;

constexpr std::string_view reserved_suffix = ".entry";

class store_error_category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "gatehouse.store"; }

    std::string message(int value) const override
    {
        switch (static_cast<errc>(value)) {
        case errc::io_failed:
            return "store I/O failed";
        case errc::not_writable:
            return "store is not writable";
        case errc::lock_lost:
            return "lock lost: it expired and was taken by another holder, or was released";
        case errc::timeout:
            return "store did not answer in time";
        case errc::unavailable:
            return "store is unavailable";
        case errc::corrupt:
            return "stored data is corrupt";
        case errc::invalid_key:
            return "invalid store key";
        case errc::invalid_argument:
            return "invalid argument to a store operation";
        }
        return "unknown store error " + std::to_string(value);
    }
};

bool is_key_char(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    return std::string_view("._*@:+-").find(c) != std::string_view::npos;
}

bool is_valid_segment(std::string_view segment)
{
    if (segment.empty() || segment.size() > max_segment_chars || segment.front() == '.') {
        return false;
    }
    if (segment.ends_with(reserved_suffix)) {
        return false;
    }
    for (char c : segment) {
        if (!is_key_char(c)) {
            return false;
        }
    }
    return true;
}

} // namespace

const boost::system::error_category& store_category() noexcept
{
    static const store_error_category category;
    return category;
}

boost::system::error_code make_error_code(errc value) noexcept
{
    return {static_cast<int>(value), store_category()};
}

bool is_valid_key(std::string_view key)
{
    if (key.empty() || key.size() > max_key_chars) {
        return false;
    }
    // A leading or trailing '/' and "//" all show up as an empty segment below.
    std::size_t start = 0;
    while (true) {
        const std::size_t slash = key.find('/', start);
        const std::string_view segment = key.substr(start, slash - start);
        if (!is_valid_segment(segment)) {
            return false;
        }
        if (slash == std::string_view::npos) {
            return true;
        }
        start = slash + 1;
    }
}

bool is_valid_prefix(std::string_view prefix)
{
    if (prefix.empty() || is_valid_key(prefix)) {
        return true;
    }
    return prefix.ends_with('/') && is_valid_key(prefix.substr(0, prefix.size() - 1));
}

} // namespace gatehouse::store
