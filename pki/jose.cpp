#include "pki/jose.hpp"

#include "pki/internal.hpp"

#include <array>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>

namespace gatehouse::pki {

namespace {

using internal::make_error;
using internal::openssl_failure;

constexpr std::string_view base64url_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr std::size_t es256_half_bytes = 32;

// The 6-bit value of a base64url character, or -1.
int base64url_value(char c)
{
    const std::size_t position = base64url_alphabet.find(c);
    return position == std::string_view::npos ? -1 : static_cast<int>(position);
}

std::string bignum_bytes(const BIGNUM* number, int padded_length)
{
    std::string bytes(static_cast<std::size_t>(padded_length), '\0');
    BN_bn2binpad(number, reinterpret_cast<unsigned char*>(bytes.data()), padded_length);
    return bytes;
}

result<bignum_ptr> bignum_param(EVP_PKEY* key, const char* name)
{
    BIGNUM* number = nullptr;
    if (EVP_PKEY_get_bn_param(key, name, &number) != 1) {
        return openssl_failure(std::string("EVP_PKEY_get_bn_param(") + name + ")");
    }
    return bignum_ptr(number);
}

result<std::string> der_signature(EVP_PKEY* key, std::string_view data)
{
    evp_md_ctx_ptr context(EVP_MD_CTX_new());
    if (!context || EVP_DigestSignInit(context.get(), nullptr, EVP_sha256(), nullptr, key) != 1) {
        return openssl_failure("EVP_DigestSignInit");
    }
    const auto* input = reinterpret_cast<const unsigned char*>(data.data());
    std::size_t length = 0;
    if (EVP_DigestSign(context.get(), nullptr, &length, input, data.size()) != 1) {
        return openssl_failure("EVP_DigestSign");
    }
    std::string der(length, '\0');
    auto* output = reinterpret_cast<unsigned char*>(der.data());
    if (EVP_DigestSign(context.get(), output, &length, input, data.size()) != 1) {
        return openssl_failure("EVP_DigestSign");
    }
    der.resize(length);
    return der;
}

result<jwk> ec_jwk(EVP_PKEY* key)
{
    const int nid = internal::ec_curve_nid(key);
    if (nid != NID_X9_62_prime256v1 && nid != NID_secp384r1) {
        return make_error(errc::unsupported_key, "JWK export supports EC keys on P-256 and P-384");
    }
    auto x = bignum_param(key, OSSL_PKEY_PARAM_EC_PUB_X);
    auto y = bignum_param(key, OSSL_PKEY_PARAM_EC_PUB_Y);
    if (!x || !y) {
        return !x ? x.error() : y.error();
    }

    // RFC 7518 section 6.2.1.2: coordinates are the full field size, leading zeros kept.
    const int field_bytes = nid == NID_X9_62_prime256v1 ? 32 : 48;
    jwk result;
    result.kty = "EC";
    result.crv = nid == NID_X9_62_prime256v1 ? "P-256" : "P-384";
    result.x = base64url_encode(bignum_bytes(x->get(), field_bytes));
    result.y = base64url_encode(bignum_bytes(y->get(), field_bytes));
    return result;
}

result<jwk> rsa_jwk(EVP_PKEY* key)
{
    auto n = bignum_param(key, OSSL_PKEY_PARAM_RSA_N);
    auto e = bignum_param(key, OSSL_PKEY_PARAM_RSA_E);
    if (!n || !e) {
        return !n ? n.error() : e.error();
    }

    // RFC 7518 section 6.3.1.1: the minimal big-endian form, no leading zero bytes.
    jwk result;
    result.kty = "RSA";
    result.n = base64url_encode(bignum_bytes(n->get(), BN_num_bytes(n->get())));
    result.e = base64url_encode(bignum_bytes(e->get(), BN_num_bytes(e->get())));
    return result;
}

} // namespace

std::string base64url_encode(std::string_view bytes)
{
    std::string text;
    text.reserve((bytes.size() * 4 + 2) / 3);
    std::uint32_t buffer = 0;
    int bits = 0;
    for (const char byte : bytes) {
        buffer = (buffer << 8) | static_cast<unsigned char>(byte);
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            text += base64url_alphabet[(buffer >> bits) & 0x3F];
        }
    }
    if (bits > 0) {
        text += base64url_alphabet[(buffer << (6 - bits)) & 0x3F];
    }
    return text;
}

result<std::string> base64url_decode(std::string_view text)
{
    // One leftover character carries only 6 bits, less than a byte: no encoding ends that way.
    if (text.size() % 4 == 1) {
        return make_error(errc::invalid_base64, "base64url text has an impossible length");
    }
    std::string bytes;
    bytes.reserve(text.size() * 3 / 4);
    std::uint32_t buffer = 0;
    int bits = 0;
    for (const char c : text) {
        const int value = base64url_value(c);
        if (value < 0) {
            return make_error(errc::invalid_base64,
                              "base64url text holds a character outside its alphabet");
        }
        buffer = (buffer << 6) | static_cast<std::uint32_t>(value);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            bytes += static_cast<char>((buffer >> bits) & 0xFF);
        }
    }
    return bytes;
}

result<std::string> sha256(std::string_view data)
{
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int length = 0;
    if (EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1) {
        return openssl_failure("EVP_Digest(SHA-256)");
    }
    return std::string(reinterpret_cast<const char*>(digest.data()), length);
}

result<std::string> es256_sign(EVP_PKEY* key, std::string_view data)
{
    if (internal::ec_curve_nid(key) != NID_X9_62_prime256v1) {
        return make_error(errc::unsupported_key, "ES256 needs an ECDSA P-256 key");
    }
    auto der = der_signature(key, data);
    if (!der) {
        return der.error();
    }

    const auto* cursor = reinterpret_cast<const unsigned char*>(der->data());
    ecdsa_sig_ptr signature(d2i_ECDSA_SIG(nullptr, &cursor, static_cast<long>(der->size())));
    if (!signature) {
        return openssl_failure("d2i_ECDSA_SIG");
    }
    const BIGNUM* r = nullptr;
    const BIGNUM* s = nullptr;
    ECDSA_SIG_get0(signature.get(), &r, &s);
    return bignum_bytes(r, es256_half_bytes) + bignum_bytes(s, es256_half_bytes);
}

std::string jwk::canonical_json() const
{
    // Every value is base64url or a fixed name, so none needs JSON escaping.
    if (kty == "RSA") {
        return R"({"e":")" + e + R"(","kty":"RSA","n":")" + n + R"("})";
    }
    return R"({"crv":")" + crv + R"(","kty":")" + kty + R"(","x":")" + x + R"(","y":")" + y +
           R"("})";
}

result<jwk> public_jwk(EVP_PKEY* key)
{
    if (key == nullptr) {
        return make_error(errc::invalid_argument, "no key given");
    }
    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_EC:
        return ec_jwk(key);
    case EVP_PKEY_RSA:
        return rsa_jwk(key);
    default:
        return make_error(errc::unsupported_key, "JWK export supports only EC and RSA keys");
    }
}

result<std::string> jwk_thumbprint(EVP_PKEY* key)
{
    auto key_jwk = public_jwk(key);
    if (!key_jwk) {
        return key_jwk.error();
    }
    auto digest = sha256(key_jwk->canonical_json());
    if (!digest) {
        return digest.error();
    }
    return base64url_encode(*digest);
}

} // namespace gatehouse::pki
