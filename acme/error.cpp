#include "acme/error.hpp"

#include <boost/system/system_error.hpp>
#include <boost/throw_exception.hpp>

namespace gatehouse::acme {

namespace {

class acme_category_impl : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "gatehouse.acme"; }

    std::string message(int value) const override
    {
        switch (static_cast<errc>(value)) {
        case errc::invalid_json:
            return "invalid JSON";
        case errc::missing_field:
            return "missing field";
        case errc::invalid_field:
            return "invalid field";
        case errc::signing_failed:
            return "signing failed";
        case errc::invalid_argument:
            return "invalid argument";
        case errc::unreachable:
            return "CA unreachable";
        }
        return "unknown acme error";
    }
};

} // namespace

const boost::system::error_category& acme_category() noexcept
{
    static const acme_category_impl category;
    return category;
}

void throw_exception_from_error(const acme_error& error, const boost::source_location& location)
{
    boost::throw_exception(boost::system::system_error(make_error_code(error.code), error.message),
                           location);
}

} // namespace gatehouse::acme
