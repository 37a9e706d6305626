// The ACME directory (RFC 8555 section 7.1.1): the one URL a client is configured with, listing
// every other endpoint of the CA. Clients read URLs from it and never build them, which is why
// Pebble's odd paths ("/nonce-plz", "/sign-me-up") work as well as Let's Encrypt's.
#pragma once

#include "acme/error.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::acme {

// The "meta" object of section 7.1.1; every member is optional.
struct directory_meta {
    std::optional<std::string> terms_of_service;
    std::optional<std::string> website;
    std::vector<std::string> caa_identities;

    // The CA only creates accounts bound to an external account (section 7.3.4).
    bool external_account_required = false;
};

struct directory {
    std::string new_nonce;
    std::string new_account;
    std::string new_order;
    std::string revoke_cert;
    std::string key_change;

    // ACME Renewal Information (RFC 9773), for CAs that suggest when to renew.
    std::optional<std::string> renewal_info;

    directory_meta meta;
};

// Reads a directory document. Fails with invalid_json for text that is not a JSON object, and
// missing_field or invalid_field when any of newNonce, newAccount, newOrder, revokeCert or
// keyChange is absent or not a string: section 7.1.1 lists them all as required. newAuthz
// (pre-authorization) is not read. Pure; any thread.
result<directory> parse_directory(std::string_view json);

} // namespace gatehouse::acme
