// The gatehouse process: listeners, worker threads, the admin listener, signals and reloads.
//
// This header stays free of Asio and Beast so that main() and tests include it cheaply.
#pragma once

#include "config/config.hpp"

#include <memory>
#include <string>

namespace gatehouse::proxy {

class server {
public:
    // `config_path` is re-read on SIGHUP; `initial` is its already validated content.
    server(std::string config_path, config::gatehouse_config initial);
    ~server();

    server(const server&) = delete;
    server& operator=(const server&) = delete;

    // Binds every listener, starts the workers, and serves until SIGTERM or SIGINT has drained
    // the connections (or `timeouts.drain` ran out). Returns the process exit code: 0 after a
    // drain. Throws std::system_error when a listener cannot be bound. Call once, from main.
    int run();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace gatehouse::proxy
