// The command-line operations on ACME certificates and accounts that an operator runs beside a
// live gatehouse: revoking a certificate, replacing the account key, and explaining why a
// challenge would fail. They work on the same store as the running instances, which notice the
// results through the store (a revoked certificate is replaced, a new account key is used).
//
// Each returns a process exit code (0, 1 runtime failure, 2 bad usage) and writes what it did
// to `out` and problems to `err`. None of them blocks or changes issuance in a running instance.
#pragma once

#include "config/config.hpp"

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

namespace gatehouse::proxy {

// The RFC 5280 CRLReason code for a name ("keyCompromise", "superseded", ...) or a number;
// nullopt for anything else.
std::optional<int> parse_revocation_reason(std::string_view text);

// Revokes the stored certificate of `host` with the CA that issued it, through the account key,
// then removes it from the store, so running instances order a new one at once.
int revoke_certificate(const config::gatehouse_config& config, const std::string& host,
                       std::optional<int> reason, std::ostream& out, std::ostream& err);

// Replaces the account key at every configured directory that has an account in the store
// (RFC 8555 section 7.3.5). The CA learns the new key before the store does.
int rollover_account_keys(const config::gatehouse_config& config, std::ostream& out,
                          std::ostream& err);

// Checks what an HTTP-01 validation of `host` depends on, and explains each failure: whether
// the host is configured for ACME, where its DNS name points, and whether a probe answer put
// in the store comes back from http://host:port/.well-known/acme-challenge/ (a redirect, an
// answer from something else, or no connection at all). Returns 0 when every check passed.
int diagnose_host(const config::gatehouse_config& config, const std::string& host,
                  std::uint16_t port, std::ostream& out, std::ostream& err);

} // namespace gatehouse::proxy
