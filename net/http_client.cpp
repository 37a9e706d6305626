// The blocking client of http_client.hpp. Each send() drives Beast's asynchronous operations on
// a private io_context one step at a time (resolve, connect, handshake, write, read) and runs
// the context until the step's handler has run. The asynchronous form is used only because it
// is the one that takes deadlines: every step carries one on the TCP stream, so no wait is
// without an end. stream() does the same on an io_context of its own, reading the body a piece
// at a time into a buffer_body so each piece reaches the caller as soon as it arrives.
#include "net/http_client.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <map>
#include <mutex>
#include <stdexcept>
#include <sys/socket.h>
#include <utility>
#include <variant>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/system/system_error.hpp>
#include <boost/throw_exception.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

namespace gatehouse::net {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using steady_clock = std::chrono::steady_clock;
using tls_stream = beast::ssl_stream<beast::tcp_stream>;
using outgoing_message = http::request<http::string_body>;
using response_parser = http::response_parser<http::string_body>;
using stream_parser = http::response_parser<http::buffer_body>;

// A stream's head is read into a fresh parser per response, as interim 1xx responses come first.
using stream_parser_slot = std::optional<stream_parser>;

// RFC 9112 leaves the size of a response head to the client. Servers send a few KiB; this is
// generous and still bounds what a broken or hostile server can make us hold.
constexpr std::size_t max_header_bytes = 64 * 1024;

// Beast keeps the length of a field's name and value in 16 bits and throws beyond that; no
// server takes a field anywhere near this long anyway.
constexpr std::size_t max_field_bytes = 60 * 1024;

// How often a stream looks at its stop flag while it waits; stream() promises 200 ms at most.
constexpr std::chrono::milliseconds stop_poll_interval{100};

// The most body bytes one on_body call of a stream receives.
constexpr std::size_t stream_piece_bytes = 16 * 1024;

class net_category_impl : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "gatehouse.net"; }

    std::string message(int value) const override
    {
        switch (static_cast<failure_kind>(value)) {
        case failure_kind::invalid_url:
            return "invalid url";
        case failure_kind::invalid_request:
            return "invalid request";
        case failure_kind::resolve:
            return "name resolution failed";
        case failure_kind::connect:
            return "connection failed";
        case failure_kind::tls:
            return "tls handshake failed";
        case failure_kind::timeout:
            return "timed out";
        case failure_kind::protocol:
            return "invalid http response";
        case failure_kind::too_large:
            return "response too large";
        case failure_kind::stopped:
            return "stopped";
        }
        return "unknown net error";
    }
};

char to_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string to_lower(std::string_view text)
{
    std::string lowered(text);
    std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                   [](char c) { return to_lower(c); });
    return lowered;
}

bool equals_ignoring_case(std::string_view a, std::string_view b)
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return to_lower(x) == to_lower(y);
           });
}

bool starts_with_ignoring_case(std::string_view text, std::string_view prefix)
{
    return text.size() >= prefix.size() &&
           equals_ignoring_case(text.substr(0, prefix.size()), prefix);
}

// Where a request goes, taken apart from its URL.
struct target_url {
    bool secure = false;

    // Lower-case; an IPv6 literal without its brackets.
    std::string host;
    bool host_is_ip = false;
    std::uint16_t port = 0;

    // The origin-form request target: path and query (RFC 9112 section 3.2.1).
    std::string target;
};

std::uint16_t default_port(bool secure)
{
    return secure ? 443 : 80;
}

// The host as it is written in a URL or Host field: IPv6 literals in brackets.
std::string host_text(const target_url& url)
{
    const bool is_ipv6 = url.host.find(':') != std::string::npos;
    return is_ipv6 ? "[" + url.host + "]" : url.host;
}

// "host:port", for error messages.
std::string authority_text(const target_url& url)
{
    return host_text(url) + ":" + std::to_string(url.port);
}

// The Host field (RFC 9110 section 7.2): the port only when it is not the scheme's default.
std::string host_field(const target_url& url)
{
    return url.port == default_port(url.secure) ? host_text(url) : authority_text(url);
}

// A connection may carry requests for one origin only: scheme, host and port (RFC 6454).
std::string origin_key(const target_url& url)
{
    return (url.secure ? "https://" : "http://") + authority_text(url);
}

http_error invalid_url(std::string_view url, std::string_view reason)
{
    return {failure_kind::invalid_url,
            "invalid url \"" + std::string(url) + "\": " + std::string(reason)};
}

// Letters, digits, '-', '.' and '_': DNS names. Percent-encoded and other RFC 3986 reg-names
// are not host names anything gatehouse talks to would have.
bool is_host_name(std::string_view host)
{
    return !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.' || c == '_';
    });
}

// Visible ASCII only: anything else would have to be percent-encoded (RFC 3986 section 2.1),
// and a space or control character in a request line splits or smuggles requests.
bool is_sendable_target(std::string_view target)
{
    return std::all_of(target.begin(), target.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// Reads "host[:port]" (RFC 3986 section 3.2) into `url`. Returns why it cannot, or nullopt.
std::optional<std::string_view> read_authority(std::string_view authority, target_url& url)
{
    // RFC 9110 section 4.2.4: credentials in http(s) URLs are deprecated and never sent.
    if (authority.find('@') != std::string_view::npos) {
        return "user information is not supported";
    }
    std::string_view host = authority;
    std::optional<std::string_view> port;
    error_code not_an_address;
    if (authority.starts_with('[')) {
        const auto close = authority.find(']');
        if (close == std::string_view::npos) {
            return "unterminated IPv6 literal";
        }
        host = authority.substr(1, close - 1);
        const auto after = authority.substr(close + 1);
        if (!after.empty() && after[0] != ':') {
            return "unexpected characters after the IPv6 literal";
        }
        if (!after.empty()) {
            port = after.substr(1);
        }
        asio::ip::make_address_v6(std::string(host), not_an_address);
        if (not_an_address) {
            return "invalid IPv6 literal";
        }
        url.host_is_ip = true;
    } else {
        const auto colon = authority.find(':');
        host = authority.substr(0, colon);
        if (colon != std::string_view::npos) {
            port = authority.substr(colon + 1);
        }
        if (host.empty()) {
            return "no host";
        }
        if (!is_host_name(host)) {
            return "invalid host name";
        }
        asio::ip::make_address_v4(std::string(host), not_an_address);
        url.host_is_ip = !not_an_address;
    }
    url.host = to_lower(host);
    url.port = default_port(url.secure);
    if (!port) {
        return std::nullopt;
    }

    unsigned value = 0;
    const auto [end, error] = std::from_chars(port->data(), port->data() + port->size(), value);
    if (port->empty() || error != std::errc() || end != port->data() + port->size() || value == 0 ||
        value > 65535) {
        return "invalid port";
    }
    url.port = static_cast<std::uint16_t>(value);
    return std::nullopt;
}

result<target_url> parse_url(std::string_view url)
{
    target_url parsed;
    std::string_view rest;
    if (starts_with_ignoring_case(url, "https://")) {
        parsed.secure = true;
        rest = url.substr(8);
    } else if (starts_with_ignoring_case(url, "http://")) {
        rest = url.substr(7);
    } else {
        return invalid_url(url, "the scheme must be http or https");
    }

    // The authority ends at the first '/', '?' or '#' (RFC 3986 section 3.2); the fragment is
    // the client's own and never sent (RFC 9110 section 7.1).
    const auto authority_end = rest.find_first_of("/?#");
    if (auto reason = read_authority(rest.substr(0, authority_end), parsed)) {
        return invalid_url(url, *reason);
    }
    std::string_view target;
    if (authority_end != std::string_view::npos) {
        target = rest.substr(authority_end);
    }
    target = target.substr(0, target.find('#'));
    if (!is_sendable_target(target)) {
        return invalid_url(url, "the path and query may hold only visible ASCII characters");
    }
    parsed.target = target.starts_with('/') ? std::string(target) : "/" + std::string(target);
    return parsed;
}

// A token, as methods and field names must be (RFC 9110 section 5.6.2).
bool is_token(std::string_view text)
{
    constexpr std::string_view punctuation = "!#$%&'*+-.^_`|~";
    return !text.empty() && std::all_of(text.begin(), text.end(), [&](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               punctuation.find(c) != std::string_view::npos;
    });
}

// RFC 9110 section 5.5: CR, LF and NUL are never allowed in a field value; a CR or LF would
// end the field and let the rest of the value pass as fields of its own.
bool is_field_value(std::string_view value)
{
    return value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

// Fields that frame the message or manage the connection, which only the client may set.
bool is_framing_field(std::string_view name)
{
    return equals_ignoring_case(name, "host") || equals_ignoring_case(name, "content-length") ||
           equals_ignoring_case(name, "transfer-encoding") ||
           equals_ignoring_case(name, "connection");
}

std::optional<http_error> check_request(const request& request)
{
    if (!is_token(request.method)) {
        return http_error{failure_kind::invalid_request,
                          "invalid request to " + request.url + ": the method is not a token"};
    }
    for (const auto& field : request.headers) {
        if (!is_token(field.name) || !is_field_value(field.value) ||
            field.name.size() + field.value.size() > max_field_bytes) {
            return http_error{failure_kind::invalid_request, "invalid request to " + request.url +
                                                                 ": header \"" + field.name +
                                                                 "\" cannot be sent"};
        }
        if (is_framing_field(field.name)) {
            return http_error{failure_kind::invalid_request, "invalid request to " + request.url +
                                                                 ": header \"" + field.name +
                                                                 "\" is set by the client itself"};
        }
    }
    return std::nullopt;
}

bool has_header(const std::vector<header>& headers, std::string_view name)
{
    return std::any_of(headers.begin(), headers.end(),
                       [&](const header& field) { return equals_ignoring_case(field.name, name); });
}

// RFC 9110 section 8.6: a POST, PUT or PATCH without content still says so with
// "Content-Length: 0"; other methods without content send no such field.
bool expects_content(std::string_view method)
{
    return method == "POST" || method == "PUT" || method == "PATCH";
}

outgoing_message build_message(const request& request, const target_url& url,
                               const std::string& user_agent)
{
    outgoing_message message;
    message.version(11);
    message.method_string(request.method);
    message.target(url.target);
    message.set(http::field::host, host_field(url));
    if (!user_agent.empty() && !has_header(request.headers, "user-agent")) {
        message.set(http::field::user_agent, user_agent);
    }
    for (const auto& field : request.headers) {
        message.insert(field.name, field.value);
    }
    if (!request.body.empty() || expects_content(request.method)) {
        message.body() = request.body;
        message.content_length(request.body.size());
    }
    return message;
}

response to_response(http::response<http::string_body>& message)
{
    response converted;
    converted.status = static_cast<int>(message.result_int());
    for (const auto& field : message) {
        converted.headers.push_back({to_lower(field.name_string()), std::string(field.value())});
    }
    converted.body = std::move(message.body());
    return converted;
}

// One connection to an origin, and the bytes read from it past the last response.
struct connection {
    explicit connection(beast::tcp_stream plain)
        : stream(std::in_place_type<beast::tcp_stream>, std::move(plain))
    {}
    connection(beast::tcp_stream plain, ssl::context& context)
        : stream(std::in_place_type<tls_stream>, std::move(plain), context)
    {}

    // The TCP layer, which holds the deadline for TLS records too.
    beast::tcp_stream& transport() noexcept
    {
        auto* secured = std::get_if<tls_stream>(&stream);
        return secured ? secured->next_layer() : std::get<beast::tcp_stream>(stream);
    }

    std::variant<beast::tcp_stream, tls_stream> stream;
    beast::flat_buffer buffer;
};

// An idle connection should have nothing to read: end of stream means the server closed it,
// and bytes (a TLS close_notify alert, stray data) mean it is out of step with us. Asking costs
// one system call and saves a failed request; send() retries when a close races this check.
bool looks_open(connection& idle)
{
    char byte;
    const auto fd = idle.transport().socket().native_handle();
    const ssize_t peeked = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return peeked < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

// How one asynchronous step ended.
struct step_outcome {
    bool done = false;
    error_code error;
    std::size_t bytes = 0;
};

// The completion handler of every step, one overload per completion signature used.
struct step_handler {
    step_outcome* outcome;

    void operator()(error_code error, std::size_t bytes = 0) const
    {
        *outcome = {true, error, bytes};
    }
    void operator()(error_code error, const tcp::endpoint&) const { (*this)(error); }
};

// What one request on one connection came to.
struct exchange_outcome {
    result<response> answer;

    // The connection may carry the next request.
    bool reusable = false;

    // It failed before any byte of a response arrived, and not by timing out: most likely the
    // server had closed the connection, so the request is worth sending again elsewhere.
    bool closed_before_response = false;
};

// The error for a failed step, naming the step and the server: a timeout as such, with the
// budget that ran out, anything else as `kind`.
http_error step_failure(failure_kind kind, std::string_view step, const target_url& url,
                        error_code error, std::string_view budget_name,
                        std::chrono::milliseconds budget)
{
    const std::string where = std::string(step) + " " + authority_text(url) + ": ";
    if (error == beast::error::timeout) {
        return {failure_kind::timeout, where + "timed out (" + std::string(budget_name) + " " +
                                           std::to_string(budget.count()) + " ms)"};
    }
    return {kind, where + error.message()};
}

bool is_http_category(const error_code& error)
{
    return error.category() == make_error_code(http::error::bad_version).category();
}

// How a failed read is reported: limits as too_large, a malformed response as protocol, and
// the connection closing or breaking as connect.
failure_kind read_failure_kind(const error_code& error)
{
    if (error == http::error::header_limit || error == http::error::body_limit ||
        error == http::error::buffer_overflow) {
        return failure_kind::too_large;
    }
    if (error == http::error::end_of_stream || error == http::error::partial_message ||
        !is_http_category(error)) {
        return failure_kind::connect;
    }
    return failure_kind::protocol;
}

// Why a TLS handshake failed. A rejected certificate shows only as "certificate verify failed"
// in the error code; the verification result says what was wrong with it.
std::string handshake_failure_reason(SSL* ssl, const error_code& error)
{
    const long verdict = SSL_get_verify_result(ssl);
    ERR_clear_error();
    if (verdict != X509_V_OK) {
        return std::string("certificate verify failed (") + X509_verify_cert_error_string(verdict) +
               ")";
    }
    return error.message();
}

// Verification always on, against the trust anchors the options name. Throws as the
// http_client constructor documents.
ssl::context make_tls_context(const client_options& options)
{
    ssl::context context(ssl::context::tls_client);
    // TLS 1.0 and 1.1 are deprecated (RFC 8996).
    SSL_CTX_set_min_proto_version(context.native_handle(), TLS1_2_VERSION);
    context.set_verify_mode(ssl::verify_peer);

    error_code error;
    if (options.system_trust) {
        context.set_default_verify_paths(error);
        if (error) {
            throw std::runtime_error("cannot use the system trust store: " + error.message());
        }
    }
    if (!options.extra_ca_file.empty()) {
        context.load_verify_file(options.extra_ca_file, error);
        if (error) {
            ERR_clear_error();
            throw std::runtime_error("cannot load CA bundle " + options.extra_ca_file + ": " +
                                     error.message());
        }
    }
    if (options.client_certificate_file.empty()) {
        return context;
    }

    context.use_certificate_chain_file(options.client_certificate_file, error);
    if (error) {
        ERR_clear_error();
        throw std::runtime_error("cannot load client certificate " +
                                 options.client_certificate_file + ": " + error.message());
    }
    context.use_private_key_file(options.client_key_file, ssl::context::pem, error);
    if (error || SSL_CTX_check_private_key(context.native_handle()) != 1) {
        ERR_clear_error();
        throw std::runtime_error("cannot use client key " + options.client_key_file +
                                 ": it does not load or does not match " +
                                 options.client_certificate_file);
    }
    return context;
}

// `options` once they have been checked; throws as the http_client constructor documents.
client_options checked(client_options options)
{
    if (options.connect_timeout.count() <= 0 || options.request_timeout.count() <= 0) {
        throw std::invalid_argument("http client timeouts must be positive");
    }
    if (options.max_response_bytes == 0) {
        throw std::invalid_argument("http client max_response_bytes must not be zero");
    }
    if (options.client_certificate_file.empty() != options.client_key_file.empty()) {
        throw std::invalid_argument(
            "http client needs both a client certificate and its key, or neither");
    }
    return options;
}

// Drives one io_context a step at a time: each step starts one asynchronous operation and runs
// the context until its handler has run. send() uses the client's own context under its mutex;
// each stream() has a private one, so a long stream never holds up send().
class step_driver {
public:
    // When `stop` is given, the driver looks at it at least every stop_poll_interval and, once
    // it is true, stops running the context: the step in progress ends as operation_aborted
    // and its handler is abandoned. Only a private io_context, discarded afterwards, may be
    // driven with a stop flag, because the abandoned handler points at the step's locals.
    step_driver(asio::io_context& io, const client_options& options, ssl::context& tls,
                const std::atomic<bool>* stop = nullptr)
        : io_(io), options_(options), tls_(tls), stop_(stop)
    {}

    bool stop_requested() const { return stop_ != nullptr && stop_->load(); }

    template <class Start>
    step_outcome run_step(Start&& start);

    result<std::unique_ptr<connection>> open(const target_url& url);

private:
    void run_until(const bool& done);
    result<std::vector<tcp::endpoint>> resolve(const target_url& url,
                                               steady_clock::time_point deadline);
    std::optional<http_error> handshake(tls_stream& stream, const target_url& url,
                                        steady_clock::time_point deadline);

    asio::io_context& io_;
    const client_options& options_;
    ssl::context& tls_;
    const std::atomic<bool>* stop_;
};

// Runs the io_context until `done` is set by a handler, or a stop is requested. Handlers left
// over from earlier steps (cancelled timers, a lookup that outlived its deadline) may run here
// too; each owns the state it touches.
void step_driver::run_until(const bool& done)
{
    io_.restart();
    if (stop_ == nullptr) {
        while (!done && io_.run_one() != 0) {
        }
        return;
    }
    while (!done && !stop_->load()) {
        if (io_.run_one_for(stop_poll_interval) == 0 && io_.stopped()) {
            return;
        }
    }
}

// Starts one asynchronous operation with a step_handler and waits for it. The handler points at
// a local, which is safe because the operation always completes before this returns: the
// stream's deadline ends it at the latest (or, with a stop flag, the context is discarded).
template <class Start>
step_outcome step_driver::run_step(Start&& start)
{
    step_outcome outcome;
    start(step_handler{&outcome});
    run_until(outcome.done);
    if (!outcome.done) {
        // Stopped, or the context ran out of work without the handler: not something Asio
        // does, but a failure here beats waiting forever.
        outcome = {true, asio::error::operation_aborted, 0};
    }
    return outcome;
}

result<std::vector<tcp::endpoint>> step_driver::resolve(const target_url& url,
                                                        steady_clock::time_point deadline)
{
    if (url.host_is_ip) {
        return std::vector{tcp::endpoint(asio::ip::make_address(url.host), url.port)};
    }

    // The resolver has no deadline, and cancelling it cannot interrupt a getaddrinfo() already
    // running. So the wait ends at the deadline regardless, and the lookup's handler shares
    // ownership of what it writes, since it may only run during a later step.
    struct lookup {
        bool done = false;
        error_code error;
        tcp::resolver::results_type endpoints;
    };
    auto state = std::make_shared<lookup>();
    auto resolver = std::make_shared<tcp::resolver>(io_);
    asio::steady_timer timer(io_, deadline);
    timer.async_wait([state, resolver](error_code error) {
        if (!error && !state->done) {
            *state = {true, beast::error::timeout, {}};
            resolver->cancel();
        }
    });
    resolver->async_resolve(url.host, std::to_string(url.port), tcp::resolver::numeric_service,
                            [state](error_code error, tcp::resolver::results_type endpoints) {
                                if (!state->done) {
                                    *state = {true, error, std::move(endpoints)};
                                }
                            });
    run_until(state->done);
    timer.cancel();
    if (!state->done) {
        state->error = asio::error::operation_aborted;
    }

    if (state->error) {
        return step_failure(failure_kind::resolve, "resolve", url, state->error, "connect_timeout",
                            options_.connect_timeout);
    }
    std::vector<tcp::endpoint> endpoints;
    for (const auto& entry : state->endpoints) {
        endpoints.push_back(entry.endpoint());
    }
    if (endpoints.empty()) {
        return http_error{failure_kind::resolve,
                          "resolve " + authority_text(url) + ": no addresses"};
    }
    return endpoints;
}

result<std::unique_ptr<connection>> step_driver::open(const target_url& url)
{
    const auto deadline = steady_clock::now() + options_.connect_timeout;
    auto endpoints = resolve(url, deadline);
    if (!endpoints) {
        return endpoints.error();
    }

    // Tries each address in turn, as a name may resolve to one the host does not listen on.
    beast::tcp_stream stream(io_);
    stream.expires_at(deadline);
    const auto connected =
        run_step([&](step_handler handler) { stream.async_connect(*endpoints, handler); });
    if (connected.error) {
        return step_failure(failure_kind::connect, "connect to", url, connected.error,
                            "connect_timeout", options_.connect_timeout);
    }
    if (!url.secure) {
        return std::make_unique<connection>(std::move(stream));
    }

    auto secured = std::make_unique<connection>(std::move(stream), tls_);
    if (auto failed = handshake(std::get<tls_stream>(secured->stream), url, deadline)) {
        return *failed;
    }
    return secured;
}

std::optional<http_error> step_driver::handshake(tls_stream& stream, const target_url& url,
                                                 steady_clock::time_point deadline)
{
    SSL* ssl = stream.native_handle();
    const std::string where = "tls handshake with " + authority_text(url) + ": ";

    // SNI names hosts, never IP literals (RFC 6066 section 3).
    if (!url.host_is_ip && SSL_set_tlsext_host_name(ssl, url.host.c_str()) != 1) {
        ERR_clear_error();
        return http_error{failure_kind::tls, where + "cannot set the server name"};
    }

    // OpenSSL verifies the chain but not whom it was issued to unless told which identity to
    // expect (RFC 9110 section 4.3.4, RFC 6125).
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    const int expected =
        url.host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, url.host.c_str())
                       : X509_VERIFY_PARAM_set1_host(param, url.host.c_str(), url.host.size());
    if (expected != 1) {
        ERR_clear_error();
        return http_error{failure_kind::tls, where + "cannot set the expected peer name"};
    }

    stream.next_layer().expires_at(deadline);
    const auto shaken = run_step(
        [&](step_handler handler) { stream.async_handshake(ssl::stream_base::client, handler); });
    if (!shaken.error) {
        return std::nullopt;
    }
    if (shaken.error == beast::error::timeout) {
        return step_failure(failure_kind::tls, "tls handshake with", url, shaken.error,
                            "connect_timeout", options_.connect_timeout);
    }
    return http_error{failure_kind::tls, where + handshake_failure_reason(ssl, shaken.error)};
}

// `failure`, unless it came from the stop flag: then the stream was stopped, not broken.
http_error stopped_or(const step_driver& driver, const target_url& url, http_error failure)
{
    if (driver.stop_requested()) {
        return {failure_kind::stopped,
                "stream from " + authority_text(url) + ": stopped before the response arrived"};
    }
    return failure;
}

} // namespace

std::optional<std::string> response::header_value(std::string_view name) const
{
    for (const auto& field : headers) {
        if (equals_ignoring_case(field.name, name)) {
            return field.value;
        }
    }
    return std::nullopt;
}

const boost::system::error_category& net_category() noexcept
{
    static const net_category_impl category;
    return category;
}

void throw_exception_from_error(const http_error& error, const boost::source_location& location)
{
    boost::throw_exception(boost::system::system_error(make_error_code(error.kind), error.message),
                           location);
}

struct http_client::impl {
    explicit impl(client_options options)
        : options_(checked(std::move(options))), tls_(make_tls_context(options_))
    {}

    result<response> send(const request& request);

    result<int> stream(const request& request, const body_handler& on_body,
                       std::chrono::milliseconds idle_timeout, const std::atomic<bool>* stop);

private:
    exchange_outcome exchange(connection& used, const outgoing_message& message,
                              const target_url& url, bool is_head);
    step_outcome read_response(connection& used, response_parser& parser, bool is_head,
                               steady_clock::time_point deadline);
    std::unique_ptr<connection> take_idle(const std::string& origin);
    result<response> finish(std::unique_ptr<connection> used, exchange_outcome outcome,
                            const std::string& origin);
    result<int> read_stream_head(step_driver& driver, connection& used, stream_parser_slot& parser,
                                 const target_url& url);
    result<int> read_stream_body(step_driver& driver, connection& used, stream_parser& parser,
                                 const target_url& url, int status, const body_handler& on_body,
                                 std::chrono::milliseconds idle_timeout);

    const client_options options_;

    // Serializes send(): the io_context and the idle connections belong to one call at a time.
    // stream() takes neither; it shares only the TLS context, which OpenSSL lets many threads
    // make connections from at once.
    // TODO: a connection per concurrent call, so one request hung on a silent server does not
    // hold every other thread's request (an etcd store's heartbeat and writes) for its deadline.
    std::mutex mutex_;
    asio::io_context io_;
    ssl::context tls_;
    step_driver driver_{io_, options_, tls_};

    // At most one per origin_key. Declared after io_ so that it is destroyed first.
    std::map<std::string, std::unique_ptr<connection>> idle_;
};

// Reads the head, then the body under what is left of max_response_bytes.
step_outcome http_client::impl::read_response(connection& used, response_parser& parser,
                                              bool is_head, steady_clock::time_point deadline)
{
    parser.header_limit(
        static_cast<std::uint32_t>(std::min(max_header_bytes, options_.max_response_bytes)));
    parser.body_limit(options_.max_response_bytes);
    // A response to HEAD has framing fields but no content (RFC 9110 section 9.3.2).
    parser.skip(is_head);

    used.transport().expires_at(deadline);
    const auto head = driver_.run_step([&](step_handler handler) {
        std::visit(
            [&](auto& stream) { http::async_read_header(stream, used.buffer, parser, handler); },
            used.stream);
    });
    if (head.error) {
        return head;
    }
    parser.body_limit(options_.max_response_bytes - head.bytes);
    used.transport().expires_at(deadline);
    return driver_.run_step([&](step_handler handler) {
        std::visit([&](auto& stream) { http::async_read(stream, used.buffer, parser, handler); },
                   used.stream);
    });
}

exchange_outcome http_client::impl::exchange(connection& used, const outgoing_message& message,
                                             const target_url& url, bool is_head)
{
    const auto deadline = steady_clock::now() + options_.request_timeout;
    used.transport().expires_at(deadline);
    const auto written = driver_.run_step([&](step_handler handler) {
        std::visit([&](auto& stream) { http::async_write(stream, message, handler); }, used.stream);
    });
    if (written.error) {
        return {step_failure(failure_kind::connect, "send request to", url, written.error,
                             "request_timeout", options_.request_timeout),
                false, written.error != beast::error::timeout};
    }

    // Interim 1xx responses come before the final one and are skipped (RFC 9110 section 15.2).
    std::optional<response_parser> parser;
    bool interim_seen = false;
    do {
        interim_seen = interim_seen || parser.has_value();
        parser.emplace();
        const auto read = read_response(used, *parser, is_head, deadline);
        if (read.error) {
            const bool closed_before_response =
                !interim_seen && !parser->got_some() && read.error != beast::error::timeout;
            return {step_failure(read_failure_kind(read.error), "read response from", url,
                                 read.error, "request_timeout", options_.request_timeout),
                    false, closed_before_response};
        }
    } while (parser->get().result_int() / 100 == 1);

    // keep_alive() follows "Connection: close" and HTTP/1.0 (RFC 9112 section 9.3), and is false
    // for a body that ended with the connection.
    const bool reusable = parser->keep_alive() && used.buffer.size() == 0;
    return {to_response(parser->get()), reusable, false};
}

// Reads heads until the final one, skipping interim 1xx responses (RFC 9110 section 15.2).
result<int> http_client::impl::read_stream_head(step_driver& driver, connection& used,
                                                stream_parser_slot& parser, const target_url& url)
{
    const auto deadline = steady_clock::now() + options_.request_timeout;
    do {
        parser.emplace();
        parser->header_limit(
            static_cast<std::uint32_t>(std::min(max_header_bytes, options_.max_response_bytes)));
        // The caller decides how much of a stream it wants; on_body can end it at any time.
        parser->body_limit(boost::none);
        used.transport().expires_at(deadline);
        const auto head = driver.run_step([&](step_handler handler) {
            std::visit(
                [&](auto& stream) {
                    http::async_read_header(stream, used.buffer, *parser, handler);
                },
                used.stream);
        });
        if (head.error) {
            return stopped_or(driver, url,
                              step_failure(read_failure_kind(head.error), "read response from", url,
                                           head.error, "request_timeout",
                                           options_.request_timeout));
        }
    } while (parser->get().result_int() / 100 == 1);
    return static_cast<int>(parser->get().result_int());
}

// Hands the body to on_body a read at a time. Each read may wait idle_timeout for its first
// byte; a read that fills the piece buffer ends with need_buffer, which only means "call again".
result<int> http_client::impl::read_stream_body(step_driver& driver, connection& used,
                                                stream_parser& parser, const target_url& url,
                                                int status, const body_handler& on_body,
                                                std::chrono::milliseconds idle_timeout)
{
    std::array<char, stream_piece_bytes> piece;
    while (!parser.is_done()) {
        auto& body = parser.get().body();
        body.data = piece.data();
        body.size = piece.size();
        used.transport().expires_after(idle_timeout);
        const auto read = driver.run_step([&](step_handler handler) {
            std::visit(
                [&](auto& stream) { http::async_read_some(stream, used.buffer, parser, handler); },
                used.stream);
        });
        if (driver.stop_requested()) {
            return status;
        }
        const std::size_t got = piece.size() - body.size;
        if (got > 0 && !on_body(std::string_view(piece.data(), got))) {
            return status;
        }
        if (read.error && read.error != http::error::need_buffer) {
            return step_failure(read_failure_kind(read.error), "read response from", url,
                                read.error, "idle_timeout", idle_timeout);
        }
    }
    return status;
}

result<int> http_client::impl::stream(const request& request, const body_handler& on_body,
                                      std::chrono::milliseconds idle_timeout,
                                      const std::atomic<bool>* stop)
{
    auto url = parse_url(request.url);
    if (!url) {
        return url.error();
    }
    if (auto refused = check_request(request)) {
        return *refused;
    }
    if (idle_timeout.count() <= 0) {
        return http_error{failure_kind::invalid_request,
                          "invalid request to " + request.url + ": idle_timeout must be positive"};
    }
    const auto message = build_message(request, *url, options_.user_agent);

    // Declared first, so that the connection and any abandoned handler go before the context.
    asio::io_context io;
    step_driver driver(io, options_, tls_, stop);
    auto opened = driver.open(*url);
    if (!opened) {
        return stopped_or(driver, *url, opened.error());
    }
    connection& used = **opened;

    used.transport().expires_after(options_.request_timeout);
    const auto written = driver.run_step([&](step_handler handler) {
        std::visit([&](auto& stream) { http::async_write(stream, message, handler); }, used.stream);
    });
    if (written.error) {
        return stopped_or(driver, *url,
                          step_failure(failure_kind::connect, "send request to", *url,
                                       written.error, "request_timeout", options_.request_timeout));
    }

    stream_parser_slot parser;
    const auto status = read_stream_head(driver, used, parser, *url);
    if (!status || *status / 100 != 2) {
        return status;
    }
    return read_stream_body(driver, used, *parser, *url, *status, on_body, idle_timeout);
}

std::unique_ptr<connection> http_client::impl::take_idle(const std::string& origin)
{
    const auto found = idle_.find(origin);
    if (found == idle_.end()) {
        return nullptr;
    }
    auto idle = std::move(found->second);
    idle_.erase(found);
    return looks_open(*idle) ? std::move(idle) : nullptr;
}

result<response> http_client::impl::finish(std::unique_ptr<connection> used,
                                           exchange_outcome outcome, const std::string& origin)
{
    if (outcome.reusable) {
        used->transport().expires_never();
        idle_[origin] = std::move(used);
    }
    return std::move(outcome.answer);
}

result<response> http_client::impl::send(const request& request)
{
    auto url = parse_url(request.url);
    if (!url) {
        return url.error();
    }
    if (auto refused = check_request(request)) {
        return *refused;
    }
    const auto message = build_message(request, *url, options_.user_agent);
    const bool is_head = request.method == "HEAD";
    const auto origin = origin_key(*url);

    std::lock_guard lock(mutex_);
    if (auto idle = take_idle(origin)) {
        auto outcome = exchange(*idle, message, *url, is_head);
        if (outcome.answer || !outcome.closed_before_response) {
            return finish(std::move(idle), std::move(outcome), origin);
        }
        // The server closed the idle connection as the request went out; once more on a new
        // connection (RFC 9112 section 9.3.1).
    }
    auto fresh = driver_.open(*url);
    if (!fresh) {
        return fresh.error();
    }
    auto outcome = exchange(**fresh, message, *url, is_head);
    return finish(std::move(*fresh), std::move(outcome), origin);
}

http_client::http_client(client_options options) : impl_(std::make_unique<impl>(std::move(options)))
{}

http_client::~http_client() = default;

result<response> http_client::send(const request& request)
{
    return impl_->send(request);
}

result<int> http_client::stream(const request& request, const body_handler& on_body,
                                std::chrono::milliseconds idle_timeout,
                                const std::atomic<bool>* stop)
{
    return impl_->stream(request, on_body, idle_timeout, stop);
}

} // namespace gatehouse::net
