// Teaches Catch2 to print a store result: "value" or the error's category, number and message.
// Boost's own operator<< would try to print the value, which most value types do not support.
// Every store test includes this, so all of them agree on how a result prints.
#pragma once

#include "store/store.hpp"

#include <string>

#include <catch2/catch.hpp>

namespace Catch {

template <typename T>
struct StringMaker<boost::system::result<T>> {
    static std::string convert(const boost::system::result<T>& outcome)
    {
        if (outcome.has_value()) {
            return "value";
        }
        return "error " + outcome.error().to_string() + " (" + outcome.error().message() + ")";
    }
};

} // namespace Catch
