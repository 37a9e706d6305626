// One client connection speaking HTTP/1.x, over plain TCP or TLS: reads requests, answers what
// gatehouse answers itself (health checks, redirects to HTTPS, errors), and forwards the rest
// to upstreams, streaming bodies both ways through fixed-size buffers. Internal to proxy/: it
// exposes Asio.
#pragma once

#include "proxy/client_stream.hpp"
#include "proxy/net.hpp"
#include "proxy/request_head.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace gatehouse::proxy {

class worker;
class tls_table;
struct proxy_settings;
struct route_match;
struct upstream_connection;
class upstream_pool;

class http_session {
public:
    // A plain-HTTP connection from `peer`, the address accept() gave.
    http_session(worker& owner, tcp_socket socket, const tcp::endpoint& peer, std::uint64_t id);

    // A TLS connection: `certificates` picks the certificate during the handshake and must
    // stay as it is until then, which the session ensures by holding it; `context` is the
    // OpenSSL context wrapping certificates->base_context().
    http_session(worker& owner, tcp_socket socket, const tcp::endpoint& peer, std::uint64_t id,
                 std::shared_ptr<const tls_table> certificates,
                 std::shared_ptr<asio::ssl::context> context);
    ~http_session();

    http_session(const http_session&) = delete;
    http_session& operator=(const http_session&) = delete;

    // Serves requests until the client leaves, a timeout fires, or the server drains.
    // Never throws: every failure ends this connection only.
    task<void> run();

    // Called by the worker when the server starts draining: an idle connection closes now, a
    // busy one after its current response.
    void drain();

private:
    struct exchange;

    enum class head_outcome { ready = 1, closed, refused };

    task<bool> handshake(const proxy_settings& settings);
    task<void> close_connection();
    task<bool> serve_one(const proxy_settings& settings);
    // `origin_form` is the request's target, resolved.
    task<bool> redirect_to_https(exchange& ex, std::string_view origin_form);
    bool same_route_as_sni(const proxy_settings& settings, const exchange& ex,
                           const route_match& match) const;
    task<head_outcome> read_head(const proxy_settings& settings, std::size_t& length);
    task<bool> forward(exchange& ex, const route_match& match);
    task<bool> exchange_with_upstream(exchange& ex, upstream_pool& pool,
                                      std::unique_ptr<upstream_connection> connection);
    task<bool> relay_response(exchange& ex, upstream_pool& pool,
                              std::unique_ptr<upstream_connection> connection);
    task<bool> answer_upstream_failure(exchange& ex, error_code failure);
    void record_upstream_failure(upstream_pool& pool, std::string_view what, error_code ec);
    task<void> send_simple(exchange& ex, unsigned status, std::string_view body, bool keep_alive);
    // Writes a whole response to the client within `timeout`; `last` when the connection
    // closes after it (see client_stream::write_all).
    task<error_code> write_response(std::string_view response, std::chrono::milliseconds timeout,
                                    bool last);
    void log_access(const exchange& ex);

    worker& worker_;

    // The current request's state. Kept here, allocated once per connection, rather than in
    // serve_one's coroutine frame, which it would make too large for Asio's frame cache.
    std::unique_ptr<std::optional<exchange>> exchange_;

    // The text of the current exchange's heads. They outlive the exchange so that the next
    // request reuses their memory instead of allocating it again; a head larger than usual
    // gives its memory back when its exchange ends (see reuse_head_texts).
    struct head_texts {
        std::string request;           // as the client sent it
        std::string upstream;          // the request as sent upstream
        std::string upstream_response; // the response head as the upstream sent it
        std::string response;          // the response head as sent to the client
    };
    head_texts texts_;
    void reuse_head_texts();

    // Sets peer_address_ and client_ip_.
    void remember_peer(const tcp::endpoint& peer);

    std::shared_ptr<const tls_table> certificates_;
    std::shared_ptr<asio::ssl::context> tls_context_;
    client_stream client_;
    beast::flat_buffer buffer_;
    request_head_scanner scanner_;
    std::uint64_t id_;
    std::string peer_address_;
    // The peer's IP alone, as X-Forwarded-For names it.
    std::string client_ip_;
    std::chrono::steady_clock::time_point accepted_at_;
    unsigned requests_served_ = 0;

    // True while waiting for the first byte of the next request: the only moment a drain may
    // close the connection without cutting a request short.
    bool idle_ = true;
    bool close_after_response_ = false;

    // The server name the TLS client sent, normalized; empty for plain HTTP or no SNI.
    std::string sni_host_;
};

// Starts a session on its worker's thread. The coroutine owns the session.
void spawn_session(worker& owner, std::unique_ptr<http_session> session);

} // namespace gatehouse::proxy
