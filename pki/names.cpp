#include "pki/names.hpp"

#include "pki/internal.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <array>

#include <openssl/asn1.h>
#include <openssl/x509v3.h>

namespace gatehouse::pki {

namespace {

using internal::make_error;

constexpr std::size_t max_dns_name_length = 253;
constexpr std::size_t max_label_length = 63;

bool is_label_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

bool is_all_digits(std::string_view text)
{
    return std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The canonical text of an IP address, or empty when `text` is not one.
std::string canonical_ip(std::string_view text)
{
    const std::string terminated(text);
    std::array<unsigned char, 16> address{};
    std::array<char, INET6_ADDRSTRLEN> buffer{};
    for (const int family : {AF_INET, AF_INET6}) {
        if (inet_pton(family, terminated.c_str(), address.data()) == 1) {
            return inet_ntop(family, address.data(), buffer.data(), buffer.size());
        }
    }
    return {};
}

std::string without_trailing_dot(std::string_view name)
{
    if (!name.empty() && name.back() == '.') {
        name.remove_suffix(1);
    }
    return internal::to_lower_ascii(name);
}

// Why `label` cannot be label number `index` of a DNS name, or empty when it can.
std::string label_problem(std::string_view label, std::size_t index)
{
    if (label.empty()) {
        return "has an empty label";
    }
    if (label == "*") {
        return index == 0 ? "" : "has a wildcard that is not the left-most label";
    }
    if (label.size() > max_label_length) {
        return "has a label longer than 63 characters";
    }
    if (!std::all_of(label.begin(), label.end(), is_label_char)) {
        return label.find('*') != std::string_view::npos
                   ? "has a partial wildcard; only a whole left-most label \"*\" is allowed"
                   : "has a character other than a letter, digit, hyphen or underscore";
    }
    if (label.front() == '-' || label.back() == '-') {
        return "has a label that starts or ends with a hyphen";
    }
    return {};
}

std::vector<std::string_view> split_labels(std::string_view name)
{
    std::vector<std::string_view> labels;
    std::size_t start = 0;
    while (true) {
        const std::size_t dot = name.find('.', start);
        labels.push_back(name.substr(start, dot - start));
        if (dot == std::string_view::npos) {
            return labels;
        }
        start = dot + 1;
    }
}

// Why `name` (lower case, no trailing dot) is not a valid DNS name, or empty when it is.
std::string dns_name_problem(std::string_view name)
{
    if (name.empty()) {
        return "is empty";
    }
    if (name.size() > max_dns_name_length) {
        return "is longer than 253 characters";
    }
    const std::vector<std::string_view> labels = split_labels(name);
    for (std::size_t i = 0; i < labels.size(); ++i) {
        if (std::string problem = label_problem(labels[i], i); !problem.empty()) {
            return problem;
        }
    }
    if (labels.front() == "*" && labels.size() < 3) {
        return "has a wildcard covering a top-level domain; at least two labels must follow it";
    }
    if (is_all_digits(labels.back())) {
        return "ends in an all-digit label but is not an IP address";
    }
    return {};
}

result<GENERAL_NAME*> make_general_name(const std::string& name)
{
    GENERAL_NAME* entry = GENERAL_NAME_new();
    if (entry == nullptr) {
        return internal::openssl_failure("GENERAL_NAME_new");
    }
    if (is_ip_address(name)) {
        ASN1_OCTET_STRING* address = a2i_IPADDRESS(name.c_str());
        if (address == nullptr) {
            GENERAL_NAME_free(entry);
            return internal::openssl_failure("a2i_IPADDRESS", errc::invalid_name);
        }
        GENERAL_NAME_set0_value(entry, GEN_IPADD, address);
        return entry;
    }
    ASN1_IA5STRING* dns = ASN1_IA5STRING_new();
    if (dns == nullptr || ASN1_STRING_set(dns, name.data(), static_cast<int>(name.size())) != 1) {
        ASN1_IA5STRING_free(dns);
        GENERAL_NAME_free(entry);
        return internal::openssl_failure("ASN1_STRING_set");
    }
    GENERAL_NAME_set0_value(entry, GEN_DNS, dns);
    return entry;
}

} // namespace

bool is_ip_address(std::string_view text)
{
    return !canonical_ip(text).empty();
}

result<std::string> normalize_name(std::string_view name)
{
    if (std::string ip = canonical_ip(name); !ip.empty()) {
        return ip;
    }
    std::string normalized = without_trailing_dot(name);
    if (std::string problem = dns_name_problem(normalized); !problem.empty()) {
        return make_error(errc::invalid_name,
                          "certificate name \"" + std::string(name) + "\" " + problem);
    }
    return normalized;
}

result<std::vector<std::string>> normalize_names(const std::vector<std::string>& names)
{
    if (names.empty()) {
        return make_error(errc::invalid_argument, "a certificate needs at least one name");
    }
    std::vector<std::string> normalized;
    normalized.reserve(names.size());
    for (const std::string& name : names) {
        auto one = normalize_name(name);
        if (!one) {
            return one.error();
        }
        if (std::find(normalized.begin(), normalized.end(), *one) == normalized.end()) {
            normalized.push_back(std::move(*one));
        }
    }
    return normalized;
}

bool name_matches(std::string_view pattern, std::string_view host)
{
    const std::string wanted = without_trailing_dot(pattern);
    const std::string given = without_trailing_dot(host);
    if (wanted.empty() || given.empty()) {
        return false;
    }
    if (wanted.size() < 2 || wanted.compare(0, 2, "*.") != 0) {
        return wanted == given;
    }

    // RFC 6125 section 6.4.3: the wildcard stands for exactly one whole label, and a pattern
    // with fewer than two labels after it ("*.com") is too broad to honour.
    const std::string_view suffix = std::string_view(wanted).substr(1);
    const std::size_t first_dot = given.find('.');
    if (suffix.find('.', 1) == std::string_view::npos || first_dot == 0 ||
        first_dot == std::string::npos || is_ip_address(given)) {
        return false;
    }
    return std::string_view(given).substr(first_dot) == suffix;
}

result<x509_extension_ptr> make_subject_alt_name(const std::vector<std::string>& names,
                                                 bool critical)
{
    general_names_ptr entries(GENERAL_NAMES_new());
    if (!entries) {
        return internal::openssl_failure("GENERAL_NAMES_new");
    }
    for (const std::string& name : names) {
        auto entry = make_general_name(name);
        if (!entry) {
            return entry.error();
        }
        if (sk_GENERAL_NAME_push(entries.get(), *entry) == 0) {
            GENERAL_NAME_free(*entry);
            return internal::openssl_failure("sk_GENERAL_NAME_push");
        }
    }
    x509_extension_ptr extension(
        X509V3_EXT_i2d(NID_subject_alt_name, critical ? 1 : 0, entries.get()));
    if (!extension) {
        return internal::openssl_failure("X509V3_EXT_i2d(subjectAltName)");
    }
    return extension;
}

} // namespace gatehouse::pki
