// `gatehouse store export` and `gatehouse store import`: moving everything a store holds that
// cannot be made again (certificates, the internal CA, ACME accounts) to another store in one
// step, from the file store to another backend or from one cluster to another.
//
// The export is one JSON document:
//   {"format": "gatehouse-store-export", "version": 1, "exported_at": "<RFC 3339>",
//    "source": "<store::describe()>", "entries": {"<key>": "<value as stored>", ...}}
// holding every key under certificates/, accounts/ and ca/ (store/keys.hpp). Challenge tokens
// and locks are left out: they are short-lived and belong to the instances that made them.
// Values are copied byte for byte as the configured store hands them out (decrypted, when the
// store is sealed with a key ring), private keys included, so the document is a secret.
//
// Both return a process exit code: 0 success; 1 a runtime failure (the store cannot be opened,
// read or written, or an import kept a store value that differs from the document's); 2 input
// that is not a valid export. Neither locks the store: run them while nothing else writes it,
// or accept that a certificate renewed meanwhile may be older in the copy.
#pragma once

#include "config/config.hpp"

#include <istream>
#include <ostream>

namespace gatehouse::proxy {

// Writes the export of the configured store to `out`, and nothing else: the warning that it
// holds private keys and the count of entries go to `err`, with any failure. Builds the whole
// document before writing it, so a failure leaves `out` empty. A value that is not UTF-8 text
// (none that gatehouse writes) cannot be exported and fails the export.
int export_store(const config::gatehouse_config& config, std::ostream& out, std::ostream& err);

// Reads an export from `in` and writes its entries into the configured store. The whole
// document is checked first (format, version, every key valid and under certificates/,
// accounts/ or ca/, every value a string, certificate bundles and the internal CA readable by
// store::parse_bundle); on any problem every problem is listed on `err`, nothing is written,
// and it returns 2. An entry the store already holds with the same value is left alone; one
// it holds with another value is kept as it is and reported, and the import then returns 1,
// unless `overwrite` is set, which replaces it. A summary (written, unchanged, skipped) goes
// to `out`. A store failure stops the import there and returns 1; running it again finishes
// the work, since entries already written count as unchanged.
int import_store(const config::gatehouse_config& config, std::istream& in, bool overwrite,
                 std::ostream& out, std::ostream& err);

} // namespace gatehouse::proxy
