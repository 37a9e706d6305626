// The answers to ACME http-01 challenges (RFC 8555 section 8.3) that the plain-HTTP listener
// serves under /.well-known/acme-challenge/<token>, before redirects and routing.
//
// Answers come from two places: the ACME worker of this instance hands them over directly
// while an order waits, and the certificate manager mirrors the store's "challenges/" entries,
// so a challenge published by any instance sharing the store is answered by this one too.
//
// Lookups run on every worker thread and take no lock a writer holds: the table is an
// immutable map swapped atomically. Every member is thread-safe.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace gatehouse::proxy {

class challenge_responder {
public:
    challenge_responder();

    // The key authorization for `token`, or nullopt when no order of ours is waiting on it.
    std::optional<std::string> answer(std::string_view token) const;

    void add(const std::string& token, const std::string& key_authorization);
    void remove(const std::string& token);

    // Replaces every answer at once, after the store's watch asked for a full read.
    void replace_all(std::map<std::string, std::string, std::less<>> answers);

    std::size_t size() const;

private:
    using table = std::map<std::string, std::string, std::less<>>;

    std::atomic<std::shared_ptr<const table>> current_;
    std::mutex writer_;
};

} // namespace gatehouse::proxy
