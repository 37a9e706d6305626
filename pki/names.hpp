// The names a certificate is for: checking them before they go into a certificate or a CSR,
// and matching a requested host against them the way TLS clients do (RFC 6125).
#pragma once

#include "pki/error.hpp"
#include "pki/openssl_handles.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::pki {

// True when `text` is an IPv4 address in dotted-quad form or an IPv6 address (no brackets).
bool is_ip_address(std::string_view text);

// `name` in the form it takes in a certificate: DNS names lower-cased without a trailing dot,
// IP addresses in their canonical text form ("::1", not "0::0001").
//
// A DNS name has labels of 1 to 63 letters, digits, hyphens or underscores (container service
// names use them; public CAs refuse them), no label starting or ending with a hyphen, at most 253
// characters, and a last label that is not all digits. A wildcard is allowed only as the whole
// left-most label, followed by at least two more labels ("*.example.com", not "*.com" or
// "a*.example.com"), per RFC 6125 section 6.4.3. Fails with invalid_name, saying why.
result<std::string> normalize_name(std::string_view name);

// Every name normalized, duplicates dropped, order kept. Fails with invalid_argument when the
// list is empty and invalid_name for the first name that does not pass.
result<std::vector<std::string>> normalize_names(const std::vector<std::string>& names);

// True when `host` (any case, with or without a trailing dot) matches the certificate name
// `pattern`: equal ignoring case, or `pattern` is "*.rest" and `host` is one non-empty label
// followed by ".rest". A wildcard never matches an IP address.
bool name_matches(std::string_view pattern, std::string_view host);

// A subjectAltName extension (RFC 5280 section 4.2.1.6) listing `names`, which must already be
// normalized: IP addresses become iPAddress entries and everything else dNSName entries. RFC 5280
// requires the extension to be critical when the subject is empty.
result<x509_extension_ptr> make_subject_alt_name(const std::vector<std::string>& names,
                                                 bool critical);

} // namespace gatehouse::pki
