// Opens the store the configuration names, for the server and for every command that works on
// the store (trust, revoke, account rollover, diagnose). One place decides which backend is used
// and how it is wrapped, so a command never reads the store differently from the server.
#pragma once

#include "config/config.hpp"

#include <iosfwd>
#include <memory>
#include <string>

namespace gatehouse::store {
class store;
}

namespace gatehouse::proxy {

// The configured store, ready to use. Throws std::runtime_error with a message fit for the
// operator (naming the folder or endpoint and the cause) when it cannot be opened.
std::unique_ptr<store::store> open_configured_store(const config::gatehouse_config& config);

// The same for a command: on failure, says why on `err` ("gatehouse: ...") and returns nullptr.
std::unique_ptr<store::store> open_store_for_command(const config::gatehouse_config& config,
                                                     std::ostream& err);

} // namespace gatehouse::proxy
