// Strict reading of YAML nodes, for the configuration loader.
//
// yaml-cpp accepts any well-formed YAML and converts leniently ("yes" becomes true, a duplicate
// key is kept silently). These helpers add what a configuration file needs: every value's type
// is checked, unknown and duplicate keys are reported, and each problem is recorded with its
// position and key path instead of being thrown, so one pass over a file finds all of them.
//
// Internal to gatehouse_config: only the loader's .cpp files include this header, which is why
// gatehouse_config links yaml-cpp privately.
#pragma once

#include "config/config_loader.hpp"
#include "config/value_parsers.hpp"

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace gatehouse::config {

// A YAML node and the key path that leads to it, e.g. "routes[1].paths[0].upstream".
struct located_node {
    located_node(YAML::Node node_at, std::string key_path);

    YAML::Node node;
    std::string path;

    // Where errors about this node point; the node's own position unless moved (see
    // mapping_reader::find).
    YAML::Mark mark;

    // The value under `key` of this mapping.
    located_node child(std::string_view key, const YAML::Node& value) const;

    // The `index`th item of this list.
    located_node item(std::size_t index, const YAML::Node& value) const;
};

// The 1-based line of `node`, or 0 when yaml-cpp does not know it.
int line_of(const YAML::Node& node);

// How a node looks to a reader of an error message: "a mapping", "a list", "an empty value" or
// the scalar's text in quotes.
std::string describe(const YAML::Node& node);

// The problems found while reading one file. Not thread-safe; one per parse.
class error_collector {
public:
    explicit error_collector(std::string file_name);

    // Records `message` at `at.mark`, under `at.path`.
    void add(const located_node& at, std::string message);

    // Records `message` at `mark` (yaml-cpp's 0-based position), under `key_path`.
    void add(const YAML::Mark& mark, std::string key_path, std::string message);

    std::size_t count() const noexcept { return errors_.size(); }

    // Every error recorded, in the order they appear in the file.
    std::vector<config_error> take_sorted();

private:
    std::string file_name_;
    std::vector<config_error> errors_;
};

// A mapping whose keys have been checked. Lookups see the first occurrence of a key.
class mapping_reader {
public:
    // Reports `at` when it is neither a mapping nor empty, and every key that is not a plain
    // string, not in `allowed_keys` or given twice. An empty (null) node reads as an empty
    // mapping, so a section whose settings are all commented out keeps its defaults.
    mapping_reader(const located_node& at, std::initializer_list<std::string_view> allowed_keys,
                   error_collector& errors);

    // The value of `key`, or nothing when the key is absent. An empty value is located at its
    // key: yaml-cpp places it at the next token, often lines further down.
    std::optional<located_node> find(std::string_view key) const;

    // Where `key` itself is written, for errors about the key rather than its value. Only valid
    // when find(key) has a value.
    located_node key_of(std::string_view key) const;

private:
    struct entry {
        std::string key;
        YAML::Node key_node;
        YAML::Node value;
    };

    const entry* find_entry(std::string_view key) const;
    bool accept_key(const YAML::Node& key_node, std::initializer_list<std::string_view> allowed,
                    error_collector& errors) const;

    located_node at_;
    std::vector<entry> entries_;
};

// The readers below return nothing for an absent field (std::nullopt) without complaint, and
// nothing after recording an error for a value of the wrong type or out of range.

std::optional<std::string> read_string(const std::optional<located_node>& field,
                                       error_collector& errors);

// Accepts true and false (also capitalised or upper case); YAML 1.1's yes, no, on and off are
// rejected because they are too easily meant as strings.
std::optional<bool> read_bool(const std::optional<located_node>& field, error_collector& errors);

// A decimal integer from `minimum` to `maximum`, quoted or not. No signs, no 0x, no underscores.
std::optional<std::uint64_t> read_whole_number(const std::optional<located_node>& field,
                                               std::uint64_t minimum, std::uint64_t maximum,
                                               error_collector& errors);

// A duration such as "1m30s" (see parse_duration), greater than zero.
std::optional<std::chrono::milliseconds>
read_positive_duration(const std::optional<located_node>& field, error_collector& errors);

// A byte count such as 1024 or "16KiB" (see parse_size), at least `minimum`.
std::optional<std::uint64_t> read_size(const std::optional<located_node>& field,
                                       std::uint64_t minimum, error_collector& errors);

// The items of a list, each with its indexed path. An empty (null) node is an empty list;
// anything else that is not a list is reported and gives nothing.
std::optional<std::vector<located_node>> read_list(const located_node& at, error_collector& errors);

// A string handed to `parse`, one of the value_parsers; its rejection becomes an error here.
template <typename T>
std::optional<T> read_parsed(const std::optional<located_node>& field, error_collector& errors,
                             parse_result<T> (*parse)(std::string_view))
{
    const auto text = read_string(field, errors);
    if (!text) {
        return std::nullopt;
    }
    const parse_result<T> parsed = parse(*text);
    if (!parsed.ok()) {
        errors.add(*field, parsed.error());
        return std::nullopt;
    }
    return parsed.value();
}

// Stores `value` into `target` when it is there; a missing or invalid value leaves the default.
template <typename T, typename U>
void assign_if_valid(T& target, const std::optional<U>& value)
{
    if (value) {
        target = static_cast<T>(*value);
    }
}

} // namespace gatehouse::config
