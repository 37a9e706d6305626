#include "pki/error.hpp"

#include <boost/system/system_error.hpp>
#include <boost/throw_exception.hpp>

namespace gatehouse::pki {

namespace {

class pki_category_impl : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "gatehouse.pki"; }

    std::string message(int value) const override
    {
        switch (static_cast<errc>(value)) {
        case errc::invalid_pem:
            return "invalid PEM";
        case errc::invalid_certificate:
            return "invalid certificate";
        case errc::encrypted_key:
            return "encrypted private key";
        case errc::unsupported_key:
            return "unsupported key";
        case errc::key_mismatch:
            return "private key does not match certificate";
        case errc::not_a_ca:
            return "certificate is not a certificate authority";
        case errc::invalid_name:
            return "invalid certificate name";
        case errc::invalid_argument:
            return "invalid argument";
        case errc::ca_expired:
            return "certificate authority expired";
        case errc::invalid_base64:
            return "invalid base64url";
        case errc::openssl_failure:
            return "OpenSSL failure";
        }
        return "unknown pki error";
    }
};

} // namespace

const boost::system::error_category& pki_category() noexcept
{
    static const pki_category_impl category;
    return category;
}

void throw_exception_from_error(const pki_error& error, const boost::source_location& location)
{
    boost::throw_exception(boost::system::system_error(make_error_code(error.code), error.message),
                           location);
}

} // namespace gatehouse::pki
