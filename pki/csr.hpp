// Certificate signing requests, as an ACME client sends them to finalize an order
// (RFC 8555 section 7.4).
#pragma once

#include "pki/error.hpp"
#include "pki/openssl_handles.hpp"

#include <string>
#include <vector>

namespace gatehouse::pki {

// A PKCS#10 request (RFC 2986) in DER, signed with SHA-256 by `key`, asking for a certificate
// for `names` (normalized by normalize_names: DNS names, wildcards, IP addresses per RFC 8738).
// The names go in a subjectAltName extension request; the subject is the first name as common
// name when it fits in 64 characters, and empty otherwise. The caller keeps `key`.
//
// Fails with invalid_argument (no names, null key), invalid_name, unsupported_key, and
// openssl_failure. Thread-safe.
result<std::string> make_csr_der(EVP_PKEY* key, const std::vector<std::string>& names);

} // namespace gatehouse::pki
