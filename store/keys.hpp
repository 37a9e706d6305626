// Every key and lock name the store holds is built here and nowhere else, so the layout of the
// store can be read in one file and changed in one place.
//
// Names are normalized on the way in (host names lower-cased, a trailing dot dropped), so two
// spellings of one name share one entry. The functions do not check what they are given: a
// name with characters that keys do not allow (see store::is_valid_key) yields a key the store
// refuses with errc::invalid_key. All are pure and thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace gatehouse::store::keys {

// "certificates/<name>": the certificate bundle (store/certificate_bundle.hpp) for one host
// name, exact ("app.example.com") or wildcard ("*.example.com"), lower-cased and without a
// trailing dot. A certificate covering several names is kept under its first name.
std::string certificate(std::string_view name);

// "certificates/": the prefix to list() or watch() every certificate bundle.
std::string certificates_prefix();

// "ca/internal": gatehouse's own local certificate authority (its certificate and key).
std::string internal_ca();

// "accounts/<host>-<hash>": the ACME account registered with one CA, identified by its
// directory URL. <host> is the URL's host (and port) lower-cased, with any character keys do
// not allow replaced by '-', so an operator can tell the entries apart; <hash> is the 64-bit
// FNV-1a of the whole URL (without a trailing '/') in 16 hex digits, so two directories on one
// host (".../directory" and ".../staging/directory") do not collide. Example:
// "accounts/acme-v02.api.letsencrypt.org-6f1b2c3d4e5f6a7b".
std::string account(std::string_view directory_url);

// "accounts/": the prefix of every ACME account, to list or watch them.
std::string accounts_prefix();

// "challenges/<token>": the key authorization for an ACME http-01 challenge (RFC 8555 section
// 8.3), kept in the store so that any instance behind the load balancer can answer it. ACME
// tokens are base64url (RFC 8555 section 8.1), which keys allow as they are.
std::string challenge_token(std::string_view token);

// "challenges/": the prefix of every challenge token, for cleaning up.
std::string challenges_prefix();

// The lock an instance takes before obtaining or renewing the certificate for `name`, so that
// only one instance asks the CA. Lock names live apart from keys; this one reads like the
// certificate's key: "certificates/<name>".
std::string lock_for_certificate(std::string_view name);

// The lock taken before registering an account with the CA at `directory_url`, so that two
// instances starting together do not register two accounts: the account's key.
std::string lock_for_account(std::string_view directory_url);

// The lock taken before creating the internal CA, so that instances agree on one: "ca/internal".
std::string lock_for_internal_ca();

} // namespace gatehouse::store::keys
