// A blocking HTTP/1.1 client (RFC 9110, RFC 9112) over plain TCP or TLS, for the parts of
// gatehouse that talk to other servers from a thread of their own: the ACME worker, and later an
// etcd store. The proxy's request path never uses it; it runs on Asio coroutines instead.
//
// Blocking is the point: callers are workers that do one thing at a time, and a plain function
// call keeps their code a straight line. Every wait has a deadline, so send() cannot hang.
// stream() serves responses that never really end, such as etcd's watch: it hands the body over
// piece by piece as it arrives, and can be stopped from another thread.
// Certificates are always verified; there is deliberately no switch to turn that off. Asio and
// Beast stay inside http_client.cpp, so this header is cheap to include anywhere.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <boost/assert/source_location.hpp>
#include <boost/system/error_category.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

namespace gatehouse::net {

// How an http_client is set up. Plain data, read once by the constructor.
struct client_options {
    // Trust anchors for HTTPS: the system store (OpenSSL's default verify paths) and, when
    // extra_ca_file names a PEM bundle, its certificates as well. With neither, every HTTPS
    // request fails verification.
    bool system_trust = true;
    std::string extra_ca_file;

    // A certificate chain and its private key, PEM, presented to servers that ask for one
    // (mutual TLS, as etcd may require). Both or neither.
    std::string client_certificate_file;
    std::string client_key_file;

    // The budget for name resolution, TCP connect and TLS handshake together.
    std::chrono::milliseconds connect_timeout{10'000};

    // The budget for writing the request and reading the whole response.
    std::chrono::milliseconds request_timeout{30'000};

    // The most a response may take, head and body together; a bigger one fails with too_large.
    // The head alone is also held to 64 KiB.
    std::size_t max_response_bytes = 8 * 1024 * 1024;

    // Sent as User-Agent when not empty, unless the request brings its own.
    std::string user_agent;
};

// One header field. Response field names are lower-cased; request names are sent as given.
struct header {
    std::string name;
    std::string value;
};

struct request {
    // Sent as given; methods are case-sensitive (RFC 9110 section 9.1).
    std::string method = "GET";

    // http://host[:port]/path?query or https://...; IPv6 literals in brackets. A fragment is
    // dropped, as RFC 9110 section 7.1 says it is never sent.
    std::string url;

    // Added in order after Host and User-Agent. The client owns the message framing, so Host,
    // Content-Length, Transfer-Encoding and Connection may not appear here.
    std::vector<header> headers;

    // Sent with a Content-Length. Empty bodies of POST, PUT and PATCH send "Content-Length: 0"
    // (RFC 9110 section 8.6); other methods then send no body at all.
    std::string body;
};

struct response {
    int status = 0;

    // In the order received, with repeated names kept (Link may repeat, RFC 8288).
    std::vector<header> headers;

    // Decoded from chunked transfer coding when the server used it.
    std::string body;

    // The value of the first field named `name`, compared without regard to case.
    std::optional<std::string> header_value(std::string_view name) const;
};

// Why a send failed. Compare an error_code against these by value.
enum class failure_kind {
    // The URL is not http:// or https:// with a host, or holds characters that may not be sent.
    invalid_url = 1,

    // The method or a header cannot be sent: not a token, a value with CR, LF or NUL, a field
    // over 60 KiB, or a field the client sets itself (see request::headers).
    invalid_request,

    // The host name did not resolve.
    resolve,

    // No TCP connection could be made (refused, unreachable), or the connection was reset or
    // closed before the whole response had arrived.
    connect,

    // The TLS handshake failed, most often because the server's certificate did not verify
    // for the host; the message carries OpenSSL's reason.
    tls,

    // connect_timeout or request_timeout ran out. For a request that was sent, whether the
    // server acted on it is unknown.
    timeout,

    // The response is not valid HTTP/1.1.
    protocol,

    // The response head exceeds 64 KiB or the response exceeds max_response_bytes.
    too_large,

    // stream() was stopped through its stop flag before the response head had arrived.
    stopped,
};

// The category of failure_kind values; its name is "gatehouse.net".
const boost::system::error_category& net_category() noexcept;

inline boost::system::error_code make_error_code(failure_kind value) noexcept
{
    return {static_cast<int>(value), net_category()};
}

// A failed send: its kind, and a one-line message naming the step, the server as host:port and
// the cause, such as "tls handshake with 127.0.0.1:14000: certificate verify failed (unable to
// get local issuer certificate)". Messages never contain request or response bodies.
struct http_error {
    failure_kind kind = failure_kind::protocol;
    std::string message;
};

// Calling value() on a failed result throws boost::system::system_error carrying the kind and
// the message. Found by argument-dependent lookup from boost::system::result.
[[noreturn]] void throw_exception_from_error(const http_error& error,
                                             const boost::source_location& location);

template <class T>
using result = boost::system::result<T, http_error>;

// Receives a piece of a streamed response body: any number of bytes, at least one, decoded
// from chunked transfer coding; pieces do not follow the sender's chunks or lines. Returns
// false to end the stream.
using body_handler = std::function<bool(std::string_view piece)>;

// An HTTP/1.1 client with its own event loop, TLS context and keep-alive connections.
//
// It keeps at most one idle connection per origin (scheme, host, port) and reuses it for the
// next request there. A request that fails on a reused connection before any byte of the
// response has arrived is sent once more on a new connection: the server most likely closed
// the idle connection as the request went out (RFC 9112 section 9.3.1). That holds for POST
// too, which suits ACME, whose nonces make a replayed POST harmless (RFC 8555 section 6.5).
//
// Thread-safe: send() may be called from any number of threads; the calls run one at a time.
// stream() calls run apart from them and from each other, each on its own connection.
// Nothing is logged; failures are described by their http_error.
class http_client {
public:
    // Throws std::invalid_argument when a timeout is not positive, max_response_bytes is zero
    // or only one of the client certificate and key is given, and std::runtime_error, naming
    // the file, when extra_ca_file, the client certificate or its key cannot be loaded.
    explicit http_client(client_options options);

    // Closes the idle connections. Waits, at most as long as the system resolver's own
    // timeouts, for a name lookup that outlived its connect_timeout to return.
    ~http_client();

    http_client(const http_client&) = delete;
    http_client& operator=(const http_client&) = delete;

    // Sends `request` and waits for the whole response; any status, 4xx and 5xx included, is a
    // response and not an error. Redirects are not followed. Blocks for at most
    // connect_timeout + request_timeout, twice that when the request is retried (see above).
    result<response> send(const request& request);

    // Sends `request` on a connection of its own, never one kept for send() nor kept after, and
    // passes the body of a 2xx response to `on_body` as it arrives. Returns the status when
    // the stream ends: on_body returned false, the server ended the body, or `*stop` became
    // true (looked at every 100 ms, from any thread). Another status is returned as soon as its
    // head arrives, without calling on_body; interim 1xx responses are skipped.
    //
    // The connection must be made within connect_timeout, and the request written and the
    // head read each within request_timeout; after that, each wait for more of the body may
    // last idle_timeout. max_response_bytes limits the head only. Fails with timeout when one
    // of these runs out, with stopped when `*stop` became true before the head arrived, with
    // connect when the connection breaks mid-body, with invalid_request when idle_timeout is
    // not positive, and otherwise as send() does. Bytes handed to on_body before a failure
    // stay delivered. on_body runs on the calling thread.
    //
    // Thread-safe, and independent of send(): a stream may last for hours while other threads
    // send requests, as it shares nothing with them but the TLS context.
    result<int> stream(const request& request, const body_handler& on_body,
                       std::chrono::milliseconds idle_timeout,
                       const std::atomic<bool>* stop = nullptr);

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace gatehouse::net

template <>
struct boost::system::is_error_code_enum<gatehouse::net::failure_kind> : std::true_type {};
