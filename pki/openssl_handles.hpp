// Owning handles for OpenSSL objects, and the text of OpenSSL's error queue.
//
// Every OpenSSL object gatehouse creates lives in one of these unique_ptr aliases, so it is
// freed on every path, early returns included. The header pulls in only OpenSSL's forward
// declarations; the deleters are defined out of line.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <openssl/types.h>

// Declared here as OpenSSL declares them, so this header does not need x509.h, ec.h or
// safestack.h. An identical repeated typedef is allowed in C++.
typedef struct X509_req_st X509_REQ;
typedef struct X509_extension_st X509_EXTENSION;
typedef struct ECDSA_SIG_st ECDSA_SIG;
struct stack_st_X509;
struct stack_st_GENERAL_NAME;

namespace gatehouse::pki {

// Frees each kind of OpenSSL object with its own free function. A stack of certificates is
// freed together with the certificates it holds.
struct openssl_deleter {
    void operator()(EVP_PKEY* key) const noexcept;
    void operator()(EVP_PKEY_CTX* context) const noexcept;
    void operator()(EVP_MD_CTX* context) const noexcept;
    void operator()(X509* certificate) const noexcept;
    void operator()(X509_REQ* request) const noexcept;
    void operator()(X509_NAME* name) const noexcept;
    void operator()(X509_EXTENSION* extension) const noexcept;
    void operator()(X509_STORE* store) const noexcept;
    void operator()(X509_STORE_CTX* context) const noexcept;
    void operator()(stack_st_X509* certificates) const noexcept;
    void operator()(stack_st_GENERAL_NAME* names) const noexcept;
    void operator()(BIO* bio) const noexcept;
    void operator()(BIGNUM* number) const noexcept;
    void operator()(ASN1_STRING* string) const noexcept;
    void operator()(ECDSA_SIG* signature) const noexcept;
    void operator()(OSSL_PARAM_BLD* builder) const noexcept;
    void operator()(OSSL_PARAM* params) const noexcept;
};

using evp_pkey_ptr = std::unique_ptr<EVP_PKEY, openssl_deleter>;
using evp_pkey_ctx_ptr = std::unique_ptr<EVP_PKEY_CTX, openssl_deleter>;
using evp_md_ctx_ptr = std::unique_ptr<EVP_MD_CTX, openssl_deleter>;
using x509_ptr = std::unique_ptr<X509, openssl_deleter>;
using x509_req_ptr = std::unique_ptr<X509_REQ, openssl_deleter>;
using x509_name_ptr = std::unique_ptr<X509_NAME, openssl_deleter>;
using x509_extension_ptr = std::unique_ptr<X509_EXTENSION, openssl_deleter>;
using x509_store_ptr = std::unique_ptr<X509_STORE, openssl_deleter>;
using x509_store_ctx_ptr = std::unique_ptr<X509_STORE_CTX, openssl_deleter>;
using x509_stack_ptr = std::unique_ptr<stack_st_X509, openssl_deleter>;
using general_names_ptr = std::unique_ptr<stack_st_GENERAL_NAME, openssl_deleter>;
using bio_ptr = std::unique_ptr<BIO, openssl_deleter>;
using bignum_ptr = std::unique_ptr<BIGNUM, openssl_deleter>;

// ASN1_INTEGER, ASN1_TIME and ASN1_OCTET_STRING are all ASN1_STRING to OpenSSL.
using asn1_string_ptr = std::unique_ptr<ASN1_STRING, openssl_deleter>;

using ecdsa_sig_ptr = std::unique_ptr<ECDSA_SIG, openssl_deleter>;
using ossl_param_bld_ptr = std::unique_ptr<OSSL_PARAM_BLD, openssl_deleter>;
using ossl_param_ptr = std::unique_ptr<OSSL_PARAM, openssl_deleter>;

// Memory OpenSSL allocated for the caller (BN_bn2hex, X509_NAME_oneline, ...).
struct openssl_free_deleter {
    void operator()(void* memory) const noexcept;
};
using openssl_string_ptr = std::unique_ptr<char, openssl_free_deleter>;

// A second owning handle to an object that stays shared: the reference count goes up by one and
// the handle's deleter brings it down again. Null in, null out. Thread-safe.
x509_ptr share(X509* certificate) noexcept;
evp_pkey_ptr share(EVP_PKEY* key) noexcept;

// "failing_call failed: reason; reason" built from every error queued on this thread, which it
// also empties so the next failure starts clean. When nothing is queued the text says so rather
// than inventing a reason. Call it right after the failing call, on the same thread.
std::string openssl_error_text(std::string_view failing_call);

} // namespace gatehouse::pki
