// The answers to ACME http-01 challenges (RFC 8555 section 8.3) that the plain-HTTP listener
// serves under /.well-known/acme-challenge/<token>, before redirects and routing.
//
// Answers come from three places: the ACME worker of this instance hands them over directly
// while an order waits; the certificate manager mirrors the store's "challenges/" entries, so a
// challenge published by any instance sharing the store is answered by this one too; and for
// the names gatehouse orders itself, any other well-formed token is answered statelessly as
// token "." thumbprint of the shared account key (RFC 8555 section 8.1). The last one matters
// because the CA may validate within milliseconds of the order's instance publishing a token,
// before the store's change notification reaches the instance the load balancer picked; the
// answer is only good for an order of our own account, so it lends nothing to anyone else.
//
// Lookups run on every worker thread and take no lock a writer holds: the table is an
// immutable map swapped atomically. Every member is thread-safe.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::proxy {

class challenge_responder {
public:
    challenge_responder();

    // The key authorization for `token` requested for `host` (lower case, no port): the answer
    // recorded for the token, else the stateless answer when `host` is a name we order for and
    // exactly one account is known, else nullopt (the request goes on to routing).
    std::optional<std::string> answer(std::string_view token, std::string_view host = {}) const;

    void add(const std::string& token, const std::string& key_authorization);
    void remove(const std::string& token);

    // Replaces every answer at once, after the store's watch asked for a full read.
    void replace_all(std::map<std::string, std::string, std::less<>> answers);

    std::size_t size() const;

    // The names routed with tls: acme, and the JWK thumbprints of the ACME accounts in the
    // store. With more than one account the stateless answer would be a guess, so it is off.
    void set_acme_hosts(std::set<std::string, std::less<>> hosts);
    void set_account_thumbprints(std::vector<std::string> thumbprints);

    // Adds one, unless known: the account this instance's worker just loaded, which may be
    // newer than what the store's watch has reported.
    void add_account_thumbprint(const std::string& thumbprint);

private:
    using table = std::map<std::string, std::string, std::less<>>;

    struct stateless {
        std::set<std::string, std::less<>> hosts;
        std::vector<std::string> thumbprints;
    };

    std::atomic<std::shared_ptr<const table>> current_;
    std::atomic<std::shared_ptr<const stateless>> stateless_;
    std::mutex writer_;
};

} // namespace gatehouse::proxy
