#include "pki/local_ca.hpp"

#include "pki/internal.hpp"
#include "pki/keys.hpp"
#include "pki/names.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>

#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace gatehouse::pki {

namespace {

using internal::make_error;
using internal::openssl_failure;

constexpr std::size_t max_common_name_length = 64;
constexpr std::size_t ca_suffix_length = 9; // a space and 8 hex digits
constexpr auto ca_backdate = std::chrono::hours(1);
constexpr auto leaf_backdate = std::chrono::minutes(1);

result<std::string> random_suffix()
{
    std::array<unsigned char, 4> bytes{};
    if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
        return openssl_failure("RAND_bytes");
    }
    const std::string hex = internal::hex_upper(
        std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    return " " + internal::to_lower_ascii(hex);
}

result<x509_name_ptr> common_name_only(const std::string& common_name)
{
    x509_name_ptr name(X509_NAME_new());
    if (!name) {
        return openssl_failure("X509_NAME_new");
    }
    const auto* bytes = reinterpret_cast<const unsigned char*>(common_name.data());
    if (X509_NAME_add_entry_by_NID(name.get(), NID_commonName, MBSTRING_UTF8, bytes,
                                   static_cast<int>(common_name.size()), -1, 0) != 1) {
        return openssl_failure("X509_NAME_add_entry_by_NID(commonName)");
    }
    return name;
}

// A certificate with version, serial, subject, issuer, validity and public key set; extensions
// and the signature come after.
result<x509_ptr> new_certificate(const X509_NAME* subject, const X509_NAME* issuer,
                                 EVP_PKEY* public_key,
                                 std::chrono::system_clock::time_point not_before,
                                 std::chrono::system_clock::time_point not_after)
{
    x509_ptr certificate(X509_new());
    if (!certificate) {
        return openssl_failure("X509_new");
    }
    auto serial = internal::random_serial();
    if (!serial) {
        return serial.error();
    }
    if (X509_set_version(certificate.get(), X509_VERSION_3) != 1 ||
        X509_set_serialNumber(certificate.get(), serial->get()) != 1 ||
        X509_set_subject_name(certificate.get(), subject) != 1 ||
        X509_set_issuer_name(certificate.get(), issuer) != 1 ||
        X509_set_pubkey(certificate.get(), public_key) != 1) {
        return openssl_failure("X509_set_*");
    }
    if (auto validity = internal::set_validity(certificate.get(), not_before, not_after);
        !validity) {
        return validity.error();
    }
    return certificate;
}

// Adds an extension written in OpenSSL's configuration syntax ("critical,CA:TRUE"). `issuer` is
// read for authorityKeyIdentifier; the subject's public key for subjectKeyIdentifier.
result<void> add_extension(X509* certificate, X509* issuer, int nid, const char* value)
{
    X509V3_CTX context;
    X509V3_set_ctx(&context, issuer, certificate, nullptr, nullptr, 0);
    x509_extension_ptr extension(X509V3_EXT_conf_nid(nullptr, &context, nid, value));
    if (!extension) {
        return openssl_failure(std::string("X509V3_EXT_conf_nid(") + OBJ_nid2sn(nid) + ")");
    }
    if (X509_add_ext(certificate, extension.get(), -1) != 1) {
        return openssl_failure(std::string("X509_add_ext(") + OBJ_nid2sn(nid) + ")");
    }
    return {};
}

struct extension_spec {
    int nid;
    const char* value;
};

result<void> add_extensions(X509* certificate, X509* issuer,
                            std::initializer_list<extension_spec> extensions)
{
    for (const extension_spec& extension : extensions) {
        if (auto added = add_extension(certificate, issuer, extension.nid, extension.value);
            !added) {
            return added.error();
        }
    }
    return {};
}

result<void> sign(X509* certificate, EVP_PKEY* key)
{
    // X509_sign returns the signature's size, 0 on failure.
    if (X509_sign(certificate, key, EVP_sha256()) <= 0) {
        return openssl_failure("X509_sign");
    }
    return {};
}

result<void> check_common_name(const std::string& common_name)
{
    if (common_name.empty()) {
        return make_error(errc::invalid_argument, "the CA's common name is empty");
    }
    if (common_name.size() + ca_suffix_length > max_common_name_length) {
        return make_error(errc::invalid_argument,
                          "the CA's common name is over 55 characters; its suffix would pass 64");
    }
    return {};
}

result<x509_ptr> make_ca_certificate(const std::string& common_name, EVP_PKEY* key,
                                     std::chrono::system_clock::time_point not_before,
                                     std::chrono::system_clock::time_point not_after)
{
    auto name = common_name_only(common_name);
    if (!name) {
        return name.error();
    }
    auto certificate = new_certificate(name->get(), name->get(), key, not_before, not_after);
    if (!certificate) {
        return certificate.error();
    }

    // pathlen:0 lets the CA sign server certificates but no intermediate CA beneath it.
    X509* self = certificate->get();
    auto extensions = add_extensions(self, self,
                                     {{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                                      {NID_key_usage, "critical,keyCertSign,cRLSign"},
                                      {NID_subject_key_identifier, "hash"}});
    if (!extensions) {
        return extensions.error();
    }
    if (auto signed_ok = sign(self, key); !signed_ok) {
        return signed_ok.error();
    }
    return std::move(*certificate);
}

result<void> check_is_ca(X509* certificate)
{
    // X509_get_extension_flags also decodes and caches the extensions, once, so that later
    // concurrent readers of this certificate do not race to do it.
    const std::uint32_t flags = X509_get_extension_flags(certificate);
    if ((flags & EXFLAG_INVALID) != 0) {
        return make_error(errc::invalid_certificate,
                          "the CA certificate has malformed extensions: " +
                              openssl_error_text("X509_get_extension_flags"));
    }
    if ((flags & EXFLAG_CA) == 0) {
        return make_error(errc::not_a_ca, "the CA certificate lacks basicConstraints CA:TRUE");
    }
    if ((flags & EXFLAG_KUSAGE) != 0 && (X509_get_key_usage(certificate) & KU_KEY_CERT_SIGN) == 0) {
        return make_error(errc::not_a_ca,
                          "the CA certificate's keyUsage does not include keyCertSign");
    }
    return {};
}

const char* leaf_key_usage(EVP_PKEY* leaf_key)
{
    // RSA key exchange (TLS 1.2 without forward secrecy) encrypts to the server's key, so an RSA
    // certificate needs keyEncipherment too; ECDSA keys only ever sign.
    return EVP_PKEY_get_base_id(leaf_key) == EVP_PKEY_RSA
               ? "critical,digitalSignature,keyEncipherment"
               : "critical,digitalSignature";
}

result<x509_name_ptr> leaf_subject(const std::string& first_name)
{
    // X.509's upper bound for a common name is 64 characters (RFC 5280 appendix A); longer names
    // live in subjectAltName alone, under an empty subject.
    if (first_name.size() > max_common_name_length) {
        x509_name_ptr empty(X509_NAME_new());
        if (!empty) {
            return openssl_failure("X509_NAME_new");
        }
        return empty;
    }
    return common_name_only(first_name);
}

result<x509_ptr> make_leaf_certificate(const std::vector<std::string>& names, EVP_PKEY* leaf_key,
                                       X509* ca, EVP_PKEY* ca_key,
                                       std::chrono::system_clock::time_point not_before,
                                       std::chrono::system_clock::time_point not_after)
{
    auto subject = leaf_subject(names.front());
    if (!subject) {
        return subject.error();
    }
    auto certificate =
        new_certificate(subject->get(), X509_get_subject_name(ca), leaf_key, not_before, not_after);
    if (!certificate) {
        return certificate.error();
    }
    X509* leaf = certificate->get();
    auto extensions = add_extensions(leaf, ca,
                                     {{NID_basic_constraints, "critical,CA:FALSE"},
                                      {NID_key_usage, leaf_key_usage(leaf_key)},
                                      {NID_ext_key_usage, "serverAuth"},
                                      {NID_subject_key_identifier, "hash"},
                                      {NID_authority_key_identifier, "keyid:always"}});
    if (!extensions) {
        return extensions.error();
    }

    const bool empty_subject = X509_NAME_entry_count(subject->get()) == 0;
    auto alt_names = make_subject_alt_name(names, /*critical=*/empty_subject);
    if (!alt_names) {
        return alt_names.error();
    }
    if (X509_add_ext(leaf, alt_names->get(), -1) != 1) {
        return openssl_failure("X509_add_ext(subjectAltName)");
    }
    if (auto signed_ok = sign(leaf, ca_key); !signed_ok) {
        return signed_ok.error();
    }
    return std::move(*certificate);
}

} // namespace

result<ca_material> create_local_ca(std::string common_name, std::chrono::days validity,
                                    std::chrono::system_clock::time_point now)
{
    if (auto checked = check_common_name(common_name); !checked) {
        return checked.error();
    }
    if (validity <= std::chrono::days::zero()) {
        return make_error(errc::invalid_argument, "the CA's validity must be positive");
    }
    auto suffix = random_suffix();
    auto key = generate_private_key(key_type::ecdsa_p256);
    if (!suffix || !key) {
        return !suffix ? suffix.error() : key.error();
    }

    auto certificate =
        make_ca_certificate(common_name + *suffix, key->get(), now - ca_backdate, now + validity);
    if (!certificate) {
        return certificate.error();
    }
    auto certificate_pem = certificate_to_pem(certificate->get());
    auto key_pem = private_key_to_pem(key->get());
    if (!certificate_pem || !key_pem) {
        return !certificate_pem ? certificate_pem.error() : key_pem.error();
    }
    return ca_material{std::move(*certificate_pem), std::move(*key_pem)};
}

local_ca::local_ca(x509_ptr certificate, evp_pkey_ptr key, std::string certificate_pem,
                   certificate_info info)
    : certificate_(std::move(certificate)), key_(std::move(key)),
      certificate_pem_(std::move(certificate_pem)), info_(std::move(info))
{}

result<local_ca> local_ca::from_material(const ca_material& material)
{
    auto chain = parse_certificate_chain(material.certificate_pem);
    if (!chain) {
        return chain.error();
    }
    if (!chain->intermediates.empty()) {
        return make_error(errc::invalid_pem, "the CA certificate PEM holds " +
                                                 std::to_string(chain->intermediates.size() + 1) +
                                                 " certificates; expected exactly one");
    }
    auto key = private_key_from_pem(material.private_key_pem);
    if (!key) {
        return key.error();
    }
    if (!public_key_matches(key->get(), chain->leaf.get())) {
        return make_error(errc::key_mismatch,
                          "the CA private key does not belong to the CA certificate");
    }
    if (auto is_ca = check_is_ca(chain->leaf.get()); !is_ca) {
        return is_ca.error();
    }

    auto info = describe_certificate(chain->leaf.get());
    auto pem = certificate_to_pem(chain->leaf.get());
    if (!info || !pem) {
        return !info ? info.error() : pem.error();
    }
    return local_ca(std::move(chain->leaf), std::move(*key), std::move(*pem), std::move(*info));
}

result<issued_certificate> local_ca::issue(const std::vector<std::string>& names,
                                           std::chrono::seconds validity, EVP_PKEY* leaf_key,
                                           std::chrono::system_clock::time_point now) const
{
    auto normalized = normalize_names(names);
    if (!normalized) {
        return normalized.error();
    }
    if (validity <= std::chrono::seconds::zero()) {
        return make_error(errc::invalid_argument, "certificate validity must be positive");
    }
    if (auto supported = internal::check_supported_key(leaf_key); !supported) {
        return supported.error();
    }
    if (now >= info_.not_after) {
        return make_error(errc::ca_expired, "the local CA has expired; it must be replaced");
    }

    const auto not_after = std::min(now + validity, info_.not_after);
    auto leaf = make_leaf_certificate(*normalized, leaf_key, certificate_.get(), key_.get(),
                                      now - leaf_backdate, not_after);
    if (!leaf) {
        return leaf.error();
    }

    auto pem = certificate_to_pem(leaf->get());
    if (!pem) {
        return pem.error();
    }
    return issued_certificate{std::move(*pem), certificate_pem_};
}

} // namespace gatehouse::pki
