// The transport the ACME client uses in production: HTTPS through net::http_client, which
// verifies the CA's certificate against the system trust store and, when given, an extra
// bundle (a private CA, or Pebble's test CA). Verification cannot be switched off.
#pragma once

#include "acme/client.hpp"

#include <chrono>
#include <memory>
#include <string>

namespace gatehouse::acme {

struct http_transport_options {
    // A PEM file of CA certificates trusted besides the system's; empty for none.
    std::string extra_ca_file;
    std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
    std::chrono::milliseconds request_timeout{std::chrono::seconds(30)};
    std::string user_agent;
};

// Throws std::runtime_error, naming the file, when extra_ca_file cannot be loaded.
std::unique_ptr<transport> make_http_transport(const http_transport_options& options);

} // namespace gatehouse::acme
