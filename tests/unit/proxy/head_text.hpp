// Builds HTTP/1 head text for the request and response head tests.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

namespace gatehouse::proxy::testing {

// A head made of `lines`, each ended by CRLF, then the empty line that ends the head.
inline std::string head_of(std::initializer_list<std::string_view> lines)
{
    std::string head;
    for (auto line : lines) {
        head += line;
        head += "\r\n";
    }
    head += "\r\n";
    return head;
}

} // namespace gatehouse::proxy::testing
