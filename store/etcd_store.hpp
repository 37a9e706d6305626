// The etcd backend (`store: {etcd: {endpoints: [...]}}`): every key is an etcd key below one
// prefix, so many gatehouse instances, on any number of machines, share one source of truth
// that etcd's Raft log replicates. It speaks etcd's v3 JSON gateway over HTTP/1.1 (plain or
// TLS), so it needs no gRPC. docs/store.md describes the keys under the prefix, how locks map to
// leases, how watches recover, and failover between endpoints.
#pragma once

#include "store/store.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace gatehouse::store {

struct etcd_options {
    // Client URLs of the cluster's members, "http://127.0.0.1:2379" or "https://etcd-0:2379",
    // without a path. Requests go to the member that answered last and move on to the next
    // one when it cannot be reached or does not answer in time. At least one.
    std::vector<std::string> endpoints;

    // Every key lives below this; it starts and ends with '/'. Two deployments sharing one
    // cluster stay apart by choosing different prefixes.
    std::string prefix = "/gatehouse/";

    // For https:// endpoints: the PEM bundle that the members' certificates must chain to
    // (the system trust store when empty), and the client certificate and key for clusters
    // that require mutual TLS (both or neither).
    std::string ca_file;
    std::string certificate_file;
    std::string key_file;

    // etcd's own authentication: when username is set, the store gets a token from
    // /v3/auth/authenticate with these, and a new one whenever etcd says it is no longer
    // valid. The password is never shown in a message.
    std::string username;
    std::string password;

    // The budget for connecting to one member, and again for one request to it and its
    // answer. A call that fails over to other members may spend it on each of them.
    std::chrono::milliseconds request_timeout{5000};

    // Return the store even when no member answers at start (the probe failing with
    // unavailable or timeout), for a caller that keeps a local copy to serve from meanwhile
    // (store/caching_store.hpp). Every other failure still fails the open.
    bool open_while_unreachable = false;
};

// Opens the store kept in the etcd cluster at `options.endpoints`, under `options.prefix`.
// Before returning it authenticates (when a username is set) and proves it may write by
// putting and deleting a probe key under the prefix, so a wrong endpoint, password, role or
// certificate is found at start-up rather than when the first certificate is obtained.
//
// Fails, with a message in *why when `why` is not null (naming the endpoints and the cause,
// never the password), with:
//   - errc::invalid_argument for options that cannot work (no endpoint, an endpoint that is
//     not an http:// or https:// URL without a path, a prefix not starting and ending with
//     '/', a client certificate without its key, a password without a username, a TLS file
//     that does not load);
//   - errc::unavailable when no endpoint can be reached, errc::timeout when none answers in
//     time;
//   - errc::not_writable when etcd refuses the probe (the user's role may not write the
//     prefix), and errc::io_failed when etcd refuses anything else (a wrong password).
// Gatehouse then refuses to start: there is no local copy to fall back on.
//
// The store is thread-safe. Its calls block for at most about twice request_timeout per
// member tried, and fail with errc::unavailable or errc::timeout while the cluster is out of
// reach; they recover by themselves when it comes back. Its watch thread starts with the first
// watch() and stops in the destructor, which waits up to about 100 ms for it.
result<std::unique_ptr<store>> open_etcd_store(const etcd_options& options,
                                               std::string* why = nullptr);

} // namespace gatehouse::store
