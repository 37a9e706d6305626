#include "config/yaml_reader.hpp"

#include <algorithm>
#include <utility>

namespace gatehouse::config {

namespace {

constexpr std::string_view size_hint =
    "write bytes or a whole number with B, KiB, MiB, GiB, KB, MB or GB, e.g. 16KiB";

// yaml-cpp counts from 0 and uses -1 for "unknown"; config_error counts from 1 and uses 0.
int one_based(int position)
{
    return position >= 0 ? position + 1 : 0;
}

YAML::Mark mark_of(const YAML::Node& node)
{
    return node.IsDefined() ? node.Mark() : YAML::Mark::null_mark();
}

bool is_whole_number_text(std::string_view text)
{
    return !text.empty() &&
           std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string join(std::initializer_list<std::string_view> words)
{
    std::string joined;
    for (const std::string_view word : words) {
        joined += (joined.empty() ? "" : ", ") + std::string(word);
    }
    return joined;
}

std::optional<std::string> range_problem(std::uint64_t value, std::uint64_t minimum,
                                         std::uint64_t maximum)
{
    if (value < minimum) {
        return minimum == 1 ? std::string("must be greater than zero")
                            : "must be at least " + std::to_string(minimum);
    }
    if (value > maximum) {
        return "must be at most " + std::to_string(maximum) + ", found " + std::to_string(value);
    }
    return std::nullopt;
}

// The scalar text of `field`, or nothing after reporting a value that is not a scalar.
std::optional<std::string> scalar_text(const located_node& field, std::string_view expected,
                                       error_collector& errors)
{
    if (!field.node.IsScalar()) {
        errors.add(field, "expected " + std::string(expected) + ", found " + describe(field.node));
        return std::nullopt;
    }
    return field.node.Scalar();
}

} // namespace

located_node::located_node(YAML::Node node_at, std::string key_path)
    : node(std::move(node_at)), path(std::move(key_path)), mark(mark_of(node))
{}

located_node located_node::child(std::string_view key, const YAML::Node& value) const
{
    return {value, path.empty() ? std::string(key) : path + "." + std::string(key)};
}

located_node located_node::item(std::size_t index, const YAML::Node& value) const
{
    return {value, path + "[" + std::to_string(index) + "]"};
}

int line_of(const YAML::Node& node)
{
    return one_based(mark_of(node).line);
}

std::string describe(const YAML::Node& node)
{
    switch (node.Type()) {
    case YAML::NodeType::Map:
        return "a mapping";
    case YAML::NodeType::Sequence:
        return "a list";
    case YAML::NodeType::Scalar:
        return "\"" + node.Scalar() + "\"";
    default:
        return "an empty value";
    }
}

error_collector::error_collector(std::string file_name) : file_name_(std::move(file_name)) {}

void error_collector::add(const located_node& at, std::string message)
{
    add(at.mark, at.path, std::move(message));
}

void error_collector::add(const YAML::Mark& mark, std::string key_path, std::string message)
{
    errors_.push_back(config_error{file_name_, one_based(mark.line), one_based(mark.column),
                                   std::move(key_path), std::move(message)});
}

std::vector<config_error> error_collector::take_sorted()
{
    std::stable_sort(errors_.begin(), errors_.end(), [](const auto& a, const auto& b) {
        return std::pair(a.line, a.column) < std::pair(b.line, b.column);
    });
    return std::move(errors_);
}

mapping_reader::mapping_reader(const located_node& at,
                               std::initializer_list<std::string_view> allowed_keys,
                               error_collector& errors)
    : at_(at)
{
    if (at.node.IsNull()) {
        return;
    }
    if (!at.node.IsMap()) {
        errors.add(at, "expected a mapping of settings, found " + describe(at.node));
        return;
    }
    for (const auto& pair : at.node) {
        if (accept_key(pair.first, allowed_keys, errors)) {
            entries_.push_back(entry{pair.first.Scalar(), pair.first, pair.second});
        }
    }
}

bool mapping_reader::accept_key(const YAML::Node& key_node,
                                std::initializer_list<std::string_view> allowed,
                                error_collector& errors) const
{
    if (!key_node.IsScalar()) {
        errors.add(located_node{key_node, at_.path}, "keys must be plain strings");
        return false;
    }

    const std::string& key = key_node.Scalar();
    const located_node key_at = at_.child(key, key_node);
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        errors.add(key_at, "unknown key \"" + key + "\"; expected one of: " + join(allowed));
        return false;
    }

    // yaml-cpp keeps both copies of a repeated key and lookups see only the first, so the
    // second would be ignored without a word.
    if (const entry* first = find_entry(key)) {
        errors.add(key_at, "duplicate key \"" + key + "\"; it is already set on line " +
                               std::to_string(line_of(first->key_node)));
        return false;
    }
    return true;
}

const mapping_reader::entry* mapping_reader::find_entry(std::string_view key) const
{
    const auto found = std::find_if(entries_.begin(), entries_.end(),
                                    [key](const entry& candidate) { return candidate.key == key; });
    return found == entries_.end() ? nullptr : &*found;
}

std::optional<located_node> mapping_reader::find(std::string_view key) const
{
    const entry* found = find_entry(key);
    if (found == nullptr) {
        return std::nullopt;
    }
    located_node value = at_.child(key, found->value);
    if (found->value.IsNull()) {
        value.mark = mark_of(found->key_node);
    }
    return value;
}

located_node mapping_reader::key_of(std::string_view key) const
{
    const entry* found = find_entry(key);
    return at_.child(key, found != nullptr ? found->key_node : at_.node);
}

std::optional<std::string> read_string(const std::optional<located_node>& field,
                                       error_collector& errors)
{
    if (!field) {
        return std::nullopt;
    }
    return scalar_text(*field, "a string", errors);
}

std::optional<bool> read_bool(const std::optional<located_node>& field, error_collector& errors)
{
    const auto text = field ? scalar_text(*field, "true or false", errors) : std::nullopt;
    if (!text) {
        return std::nullopt;
    }
    if (*text == "true" || *text == "True" || *text == "TRUE") {
        return true;
    }
    if (*text == "false" || *text == "False" || *text == "FALSE") {
        return false;
    }
    errors.add(*field, "expected true or false, found \"" + *text + "\"");
    return std::nullopt;
}

std::optional<std::uint64_t> read_whole_number(const std::optional<located_node>& field,
                                               std::uint64_t minimum, std::uint64_t maximum,
                                               error_collector& errors)
{
    const auto text = field ? scalar_text(*field, "a whole number", errors) : std::nullopt;
    if (!text) {
        return std::nullopt;
    }

    // parse_size on bare digits is exactly a decimal parse with overflow detection.
    const auto value = is_whole_number_text(*text) ? parse_size(*text) : std::nullopt;
    if (!value) {
        errors.add(*field, "expected a whole number, found \"" + *text + "\"");
        return std::nullopt;
    }
    if (auto problem = range_problem(*value, minimum, maximum)) {
        errors.add(*field, *problem);
        return std::nullopt;
    }
    return value;
}

std::optional<std::chrono::milliseconds>
read_positive_duration(const std::optional<located_node>& field, error_collector& errors)
{
    const auto text = field ? scalar_text(*field, "a duration such as 10s", errors) : std::nullopt;
    if (!text) {
        return std::nullopt;
    }
    if (is_whole_number_text(*text)) {
        errors.add(*field, "a duration needs a unit, e.g. 10s; found " + *text);
        return std::nullopt;
    }

    const auto value = parse_duration(*text);
    if (!value) {
        errors.add(*field, "invalid duration \"" + *text +
                               "\"; write whole numbers with units ms, s, m, h or d, e.g. 1m30s");
        return std::nullopt;
    }
    if (value->count() == 0) {
        errors.add(*field, "must be greater than zero");
        return std::nullopt;
    }
    return value;
}

std::optional<std::uint64_t> read_size(const std::optional<located_node>& field,
                                       std::uint64_t minimum, error_collector& errors)
{
    const auto text = field ? scalar_text(*field, "a size such as 16KiB", errors) : std::nullopt;
    if (!text) {
        return std::nullopt;
    }

    const auto value = parse_size(*text);
    if (!value) {
        errors.add(*field, "invalid size \"" + *text + "\"; " + std::string(size_hint));
        return std::nullopt;
    }
    if (*value < minimum && minimum == 1) {
        errors.add(*field, "must be greater than zero");
        return std::nullopt;
    }
    if (*value < minimum) {
        errors.add(*field, "must be at least " + std::to_string(minimum) + " bytes, found " +
                               std::to_string(*value));
        return std::nullopt;
    }
    return value;
}

std::optional<std::vector<located_node>> read_list(const located_node& at, error_collector& errors)
{
    if (at.node.IsNull()) {
        return std::vector<located_node>{};
    }
    if (!at.node.IsSequence()) {
        errors.add(at, "expected a list, found " + describe(at.node));
        return std::nullopt;
    }

    std::vector<located_node> items;
    for (const YAML::Node& item : at.node) {
        items.push_back(at.item(items.size(), item));
    }
    return items;
}

} // namespace gatehouse::config
