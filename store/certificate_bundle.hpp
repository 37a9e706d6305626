// A certificate with its private key and what gatehouse knows about it, as kept in the store
// under keys::certificate(name), and its JSON form.
//
// The JSON is the on-disk and on-wire format, so operators can write one by hand (see
// docs/store.md): an object with "certificate_chain_pem" and "private_key_pem" (required) and
// "names", "issuer", "acme_directory", "serial", "not_before", "not_after" and "obtained_at"
// (optional; times are RFC 3339 in UTC). Unknown fields are ignored, so a newer gatehouse can add
// some. The certificate itself stays the truth about names and validity; these fields save parsing
// it.
#pragma once

#include "store/store.hpp"

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::store {

struct certificate_bundle {
    // The host names the certificate covers, the first being the one it is stored under.
    std::vector<std::string> names;

    // The leaf certificate first, then the intermediates, as concatenated PEM blocks.
    std::string certificate_chain_pem;

    // The leaf's private key in PEM. A secret: never log it.
    std::string private_key_pem;

    // Who issued it: "internal" (gatehouse's own CA), "acme" or "file" (copied in by an
    // operator); free text for any other source.
    std::string issuer;

    // For issuer "acme": the directory URL of the CA that issued it, so renewals go to the
    // same CA. Empty otherwise.
    std::string acme_directory;

    // The leaf's serial number in hex, as the issuer wrote it; empty when unknown.
    std::string serial;

    // The leaf's validity and when gatehouse obtained it. A default-constructed time point
    // (the epoch) means unknown: read it from the certificate. Kept to the second.
    std::chrono::system_clock::time_point not_before{};
    std::chrono::system_clock::time_point not_after{};
    std::chrono::system_clock::time_point obtained_at{};

    friend bool operator==(const certificate_bundle&, const certificate_bundle&) = default;
};

// The bundle as a JSON object (see the file comment). Unknown times are left out. Pure,
// thread-safe, does not throw except std::bad_alloc.
std::string serialize_bundle(const certificate_bundle& bundle);

// Reads what serialize_bundle wrote, or a bundle written by hand. Fails with errc::corrupt
// when the text is not JSON, is not an object, lacks either PEM field, has a field of the
// wrong type, or holds a time that is not RFC 3339. Never throws. Pure, thread-safe.
result<certificate_bundle> parse_bundle(std::string_view json);

} // namespace gatehouse::store
