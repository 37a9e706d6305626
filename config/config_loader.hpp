// Reads gatehouse.yaml into a validated gatehouse_config.
//
// The loader is strict: unknown keys, wrong types, bad durations or sizes, duplicate hosts,
// malformed upstream URLs and conflicting settings are all errors. It does not stop at the first
// one; every problem it finds is reported, each with the file, line, column and key path, so an
// operator fixes a file in one pass.
#pragma once

#include "config/config.hpp"

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::config {

// One problem found in a configuration file. Lines and columns count from 1; 0 means the
// position is unknown (for example, a file that could not be read).
struct config_error {
    std::string file;
    int line = 0;
    int column = 0;

    // Dotted path to the offending key, with list indexes: "routes[1].paths[0].upstream".
    std::string key_path;

    std::string message;

    // "file:line:col: key.path: message", the form every tool and editor understands.
    std::string to_string() const;
};

// Thrown by the loader when a configuration is unusable; carries every error found.
class config_load_error : public std::runtime_error {
public:
    explicit config_load_error(std::vector<config_error> errors);

    const std::vector<config_error>& errors() const noexcept { return errors_; }

private:
    std::vector<config_error> errors_;
};

// Parses and validates YAML text. `file_name` is only used in error messages.
// Throws config_load_error listing every problem. Safe to call from any thread.
gatehouse_config parse_config(std::string_view yaml_text, const std::string& file_name);

// Reads `path` and parses it. An unreadable file is a config_load_error too.
gatehouse_config load_config_file(const std::string& path);

// Parses a duration such as "250ms", "10s", "5m", "1h", "1d" or "1m30s". Returns nothing on
// malformed input or a value that does not fit in milliseconds.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// Parses a size such as "512", "512B", "16KiB", "1MiB", "2GiB", "10KB" or "1MB".
std::optional<std::uint64_t> parse_size(std::string_view text);

} // namespace gatehouse::config
