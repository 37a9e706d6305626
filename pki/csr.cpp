#include "pki/csr.hpp"

#include "pki/internal.hpp"
#include "pki/names.hpp"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace gatehouse::pki {

namespace {

using internal::make_error;
using internal::openssl_failure;

constexpr std::size_t max_common_name_length = 64;

result<void> set_subject(X509_REQ* request, const std::string& first_name)
{
    if (first_name.size() > max_common_name_length) {
        return {};
    }
    X509_NAME* subject = X509_REQ_get_subject_name(request);
    const auto* bytes = reinterpret_cast<const unsigned char*>(first_name.data());
    if (X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_UTF8, bytes,
                                   static_cast<int>(first_name.size()), -1, 0) != 1) {
        return openssl_failure("X509_NAME_add_entry_by_NID(commonName)");
    }
    return {};
}

result<void> request_alt_names(X509_REQ* request, const std::vector<std::string>& names)
{
    const bool empty_subject = X509_NAME_entry_count(X509_REQ_get_subject_name(request)) == 0;
    auto alt_names = make_subject_alt_name(names, /*critical=*/empty_subject);
    if (!alt_names) {
        return alt_names.error();
    }

    // The stack only borrows the extension; alt_names still frees it.
    STACK_OF(X509_EXTENSION)* extensions = sk_X509_EXTENSION_new_null();
    if (extensions == nullptr || sk_X509_EXTENSION_push(extensions, alt_names->get()) == 0) {
        sk_X509_EXTENSION_free(extensions);
        return openssl_failure("sk_X509_EXTENSION_push");
    }
    const int added = X509_REQ_add_extensions(request, extensions);
    sk_X509_EXTENSION_free(extensions);
    if (added != 1) {
        return openssl_failure("X509_REQ_add_extensions");
    }
    return {};
}

result<std::string> to_der(X509_REQ* request)
{
    unsigned char* der = nullptr;
    const int length = i2d_X509_REQ(request, &der);
    if (length <= 0) {
        return openssl_failure("i2d_X509_REQ");
    }
    const openssl_string_ptr owned(reinterpret_cast<char*>(der));
    return std::string(owned.get(), static_cast<std::size_t>(length));
}

} // namespace

result<std::string> make_csr_der(EVP_PKEY* key, const std::vector<std::string>& names)
{
    if (auto supported = internal::check_supported_key(key); !supported) {
        return supported.error();
    }
    auto normalized = normalize_names(names);
    if (!normalized) {
        return normalized.error();
    }

    x509_req_ptr request(X509_REQ_new());
    if (!request) {
        return openssl_failure("X509_REQ_new");
    }
    if (X509_REQ_set_version(request.get(), X509_REQ_VERSION_1) != 1 ||
        X509_REQ_set_pubkey(request.get(), key) != 1) {
        return openssl_failure("X509_REQ_set_pubkey");
    }
    if (auto subject = set_subject(request.get(), normalized->front()); !subject) {
        return subject.error();
    }
    if (auto requested = request_alt_names(request.get(), *normalized); !requested) {
        return requested.error();
    }
    if (X509_REQ_sign(request.get(), key, EVP_sha256()) <= 0) {
        return openssl_failure("X509_REQ_sign");
    }
    return to_der(request.get());
}

} // namespace gatehouse::pki
