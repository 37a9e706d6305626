// The etcd backend's link to the cluster: JSON requests to etcd's v3 gateway (RFC 8259 bodies
// over net::http_client), tried on each member in turn, with etcd's authentication token
// obtained and renewed as needed. Internal to store/: etcd_store and etcd_watcher use it.
//
// The gateway's conventions, which every caller must follow: keys and values are base64
// (RFC 4648 section 4, with padding), 64-bit integers are JSON strings, and fields that are
// zero, false or empty are left out of answers (a missing "succeeded" means false).
#pragma once

#include "net/http_client.hpp"
#include "store/etcd_store.hpp"
#include "store/store.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace gatehouse::store::etcd {

std::string base64_encode(std::string_view bytes);

// Nothing when `text` is not base64 with padding.
std::optional<std::string> base64_decode(std::string_view text);

// The end of the range of every key starting with `prefix`: the prefix with its last byte
// incremented, bytes 0xff dropped first ("/a/" gives "/a0"). "\0" (all keys) when nothing is
// left, as etcd's range_end convention has it.
std::string range_end(std::string_view prefix);

// An int64 field as the gateway writes it (a string, or a number from other encoders); 0 when
// the field is missing, as the gateway omits zeros, or is not a number.
std::int64_t int64_field(const nlohmann::json& object, std::string_view name);

// A string field decoded from base64; empty when missing (the gateway omits empty values),
// nothing when it is not base64.
std::optional<std::string> bytes_field(const nlohmann::json& object, std::string_view name);

// A boolean field; false when missing, as the gateway omits false.
bool bool_field(const nlohmann::json& object, std::string_view name);

// A string field; empty when missing or not a string.
std::string string_field(const nlohmann::json& object, std::string_view name);

// A JSON answer or why there is none. Always build it with in_place_value or in_place_error:
// nlohmann::json converts from nearly anything, errc included, so plain conversions are
// ambiguous.
using json_result = result<nlohmann::json>;

inline json_result json_failure(boost::system::error_code error)
{
    return json_result(boost::system::in_place_error, error);
}

inline json_result json_answer(nlohmann::json answer)
{
    return json_result(boost::system::in_place_value, std::move(answer));
}

// Talks to the cluster. Thread-safe: any number of threads may call at once (the requests then
// take turns on one connection per member).
class client {
public:
    // Throws std::runtime_error, naming the file, when a TLS file cannot be loaded. The
    // endpoints must have been checked: http:// or https:// URLs without a path.
    explicit client(const etcd_options& options);

    client(const client&) = delete;
    client& operator=(const client&) = delete;

    // POSTs `body` to `path` ("/v3/kv/range") and returns the answer's JSON object. Starts at
    // the member that answered last and moves on to the next one when a member cannot be
    // reached, does not answer in time, or says it cannot serve now (etcd's gRPC codes
    // UNAVAILABLE and DEADLINE_EXCEEDED, such as "no leader"). Authenticates first when a
    // username is set and no token is held, and once more when etcd calls the token invalid.
    //
    // Fails with errc::timeout when no member answered and one timed out (a write may then
    // have happened), errc::unavailable when none could be reached, errc::not_writable when
    // etcd denies permission, and errc::io_failed when etcd refuses the request or answers
    // with something other than a JSON object. last_failure() then says why.
    json_result call(std::string_view path, const nlohmann::json& body);

    // The HTTP request for `path` on member `endpoint` (an index into the endpoints), with the
    // token when one is held; for streams, which the caller runs itself. Authenticates first
    // when a username is set and no token is held; fails as call() does.
    result<net::request> stream_request(std::size_t endpoint, std::string_view path,
                                        const nlohmann::json& body);

    // Runs a stream made by stream_request(); see net::http_client::stream.
    net::result<int> stream(const net::request& request, const net::body_handler& on_body,
                            std::chrono::milliseconds idle_timeout, const std::atomic<bool>* stop);

    // Forgets the token, so the next request authenticates again; for a stream that etcd
    // cancelled because of it.
    void drop_token();

    std::size_t endpoint_count() const { return endpoints_.size(); }

    // The member that answered last, where requests start.
    std::size_t preferred_endpoint() const { return preferred_.load(); }

    // "http://127.0.0.1:2379,http://127.0.0.1:22379": the endpoints, never credentials.
    std::string endpoints_text() const;

    // Why the last failed request failed, naming the member: "connect to 127.0.0.1:2379:
    // Connection refused" or "etcd http://127.0.0.1:2379 refused /v3/kv/put:
    // etcdserver: permission denied". Never contains the password or a token.
    std::string last_failure() const;

private:
    // How one attempt on one member ended.
    enum class attempt_kind { answered, unreachable, timed_out, refused };
    struct attempt {
        attempt_kind kind = attempt_kind::answered;
        json_result outcome = json_answer(nlohmann::json::object());
    };

    attempt try_member(std::size_t endpoint, std::string_view path, const std::string& body);
    attempt send_once(std::size_t endpoint, std::string_view path, const std::string& body,
                      const std::optional<std::string>& token, int& grpc_code);
    net::request make_request(std::size_t endpoint, std::string_view path, std::string body,
                              const std::optional<std::string>& token) const;
    std::optional<attempt> authenticate(std::size_t endpoint);
    std::optional<std::string> token() const;
    void record_failure(std::string message);

    const std::vector<std::string> endpoints_;
    const std::string username_;
    const std::string password_;
    net::http_client http_;
    std::atomic<std::size_t> preferred_{0};

    mutable std::mutex mutex_;
    std::optional<std::string> token_;
    std::string last_failure_;
};

} // namespace gatehouse::store::etcd
