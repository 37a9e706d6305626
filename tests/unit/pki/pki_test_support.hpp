// Helpers shared by the pki tests: unwrapping results, a scratch directory, running the openssl
// command, and building keys from raw public parameters.
#pragma once

#include "pki/error.hpp"
#include "pki/keys.hpp"
#include "pki/local_ca.hpp"
#include "pki/openssl_handles.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <sys/wait.h>
#include <utility>

#include <catch2/catch.hpp>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

namespace pki_test {

namespace pki = gatehouse::pki;

// The value of a result that must have succeeded; fails the test with the error's message if not.
template <class T>
T require_ok(pki::result<T> result)
{
    INFO((result ? std::string() : result.error().message));
    REQUIRE(result.has_value());
    return std::move(*result);
}

inline void require_ok(pki::result<void> result)
{
    INFO((result ? std::string() : result.error().message));
    REQUIRE(result.has_value());
}

// The code of a result that must have failed.
template <class T>
pki::errc error_code_of(const pki::result<T>& result)
{
    REQUIRE_FALSE(result.has_value());
    return result.error().code;
}

// The current time with the fraction of a second dropped, as certificates store it.
inline std::chrono::system_clock::time_point now_in_seconds()
{
    return std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
}

// A fresh directory under the system temp dir, removed with everything in it at scope end.
class temp_dir {
public:
    temp_dir()
    {
        std::string pattern = (std::filesystem::temp_directory_path() / "gatehouse-pki-XXXXXX");
        REQUIRE(mkdtemp(pattern.data()) != nullptr);
        path_ = pattern;
    }
    ~temp_dir()
    {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;

    // Writes `content` to `name` inside the directory and returns the file's full path.
    std::string write(const std::string& name, std::string_view content) const
    {
        const std::filesystem::path file = path_ / name;
        std::ofstream out(file, std::ios::binary);
        out.write(content.data(), static_cast<std::streamsize>(content.size()));
        REQUIRE(out.good());
        return file.string();
    }

    // The content of `name` inside the directory.
    std::string read(const std::string& name) const
    {
        std::ifstream in(path_ / name, std::ios::binary);
        REQUIRE(in.good());
        return std::string(std::istreambuf_iterator<char>(in), {});
    }

    std::string path(const std::string& name) const { return (path_ / name).string(); }

private:
    std::filesystem::path path_;
};

struct command_result {
    int exit_code = -1;
    std::string output; // stdout and stderr together
};

// Runs `command` through the shell, in `directory`, and collects its output.
inline command_result run_command(const std::string& directory, const std::string& command)
{
    const std::string full = "cd '" + directory + "' && " + command + " 2>&1";
    FILE* pipe = popen(full.c_str(), "r");
    REQUIRE(pipe != nullptr);
    command_result result;
    char buffer[4096];
    while (const std::size_t read = std::fread(buffer, 1, sizeof(buffer), pipe)) {
        result.output.append(buffer, read);
    }
    const int status = pclose(pipe);
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return result;
}

// A loaded local CA created just now.
inline pki::local_ca make_ca(std::chrono::days validity = std::chrono::days(3650),
                             std::chrono::system_clock::time_point now = now_in_seconds())
{
    const auto material = require_ok(pki::create_local_ca("gatehouse local CA", validity, now));
    return require_ok(pki::local_ca::from_material(material));
}

// The first certificate in `pem`, which must parse.
inline pki::x509_ptr first_certificate(const std::string& pem)
{
    auto chain = require_ok(pki::parse_certificate_chain(pem));
    return std::move(chain.leaf);
}

// A public key built from OpenSSL parameters, the way a JWK would be turned back into a key.
inline pki::evp_pkey_ptr key_from_params(const char* type, OSSL_PARAM_BLD* builder)
{
    pki::ossl_param_ptr params(OSSL_PARAM_BLD_to_param(builder));
    REQUIRE(params != nullptr);
    pki::evp_pkey_ctx_ptr context(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
    REQUIRE(context != nullptr);
    REQUIRE(EVP_PKEY_fromdata_init(context.get()) == 1);
    EVP_PKEY* key = nullptr;
    REQUIRE(EVP_PKEY_fromdata(context.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) == 1);
    return pki::evp_pkey_ptr(key);
}

// An RSA public key from the big-endian bytes of its modulus and exponent.
inline pki::evp_pkey_ptr rsa_public_key(std::string_view n, std::string_view e)
{
    const auto* n_bytes = reinterpret_cast<const unsigned char*>(n.data());
    const auto* e_bytes = reinterpret_cast<const unsigned char*>(e.data());
    pki::bignum_ptr modulus(BN_bin2bn(n_bytes, static_cast<int>(n.size()), nullptr));
    pki::bignum_ptr exponent(BN_bin2bn(e_bytes, static_cast<int>(e.size()), nullptr));
    pki::ossl_param_bld_ptr builder(OSSL_PARAM_BLD_new());
    REQUIRE(builder != nullptr);
    REQUIRE(OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_N, modulus.get()) == 1);
    REQUIRE(OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_E, exponent.get()) == 1);
    return key_from_params("RSA", builder.get());
}

// An EC public key on `curve` ("P-256") from the raw bytes of its coordinates.
inline pki::evp_pkey_ptr ec_public_key(const char* curve, std::string_view x, std::string_view y)
{
    // The uncompressed point encoding of SEC 1 section 2.3.3: 0x04, then x, then y.
    const std::string point = std::string(1, '\x04') + std::string(x) + std::string(y);
    pki::ossl_param_bld_ptr builder(OSSL_PARAM_BLD_new());
    REQUIRE(builder != nullptr);
    REQUIRE(OSSL_PARAM_BLD_push_utf8_string(builder.get(), OSSL_PKEY_PARAM_GROUP_NAME, curve, 0) ==
            1);
    REQUIRE(OSSL_PARAM_BLD_push_octet_string(builder.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                             point.size()) == 1);
    return key_from_params("EC", builder.get());
}

// Whether an ES256 signature (r || s, RFC 7518 section 3.4) over `data` verifies with `key`,
// converted to the DER form OpenSSL checks.
inline bool es256_verifies(EVP_PKEY* key, std::string_view data, const std::string& signature)
{
    REQUIRE(signature.size() == 64);
    const auto* raw = reinterpret_cast<const unsigned char*>(signature.data());
    pki::ecdsa_sig_ptr sig(ECDSA_SIG_new());
    REQUIRE(ECDSA_SIG_set0(sig.get(), BN_bin2bn(raw, 32, nullptr),
                           BN_bin2bn(raw + 32, 32, nullptr)) == 1);
    unsigned char* der = nullptr;
    const int der_length = i2d_ECDSA_SIG(sig.get(), &der);
    REQUIRE(der_length > 0);
    const pki::openssl_string_ptr owned(reinterpret_cast<char*>(der));

    pki::evp_md_ctx_ptr context(EVP_MD_CTX_new());
    REQUIRE(EVP_DigestVerifyInit(context.get(), nullptr, EVP_sha256(), nullptr, key) == 1);
    const int verified =
        EVP_DigestVerify(context.get(), der, static_cast<std::size_t>(der_length),
                         reinterpret_cast<const unsigned char*>(data.data()), data.size());
    ERR_clear_error();
    return verified == 1;
}

} // namespace pki_test
