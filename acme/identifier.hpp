// An ACME identifier (RFC 8555 section 7.1.3, 9.7.7): what a certificate is for.
#pragma once

#include <string>

namespace gatehouse::acme {

// type is "dns" (RFC 8555) or "ip" (RFC 8738); value is the name or address as text.
struct identifier {
    std::string type;
    std::string value;

    friend bool operator==(const identifier&, const identifier&) = default;
};

} // namespace gatehouse::acme
