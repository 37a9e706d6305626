#include "proxy/http_fields.hpp"

#include "proxy/ascii.hpp"
#include "proxy/forwarding_rules.hpp"

namespace gatehouse::proxy {

const header_field* find_field(const header_fields& fields, std::string_view name)
{
    for (const auto& field : fields) {
        if (iequals(field.name, name)) {
            return &field;
        }
    }
    return nullptr;
}

bool connection_has(const header_fields& fields, std::string_view token)
{
    for (const auto& field : fields) {
        if (iequals(field.name, "connection") && connection_lists(field.value, token)) {
            return true;
        }
    }
    return false;
}

std::optional<std::uint64_t> parse_content_length(std::string_view text)
{
    // 18 digits cannot overflow 64 bits; nobody sends an exabyte.
    if (text.empty() || text.size() > 18) {
        return std::nullopt;
    }
    std::uint64_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        value = value * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return value;
}

} // namespace gatehouse::proxy
