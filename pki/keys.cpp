#include "pki/keys.hpp"

#include "pki/internal.hpp"

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

namespace gatehouse::pki {

namespace {

using internal::make_error;
using internal::openssl_failure;

result<evp_pkey_ptr> generate_ec_key(const char* curve)
{
    evp_pkey_ptr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve));
    if (!key) {
        return openssl_failure("EVP_PKEY_Q_keygen(EC)");
    }
    return key;
}

result<evp_pkey_ptr> generate_rsa_key(std::size_t bits)
{
    evp_pkey_ptr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", bits));
    if (!key) {
        return openssl_failure("EVP_PKEY_Q_keygen(RSA)");
    }
    return key;
}

bool is_missing_pem_block()
{
    const unsigned long last = ERR_peek_last_error();
    return ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
}

} // namespace

std::string_view to_string(key_type type) noexcept
{
    switch (type) {
    case key_type::ecdsa_p256:
        return "ecdsa-p256";
    case key_type::ecdsa_p384:
        return "ecdsa-p384";
    case key_type::rsa2048:
        return "rsa2048";
    case key_type::rsa4096:
        return "rsa4096";
    }
    return "unknown";
}

result<evp_pkey_ptr> generate_private_key(key_type type)
{
    switch (type) {
    case key_type::ecdsa_p256:
        return generate_ec_key("P-256");
    case key_type::ecdsa_p384:
        return generate_ec_key("P-384");
    case key_type::rsa2048:
        return generate_rsa_key(2048);
    case key_type::rsa4096:
        return generate_rsa_key(4096);
    }
    return make_error(errc::invalid_argument, "unknown key type");
}

result<std::string> private_key_to_pem(EVP_PKEY* key)
{
    if (key == nullptr) {
        return make_error(errc::invalid_argument, "no key given");
    }
    auto bio = internal::write_bio(/*secure=*/true);
    if (!bio) {
        return bio.error();
    }
    if (PEM_write_bio_PKCS8PrivateKey(bio->get(), key, nullptr, nullptr, 0, nullptr, nullptr) !=
        1) {
        return openssl_failure("PEM_write_bio_PKCS8PrivateKey");
    }
    return internal::bio_text(bio->get());
}

result<evp_pkey_ptr> private_key_from_pem(std::string_view pem)
{
    auto bio = internal::read_bio(pem);
    if (!bio) {
        return bio.error();
    }

    bool passphrase_asked = false;
    evp_pkey_ptr key(PEM_read_bio_PrivateKey(bio->get(), nullptr, internal::refuse_passphrase,
                                             &passphrase_asked));
    if (!key && passphrase_asked) {
        ERR_clear_error();
        return make_error(errc::encrypted_key,
                          "private key is passphrase-protected; only unencrypted keys are read");
    }
    if (!key && is_missing_pem_block()) {
        ERR_clear_error();
        return make_error(errc::invalid_pem, "no PEM private key found in the text");
    }
    if (!key) {
        return openssl_failure("PEM_read_bio_PrivateKey", errc::invalid_pem);
    }

    if (auto supported = internal::check_supported_key(key.get()); !supported) {
        return supported.error();
    }
    return key;
}

bool public_key_matches(EVP_PKEY* key, X509* certificate)
{
    if (key == nullptr || certificate == nullptr) {
        return false;
    }
    // Comparing keys of different types queues errors; they say nothing the false does not.
    ERR_set_mark();
    EVP_PKEY* certificate_key = X509_get0_pubkey(certificate);
    const bool matches = certificate_key != nullptr && EVP_PKEY_eq(key, certificate_key) == 1;
    ERR_pop_to_mark();
    return matches;
}

std::string describe_key(EVP_PKEY* key)
{
    if (key == nullptr) {
        return "none";
    }
    const int type = EVP_PKEY_get_base_id(key);
    if (type == EVP_PKEY_RSA) {
        return "RSA " + std::to_string(EVP_PKEY_get_bits(key));
    }
    if (type == EVP_PKEY_EC) {
        const int nid = internal::ec_curve_nid(key);
        const char* nist = EC_curve_nid2nist(nid);
        return std::string("ECDSA ") + (nist != nullptr ? nist : "unknown curve");
    }
    const char* name = OBJ_nid2sn(type);
    return name != nullptr ? name : "unknown";
}

} // namespace gatehouse::pki
