// Certificates for the TLS tests, issued by one local CA made once per test run (creating it is
// the slow part).
#pragma once

#include "pki/keys.hpp"
#include "pki/local_ca.hpp"
#include "proxy/tls_table.hpp"

#include <chrono>
#include <string>

#include <catch2/catch.hpp>

namespace gatehouse::proxy::testing {

inline const pki::local_ca& test_ca()
{
    static const pki::local_ca ca = [] {
        auto material = pki::create_local_ca("gatehouse proxy test CA", std::chrono::days(2));
        REQUIRE(material.has_value());
        auto loaded = pki::local_ca::from_material(*material);
        REQUIRE(loaded.has_value());
        return std::move(*loaded);
    }();
    return ca;
}

// A fresh ECDSA key and an hour-long certificate for `host` (a name or a *.wildcard).
inline certificate_material material_for(const std::string& host)
{
    auto key = pki::generate_private_key(pki::key_type::ecdsa_p256);
    REQUIRE(key.has_value());
    auto issued = test_ca().issue({host}, std::chrono::hours(1), key->get());
    REQUIRE(issued.has_value());
    auto key_pem = pki::private_key_to_pem(key->get());
    REQUIRE(key_pem.has_value());
    return {{host}, issued->certificate_pem, *key_pem};
}

} // namespace gatehouse::proxy::testing
