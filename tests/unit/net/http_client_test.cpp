// Tests for net::http_client against a real server in the same process: plain HTTP and TLS on
// 127.0.0.1, with certificates from pki's local CA. The server answers with raw bytes each test
// writes itself, so framing (chunked, HTTP/1.0, Connection: close, interim responses) and
// misbehaviour (dropping a connection, never answering) are exactly what the test says.
#include "net/http_client.hpp"
#include "pki/keys.hpp"
#include "pki/local_ca.hpp"
#include "tests/unit/pki/pki_test_support.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <catch2/catch.hpp>

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace net = gatehouse::net;
namespace pki = gatehouse::pki;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using error_code = boost::system::error_code;
using pki_test::require_ok;
using tcp = asio::ip::tcp;

namespace {

// What the test server saw of one request.
struct seen_request {
    // Both count from 1: the server's first connection, and the first request on a connection.
    int connection = 0;
    int index = 0;
    std::string method;
    std::string target;
    std::vector<net::header> headers;
    std::string body;

    std::optional<std::string> header(std::string_view name) const
    {
        for (const auto& field : headers) {
            if (field.name == name) {
                return field.value;
            }
        }
        return std::nullopt;
    }
};

// Writes bytes to the connection the request came on; false once the connection is broken.
using writer = std::function<bool(std::string_view bytes)>;

// What the test server does about a request: write `raw`, then keep the connection for the next
// request, close it, or neither answer nor close (`raw` is not sent then). `more`, when set, is
// called after `raw` went out, to send the rest of a streamed response at its own pace.
struct reply {
    enum class then { keep_open, close, hang };
    std::string raw;
    then after = then::keep_open;
    std::function<void(const writer&)> more = nullptr;
};

// A complete HTTP/1.1 response with a Content-Length.
std::string http_response(int status, std::string_view body, std::string_view extra_fields = "")
{
    return "HTTP/1.1 " + std::to_string(status) +
           " Test\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
           std::string(extra_fields) + "\r\n" + std::string(body);
}

// An HTTP server on 127.0.0.1 and a port of its own, plain or TLS, with a thread per connection
// and blocking I/O: simple, and it cannot be confused with the asynchronous client it tests.
// The destructor wakes every blocked thread and joins it.
class test_server {
public:
    using handler = std::function<reply(const seen_request&)>;

    // `tls`, when given, must outlive the server.
    explicit test_server(handler respond, asio::ssl::context* tls = nullptr)
        : respond_(std::move(respond)), tls_(tls),
          acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
          port_(acceptor_.local_endpoint().port())
    {
        accept_thread_ = std::thread([this] { accept_connections(); });
    }

    ~test_server()
    {
        // accept() returns for a connection of our own; reads return once their socket is shut.
        stopping_ = true;
        {
            tcp::socket waker(io_);
            error_code ignored;
            waker.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ignored);
            accept_thread_.join();
        }
        {
            std::lock_guard lock(mutex_);
            for (const int fd : open_sockets_) {
                ::shutdown(fd, SHUT_RDWR);
            }
        }
        for (auto& session : sessions_) {
            session.join();
        }
    }

    test_server(const test_server&) = delete;
    test_server& operator=(const test_server&) = delete;

    std::uint16_t port() const { return port_; }

    // "http://127.0.0.1:PORT" or "https://...", followed by `path`.
    std::string url(std::string_view path, std::string_view host = "127.0.0.1") const
    {
        return std::string(tls_ ? "https://" : "http://") + std::string(host) + ":" +
               std::to_string(port_) + std::string(path);
    }

    int connections() const { return accepted_.load(); }

    std::vector<seen_request> requests() const
    {
        std::lock_guard lock(mutex_);
        return seen_;
    }

private:
    void accept_connections()
    {
        for (int number = 1;; ++number) {
            tcp::socket socket(io_);
            error_code error;
            acceptor_.accept(socket, error);
            if (error || stopping_) {
                return;
            }
            ++accepted_;
            const int fd = socket.native_handle();
            {
                std::lock_guard lock(mutex_);
                open_sockets_.insert(fd);
            }
            sessions_.emplace_back([this, fd, number, accepted = std::move(socket)]() mutable {
                serve(std::move(accepted), number);
                // The socket is closed by now; forget it before its number can be reused.
                std::lock_guard lock(mutex_);
                open_sockets_.erase(fd);
            });
        }
    }

    void serve(tcp::socket socket, int connection)
    {
        if (!tls_) {
            serve_requests(socket, connection);
            return;
        }
        asio::ssl::stream<tcp::socket> stream(std::move(socket), *tls_);
        error_code error;
        stream.handshake(asio::ssl::stream_base::server, error);
        if (!error) {
            serve_requests(stream, connection);
        }
    }

    template <class Stream>
    void serve_requests(Stream& stream, int connection)
    {
        boost::beast::flat_buffer buffer;
        for (int index = 1;; ++index) {
            http::request<http::string_body> request;
            error_code error;
            http::read(stream, buffer, request, error);
            if (error) {
                return;
            }
            const reply answer = respond_(record(request, connection, index));
            if (answer.after == reply::then::hang) {
                continue;
            }
            asio::write(stream, asio::buffer(answer.raw), error);
            if (!error && answer.more) {
                answer.more([&](std::string_view bytes) {
                    asio::write(stream, asio::buffer(bytes.data(), bytes.size()), error);
                    return !error;
                });
            }
            if (error || answer.after == reply::then::close) {
                return;
            }
        }
    }

    seen_request record(const http::request<http::string_body>& request, int connection, int index)
    {
        seen_request seen{connection,
                          index,
                          std::string(request.method_string()),
                          std::string(request.target()),
                          {},
                          request.body()};
        for (const auto& field : request) {
            seen.headers.push_back({std::string(field.name_string()), std::string(field.value())});
        }
        std::lock_guard lock(mutex_);
        seen_.push_back(seen);
        return seen;
    }

    handler respond_;
    asio::ssl::context* tls_;
    asio::io_context io_;
    tcp::acceptor acceptor_;
    std::uint16_t port_;
    std::thread accept_thread_;
    std::vector<std::thread> sessions_;
    std::atomic<bool> stopping_{false};
    std::atomic<int> accepted_{0};

    mutable std::mutex mutex_;
    std::set<int> open_sockets_;
    std::vector<seen_request> seen_;
};

// A test CA, its certificate in a file for extra_ca_file, and server certificates from it.
class test_pki {
public:
    test_pki() : ca_(pki_test::make_ca()), ca_file_(dir_.write("ca.pem", ca_.certificate_pem())) {}

    const std::string& ca_file() const { return ca_file_; }

    // A TLS server context presenting a certificate for `names`.
    asio::ssl::context server_context(const std::vector<std::string>& names) const
    {
        const auto key = require_ok(pki::generate_private_key(pki::key_type::ecdsa_p256));
        const auto issued = require_ok(ca_.issue(names, 1h, key.get()));
        const auto key_pem = require_ok(pki::private_key_to_pem(key.get()));
        asio::ssl::context context(asio::ssl::context::tls_server);
        context.use_certificate_chain(asio::buffer(issued.certificate_pem));
        context.use_private_key(asio::buffer(key_pem), asio::ssl::context::pem);
        return context;
    }

private:
    pki_test::temp_dir dir_;
    pki::local_ca ca_;
    std::string ca_file_;
};

// Options with short timeouts, so a test that goes wrong fails quickly instead of hanging.
net::client_options test_options()
{
    net::client_options options;
    options.connect_timeout = 2s;
    options.request_timeout = 2s;
    options.user_agent = "gatehouse-test";
    return options;
}

net::request get(std::string url)
{
    net::request request;
    request.url = std::move(url);
    return request;
}

net::response require_response(net::result<net::response> result)
{
    INFO((result ? std::string() : result.error().message));
    REQUIRE(result.has_value());
    return std::move(*result);
}

net::http_error require_failure(net::result<net::response> result)
{
    INFO((result ? "unexpected status " + std::to_string(result->status) : std::string()));
    REQUIRE_FALSE(result.has_value());
    return result.error();
}

reply answer_ok(const seen_request&)
{
    return {http_response(200, "ok")};
}

// The head of a chunked response, and one chunk of it (RFC 9112 section 7.1).
const std::string chunked_head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

std::string chunk(std::string_view data)
{
    constexpr std::string_view digits = "0123456789abcdef";
    std::string size;
    for (std::size_t left = data.size(); left > 0 || size.empty(); left /= 16) {
        size.insert(size.begin(), digits[left % 16]);
    }
    return size + "\r\n" + std::string(data) + "\r\n";
}

// A streamed response: the head and `first` at once, then nothing more while the connection
// stays open, as an etcd watch does between events.
reply stream_then_pause(std::string first)
{
    return reply{chunked_head + chunk(first)};
}

// Collects the pieces a stream hands over.
struct collected_body {
    std::mutex mutex;
    std::string text;
    int pieces = 0;

    net::body_handler collector(std::function<bool(const std::string&)> keep_going = {})
    {
        return [this, keep_going](std::string_view piece) {
            std::lock_guard lock(mutex);
            text += piece;
            ++pieces;
            return !keep_going || keep_going(text);
        };
    }

    std::string snapshot()
    {
        std::lock_guard lock(mutex);
        return text;
    }
};

int require_status(net::result<int> result)
{
    INFO((result ? std::string() : result.error().message));
    REQUIRE(result.has_value());
    return *result;
}

// Polls `condition` every 5 ms until it holds or `timeout` passes; returns whether it held.
template <typename Condition>
bool eventually(Condition condition, std::chrono::milliseconds timeout)
{
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!condition()) {
        if (std::chrono::steady_clock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

} // namespace

TEST_CASE("a GET over plain HTTP returns the status, the headers and the body", "[net]")
{
    test_server server(
        [](const seen_request&) { return reply{http_response(201, "hello", "X-Test: One\r\n")}; });
    net::http_client client(test_options());
    auto request = get(server.url("/path?q=1#fragment"));
    request.headers.push_back({"Accept", "text/plain"});

    const auto response = require_response(client.send(request));

    CHECK(response.status == 201);
    CHECK(response.body == "hello");
    CHECK(response.header_value("x-test") == "One");
    CHECK(response.header_value("X-TEST") == "One");
    CHECK(response.header_value("missing") == std::nullopt);
    CHECK(response.headers.front().name == "content-length");
    const auto seen = server.requests().at(0);
    CHECK(seen.method == "GET");
    CHECK(seen.target == "/path?q=1");
    CHECK(seen.header("Host") == "127.0.0.1:" + std::to_string(server.port()));
    CHECK(seen.header("User-Agent") == "gatehouse-test");
    CHECK(seen.header("Accept") == "text/plain");
    CHECK(seen.header("Content-Length") == std::nullopt);
}

TEST_CASE("a POST sends its body with a Content-Length", "[net]")
{
    test_server server(
        [](const seen_request& seen) { return reply{http_response(200, seen.body)}; });
    net::http_client client(test_options());
    auto request = get(server.url("/echo"));
    request.method = "POST";

    SECTION("with a body")
    {
        request.body = R"({"a":"b"})";
        const auto response = require_response(client.send(request));
        CHECK(response.body == request.body);
        CHECK(server.requests().at(0).header("Content-Length") == "9");
    }
    SECTION("empty, as a POST-as-GET")
    {
        const auto response = require_response(client.send(request));
        CHECK(response.body.empty());
        CHECK(server.requests().at(0).header("Content-Length") == "0");
    }
}

TEST_CASE("repeated response headers are kept in the order received", "[net]")
{
    test_server server([](const seen_request&) {
        return reply{http_response(200, "",
                                   "Link: <https://a.example/>;rel=\"up\"\r\n"
                                   "Replay-Nonce: abc\r\n"
                                   "Link: <https://b.example/>;rel=\"alternate\"\r\n")};
    });
    net::http_client client(test_options());

    const auto response = require_response(client.send(get(server.url("/"))));

    std::vector<std::string> links;
    for (const auto& field : response.headers) {
        if (field.name == "link") {
            links.push_back(field.value);
        }
    }
    CHECK(links == std::vector<std::string>{"<https://a.example/>;rel=\"up\"",
                                            "<https://b.example/>;rel=\"alternate\""});
    CHECK(response.header_value("link") == "<https://a.example/>;rel=\"up\"");
}

TEST_CASE("requests to one origin share one keep-alive connection", "[net]")
{
    test_server server(answer_ok);
    net::http_client client(test_options());

    for (int i = 0; i < 3; ++i) {
        CHECK(require_response(client.send(get(server.url("/")))).body == "ok");
    }

    CHECK(server.connections() == 1);
}

TEST_CASE("a connection the server will not keep is not reused", "[net]")
{
    std::string raw;
    SECTION("Connection: close")
    {
        raw = http_response(200, "ok", "Connection: close\r\n");
    }
    SECTION("HTTP/1.0 without keep-alive")
    {
        raw = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
    }
    // The server keeps the connection open regardless, so only the client's choice counts.
    test_server server([&](const seen_request&) { return reply{raw}; });
    net::http_client client(test_options());

    CHECK(require_response(client.send(get(server.url("/")))).body == "ok");
    CHECK(require_response(client.send(get(server.url("/")))).body == "ok");

    CHECK(server.connections() == 2);
}

TEST_CASE("a connection the server closed while idle is replaced by a new one", "[net]")
{
    test_server server([](const seen_request&) {
        return reply{http_response(200, "ok"), reply::then::close};
    });
    net::http_client client(test_options());

    CHECK(require_response(client.send(get(server.url("/")))).body == "ok");
    CHECK(require_response(client.send(get(server.url("/")))).body == "ok");

    CHECK(server.connections() == 2);
}

TEST_CASE("a request dropped on a reused connection is sent again on a new one", "[net]")
{
    // The second request on any connection finds the server closing it, as when the server's
    // idle timeout fires just as the request arrives.
    test_server server([](const seen_request& seen) {
        if (seen.index == 2) {
            return reply{"", reply::then::close};
        }
        return reply{http_response(200, "ok")};
    });
    net::http_client client(test_options());
    auto request = get(server.url("/new-order"));
    request.method = "POST";
    request.body = "{}";

    CHECK(require_response(client.send(request)).status == 200);
    CHECK(require_response(client.send(request)).status == 200);

    const auto seen = server.requests();
    REQUIRE(seen.size() == 3);
    CHECK(seen[2].connection == 2);
    CHECK(seen[2].body == "{}");
}

TEST_CASE("a request dropped on a new connection fails without a retry", "[net]")
{
    test_server server([](const seen_request&) { return reply{"", reply::then::close}; });
    net::http_client client(test_options());

    const auto error = require_failure(client.send(get(server.url("/"))));

    CHECK(error.kind == net::failure_kind::connect);
    CHECK_THAT(error.message, Contains("read response from 127.0.0.1:"));
    CHECK(server.connections() == 1);
}

TEST_CASE("HTTPS works with a server whose CA is in extra_ca_file", "[net]")
{
    const test_pki authority;
    auto tls = authority.server_context({"localhost", "127.0.0.1"});
    test_server server(answer_ok, &tls);
    auto options = test_options();
    options.extra_ca_file = authority.ca_file();
    net::http_client client(options);

    SECTION("by IP address")
    {
        CHECK(require_response(client.send(get(server.url("/")))).body == "ok");
        CHECK(require_response(client.send(get(server.url("/")))).body == "ok");
        CHECK(server.connections() == 1);
    }
    SECTION("by host name")
    {
        CHECK(require_response(client.send(get(server.url("/", "localhost")))).body == "ok");
        CHECK(server.requests().at(0).header("Host") ==
              "localhost:" + std::to_string(server.port()));
    }
}

TEST_CASE("HTTPS fails verification when the server's CA is not trusted", "[net]")
{
    const test_pki authority;
    auto tls = authority.server_context({"localhost", "127.0.0.1"});
    test_server server(answer_ok, &tls);
    net::http_client client(test_options());

    const auto error = require_failure(client.send(get(server.url("/"))));

    CHECK(error.kind == net::failure_kind::tls);
    CHECK_THAT(error.message,
               Contains("tls handshake with 127.0.0.1:" + std::to_string(server.port()) +
                        ": certificate verify failed (unable to get local issuer "
                        "certificate)"));
    CHECK(server.requests().empty());
}

TEST_CASE("HTTPS refuses a trusted certificate issued for another name", "[net]")
{
    const test_pki authority;
    auto tls = authority.server_context({"other.example"});
    test_server server(answer_ok, &tls);
    auto options = test_options();
    options.extra_ca_file = authority.ca_file();
    net::http_client client(options);

    SECTION("by host name")
    {
        const auto error = require_failure(client.send(get(server.url("/", "localhost"))));
        CHECK(error.kind == net::failure_kind::tls);
        CHECK_THAT(error.message, Contains("hostname mismatch"));
    }
    SECTION("by IP address")
    {
        const auto error = require_failure(client.send(get(server.url("/"))));
        CHECK(error.kind == net::failure_kind::tls);
        CHECK_THAT(error.message, Contains("IP address mismatch"));
    }
    CHECK(server.requests().empty());
}

TEST_CASE("a refused connection is a connect failure naming the server", "[net]")
{
    // A port that was just free: bound, read, released.
    asio::io_context io;
    tcp::acceptor probe(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const auto port = std::to_string(probe.local_endpoint().port());
    probe.close();
    net::http_client client(test_options());

    const auto error = require_failure(client.send(get("http://127.0.0.1:" + port + "/")));

    CHECK(error.kind == net::failure_kind::connect);
    CHECK_THAT(error.message, Contains("connect to 127.0.0.1:" + port + ": "));
}

TEST_CASE("a server that never answers times out after request_timeout", "[net]")
{
    test_server server([](const seen_request&) { return reply{"", reply::then::hang}; });
    auto options = test_options();
    options.request_timeout = 300ms;
    net::http_client client(options);

    const auto started = std::chrono::steady_clock::now();
    const auto error = require_failure(client.send(get(server.url("/"))));
    const auto waited = std::chrono::steady_clock::now() - started;

    CHECK(error.kind == net::failure_kind::timeout);
    CHECK_THAT(error.message, Contains("request_timeout 300 ms"));
    CHECK(waited >= 290ms);
    CHECK(waited < 1500ms);
    CHECK(server.connections() == 1);
}

TEST_CASE("a response larger than max_response_bytes is refused", "[net]")
{
    std::string raw;
    SECTION("by its Content-Length")
    {
        raw = http_response(200, std::string(2000, 'x'));
    }
    SECTION("chunked")
    {
        const std::string chunk = "258\r\n" + std::string(600, 'x') + "\r\n";
        raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk + chunk + "0\r\n\r\n";
    }
    SECTION("by its head")
    {
        raw = http_response(200, "", "X-Padding: " + std::string(2000, 'x') + "\r\n");
    }
    test_server server([&](const seen_request&) { return reply{raw}; });
    auto options = test_options();
    options.max_response_bytes = 1000;
    net::http_client client(options);

    const auto error = require_failure(client.send(get(server.url("/"))));

    CHECK(error.kind == net::failure_kind::too_large);
}

TEST_CASE("a response that is not HTTP is a protocol failure", "[net]")
{
    test_server server([](const seen_request&) { return reply{"SSH-2.0-OpenSSH_9.2\r\n\r\n"}; });
    net::http_client client(test_options());

    const auto error = require_failure(client.send(get(server.url("/"))));

    CHECK(error.kind == net::failure_kind::protocol);
    CHECK_THAT(error.message, Contains("read response from 127.0.0.1:"));
}

TEST_CASE("a name that does not resolve is a resolve failure naming it", "[net]")
{
    auto options = test_options();
    options.connect_timeout = 500ms;
    net::http_client client(options);

    // RFC 6761 reserves .invalid so that it never resolves. A resolver that cannot answer at
    // all within connect_timeout makes it a timeout instead, which still names the step.
    const auto error = require_failure(client.send(get("http://nonexistent.invalid/")));

    CHECK((error.kind == net::failure_kind::resolve || error.kind == net::failure_kind::timeout));
    CHECK_THAT(error.message, Contains("resolve nonexistent.invalid:80: "));
}

TEST_CASE("a chunked response is decoded", "[net]")
{
    test_server server([](const seen_request&) {
        return reply{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"};
    });
    net::http_client client(test_options());

    const auto response = require_response(client.send(get(server.url("/"))));

    CHECK(response.body == "hello world");
}

TEST_CASE("interim responses are skipped and HEAD responses have no body", "[net]")
{
    test_server server([](const seen_request& seen) {
        if (seen.method == "HEAD") {
            return reply{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"};
        }
        return reply{"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n" +
                     http_response(200, "hello")};
    });
    net::http_client client(test_options());
    auto head = get(server.url("/"));
    head.method = "HEAD";

    const auto headed = require_response(client.send(head));
    const auto got = require_response(client.send(get(server.url("/"))));

    CHECK(headed.status == 200);
    CHECK(headed.body.empty());
    CHECK(got.status == 200);
    CHECK(got.body == "hello");
    CHECK(server.connections() == 1);
}

TEST_CASE("URLs the client cannot use are refused before any connection", "[net]")
{
    net::http_client client(test_options());
    const auto url = GENERATE(as<std::string>{}, "ftp://example.com/", "example.com/path",
                              "http://", "http:///path", "http://host:99999/", "http://host:0/",
                              "http://host:/", "http://host:8o/", "http://[::1/", "http://[nope]/",
                              "http://user@host/", "http://ho st/", "http://host/a b");
    CAPTURE(url);

    const auto error = require_failure(client.send(get(url)));

    CHECK(error.kind == net::failure_kind::invalid_url);
    CHECK_THAT(error.message, Contains(url));
}

TEST_CASE("an IPv6 literal URL names the server in brackets", "[net]")
{
    net::http_client client(test_options());

    // Nothing listens on port 1; with or without IPv6 on the host, the connect fails.
    const auto error = require_failure(client.send(get("http://[::1]:1/")));

    CHECK(error.kind == net::failure_kind::connect);
    CHECK_THAT(error.message, Contains("connect to [::1]:1: "));
}

TEST_CASE("requests that cannot be sent safely are refused", "[net]")
{
    net::http_client client(test_options());
    auto request = get("http://127.0.0.1:1/");
    SECTION("a header value with a line break")
    {
        request.headers.push_back({"X-Injected", "a\r\nHost: evil"});
    }
    SECTION("a header the client sets itself")
    {
        request.headers.push_back({"Host", "evil"});
    }
    SECTION("a header longer than Beast can hold")
    {
        request.headers.push_back({"X-Long", std::string(70'000, 'x')});
    }
    SECTION("a method that is not a token")
    {
        request.method = "GET /x HTTP/1.1\r\n";
    }

    const auto error = require_failure(client.send(request));

    CHECK(error.kind == net::failure_kind::invalid_request);
}

TEST_CASE("the constructor refuses files it cannot load, naming them", "[net]")
{
    const pki_test::temp_dir dir;
    auto options = test_options();

    SECTION("a missing CA bundle")
    {
        options.extra_ca_file = dir.path("missing-ca.pem");
        CHECK_THROWS_AS(net::http_client(options), std::runtime_error);
        CHECK_THROWS_WITH(net::http_client(options), Contains(options.extra_ca_file));
    }
    SECTION("a CA bundle without certificates")
    {
        options.extra_ca_file = dir.write("empty.pem", "not a certificate\n");
        CHECK_THROWS_WITH(net::http_client(options), Contains(options.extra_ca_file));
    }
    SECTION("a missing client certificate")
    {
        options.client_certificate_file = dir.path("client.pem");
        options.client_key_file = dir.path("client.key");
        CHECK_THROWS_WITH(net::http_client(options), Contains(options.client_certificate_file));
    }
    SECTION("a client certificate without its key")
    {
        options.client_certificate_file = dir.path("client.pem");
        CHECK_THROWS_AS(net::http_client(options), std::invalid_argument);
    }
}

TEST_CASE("value() of a failed send throws a system_error with the kind and message", "[net]")
{
    net::http_client client(test_options());
    const auto failed = client.send(get("ftp://example.com/"));

    try {
        (void)failed.value();
        FAIL("value() did not throw");
    } catch (const boost::system::system_error& thrown) {
        CHECK(thrown.code() == net::failure_kind::invalid_url);
        CHECK_THAT(thrown.what(), Contains("ftp://example.com/"));
    }
}

TEST_CASE("a streamed chunked body reaches the caller piece by piece as it arrives", "[net]")
{
    // The server sends the second event only once the client has shown it holds the first, so
    // the test cannot pass if the client waits for the whole body.
    collected_body body;
    std::atomic<bool> first_seen_before_second{false};
    test_server server([&](const seen_request&) {
        reply answer = stream_then_pause("event 1\n");
        answer.more = [&](const writer& write) {
            first_seen_before_second =
                eventually([&] { return body.snapshot() == "event 1\n"; }, 2s);
            write(chunk("event 2\n") + chunk("event 3\n") + "0\r\n\r\n");
        };
        return answer;
    });
    net::http_client client(test_options());
    auto request = get(server.url("/v3/watch"));
    request.method = "POST";
    request.body = R"({"create_request":{}})";

    const int status = require_status(client.stream(request, body.collector(), 2s));

    CHECK(status == 200);
    CHECK(first_seen_before_second);
    CHECK(body.snapshot() == "event 1\nevent 2\nevent 3\n");
    CHECK(server.requests().at(0).body == request.body);
}

TEST_CASE("a stream ends when on_body returns false", "[net]")
{
    test_server server([](const seen_request&) { return stream_then_pause("enough\n"); });
    net::http_client client(test_options());
    collected_body body;

    const auto started = std::chrono::steady_clock::now();
    const auto stop_at_once = [](const std::string&) {
        return false;
    };
    const int status =
        require_status(client.stream(get(server.url("/")), body.collector(stop_at_once), 5s));

    CHECK(status == 200);
    CHECK(body.snapshot() == "enough\n");
    CHECK(std::chrono::steady_clock::now() - started < 1s);
}

TEST_CASE("a stream ends soon after its stop flag is set from another thread", "[net]")
{
    net::http_client client(test_options());
    std::atomic<bool> stop{false};
    collected_body body;

    SECTION("while the body is open")
    {
        test_server server([](const seen_request&) { return stream_then_pause("waiting\n"); });
        std::thread stopper([&] {
            eventually([&] { return !body.snapshot().empty(); }, 2s);
            stop = true;
        });
        const auto started = std::chrono::steady_clock::now();
        const auto status = client.stream(get(server.url("/")), body.collector(), 10s, &stop);
        const auto waited = std::chrono::steady_clock::now() - started;
        stopper.join();

        CHECK(require_status(status) == 200);
        CHECK(body.snapshot() == "waiting\n");
        CHECK(waited < 1s);
    }
    SECTION("before the head arrived")
    {
        test_server server([](const seen_request&) { return reply{"", reply::then::hang}; });
        std::thread stopper([&] {
            std::this_thread::sleep_for(200ms);
            stop = true;
        });
        const auto started = std::chrono::steady_clock::now();
        const auto status = client.stream(get(server.url("/")), body.collector(), 10s, &stop);
        const auto waited = std::chrono::steady_clock::now() - started;
        stopper.join();

        REQUIRE_FALSE(status.has_value());
        CHECK(status.error().kind == net::failure_kind::stopped);
        CHECK(body.pieces == 0);
        CHECK(waited < 1s);
    }
}

TEST_CASE("a stream that stays silent for idle_timeout fails with timeout", "[net]")
{
    test_server server([](const seen_request&) { return stream_then_pause("only\n"); });
    net::http_client client(test_options());
    collected_body body;

    const auto started = std::chrono::steady_clock::now();
    const auto status = client.stream(get(server.url("/")), body.collector(), 300ms);
    const auto waited = std::chrono::steady_clock::now() - started;

    REQUIRE_FALSE(status.has_value());
    CHECK(status.error().kind == net::failure_kind::timeout);
    CHECK_THAT(status.error().message, Contains("idle_timeout 300 ms"));
    CHECK(body.snapshot() == "only\n");
    CHECK(waited >= 290ms);
    CHECK(waited < 1500ms);
}

TEST_CASE("a stream whose server drops the connection mid-body fails with connect", "[net]")
{
    test_server server([](const seen_request&) {
        return reply{chunked_head + chunk("partial\n"), reply::then::close};
    });
    net::http_client client(test_options());
    collected_body body;

    const auto status = client.stream(get(server.url("/")), body.collector(), 2s);

    REQUIRE_FALSE(status.has_value());
    CHECK(status.error().kind == net::failure_kind::connect);
    CHECK(body.snapshot() == "partial\n");
}

TEST_CASE("a stream answered with an error status returns it without calling on_body", "[net]")
{
    test_server server([](const seen_request&) {
        return reply{"HTTP/1.1 100 Continue\r\n\r\n" + http_response(404, "no such stream")};
    });
    net::http_client client(test_options());
    collected_body body;

    CHECK(require_status(client.stream(get(server.url("/")), body.collector(), 2s)) == 404);
    CHECK(body.pieces == 0);
}

TEST_CASE("a stream uses a connection of its own and does not hold up send()", "[net]")
{
    test_server server([](const seen_request& seen) {
        return seen.target == "/watch" ? stream_then_pause("open\n") : answer_ok(seen);
    });
    net::http_client client(test_options());
    std::atomic<bool> stop{false};
    collected_body body;
    std::thread watcher(
        [&] { (void)client.stream(get(server.url("/watch")), body.collector(), 10s, &stop); });
    REQUIRE(eventually([&] { return !body.snapshot().empty(); }, 2s));

    const auto answered = client.send(get(server.url("/kv")));
    stop = true;
    watcher.join();

    CHECK(require_response(answered).body == "ok");
    CHECK(server.connections() == 2);
}

TEST_CASE("a stream over HTTPS delivers its body as it arrives", "[net]")
{
    const test_pki authority;
    auto tls = authority.server_context({"127.0.0.1"});
    test_server server([](const seen_request&) { return stream_then_pause("secure\n"); }, &tls);
    auto options = test_options();
    options.extra_ca_file = authority.ca_file();
    net::http_client client(options);
    collected_body body;

    const auto stop_on_line = [](const std::string& text) {
        return !text.ends_with('\n');
    };
    CHECK(require_status(client.stream(get(server.url("/")), body.collector(stop_on_line), 2s)) ==
          200);
    CHECK(body.snapshot() == "secure\n");
}
