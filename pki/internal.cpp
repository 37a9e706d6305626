#include "pki/internal.hpp"

#include <algorithm>
#include <array>
#include <ctime>
#include <limits>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

namespace gatehouse::pki::internal {

namespace {

constexpr int min_rsa_bits = 2048;

} // namespace

std::string to_lower_ascii(std::string_view text)
{
    std::string lowered(text);
    std::transform(lowered.begin(), lowered.end(), lowered.begin(), [](char c) {
        return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    });
    return lowered;
}

std::string hex_upper(std::string_view bytes)
{
    static constexpr char digits[] = "0123456789ABCDEF";
    std::string hex;
    hex.reserve(bytes.size() * 2);
    for (const char byte : bytes) {
        const auto value = static_cast<unsigned char>(byte);
        hex += digits[value >> 4];
        hex += digits[value & 0x0F];
    }
    return hex;
}

result<bio_ptr> read_bio(std::string_view text)
{
    // BIO_new_mem_buf takes an int length; PEM inputs are far below that, but say so if not.
    if (text.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
        return make_error(errc::invalid_argument, "PEM text is larger than 2 GiB");
    }
    bio_ptr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
    if (!bio) {
        return openssl_failure("BIO_new_mem_buf");
    }
    return bio;
}

result<bio_ptr> write_bio(bool secure)
{
    bio_ptr bio(BIO_new(secure ? BIO_s_secmem() : BIO_s_mem()));
    if (!bio) {
        return openssl_failure("BIO_new");
    }
    return bio;
}

std::string bio_text(BIO* bio)
{
    char* data = nullptr;
    const long length = BIO_get_mem_data(bio, &data);
    if (length <= 0 || data == nullptr) {
        return {};
    }
    return std::string(data, static_cast<std::size_t>(length));
}

int refuse_passphrase(char*, int, int, void* flag)
{
    *static_cast<bool*>(flag) = true;
    return -1;
}

int ec_curve_nid(EVP_PKEY* key)
{
    if (key == nullptr || EVP_PKEY_get_base_id(key) != EVP_PKEY_EC) {
        return NID_undef;
    }
    std::array<char, 80> name{};
    if (EVP_PKEY_get_group_name(key, name.data(), name.size(), nullptr) != 1) {
        ERR_clear_error();
        return NID_undef;
    }
    // OpenSSL reports the curve by its short name ("prime256v1"); NIST names are accepted too.
    const int nid = OBJ_sn2nid(name.data());
    return nid != NID_undef ? nid : EC_curve_nist2nid(name.data());
}

result<void> check_supported_key(EVP_PKEY* key)
{
    if (key == nullptr) {
        return make_error(errc::invalid_argument, "no key given");
    }
    const int type = EVP_PKEY_get_base_id(key);
    if (type == EVP_PKEY_RSA) {
        const int bits = EVP_PKEY_get_bits(key);
        if (bits < min_rsa_bits) {
            return make_error(errc::unsupported_key, "RSA key has " + std::to_string(bits) +
                                                         " bits; at least 2048 are required");
        }
        return {};
    }
    if (type == EVP_PKEY_EC) {
        const int nid = ec_curve_nid(key);
        if (nid == NID_X9_62_prime256v1 || nid == NID_secp384r1 || nid == NID_secp521r1) {
            return {};
        }
        return make_error(errc::unsupported_key,
                          "EC key is not on P-256, P-384 or P-521, the curves TLS clients accept");
    }
    const char* name = OBJ_nid2sn(type);
    return make_error(errc::unsupported_key, std::string("key type ") +
                                                 (name != nullptr ? name : "unknown") +
                                                 " is not supported; use RSA or ECDSA");
}

result<asn1_string_ptr> random_serial()
{
    std::array<unsigned char, 16> bytes{};
    if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
        return openssl_failure("RAND_bytes");
    }

    // Clearing the top bit keeps the number positive; setting the next one keeps all 16 bytes
    // in the encoding and the value away from zero, which RFC 5280 forbids.
    bytes[0] = static_cast<unsigned char>((bytes[0] & 0x7F) | 0x40);

    bignum_ptr number(BN_bin2bn(bytes.data(), static_cast<int>(bytes.size()), nullptr));
    if (!number) {
        return openssl_failure("BN_bin2bn");
    }
    asn1_string_ptr serial(BN_to_ASN1_INTEGER(number.get(), nullptr));
    if (!serial) {
        return openssl_failure("BN_to_ASN1_INTEGER");
    }
    return serial;
}

result<void> set_validity(X509* certificate, std::chrono::system_clock::time_point not_before,
                          std::chrono::system_clock::time_point not_after)
{
    // ASN1_TIME_set picks UTCTime up to 2049 and GeneralizedTime after, as RFC 5280 4.1.2.5 asks.
    const std::time_t begin = std::chrono::system_clock::to_time_t(not_before);
    const std::time_t end = std::chrono::system_clock::to_time_t(not_after);
    if (ASN1_TIME_set(X509_getm_notBefore(certificate), begin) == nullptr) {
        return openssl_failure("ASN1_TIME_set(notBefore)");
    }
    if (ASN1_TIME_set(X509_getm_notAfter(certificate), end) == nullptr) {
        return openssl_failure("ASN1_TIME_set(notAfter)");
    }
    return {};
}

result<std::chrono::system_clock::time_point> to_time_point(const ASN1_TIME* time)
{
    std::tm parts{};
    if (time == nullptr || ASN1_TIME_to_tm(time, &parts) != 1) {
        return openssl_failure("ASN1_TIME_to_tm", errc::invalid_certificate);
    }

    // ASN1_TIME_to_tm yields UTC fields; build the time point from them without timegm.
    using namespace std::chrono;
    const year_month_day date{year{parts.tm_year + 1900},
                              month{static_cast<unsigned>(parts.tm_mon + 1)},
                              day{static_cast<unsigned>(parts.tm_mday)}};
    const auto time_of_day = hours{parts.tm_hour} + minutes{parts.tm_min} + seconds{parts.tm_sec};
    return system_clock::time_point{sys_days{date} + time_of_day};
}

} // namespace gatehouse::pki::internal
