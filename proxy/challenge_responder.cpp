#include "proxy/challenge_responder.hpp"

#include <algorithm>

namespace gatehouse::proxy {

namespace {

// ACME tokens are base64url with at least 128 bits of entropy (RFC 8555 section 8.1): 22
// characters or more. A bound on the length keeps odd paths from being echoed back at length.
bool is_token(std::string_view token)
{
    if (token.size() < 22 || token.size() > 128) {
        return false;
    }
    for (char c : token) {
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                        (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (!ok) {
            return false;
        }
    }
    return true;
}

} // namespace

challenge_responder::challenge_responder()
    : current_(std::make_shared<const table>()), stateless_(std::make_shared<const stateless>())
{}

std::optional<std::string> challenge_responder::answer(std::string_view token,
                                                       std::string_view host) const
{
    const auto snapshot = current_.load(std::memory_order_acquire);
    if (const auto found = snapshot->find(token); found != snapshot->end()) {
        return found->second;
    }
    const auto names = stateless_.load(std::memory_order_acquire);
    if (names->thumbprints.size() == 1 && names->hosts.contains(host) && is_token(token)) {
        return std::string(token) + "." + names->thumbprints.front();
    }
    return std::nullopt;
}

void challenge_responder::set_acme_hosts(std::set<std::string, std::less<>> hosts)
{
    std::lock_guard lock(writer_);
    auto next = std::make_shared<stateless>(*stateless_.load());
    next->hosts = std::move(hosts);
    stateless_.store(std::move(next), std::memory_order_release);
}

void challenge_responder::add_account_thumbprint(const std::string& thumbprint)
{
    std::lock_guard lock(writer_);
    auto next = std::make_shared<stateless>(*stateless_.load());
    if (std::find(next->thumbprints.begin(), next->thumbprints.end(), thumbprint) ==
        next->thumbprints.end()) {
        next->thumbprints.push_back(thumbprint);
        stateless_.store(std::move(next), std::memory_order_release);
    }
}

void challenge_responder::set_account_thumbprints(std::vector<std::string> thumbprints)
{
    std::lock_guard lock(writer_);
    auto next = std::make_shared<stateless>(*stateless_.load());
    next->thumbprints = std::move(thumbprints);
    stateless_.store(std::move(next), std::memory_order_release);
}

void challenge_responder::add(const std::string& token, const std::string& key_authorization)
{
    std::lock_guard lock(writer_);
    auto next = std::make_shared<table>(*current_.load());
    (*next)[token] = key_authorization;
    current_.store(std::move(next), std::memory_order_release);
}

void challenge_responder::remove(const std::string& token)
{
    std::lock_guard lock(writer_);
    auto next = std::make_shared<table>(*current_.load());
    if (next->erase(token) > 0) {
        current_.store(std::move(next), std::memory_order_release);
    }
}

void challenge_responder::replace_all(std::map<std::string, std::string, std::less<>> answers)
{
    std::lock_guard lock(writer_);
    current_.store(std::make_shared<const table>(std::move(answers)), std::memory_order_release);
}

std::size_t challenge_responder::size() const
{
    return current_.load(std::memory_order_acquire)->size();
}

} // namespace gatehouse::proxy
