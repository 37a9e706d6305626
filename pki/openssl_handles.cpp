#include "pki/openssl_handles.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace gatehouse::pki {

void openssl_deleter::operator()(EVP_PKEY* key) const noexcept
{
    EVP_PKEY_free(key);
}

void openssl_deleter::operator()(EVP_PKEY_CTX* context) const noexcept
{
    EVP_PKEY_CTX_free(context);
}

void openssl_deleter::operator()(EVP_MD_CTX* context) const noexcept
{
    EVP_MD_CTX_free(context);
}

void openssl_deleter::operator()(X509* certificate) const noexcept
{
    X509_free(certificate);
}

void openssl_deleter::operator()(X509_REQ* request) const noexcept
{
    X509_REQ_free(request);
}

void openssl_deleter::operator()(X509_NAME* name) const noexcept
{
    X509_NAME_free(name);
}

void openssl_deleter::operator()(X509_EXTENSION* extension) const noexcept
{
    X509_EXTENSION_free(extension);
}

void openssl_deleter::operator()(X509_STORE* store) const noexcept
{
    X509_STORE_free(store);
}

void openssl_deleter::operator()(X509_STORE_CTX* context) const noexcept
{
    X509_STORE_CTX_free(context);
}

void openssl_deleter::operator()(stack_st_X509* certificates) const noexcept
{
    sk_X509_pop_free(certificates, X509_free);
}

void openssl_deleter::operator()(stack_st_GENERAL_NAME* names) const noexcept
{
    GENERAL_NAMES_free(names);
}

void openssl_deleter::operator()(BIO* bio) const noexcept
{
    BIO_free_all(bio);
}

void openssl_deleter::operator()(BIGNUM* number) const noexcept
{
    // Numbers here may hold private key material, so clear them before the memory is reused.
    BN_clear_free(number);
}

void openssl_deleter::operator()(ASN1_STRING* string) const noexcept
{
    ASN1_STRING_free(string);
}

void openssl_deleter::operator()(ECDSA_SIG* signature) const noexcept
{
    ECDSA_SIG_free(signature);
}

void openssl_deleter::operator()(OSSL_PARAM_BLD* builder) const noexcept
{
    OSSL_PARAM_BLD_free(builder);
}

void openssl_deleter::operator()(OSSL_PARAM* params) const noexcept
{
    OSSL_PARAM_free(params);
}

void openssl_free_deleter::operator()(void* memory) const noexcept
{
    OPENSSL_free(memory);
}

x509_ptr share(X509* certificate) noexcept
{
    if (certificate == nullptr || X509_up_ref(certificate) != 1) {
        return nullptr;
    }
    return x509_ptr(certificate);
}

evp_pkey_ptr share(EVP_PKEY* key) noexcept
{
    if (key == nullptr || EVP_PKEY_up_ref(key) != 1) {
        return nullptr;
    }
    return evp_pkey_ptr(key);
}

std::string openssl_error_text(std::string_view failing_call)
{
    std::string text(failing_call);
    text += " failed";

    bool first = true;
    while (const unsigned long code = ERR_get_error()) {
        char reason[256];
        ERR_error_string_n(code, reason, sizeof(reason));
        text += first ? ": " : "; ";
        text += reason;
        first = false;
    }
    if (first) {
        text += " (OpenSSL queued no reason)";
    }
    return text;
}

} // namespace gatehouse::pki
