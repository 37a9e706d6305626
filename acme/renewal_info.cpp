#include "acme/renewal_info.hpp"

#include "acme/internal.hpp"
#include "pki/jose.hpp"
#include "store/rfc3339.hpp"

#include <algorithm>
#include <memory>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/x509v3.h>

namespace gatehouse::acme {

using internal::make_error;

result<std::string> renewal_certificate_id(X509* leaf)
{
    if (leaf == nullptr) {
        return make_error(errc::invalid_argument, "no certificate given");
    }
    // Decoded from the extension itself rather than OpenSSL's cached copy, which is only
    // filled in for certificates complete enough to hash.
    std::unique_ptr<AUTHORITY_KEYID, decltype(&AUTHORITY_KEYID_free)> authority(
        static_cast<AUTHORITY_KEYID*>(
            X509_get_ext_d2i(leaf, NID_authority_key_identifier, nullptr, nullptr)),
        &AUTHORITY_KEYID_free);
    if (!authority || authority->keyid == nullptr) {
        return make_error(errc::invalid_argument,
                          "the certificate has no authority key identifier");
    }
    const ASN1_OCTET_STRING* key_id = authority->keyid;

    // The serial's DER content octets: its big-endian bytes, with the leading zero a positive
    // number needs when its top bit is set (X.690 section 8.3). Serials are positive (RFC 5280
    // section 4.1.2.2).
    BIGNUM* serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), nullptr);
    if (serial == nullptr) {
        return make_error(errc::invalid_argument, "the certificate's serial does not decode");
    }
    std::string serial_bytes(static_cast<std::size_t>(BN_num_bytes(serial)), '\0');
    BN_bn2bin(serial, reinterpret_cast<unsigned char*>(serial_bytes.data()));
    BN_free(serial);
    if (serial_bytes.empty() || (static_cast<unsigned char>(serial_bytes.front()) & 0x80) != 0) {
        serial_bytes.insert(serial_bytes.begin(), '\0');
    }

    const std::string_view key_bytes(reinterpret_cast<const char*>(ASN1_STRING_get0_data(key_id)),
                                     static_cast<std::size_t>(ASN1_STRING_length(key_id)));
    return pki::base64url_encode(key_bytes) + "." + pki::base64url_encode(serial_bytes);
}

result<renewal_window> parse_renewal_info(std::string_view json_text)
{
    auto object = internal::parse_object(json_text, "renewalInfo");
    if (!object) {
        return object.error();
    }
    const auto found = object->find("suggestedWindow");
    if (found == object->end()) {
        return make_error(errc::missing_field, "renewalInfo: suggestedWindow is missing");
    }
    if (!found->is_object()) {
        return make_error(errc::invalid_field, "renewalInfo: suggestedWindow is not an object");
    }
    renewal_window window;
    for (auto [name, target] : {std::pair{"start", &window.start}, {"end", &window.end}}) {
        auto text = internal::required_string(*found, name, "renewalInfo suggestedWindow");
        if (!text) {
            return text.error();
        }
        auto parsed = store::parse_rfc3339(*text);
        if (!parsed) {
            return make_error(errc::invalid_field, std::string("renewalInfo: suggestedWindow.") +
                                                       name + " is not an RFC 3339 time");
        }
        *target = *parsed;
    }
    if (window.end <= window.start) {
        return make_error(errc::invalid_field, "renewalInfo: the window ends before it starts");
    }
    window.explanation_url = internal::optional_string(*object, "explanationURL");
    return window;
}

std::chrono::system_clock::time_point choose_renewal_time(const renewal_window& window,
                                                          std::chrono::system_clock::time_point now,
                                                          std::uint64_t random)
{
    const auto from = std::max(window.start, now);
    if (window.end <= from) {
        return now;
    }
    const auto span = std::chrono::duration_cast<std::chrono::seconds>(window.end - from).count();
    if (span <= 0) {
        return from;
    }
    return from + std::chrono::seconds(
                      static_cast<std::int64_t>(random % static_cast<std::uint64_t>(span)));
}

} // namespace gatehouse::acme
