#include "proxy/http_session.hpp"

#include "proxy/ascii.hpp"
#include "proxy/coarse_clock.hpp"
#include "proxy/forwarding_rules.hpp"
#include "proxy/head_arena.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"
#include "proxy/response_head.hpp"
#include "proxy/route_table.hpp"
#include "proxy/tls_table.hpp"
#include "proxy/tunnel.hpp"
#include "proxy/upstream_pool.hpp"
#include "proxy/worker.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <optional>
#include <span>

#include <boost/asio/post.hpp>
#include <boost/beast/http.hpp>
#include <boost/container/small_vector.hpp>

namespace gatehouse::proxy {

namespace http = beast::http;
using namespace std::string_view_literals;

namespace {

// Chunked bodies are decoded by Beast's parser, which reads the head again first and keeps
// its fields in the exchange's arena (see head_arena.hpp). Heads, and bodies framed by a
// length or by the end of the connection, are read by gatehouse itself.
using head_allocator = arena_allocator<char>;
template <bool IsRequest>
using chunked_parser = http::parser<IsRequest, http::buffer_body, head_allocator>;

// How a message's body ends (RFC 9112 section 6.3).
enum class body_framing {
    none,
    length,      // after Content-Length bytes
    until_close, // when the upstream closes the connection; responses only
    chunked,
};

// A message body as it is relayed: its framing and what is left of it.
template <bool IsRequest>
struct message_body {
    body_framing framing = body_framing::none;
    // With `length`: bytes still to come.
    std::uint64_t remaining = 0;
    // With `length` and `until_close`: whether the last byte has come.
    bool finished = true;
    // With `chunked`.
    std::optional<chunked_parser<IsRequest>> decoder;

    bool done() const { return framing == body_framing::chunked ? decoder->is_done() : finished; }
};

// Readies `body` for a message whose head is `head_text`. A chunked body's decoder parses
// the head first, which our own parse has already accepted; its error, if any, is returned.
template <bool IsRequest>
error_code start_body(message_body<IsRequest>& body, body_framing framing, std::uint64_t length,
                      std::string_view head_text, head_arena& arena,
                      std::optional<std::uint64_t> body_limit)
{
    body.framing = framing;
    body.remaining = framing == body_framing::length ? length : 0;
    body.finished = framing == body_framing::none;
    body.decoder.reset();
    if (framing != body_framing::chunked) {
        return {};
    }
    body.decoder.emplace(std::piecewise_construct, std::make_tuple(),
                         std::make_tuple(head_allocator(arena)));
    body.decoder->header_limit(static_cast<std::uint32_t>(head_text.size() + 1));
    if (body_limit) {
        body.decoder->body_limit(*body_limit);
    } else {
        body.decoder->body_limit(boost::none);
    }
    error_code ec;
    body.decoder->put(asio::const_buffer(head_text.data(), head_text.size()), ec);
    if (!ec && !body.decoder->is_header_done()) {
        ec = http::error::partial_message;
    }
    return ec;
}

// HTTP-01 challenges (RFC 8555 section 8.3) must reach us over plain HTTP, never redirected.
constexpr std::string_view acme_challenge_prefix = "/.well-known/acme-challenge/";

// Interim responses and upstream response heads larger than this are refused as a 502.
constexpr std::size_t max_upstream_header_bytes = 64 * 1024;

// How long a closing TLS connection may take to write its close_notify.
constexpr std::chrono::milliseconds tls_shutdown_timeout{500};

// Room for a head at the header limit plus one read of body bytes behind it.
constexpr std::size_t client_read_bytes = 16 * 1024;

std::string_view path_of(std::string_view target)
{
    return target.substr(0, target.find('?'));
}

bool is_bodiless_status(unsigned status)
{
    return (status >= 100 && status < 200) || status == 204 || status == 304;
}

void append_field(std::string& head, std::string_view name, std::string_view value)
{
    head.append(name);
    head.append(": "sv);
    head.append(value);
    head.append("\r\n"sv);
}

// Appends the end-to-end fields of a message to an outgoing head: everything but hop-by-hop
// fields, the fields its Connection header names (RFC 9110 section 7.6.1), and the fields in
// `replaced`, which the caller writes itself.
void append_end_to_end_fields(const header_fields& from, std::string& head,
                              std::initializer_list<std::string_view> replaced)
{
    // The values of the message's Connection headers, on the stack for any sane message.
    boost::container::small_vector<std::string_view, 4> connection_values;
    for (const auto& f : from) {
        if (iequals(f.name, "connection")) {
            connection_values.push_back(f.value);
        }
    }
    for (const auto& f : from) {
        const auto name = f.name;
        const bool is_replaced =
            std::any_of(replaced.begin(), replaced.end(), [name](std::string_view replaced_name) {
                return !replaced_name.empty() && iequals(replaced_name, name);
            });
        const bool is_named =
            std::any_of(connection_values.begin(), connection_values.end(),
                        [name](std::string_view value) { return connection_lists(value, name); });
        if (is_replaced || is_hop_by_hop(name) || is_named) {
            continue;
        }
        append_field(head, name, f.value);
    }
}

std::string simple_response(unsigned status, std::string_view body, bool keep_alive,
                            bool head_request)
{
    std::string out = "HTTP/1.1 " + std::to_string(status) + ' ' +
                      std::string(http::obsolete_reason(static_cast<http::status>(status))) +
                      "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\n";
    if (status == 405) {
        out += "Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n";
    }
    out += keep_alive ? "\r\n" : "Connection: close\r\n\r\n";
    if (!head_request) {
        out += body;
    }
    return out;
}

bool expects_continue(const header_fields& fields)
{
    const auto* expect = find_field(fields, "expect");
    return expect != nullptr && iequals(expect->value, "100-continue");
}

bool is_timeout(error_code ec)
{
    return ec == beast::error::timeout || ec == asio::error::timed_out;
}

// Sends what `out` takes at once without waiting (see timed_socket::write_some_now) and
// returns the pieces, or the ends of them, still to be sent with write_all: none, usually.
template <typename Stream>
std::span<asio::const_buffer> write_now(Stream& out, std::span<asio::const_buffer> pieces)
{
    std::size_t sent = out.write_some_now(pieces);
    while (!pieces.empty() && sent >= pieces.front().size()) {
        sent -= pieces.front().size();
        pieces = pieces.subspan(1);
    }
    if (!pieces.empty()) {
        pieces.front() += sent;
    }
    return pieces;
}

// Bodies move through one buffer of this size per direction, whatever their length.
constexpr std::size_t relay_chunk_bytes = relay_buffers::buffer_bytes;

struct relay_outcome {
    error_code read_error;
    error_code write_error;
    std::uint64_t body_bytes = 0;
};

// The line that opens a chunk of `size` bytes (RFC 9112 section 7.1): hex size, CRLF.
std::string_view chunk_size_line(std::size_t size, std::array<char, 24>& storage)
{
    const int length = std::snprintf(storage.data(), storage.size(), "%zx\r\n", size);
    return {storage.data(), static_cast<std::size_t>(length)};
}

// Parses body bytes already read into `buffer`, as http::async_read_some would first do, but
// without an asynchronous operation: with the data at hand, Beast's read completes through a
// post to the executor, one more trip through the scheduler for most responses, whose body
// arrives with their head. Returns nothing when a read is needed (no bytes, or too few to
// make progress), else the parse's outcome.
template <typename Parser>
std::optional<error_code> parse_buffered(Parser& parser, beast::flat_buffer& buffer)
{
    if (buffer.size() == 0) {
        return std::nullopt;
    }
    error_code ec;
    const auto used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    if (ec == http::error::need_more) {
        // The bytes end inside a chunk line, say: a read comes next, unless some of them
        // made progress that the caller should act on first.
        return used > 0 ? std::optional<error_code>(error_code{}) : std::nullopt;
    }
    return ec;
}

// Bytes asked of the kernel per read of a message from a client or an upstream.
constexpr std::size_t message_read_bytes = 16 * 1024;

// Lets the worker's other ready work run before this coroutine goes on. Asio tries every read
// at once, before waiting for the socket; right after we have written a request or response,
// its answer is almost never there yet, and that try is a system call that fails with EAGAIN.
// A read started after the worker has done its other queued work usually finds the answer.
// `co_await asio::post(executor, after_ready_work)` does that, with no coroutine frame of its own.
constexpr asio::use_awaitable_t<executor> after_ready_work{};

// Finishes a read of `n` more bytes of a message into `buffer`, as Beast's http::async_read_some
// would, whose composed operations around the one read that matters cost more than the read.
// The outcome when the stream ends is Beast's too: a body that runs until the close is
// complete, any other message cut short is an error, and a stream that ends before a message
// starts is end_of_stream. (The buffers have no size limit; prepare() is what bounds them.)
template <typename Parser>
error_code finish_read(Parser& parser, beast::flat_buffer& buffer, error_code ec, std::size_t n)
{
    if (ec == asio::error::eof) {
        if (!parser.got_some()) {
            return http::error::end_of_stream;
        }
        error_code end;
        parser.put_eof(end);
        return end;
    }
    buffer.commit(n);
    return ec;
}

// Streams one message's body from `in` to `out`, after `head`, the head to send, complete with
// its blank line. The body passes through a fixed buffer, so memory stays flat for any body
// size; it goes out `chunked` (RFC 9112 section 7.1), or as it came (Content-Length, or until
// the connection closes). The head and the first piece of body leave in one write: one
// contiguous head, not one buffer per name, separator and value. `last_message` says `out`
// closes after this message, so its final write is the connection's last (see write_all).
template <bool IsRequest, typename InStream, typename OutStream>
asio::awaitable<relay_outcome, executor>
relay_message(InStream& in, beast::flat_buffer& in_buffer, message_body<IsRequest>& body,
              OutStream& out, const std::string& head, bool chunked, relay_buffers& buffers,
              std::chrono::milliseconds read_timeout, std::chrono::milliseconds write_timeout,
              bool last_message = false)
{
    static constexpr std::string_view crlf = "\r\n";
    static constexpr std::string_view last_chunk = "0\r\n\r\n";
    static constexpr std::string_view crlf_last_chunk = "\r\n0\r\n\r\n";

    bool head_sent = false;
    std::optional<relay_buffers::lease> chunk;
    relay_outcome outcome;

    for (;;) {
        // This round's body bytes: decoded into `chunk`, or, when the body is not chunked,
        // the front of `in_buffer`, sent from there and consumed once written.
        asio::const_buffer data;
        std::size_t relayed_from_buffer = 0;
        if (!body.done() && body.framing == body_framing::chunked) {
            auto& parser = *body.decoder;
            if (!chunk) {
                chunk.emplace(buffers);
            }
            parser.get().body().data = chunk->data();
            parser.get().body().size = relay_chunk_bytes;
            auto parsed = parse_buffered(parser, in_buffer);
            if (!parsed) {
                in.expires_after(read_timeout);
                auto [ec, n] =
                    co_await in.async_read_some(in_buffer.prepare(message_read_bytes), use_nothrow);
                const error_code read_error = finish_read(parser, in_buffer, ec, n);
                if (read_error || parser.is_done()) {
                    parsed = read_error;
                } else if (parsed = parse_buffered(parser, in_buffer); !parsed) {
                    // Too few bytes to parse, the middle of a chunk-size line say.
                    continue;
                }
            }
            // need_buffer: the chunk is full, which is what the code below sends on.
            if (*parsed && *parsed != http::error::need_buffer) {
                outcome.read_error = *parsed;
                co_return outcome;
            }
            data = asio::buffer(chunk->data(), relay_chunk_bytes - parser.get().body().size);
        } else if (!body.done()) {
            if (in_buffer.size() == 0) {
                in.expires_after(read_timeout);
                auto [ec, n] =
                    co_await in.async_read_some(in_buffer.prepare(message_read_bytes), use_nothrow);
                if (ec == asio::error::eof && body.framing == body_framing::until_close) {
                    body.finished = true;
                } else if (ec) {
                    // A body cut short by the end of the stream is an error like any other.
                    outcome.read_error =
                        ec == asio::error::eof ? error_code(http::error::partial_message) : ec;
                    co_return outcome;
                } else {
                    in_buffer.commit(n);
                }
            }
            relayed_from_buffer = in_buffer.size();
            if (body.framing == body_framing::length) {
                relayed_from_buffer = static_cast<std::size_t>(
                    std::min<std::uint64_t>(relayed_from_buffer, body.remaining));
                body.remaining -= relayed_from_buffer;
                body.finished = body.remaining == 0;
            }
            data = asio::const_buffer(in_buffer.data().data(), relayed_from_buffer);
        }
        const std::size_t filled = data.size();
        outcome.body_bytes += filled;
        const bool done = body.done();
        if (filled == 0 && !done && head_sent) {
            continue;
        }

        // At most: head, chunk size line, data, and the chunk's CRLF with the last chunk.
        std::array<asio::const_buffer, 4> pieces;
        std::size_t count = 0;
        std::array<char, 24> size_line;
        if (!head_sent) {
            pieces[count++] = asio::buffer(head);
        }
        if (filled > 0) {
            if (chunked) {
                pieces[count++] = asio::buffer(chunk_size_line(filled, size_line));
            }
            pieces[count++] = data;
        }
        if (chunked) {
            if (filled > 0) {
                pieces[count++] = asio::buffer(done ? crlf_last_chunk : crlf);
            } else if (done) {
                pieces[count++] = asio::buffer(last_chunk);
            }
        }

        auto unsent = write_now(out, std::span<asio::const_buffer>(pieces.data(), count));
        if (!unsent.empty()) {
            out.expires_after(write_timeout);
            auto [ec, n] = co_await write_all(out, unsent, done && last_message);
            if (ec) {
                outcome.write_error = ec;
                co_return outcome;
            }
        }
        in_buffer.consume(relayed_from_buffer);
        head_sent = true;
        if (done) {
            co_return outcome;
        }
    }
}

// Reads the upstream's response head, skipping interim 1xx responses other than 101. The
// head's text goes to `text`, which `head` then views; `buffer` keeps what followed it.
task<error_code> read_response_head(timed_socket& upstream, beast::flat_buffer& buffer,
                                    std::string& text, std::optional<response_head>& head,
                                    std::chrono::milliseconds timeout)
{
    for (;;) {
        upstream.expires_after(timeout);
        std::size_t scanned = 0;
        head_end end;
        for (;;) {
            const auto bytes = buffer.data();
            end = find_head_end({static_cast<const char*>(bytes.data()), bytes.size()}, scanned);
            if (end.status == head_end::state::complete) {
                break;
            }
            if (end.status == head_end::state::malformed) {
                co_return http::error::bad_line_ending;
            }
            if (bytes.size() > max_upstream_header_bytes) {
                co_return http::error::header_limit;
            }
            if (bytes.size() == 0) {
                co_await asio::post(upstream.get_executor(), after_ready_work);
            }
            auto [ec, n] =
                co_await upstream.async_read_some(buffer.prepare(message_read_bytes), use_nothrow);
            if (ec) {
                co_return ec == asio::error::eof&& buffer.size() > 0
                    ? error_code(http::error::partial_message)
                    : ec;
            }
            buffer.commit(n);
        }
        if (end.length > max_upstream_header_bytes) {
            co_return http::error::header_limit;
        }

        text.assign(static_cast<const char*>(buffer.data().data()), end.length);
        buffer.consume(end.length);
        auto checked = parse_response_head(text);
        if (!checked.head) {
            static const auto logger = log::get("proxy");
            log::write(*logger, spdlog::level::warn, "malformed upstream response head",
                       {{"error", checked.reason}});
            co_return http::error::bad_value;
        }
        head = std::move(checked.head);
        const unsigned status = head->status;
        if (status < 100 || status >= 200 || status == 101) {
            co_return error_code{};
        }
    }
}

} // namespace

// The state of one request and its response, from the head arriving to the access log line.
struct http_session::exchange {
    exchange(const proxy_settings& s, head_texts& texts)
        : settings(s), config(*s.config), head_text(texts.request), upstream_head(texts.upstream),
          response_text(texts.upstream_response)
    {}

    const proxy_settings& settings;
    const config::gatehouse_config& config;
    // For the access log's duration; the clock is not read when nothing logs it.
    std::chrono::steady_clock::time_point started = config.log.access
                                                        ? std::chrono::steady_clock::now()
                                                        : std::chrono::steady_clock::time_point{};

    std::string& head_text;
    request_head head;
    // Before the bodies, whose chunked decoders give its memory back as they are destroyed.
    head_arena arena;
    message_body<true> request_body;

    // What is sent upstream and what comes back.
    std::string& upstream_head;
    std::string& response_text;
    std::optional<response_head> response;
    message_body<false> response_body;
    bool wants_upgrade = false;

    std::string host;
    // The chosen upstream's URL, which its pool keeps for the life of the worker.
    std::string_view upstream = "-";
    unsigned status = 0;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;

    bool client_keep_alive = false;
    bool head_request = false;

    // The route's Strict-Transport-Security value, for HTTPS responses.
    std::string hsts_header;

    // Whether the request body has been read completely, so the connection can carry
    // another request.
    bool request_consumed() const { return request_body.done(); }
};

http_session::http_session(worker& owner, tcp_socket socket, const tcp::endpoint& peer,
                           std::uint64_t id)
    : worker_(owner), exchange_(std::make_unique<std::optional<exchange>>()),
      client_(std::move(socket)), scanner_(16 * 1024, 8 * 1024), id_(id),
      accepted_at_(std::chrono::steady_clock::now())
{
    remember_peer(peer);
    worker_.add_session(this);
}

http_session::http_session(worker& owner, tcp_socket socket, const tcp::endpoint& peer,
                           std::uint64_t id, std::shared_ptr<const tls_table> certificates,
                           std::shared_ptr<asio::ssl::context> context)
    : worker_(owner), exchange_(std::make_unique<std::optional<exchange>>()),
      certificates_(std::move(certificates)), tls_context_(std::move(context)),
      client_(std::move(socket), *tls_context_), scanner_(16 * 1024, 8 * 1024), id_(id),
      accepted_at_(std::chrono::steady_clock::now())
{
    certificates_->attach(client_.tls().native_handle());
    remember_peer(peer);
    worker_.add_session(this);
}

void http_session::remember_peer(const tcp::endpoint& peer)
{
    peer_address_ = endpoint_text(peer);
    client_ip_ = address_text(peer.address());
}

http_session::~http_session()
{
    worker_.remove_session(this);
}

void http_session::drain()
{
    close_after_response_ = true;
    if (idle_) {
        error_code ignored;
        client_.transport().socket().cancel(ignored);
    }
}

task<void> http_session::run()
{
    if (client_.is_tls() && !co_await handshake(*worker_.settings())) {
        co_return;
    }

    // Each request reads the settings current when it starts; a reload between two requests
    // on one connection applies to the second.
    for (;;) {
        auto settings = worker_.settings();
        const bool keep_going = co_await serve_one(*settings);
        // The exchange refers to `settings`, which the next request may replace.
        exchange_->reset();
        reuse_head_texts();
        if (!keep_going) {
            break;
        }
        ++requests_served_;
    }
    co_await close_connection();
}

void http_session::reuse_head_texts()
{
    // Typical heads are a few hundred bytes; keeping more than this per idle connection would
    // let a few large requests pin memory on every connection that once carried one.
    constexpr std::size_t kept_capacity = 4096;
    for (std::string* text :
         {&texts_.request, &texts_.upstream, &texts_.upstream_response, &texts_.response}) {
        if (text->capacity() > kept_capacity) {
            std::string().swap(*text);
        } else {
            text->clear();
        }
    }
}

task<bool> http_session::handshake(const proxy_settings& settings)
{
    // The handshake counts towards the first request's header_read budget, so a client that
    // opens connections and stalls mid-handshake is cut off like a slow request head.
    client_.expires_at(accepted_at_ + settings.config->timeouts.header_read);
    const error_code ec = co_await client_.tls().handshake();
    if (ec) {
        process_metrics().tls_handshake_failures.fetch_add(1, std::memory_order_relaxed);
        log::write(*log::get("tls"), spdlog::level::debug, "tls handshake failed",
                   {{"conn", id_}, {"client", peer_address_}, {"error", ec.message()}});
        error_code ignored;
        client_.transport().socket().close(ignored);
        co_return false;
    }
    process_metrics().tls_handshakes.fetch_add(1, std::memory_order_relaxed);
    if (SSL_session_reused(client_.tls().native_handle()) == 1) {
        process_metrics().tls_resumptions.fetch_add(1, std::memory_order_relaxed);
    }
    // The table's callbacks have run; certificates that change from now on do not touch this
    // connection, which keeps the certificate it was handed.
    tls_table::detach(client_.tls().native_handle());
    certificates_.reset();
    if (const char* name =
            SSL_get_servername(client_.tls().native_handle(), TLSEXT_NAMETYPE_host_name)) {
        sni_host_ = normalize_host(name);
    }
    co_return true;
}

task<void> http_session::close_connection()
{
    if (client_.is_tls()) {
        // A close_notify tells the client the response was complete (RFC 8446 section 6.1).
        // The client's own close_notify is not waited for: the connection closes anyway, and
        // RFC 8446 lets the closing side go without it. Marking it as received makes the
        // shutdown send ours and finish, rather than wait for a read that many clients never
        // answer and that costs every closed connection one more wake-up. When the last
        // response was written as the connection's last (write_all's `last`), our
        // close_notify went with it and this sends nothing.
        SSL* ssl = client_.tls().native_handle();
        SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_RECEIVED_SHUTDOWN);
        client_.expires_after(tls_shutdown_timeout);
        co_await client_.tls().shutdown();
    }
    // No shutdown() first: close() sends the FIN all the same, one system call sooner.
    client_.transport().close();
}

task<http_session::head_outcome> http_session::read_head(const proxy_settings& settings,
                                                         std::size_t& length)
{
    const auto& config = *settings.config;
    scanner_ = request_head_scanner(config.limits.max_header_bytes, config.limits.max_uri_bytes);

    // The first request must arrive within header_read of the accept; later ones may wait
    // `idle` for their first byte, then get header_read for the rest.
    std::optional<std::chrono::steady_clock::time_point> deadline;
    if (requests_served_ == 0) {
        deadline = accepted_at_ + config.timeouts.header_read;
    }

    for (;;) {
        auto bytes = buffer_.data();
        std::string_view received(static_cast<const char*>(bytes.data()), bytes.size());
        if (!received.empty()) {
            if (!deadline) {
                deadline = coarse_clock::now() + config.timeouts.header_read;
            }
            auto scanned = scanner_.scan(received);
            if (scanned.status == head_status::complete) {
                buffer_.consume(scanned.leading_blank_bytes);
                length = scanned.head_length - scanned.leading_blank_bytes;
                co_return head_outcome::ready;
            }
            if (scanned.status != head_status::incomplete) {
                unsigned status = scanned.status == head_status::uri_too_long       ? 414
                                  : scanned.status == head_status::header_too_large ? 431
                                                                                    : 400;
                log::write(*log::get("proxy"), spdlog::level::debug, "request refused",
                           {{"conn", id_},
                            {"client", peer_address_},
                            {"status", status},
                            {"error", scanned.reason}});
                // The exchange lives in the session, not in this frame: a frame holding one
                // would be too large for Asio's frame cache and cost a malloc per request.
                exchange& refused = exchange_->emplace(settings, texts_);
                refused.status = status;
                co_await send_simple(refused, status, std::string(scanned.reason) + "\n", false);
                co_return head_outcome::refused;
            }
        }

        if (received.empty() && requests_served_ > 0) {
            // We have just answered; the client's next request is on its way. The yield comes
            // before the drain check, so a drain that starts meanwhile is seen here.
            idle_ = true;
            co_await asio::post(client_.get_executor(), after_ready_work);
            if (close_after_response_ || worker_.draining()) {
                co_return head_outcome::closed;
            }
            client_.expires_after(config.timeouts.idle);
        } else {
            client_.expires_at(*deadline);
        }

        auto room = std::min(client_read_bytes, buffer_.max_size() - buffer_.size());
        auto [ec, n] = co_await client_.async_read_some(buffer_.prepare(room), use_nothrow);
        idle_ = false;
        if (ec) {
            co_return head_outcome::closed;
        }
        buffer_.commit(n);
    }
}

task<bool> http_session::serve_one(const proxy_settings& settings)
{
    std::size_t length = 0;
    if (co_await read_head(settings, length) != head_outcome::ready) {
        co_return false;
    }

    exchange& ex = exchange_->emplace(settings, texts_);
    auto bytes = buffer_.data();
    ex.head_text.assign(static_cast<const char*>(bytes.data()), length);

    auto checked = check_request_head(ex.head_text);
    if (!checked.head) {
        log::write(*log::get("proxy"), spdlog::level::debug, "request refused",
                   {{"conn", id_}, {"client", peer_address_}, {"error", checked.reason}});
        co_await send_simple(ex, 400, std::string(checked.reason) + "\n", false);
        co_return false;
    }
    ex.head = std::move(*checked.head);
    ex.head_request = ex.head.method == "HEAD";
    buffer_.consume(length);

    // The body's framing was checked with the head: a single chunked coding, or a length.
    const auto max_body = ex.config.limits.max_body_bytes;
    const std::uint64_t declared = ex.head.content_length.value_or(0);
    if (max_body > 0 && declared > max_body) {
        // A declared Content-Length over the limit: refuse before reading a byte of the body.
        co_await send_simple(ex, 413, "request body too large\n", false);
        co_return false;
    }
    const auto framing = ex.head.chunked ? body_framing::chunked
                         : declared > 0  ? body_framing::length
                                         : body_framing::none;
    const error_code framing_error =
        start_body(ex.request_body, framing, declared, ex.head_text, ex.arena,
                   max_body > 0 ? std::optional<std::uint64_t>(max_body) : std::nullopt);
    if (framing_error) {
        co_await send_simple(ex, 400, "malformed request\n", false);
        co_return false;
    }

    ex.client_keep_alive = ex.head.version == 11 ? !connection_has(ex.head.fields, "close")
                                                 : connection_has(ex.head.fields, "keep-alive");

    // The health check is answered before routing, whatever the host, for load balancers.
    if (path_of(ex.head.target) == ex.config.health_path &&
        (ex.head.method == "GET" || ex.head.method == "HEAD")) {
        co_await send_simple(ex, 200, "ok\n", ex.client_keep_alive);
        co_return ex.client_keep_alive&& ex.request_consumed();
    }

    // A forward proxy tunnel would make us an open proxy.
    if (ex.head.method == "CONNECT") {
        co_await send_simple(ex, 405, "CONNECT is not supported\n", false);
        co_return false;
    }

    auto resolved = resolve_target(ex.head.target);
    if (!resolved) {
        co_await send_simple(ex, 400, "request target not accepted\n", false);
        co_return false;
    }
    ex.host =
        !resolved->authority.empty() ? resolved->authority : std::string(ex.head.host.value_or(""));

    // ACME http-01 (RFC 8555 section 8.3) is answered before redirects and routing, for any
    // host, so a CA's validation never depends on how a route is set up. A token no order of
    // ours waits on goes on to routing, where a backend with its own ACME client may answer.
    if (!client_.is_tls() && (ex.head.method == "GET" || ex.head.method == "HEAD")) {
        const auto path = path_of(resolved->origin_form);
        if (path.starts_with(acme_challenge_prefix)) {
            const auto token = path.substr(acme_challenge_prefix.size());
            if (auto answer = worker_.shared().challenges.answer(token, normalize_host(ex.host))) {
                process_metrics().acme_challenges_answered.fetch_add(1, std::memory_order_relaxed);
                co_await send_simple(ex, 200, *answer, ex.client_keep_alive);
                co_return ex.client_keep_alive&& ex.request_consumed();
            }
        }
    }

    auto match = settings.routes.find(ex.host, resolved->origin_form);
    if (!match) {
        co_await send_simple(ex, 404, "no route for this host and path\n", ex.client_keep_alive);
        co_return ex.client_keep_alive&& ex.request_consumed();
    }

    if (!client_.is_tls() && match->target->redirect_http && settings.config->https_listener &&
        !path_of(ex.head.target).starts_with(acme_challenge_prefix)) {
        co_return co_await redirect_to_https(ex, resolved->origin_form);
    }
    if (client_.is_tls() && !match->target->has_tls) {
        // RFC 9110 section 15.5.20: this connection's certificate does not speak for the host.
        co_await send_simple(ex, 421, "this host is not served over HTTPS\n", false);
        co_return false;
    }
    if (client_.is_tls() && !sni_host_.empty() && !same_route_as_sni(settings, ex, *match)) {
        // The handshake named one route and the request another, whose certificate this
        // connection never showed: refuse, so one name's certificate cannot front for another.
        co_await send_simple(ex, 421, "this connection's certificate is for another host\n", false);
        co_return false;
    }

    co_return co_await forward(ex, *match);
}

bool http_session::same_route_as_sni(const proxy_settings& settings, const exchange& ex,
                                     const route_match& match) const
{
    if (normalize_host(ex.host) == sni_host_) {
        return true;
    }
    const std::string* sni_route = settings.routes.host_pattern_for(sni_host_);
    // A name no route serves was answered with the default certificate; requests on such a
    // connection go wherever their Host says, as without SNI.
    return sni_route == nullptr || *sni_route == match.target->host_pattern;
}

task<bool> http_session::redirect_to_https(exchange& ex, std::string_view origin_form)
{
    // 308 keeps the method and body (RFC 9110 section 15.4.9), so a POST is not turned into a
    // GET on its way to HTTPS.
    const auto port = ex.config.https_listener->port;
    std::string location = "https://" + normalize_host(ex.host);
    if (port != 443) {
        location += ":" + std::to_string(port);
    }
    location += origin_form;

    const bool keep_alive = ex.client_keep_alive && ex.request_consumed() && !close_after_response_;
    ex.status = 308;
    std::string body = "moved to " + location + "\n";
    std::string response = "HTTP/1.1 308 Permanent Redirect\r\nLocation: " + location +
                           "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
                           std::to_string(body.size()) + "\r\n" +
                           (keep_alive ? "\r\n" : "Connection: close\r\n\r\n");
    if (!ex.head_request) {
        response += body;
    }
    error_code ec = co_await write_response(response, ex.config.timeouts.idle, !keep_alive);
    ex.bytes_out = ex.head_request ? 0 : body.size();
    process_metrics().count_response(308);
    log_access(ex);
    co_return !ec && keep_alive;
}

task<void> http_session::send_simple(exchange& ex, unsigned status, std::string_view body,
                                     bool keep_alive)
{
    keep_alive = keep_alive && ex.request_consumed() && !close_after_response_;
    ex.status = status;
    std::string response = simple_response(status, body, keep_alive, ex.head_request);
    // A failed write needs no handling here: the next read on this connection fails too.
    co_await write_response(response, ex.config.timeouts.idle, !keep_alive);
    ex.bytes_out = ex.head_request ? 0 : body.size();
    process_metrics().count_response(status);
    if (status != 200 || ex.config.log.access) {
        log_access(ex);
    }
}

task<error_code> http_session::write_response(std::string_view response,
                                              std::chrono::milliseconds timeout, bool last)
{
    asio::const_buffer whole = asio::buffer(response);
    auto unsent = write_now(client_, std::span<asio::const_buffer>(&whole, 1));
    if (unsent.empty()) {
        co_return error_code{};
    }
    client_.expires_after(timeout);
    auto [ec, n] = co_await client_.write_all(unsent, last);
    co_return ec;
}

void http_session::log_access(const exchange& ex)
{
    if (!ex.config.log.access) {
        return;
    }
    auto elapsed = std::chrono::steady_clock::now() - ex.started;
    double duration_ms = std::chrono::duration<double, std::milli>(elapsed).count();
    static const auto access = log::get("access");
    log::write(*access, spdlog::level::info, "request",
               {{"conn", id_},
                {"client", peer_address_},
                {"method", ex.head.method},
                {"host", ex.host},
                {"path", ex.head.target},
                {"status", ex.status},
                {"bytes_in", ex.bytes_in},
                {"bytes_out", ex.bytes_out},
                {"duration_ms", duration_ms},
                {"upstream", ex.upstream}});
}

task<bool> http_session::forward(exchange& ex, const route_match& match)
{
    ex.hsts_header = match.target->hsts_header;
    const auto& fields = ex.head.fields;

    // The request as the upstream will see it: origin-form, HTTP/1.1, end-to-end fields only,
    // plus who the client was.
    const bool absolute_form = ex.head.target.front() != '/';
    std::string& head = ex.upstream_head;
    head.clear();
    head.reserve(512);
    head.append(ex.head.method);
    head += ' ';
    head += match.upstream_target;
    head.append(" HTTP/1.1\r\n"sv);
    append_end_to_end_fields(
        fields, head,
        {"Expect", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
         absolute_form ? std::string_view("Host") : std::string_view("Expect")});

    std::optional<std::string_view> incoming_chain;
    if (const auto* chain = find_field(fields, "x-forwarded-for")) {
        incoming_chain = chain->value;
    }
    bool trusted = is_trusted_peer(client_ip_, ex.config.trusted_proxies);
    append_field(head, "X-Forwarded-For", forwarded_for(incoming_chain, client_ip_, trusted));
    append_field(head, "X-Forwarded-Proto", client_.is_tls() ? "https" : "http");
    append_field(head, "X-Forwarded-Host", ex.head.host.value_or(ex.host));
    if (absolute_form) {
        // RFC 9112 section 3.2.2: an absolute-form target's authority replaces Host.
        append_field(head, "Host", ex.host);
    }
    if (ex.head.chunked) {
        append_field(head, "Transfer-Encoding", "chunked");
    }
    const auto* upgrade = find_field(fields, "upgrade");
    ex.wants_upgrade = upgrade != nullptr && connection_has(fields, "upgrade");
    if (ex.wants_upgrade) {
        append_field(head, "Upgrade", upgrade->value);
        append_field(head, "Connection", "upgrade");
    }
    head.append("\r\n"sv);

    // Pick an upstream; a connect failure moves on to the next one, since nothing was sent.
    const path_target& target = *match.target;
    // On the frame, not the heap, for the few upstreams a path has.
    boost::container::small_vector<upstream_pool*, 8> pools;
    boost::container::small_vector<const upstream_health_state*, 8> states;
    for (const auto& upstream : target.upstreams) {
        pools.push_back(&worker_.pool_for(upstream));
        states.push_back(&pools.back()->health());
    }
    auto now = coarse_clock::now();
    auto start = target.next_upstream.fetch_add(1, std::memory_order_relaxed);
    auto first = pick_upstream(states, start, now);

    error_code connect_error;
    for (std::size_t attempt = 0; attempt < pools.size(); ++attempt) {
        auto& pool = *pools[(first + attempt) % pools.size()];
        if (attempt > 0 && pool.health().is_ejected(now)) {
            continue;
        }
        ex.upstream = pool.upstream().text;
        if (auto idle = pool.take_idle(now)) {
            co_return co_await exchange_with_upstream(ex, pool, std::move(idle));
        }
        auto [ec, fresh] = co_await pool.connect(ex.config.timeouts.upstream_connect);
        if (!ec) {
            co_return co_await exchange_with_upstream(ex, pool, std::move(fresh));
        }
        connect_error = ec;
        record_upstream_failure(pool, "upstream connect failed", ec);
    }
    co_return co_await answer_upstream_failure(ex, connect_error);
}

task<bool> http_session::exchange_with_upstream(exchange& ex, upstream_pool& pool,
                                                std::unique_ptr<upstream_connection> connection)
{
    const auto& timeouts = ex.config.timeouts;

    // RFC 9110 section 10.1.1: the client waits for our go-ahead before sending its body.
    if (expects_continue(ex.head.fields) && !ex.request_body.done()) {
        static constexpr std::string_view go_ahead = "HTTP/1.1 100 Continue\r\n\r\n";
        client_.expires_after(timeouts.idle);
        auto [ec, n] = co_await client_.write_all(asio::buffer(go_ahead));
        if (ec) {
            co_return false;
        }
    }

    for (int attempt = 0;; ++attempt) {
        auto sent = co_await relay_message(client_, buffer_, ex.request_body, connection->stream,
                                           ex.upstream_head, ex.head.chunked, worker_.buffers(),
                                           timeouts.idle, timeouts.upstream_response);
        ex.bytes_in += sent.body_bytes;
        process_metrics().request_bytes.fetch_add(sent.body_bytes, std::memory_order_relaxed);
        if (sent.read_error == http::error::body_limit) {
            co_await send_simple(ex, 413, "request body too large\n", false);
            co_return false;
        }
        if (sent.read_error) {
            // The client left or stalled mid-body; there is nobody to answer.
            co_return false;
        }

        error_code failure = sent.write_error;
        if (!failure) {
            failure = co_await read_response_head(connection->stream, connection->buffer,
                                                  ex.response_text, ex.response,
                                                  timeouts.upstream_response);
        }
        if (!failure) {
            pool.health().record_success();
            co_return co_await relay_response(ex, pool, std::move(connection));
        }

        // A pooled connection may have been closed by the upstream just as we reused it. When
        // nothing of a body was lost, one retry on a new connection is safe and invisible.
        bool retryable = connection->reused && attempt == 0 && sent.body_bytes == 0 &&
                         ex.request_body.done() && !is_timeout(failure);
        if (retryable) {
            auto [ec, fresh] = co_await pool.connect(timeouts.upstream_connect);
            if (!ec) {
                connection = std::move(fresh);
                continue;
            }
            failure = ec;
        }
        record_upstream_failure(pool, "upstream request failed", failure);
        co_return co_await answer_upstream_failure(ex, failure);
    }
}

task<bool> http_session::relay_response(exchange& ex, upstream_pool& pool,
                                        std::unique_ptr<upstream_connection> connection)
{
    const response_head& upstream_response = *ex.response;
    const unsigned status = upstream_response.status;

    bool keep_client = ex.client_keep_alive && ex.request_consumed() && !close_after_response_ &&
                       !worker_.draining();
    const bool switching = status == 101 && ex.wants_upgrade;
    const bool bodiless = ex.head_request || is_bodiless_status(status);
    const bool send_hsts = client_.is_tls() && !ex.hsts_header.empty();

    std::string& head = texts_.response;
    head.clear();
    head.reserve(512);
    head.append("HTTP/1.1 "sv);
    std::array<char, 8> status_digits;
    const auto status_end =
        std::to_chars(status_digits.data(), status_digits.data() + status_digits.size(), status)
            .ptr;
    head.append(status_digits.data(), status_end);
    head += ' ';
    const auto reason = upstream_response.reason;
    head.append(reason.empty()
                    ? std::string_view(http::obsolete_reason(static_cast<http::status>(status)))
                    : reason);
    head.append("\r\n"sv);
    append_end_to_end_fields(
        upstream_response.fields, head,
        {send_hsts ? std::string_view("Strict-Transport-Security") : std::string_view()});

    // RFC 9112 section 6.3: a HEAD response and a bodiless status have no body whatever
    // their fields say; otherwise chunked, then Content-Length, then the connection's end.
    const auto framing = bodiless                           ? body_framing::none
                         : upstream_response.chunked        ? body_framing::chunked
                         : upstream_response.content_length ? body_framing::length
                                                            : body_framing::until_close;
    const error_code framing_error =
        start_body(ex.response_body, framing, upstream_response.content_length.value_or(0),
                   ex.response_text, ex.arena, std::nullopt);
    if (framing_error) {
        record_upstream_failure(pool, "upstream response failed", framing_error);
        co_return co_await answer_upstream_failure(ex, framing_error);
    }

    bool chunked = false;
    if (switching) {
        const auto* upgrade = find_field(upstream_response.fields, "upgrade");
        append_field(head, "Upgrade", upgrade != nullptr ? upgrade->value : std::string_view());
        append_field(head, "Connection", "upgrade");
    } else if (framing == body_framing::chunked || framing == body_framing::until_close) {
        // Chunked or close-delimited upstream bodies go out chunked to HTTP/1.1 clients;
        // HTTP/1.0 clients cannot read chunks, so their body ends with the connection.
        if (ex.head.version == 11) {
            chunked = true;
            append_field(head, "Transfer-Encoding", "chunked");
        } else {
            keep_client = false;
        }
    }
    if (!switching) {
        if (!keep_client) {
            append_field(head, "Connection", "close");
        } else if (ex.head.version == 10) {
            append_field(head, "Connection", "keep-alive");
        }
    }
    if (send_hsts) {
        append_field(head, "Strict-Transport-Security", ex.hsts_header);
    }
    head.append("\r\n"sv);

    ex.status = status;
    auto relayed = co_await relay_message(connection->stream, connection->buffer, ex.response_body,
                                          client_, head, chunked, worker_.buffers(),
                                          ex.config.timeouts.upstream_response,
                                          ex.config.timeouts.idle, !keep_client && !switching);
    ex.bytes_out = relayed.body_bytes;
    process_metrics().response_bytes.fetch_add(relayed.body_bytes, std::memory_order_relaxed);
    process_metrics().count_response(status);
    log_access(ex);

    if (relayed.read_error || relayed.write_error) {
        // The response head is already on its way, so the only honest signal left is closing.
        if (relayed.read_error) {
            record_upstream_failure(pool, "upstream response failed", relayed.read_error);
        }
        co_return false;
    }
    if (switching) {
        co_await run_tunnel(client_, buffer_, connection->stream, connection->buffer,
                            ex.config.timeouts.idle);
        co_return false;
    }
    // Bytes past the end of the response stay in the connection's buffer, where the pool's
    // check (looks_reusable) sees them and retires the connection.
    if (upstream_response.keep_alive && framing != body_framing::until_close &&
        ex.response_body.done()) {
        pool.give_back(std::move(connection), coarse_clock::now());
    }
    co_return keep_client;
}

task<bool> http_session::answer_upstream_failure(exchange& ex, error_code failure)
{
    if (is_timeout(failure)) {
        co_await send_simple(ex, 504, "upstream timed out\n", ex.client_keep_alive);
    } else {
        co_await send_simple(ex, 502, "upstream unavailable\n", ex.client_keep_alive);
    }
    co_return ex.client_keep_alive&& ex.request_consumed() && !close_after_response_;
}

void http_session::record_upstream_failure(upstream_pool& pool, std::string_view what,
                                           error_code ec)
{
    auto& counters = process_metrics();
    counters.upstream_failures.fetch_add(1, std::memory_order_relaxed);
    const auto& policy = worker_.settings()->config->upstream_health;
    bool ejected = pool.health().record_failure(coarse_clock::now(), policy);
    static const auto logger = log::get("proxy");
    log::write(*logger, spdlog::level::warn, what,
               {{"conn", id_}, {"upstream", pool.upstream().text}, {"error", ec.message()}});
    if (ejected) {
        counters.upstream_ejections.fetch_add(1, std::memory_order_relaxed);
        auto cooldown_ms = static_cast<std::int64_t>(policy.cooldown.count());
        log::write(*logger, spdlog::level::warn, "upstream ejected",
                   {{"upstream", pool.upstream().text}, {"cooldown_ms", cooldown_ms}});
    }
}

void spawn_session(worker& owner, std::unique_ptr<http_session> session)
{
    auto& context = owner.context();
    asio::co_spawn(
        context,
        [](std::unique_ptr<http_session> owned) -> task<void> {
            co_await owned->run();
        }(std::move(session)),
        [](std::exception_ptr failure) {
            if (!failure) {
                return;
            }
            try {
                std::rethrow_exception(failure);
            } catch (const std::exception& e) {
                log::write(*log::get("proxy"), spdlog::level::err, "session failed",
                           {{"error", e.what()}});
            }
        });
}

} // namespace gatehouse::proxy
