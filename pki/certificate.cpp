#include "pki/certificate.hpp"

#include "pki/internal.hpp"
#include "pki/names.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <array>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace gatehouse::pki {

namespace {

using internal::make_error;
using internal::openssl_failure;

bool is_missing_pem_block()
{
    const unsigned long last = ERR_peek_last_error();
    return ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
}

// The next certificate in `bio`; null with an empty error queue at the end of the text.
result<x509_ptr> read_next_certificate(BIO* bio, std::size_t index)
{
    bool passphrase_asked = false;
    x509_ptr certificate(
        PEM_read_bio_X509(bio, nullptr, internal::refuse_passphrase, &passphrase_asked));
    if (certificate) {
        return certificate;
    }
    if (is_missing_pem_block() && !passphrase_asked) {
        ERR_clear_error();
        return x509_ptr();
    }
    return make_error(errc::invalid_pem, "certificate " + std::to_string(index + 1) +
                                             " in the PEM text does not parse: " +
                                             openssl_error_text("PEM_read_bio_X509"));
}

result<void> write_certificate(BIO* bio, X509* certificate)
{
    if (PEM_write_bio_X509(bio, certificate) != 1) {
        return openssl_failure("PEM_write_bio_X509");
    }
    return {};
}

result<std::string> name_text(const X509_NAME* name)
{
    auto bio = internal::write_bio();
    if (!bio) {
        return bio.error();
    }
    if (X509_NAME_print_ex(bio->get(), name, 0, XN_FLAG_RFC2253) < 0) {
        return openssl_failure("X509_NAME_print_ex");
    }
    return internal::bio_text(bio->get());
}

// The text of an IA5String, or empty when it holds a NUL: a name with an embedded NUL is an old
// trick to make "good.example\0.evil.example" look like "good.example".
std::string ia5_text(const ASN1_STRING* string)
{
    const auto* data = reinterpret_cast<const char*>(ASN1_STRING_get0_data(string));
    const std::string text(data, static_cast<std::size_t>(ASN1_STRING_length(string)));
    return text.find('\0') == std::string::npos ? text : std::string();
}

std::string ip_text(const ASN1_OCTET_STRING* address)
{
    std::array<char, INET6_ADDRSTRLEN> buffer{};
    const int length = ASN1_STRING_length(address);
    const int family = length == 4 ? AF_INET : (length == 16 ? AF_INET6 : AF_UNSPEC);
    if (family == AF_UNSPEC || inet_ntop(family, ASN1_STRING_get0_data(address), buffer.data(),
                                         buffer.size()) == nullptr) {
        return {};
    }
    return buffer.data();
}

// Fills the names from subjectAltName; false when the certificate has no such extension.
result<bool> read_subject_alt_names(X509* certificate, certificate_info& info)
{
    int critical = 0;
    general_names_ptr names(static_cast<GENERAL_NAMES*>(
        X509_get_ext_d2i(certificate, NID_subject_alt_name, &critical, nullptr)));
    if (!names && critical == -1) {
        return false;
    }
    if (!names) {
        // -2 means the extension appears twice, which RFC 5280 section 4.2 forbids.
        return make_error(errc::invalid_certificate,
                          "subjectAltName extension is malformed or repeated: " +
                              openssl_error_text("X509_get_ext_d2i"));
    }
    for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
        const GENERAL_NAME* entry = sk_GENERAL_NAME_value(names.get(), i);
        if (entry->type == GEN_DNS) {
            if (std::string dns = ia5_text(entry->d.dNSName); !dns.empty()) {
                info.dns_names.push_back(internal::to_lower_ascii(dns));
            }
        } else if (entry->type == GEN_IPADD) {
            if (std::string ip = ip_text(entry->d.iPAddress); !ip.empty()) {
                info.ip_addresses.push_back(std::move(ip));
            }
        }
    }
    return true;
}

// The last common name in the subject, which RFC 6125 section 6.4.4 calls the most specific.
std::string last_common_name(X509* certificate)
{
    const X509_NAME* subject = X509_get_subject_name(certificate);
    int last = -1;
    for (int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1); i >= 0;
         i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) {
        last = i;
    }
    if (last < 0) {
        return {};
    }
    const ASN1_STRING* value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, last));
    unsigned char* utf8 = nullptr;
    const int length = ASN1_STRING_to_UTF8(&utf8, value);
    if (length < 0) {
        ERR_clear_error();
        return {};
    }
    const openssl_string_ptr owned(reinterpret_cast<char*>(utf8));
    const std::string text(owned.get(), static_cast<std::size_t>(length));
    return text.find('\0') == std::string::npos ? internal::to_lower_ascii(text) : std::string();
}

result<std::string> serial_text(X509* certificate)
{
    bignum_ptr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(certificate), nullptr));
    if (!serial) {
        return openssl_failure("ASN1_INTEGER_to_BN", errc::invalid_certificate);
    }
    openssl_string_ptr hex(BN_bn2hex(serial.get()));
    if (!hex) {
        return openssl_failure("BN_bn2hex");
    }
    return std::string(hex.get());
}

result<void> read_names(X509* certificate, certificate_info& info)
{
    auto has_san = read_subject_alt_names(certificate, info);
    if (!has_san) {
        return has_san.error();
    }
    if (!*has_san) {
        if (std::string common_name = last_common_name(certificate); !common_name.empty()) {
            info.dns_names.push_back(std::move(common_name));
        }
    }
    return {};
}

result<void> read_identity(X509* certificate, certificate_info& info)
{
    auto subject = name_text(X509_get_subject_name(certificate));
    auto issuer = name_text(X509_get_issuer_name(certificate));
    auto serial = serial_text(certificate);
    if (!subject || !issuer || !serial) {
        return !subject ? subject.error() : (!issuer ? issuer.error() : serial.error());
    }
    info.subject = std::move(*subject);
    info.issuer = std::move(*issuer);
    info.serial_hex = std::move(*serial);
    return {};
}

result<void> read_validity(X509* certificate, certificate_info& info)
{
    auto not_before = internal::to_time_point(X509_get0_notBefore(certificate));
    auto not_after = internal::to_time_point(X509_get0_notAfter(certificate));
    if (!not_before || !not_after) {
        return !not_before ? not_before.error() : not_after.error();
    }
    info.not_before = *not_before;
    info.not_after = *not_after;
    return {};
}

// `host` as a canonical IP address when it is one, brackets removed; empty otherwise.
std::string host_as_ip(std::string_view host)
{
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    if (!is_ip_address(host)) {
        return {};
    }
    auto canonical = normalize_name(host);
    return canonical ? *canonical : std::string();
}

} // namespace

result<certificate_chain> parse_certificate_chain(std::string_view pem)
{
    auto bio = internal::read_bio(pem);
    if (!bio) {
        return bio.error();
    }

    certificate_chain chain;
    for (std::size_t index = 0;; ++index) {
        auto certificate = read_next_certificate(bio->get(), index);
        if (!certificate) {
            return certificate.error();
        }
        if (!*certificate) {
            break;
        }
        if (!chain.leaf) {
            chain.leaf = std::move(*certificate);
        } else {
            chain.intermediates.push_back(std::move(*certificate));
        }
    }

    if (!chain.leaf) {
        return make_error(errc::invalid_pem,
                          "no -----BEGIN CERTIFICATE----- block found in the PEM text");
    }
    return chain;
}

result<std::string> chain_to_pem(const certificate_chain& chain)
{
    if (!chain.leaf) {
        return make_error(errc::invalid_argument, "certificate chain has no leaf");
    }
    auto bio = internal::write_bio();
    if (!bio) {
        return bio.error();
    }
    if (auto written = write_certificate(bio->get(), chain.leaf.get()); !written) {
        return written.error();
    }
    for (const x509_ptr& intermediate : chain.intermediates) {
        if (auto written = write_certificate(bio->get(), intermediate.get()); !written) {
            return written.error();
        }
    }
    return internal::bio_text(bio->get());
}

result<std::string> certificate_to_pem(X509* certificate)
{
    if (certificate == nullptr) {
        return make_error(errc::invalid_argument, "no certificate given");
    }
    auto bio = internal::write_bio();
    if (!bio) {
        return bio.error();
    }
    if (auto written = write_certificate(bio->get(), certificate); !written) {
        return written.error();
    }
    return internal::bio_text(bio->get());
}

result<std::string> certificate_to_der(X509* certificate)
{
    if (certificate == nullptr) {
        return make_error(errc::invalid_argument, "no certificate given");
    }
    unsigned char* der = nullptr;
    const int length = i2d_X509(certificate, &der);
    if (length <= 0) {
        return openssl_failure("i2d_X509");
    }
    std::string bytes(reinterpret_cast<const char*>(der), static_cast<std::size_t>(length));
    OPENSSL_free(der);
    return bytes;
}

result<certificate_info> describe_certificate(X509* certificate)
{
    if (certificate == nullptr) {
        return make_error(errc::invalid_argument, "no certificate given");
    }
    certificate_info info;
    if (auto names = read_names(certificate, info); !names) {
        return names.error();
    }
    if (auto identity = read_identity(certificate, info); !identity) {
        return identity.error();
    }
    if (auto validity = read_validity(certificate, info); !validity) {
        return validity.error();
    }
    return info;
}

bool covers_name(const certificate_info& info, std::string_view host)
{
    if (const std::string ip = host_as_ip(host); !ip.empty()) {
        return std::find(info.ip_addresses.begin(), info.ip_addresses.end(), ip) !=
               info.ip_addresses.end();
    }
    return std::any_of(info.dns_names.begin(), info.dns_names.end(),
                       [host](const std::string& pattern) { return name_matches(pattern, host); });
}

result<std::string> sha256_fingerprint_hex(X509* certificate)
{
    if (certificate == nullptr) {
        return make_error(errc::invalid_argument, "no certificate given");
    }
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int length = 0;
    if (X509_digest(certificate, EVP_sha256(), digest.data(), &length) != 1) {
        return openssl_failure("X509_digest");
    }
    return internal::hex_upper(
        std::string_view(reinterpret_cast<const char*>(digest.data()), length));
}

std::chrono::system_clock::time_point renewal_due(const certificate_info& info)
{
    const auto lifetime = info.not_after - info.not_before;
    return info.not_after - lifetime / 3;
}

bool needs_renewal(const certificate_info& info, std::chrono::system_clock::time_point now)
{
    return now >= renewal_due(info);
}

} // namespace gatehouse::pki
