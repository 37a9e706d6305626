// gatehouse's own certificate authority, for routes with `tls: internal`.
//
// The CA is created on first start and kept in the store as PEM; afterwards every instance loads
// the same material. It issues short-lived server certificates for a route's names, which the
// certificate manager renews well before they expire (see needs_renewal). Clients trust the CA
// certificate that `gatehouse trust` prints. docs/pki.md describes what a certificate contains.
#pragma once

#include "pki/certificate.hpp"
#include "pki/error.hpp"
#include "pki/openssl_handles.hpp"

#include <chrono>
#include <string>
#include <vector>

namespace gatehouse::pki {

// A CA as it is stored: its certificate and its unencrypted PKCS#8 private key, both PEM. The key
// is a secret; never log this struct.
struct ca_material {
    std::string certificate_pem;
    std::string private_key_pem;
};

// A new self-signed CA with an ECDSA P-256 key. Its common name is `common_name`, a space and 8
// random hex digits ("gatehouse local CA 3fa94c01"), so that two installations trusted on the
// same machine can be told apart. It is valid from an hour before `now` (for clocks that run
// behind) until `now + validity`, and may sign only end-entity certificates (pathlen 0).
//
// Fails with invalid_argument when `common_name` is empty or longer than 55 characters or
// `validity` is not positive, and openssl_failure otherwise. Thread-safe.
result<ca_material>
create_local_ca(std::string common_name, std::chrono::days validity,
                std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

// A server certificate just issued.
struct issued_certificate {
    // The leaf alone, PEM. This is the whole chain a server sends: the CA is a root that clients
    // hold already, and sending it would not make them trust it.
    std::string certificate_pem;

    // The issuing CA's certificate, PEM, for clients and tests that want to verify.
    std::string ca_certificate_pem;
};

// A loaded CA that signs server certificates. Built only by from_material. Immutable once built,
// so issue() may run on any number of threads at once.
class local_ca {
public:
    // Loads a CA from the store. Fails with invalid_pem when either PEM does not parse or the
    // certificate text holds more than one certificate, key_mismatch when the key is not the
    // certificate's, not_a_ca unless the certificate has basicConstraints CA:TRUE (and, when it
    // has keyUsage, keyCertSign), and unsupported_key for keys gatehouse does not use.
    static result<local_ca> from_material(const ca_material& material);

    // Signs a certificate for `names` (DNS names, wildcards such as "*.example.com", or IP
    // addresses, normalized by normalize_names) over `leaf_key`'s public key. The caller keeps
    // `leaf_key`; only its public half is read.
    //
    // The certificate is valid from a minute before `now` until `now + validity`, but never past
    // the CA's own expiry. Its common name is the first name when that fits in 64 characters.
    //
    // Fails with invalid_argument (no names, no key, validity not positive), invalid_name,
    // unsupported_key, ca_expired when the CA is no longer valid at `now`, and openssl_failure.
    result<issued_certificate>
    issue(const std::vector<std::string>& names, std::chrono::seconds validity, EVP_PKEY* leaf_key,
          std::chrono::system_clock::time_point now = std::chrono::system_clock::now()) const;

    // The CA certificate; owned by this object, valid while it lives.
    X509* certificate() const noexcept { return certificate_.get(); }

    // The CA certificate as PEM: what `gatehouse trust` prints.
    const std::string& certificate_pem() const noexcept { return certificate_pem_; }

    const certificate_info& info() const noexcept { return info_; }

private:
    local_ca(x509_ptr certificate, evp_pkey_ptr key, std::string certificate_pem,
             certificate_info info);

    x509_ptr certificate_;
    evp_pkey_ptr key_;
    std::string certificate_pem_;
    certificate_info info_;
};

} // namespace gatehouse::pki
