// Certificates: reading chains from PEM, writing them back, and the facts about a certificate
// that the TLS listener and the status page need (names, issuer, serial, validity).
//
// Every function may be called from any thread; certificates passed in are only read and stay
// the caller's.
#pragma once

#include "pki/error.hpp"
#include "pki/openssl_handles.hpp"

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::pki {

// A certificate and the intermediates a server sends after it, in that order. The root is not
// part of a chain: clients already hold it.
struct certificate_chain {
    x509_ptr leaf;
    std::vector<x509_ptr> intermediates;
};

// Reads every certificate in `pem`; the first is the leaf. Text outside PEM blocks, and blocks
// of other kinds (a private key in a combined file), is skipped. The order of intermediates is
// kept as written; it is not checked.
//
// Fails with invalid_pem when there is no certificate at all (empty text, garbage, a key alone)
// or when any certificate block does not parse, naming which one.
result<certificate_chain> parse_certificate_chain(std::string_view pem);

// The leaf, then each intermediate, as concatenated PEM. Fails with invalid_argument when the
// chain has no leaf, and openssl_failure otherwise.
result<std::string> chain_to_pem(const certificate_chain& chain);

// One certificate in DER, as ACME's revokeCert carries it (RFC 8555 section 7.6). Fails with
// invalid_argument for null, and openssl_failure otherwise.
result<std::string> certificate_to_der(X509* certificate);

// One certificate as PEM. Fails with invalid_argument for null, and openssl_failure otherwise.
result<std::string> certificate_to_pem(X509* certificate);

// What a certificate says about itself, as plain data that can be copied across threads.
struct certificate_info {
    // The subjectAltName DNS names, lower-cased. Only when the certificate has no subjectAltName
    // extension at all does the subject's most specific common name stand in (RFC 6125 section
    // 6.4.4), since clients ignore the common name otherwise.
    std::vector<std::string> dns_names;

    // The subjectAltName IP addresses in canonical text form ("192.0.2.1", "2001:db8::1").
    std::vector<std::string> ip_addresses;

    // Distinguished names on one line in RFC 2253 form: "CN=example.com,O=Example".
    std::string subject;
    std::string issuer;

    // Upper-case hex without colons or leading zeros: "3A0F...". A zero serial is "0".
    std::string serial_hex;

    // Validity in UTC.
    std::chrono::system_clock::time_point not_before;
    std::chrono::system_clock::time_point not_after;
};

// Reads `certificate`'s names, issuer, serial and validity. Fails with invalid_argument for
// null, and invalid_certificate when its subjectAltName extension or its times do not decode.
result<certificate_info> describe_certificate(X509* certificate);

// True when a certificate described by `info` is valid for `host` (a name as a client sends it in
// SNI, any case, trailing dot allowed, or an IP address, IPv6 with or without brackets): a DNS
// name matching exactly or through a wildcard for one label (see name_matches), or an equal IP
// address. Validity dates are not considered.
bool covers_name(const certificate_info& info, std::string_view host);

// The SHA-256 digest of the certificate's DER form in upper-case hex without colons: 64
// characters, comparable with `openssl x509 -fingerprint -sha256` once its colons are removed.
result<std::string> sha256_fingerprint_hex(X509* certificate);

// When a certificate should be replaced: once two thirds of its lifetime have passed, which
// leaves a third (a month of a 90-day certificate, about two days of a 7-day one) for retries.
std::chrono::system_clock::time_point renewal_due(const certificate_info& info);

// True once `now` has reached renewal_due(info). Takes the time so tests can use a simulated
// clock.
bool needs_renewal(const certificate_info& info, std::chrono::system_clock::time_point now);

} // namespace gatehouse::pki
