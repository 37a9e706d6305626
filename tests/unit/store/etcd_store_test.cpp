// Tests for the etcd backend against a real etcd (Debian's etcd-server, installed by
// scripts/install-deps.sh): each test starts its own single-member cluster on free loopback
// ports with a data directory in memory, and kills it when done, passed or failed. They cover
// the store contract (values, lists, locks and their expiry, watches and their resync after
// etcd restarts), failover between endpoints, authentication, mutual TLS, and how the store
// fails while etcd is down.
#include "net/http_client.hpp"
#include "store/etcd_store.hpp"
#include "store/lock_heartbeat.hpp"
#include "tests/unit/store/store_test_support.hpp"

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

extern char** environ;

using Catch::Matchers::Contains;
using gatehouse::store::change_event;
using gatehouse::store::change_kind;
using gatehouse::store::errc;
using gatehouse::store::etcd_options;
using gatehouse::store::open_etcd_store;
using gatehouse::store::store;
using gatehouse::store::watch_handle;
using gatehouse::store::testing::calls_to_a_watch_that_ends_itself;
using gatehouse::store::testing::event_recorder;
using gatehouse::store::testing::temporary_directory;
using gatehouse::store::testing::wait_until;
using namespace std::chrono_literals;

namespace {

// Changes reach a watch within milliseconds on loopback; the deadline allows for a busy host.
constexpr auto report_deadline = 3000ms;

// A port on 127.0.0.1 that was free a moment ago: bound to port 0, read, released.
std::uint16_t free_port()
{
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&address), length) == 0 &&
                       ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
    ::close(fd);
    REQUIRE(bound);
    return ntohs(address.sin_port);
}

std::string find_etcd()
{
    for (const char* candidate : {"/usr/bin/etcd", "/usr/local/bin/etcd"}) {
        if (::access(candidate, X_OK) == 0) {
            return candidate;
        }
    }
    FAIL("etcd is not installed; run scripts/install-deps.sh (Debian package etcd-server)");
    return {};
}

// A single-member etcd cluster of its own, on free ports, with its data in a fresh directory
// (in memory where /dev/shm exists, so its fsyncs cost nothing). The destructor kills it and
// removes the directory; the kernel kills it too should the test binary die first.
class etcd_process {
public:
    explicit etcd_process(std::vector<std::string> extra_flags = {}, std::string scheme = "http")
        : binary_(find_etcd()), extra_flags_(std::move(extra_flags)), scheme_(std::move(scheme)),
          client_port_(free_port()), peer_port_(free_port())
    {
        const auto base = std::filesystem::is_directory("/dev/shm")
                              ? std::filesystem::path("/dev/shm")
                              : std::filesystem::temp_directory_path();
        std::string pattern = base / "gatehouse-etcd-XXXXXX";
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        dir_ = pattern;
    }

    ~etcd_process()
    {
        stop();
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }

    etcd_process(const etcd_process&) = delete;
    etcd_process& operator=(const etcd_process&) = delete;

    // Starts etcd and waits until it answers, failing the test with its log if it does not
    // within ten seconds. `ready` says whether it answers; the default asks over plain HTTP.
    void start(const std::function<bool()>& ready = {})
    {
        spawn();
        const auto answers = ready ? ready : [this] {
            return answers_range();
        };
        const bool up = wait_until(
            [&] {
                int status = 0;
                if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                    pid_ = -1;
                    return true;
                }
                return answers();
            },
            10s);
        INFO("etcd log:\n" << log());
        REQUIRE(pid_ > 0);
        REQUIRE(up);
    }

    // Kills etcd at once, as a crash or a lost machine would.
    void stop()
    {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
            pid_ = -1;
        }
    }

    std::string url() const { return scheme_ + "://127.0.0.1:" + std::to_string(client_port_); }

    std::string log() const
    {
        std::ifstream in(dir_ / "etcd.log");
        std::string text((std::istreambuf_iterator<char>(in)), {});
        return text.size() > 4000 ? text.substr(text.size() - 4000) : text;
    }

    std::uint16_t client_port() const { return client_port_; }

    // POSTs `body` to `path` on this member over plain HTTP; the status, or 0 when unreachable.
    int post(const std::string& path, const std::string& body, const std::string& token = {}) const
    {
        const auto answer = send(path, body, token);
        return answer ? answer->status : 0;
    }

    // The member's current revision, which the header of every answer carries; 0 when it
    // cannot be read.
    std::int64_t revision() const
    {
        const auto answer = send("/v3/kv/range", R"({"key":"AA=="})");
        if (!answer || answer->status != 200) {
            return 0;
        }
        const auto parsed = nlohmann::json::parse(answer->body, nullptr, false);
        const auto field = parsed.is_object()
                               ? parsed.value("/header/revision"_json_pointer, nlohmann::json())
                               : nlohmann::json();
        // The gateway writes 64-bit integers as strings.
        return field.is_string() ? std::stoll(field.get<std::string>()) : 0;
    }

private:
    gatehouse::net::result<gatehouse::net::response>
    send(const std::string& path, const std::string& body, const std::string& token = {}) const
    {
        gatehouse::net::client_options options;
        options.connect_timeout = 1s;
        options.request_timeout = 2s;
        gatehouse::net::http_client client(options);
        gatehouse::net::request request;
        request.method = "POST";
        request.url = url() + path;
        request.body = body;
        if (!token.empty()) {
            request.headers.push_back({"Authorization", token});
        }
        return client.send(request);
    }

    bool answers_range() const { return post("/v3/kv/range", R"({"key":"AA=="})") == 200; }

    // fork and exec with every ETCD_* variable removed, as etcd reads them all as flags.
    void spawn()
    {
        const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
        std::vector<std::string> args = {binary_,
                                         "--name=test",
                                         "--data-dir=" + (dir_ / "data").string(),
                                         "--listen-client-urls=" + url(),
                                         "--advertise-client-urls=" + url(),
                                         "--listen-peer-urls=" + peer,
                                         "--initial-advertise-peer-urls=" + peer,
                                         "--initial-cluster=test=" + peer,
                                         "--heartbeat-interval=10",
                                         "--election-timeout=100"};
        args.insert(args.end(), extra_flags_.begin(), extra_flags_.end());
        std::vector<char*> argv;
        for (auto& arg : args) {
            argv.push_back(arg.data());
        }
        argv.push_back(nullptr);
        std::vector<char*> envp;
        for (char** variable = environ; *variable != nullptr; ++variable) {
            if (!std::string_view(*variable).starts_with("ETCD_")) {
                envp.push_back(*variable);
            }
        }
        envp.push_back(nullptr);
        const std::string log_path = (dir_ / "etcd.log").string();

        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
            if (log_fd >= 0) {
                ::dup2(log_fd, STDOUT_FILENO);
                ::dup2(log_fd, STDERR_FILENO);
            }
            ::execve(argv[0], argv.data(), envp.data());
            ::_exit(127);
        }
    }

    std::string binary_;
    std::vector<std::string> extra_flags_;
    std::string scheme_;
    std::uint16_t client_port_;
    std::uint16_t peer_port_;
    std::filesystem::path dir_;
    pid_t pid_ = -1;
};

// A TCP forwarder on 127.0.0.1 in front of one etcd member, so that a test can take the member
// out of one store's reach while etcd itself runs on and moves ahead. cut() closes the
// listening socket and every connection being forwarded, so the store sees its connections end
// and new ones refused; restore() listens again on the same port. Everything etcd sends back
// is kept, so the test can tell what etcd answered. One thread does all the socket work, so no
// socket is closed under a poll(); cut() and restore() ask it and wait until it is done.
class tcp_forwarder {
public:
    explicit tcp_forwarder(std::uint16_t target_port) : target_port_(target_port)
    {
        REQUIRE(::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) == 0);
        listener_ = open_listener(0);
        REQUIRE(listener_ >= 0);
        sockaddr_in address{};
        socklen_t length = sizeof address;
        REQUIRE(::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) == 0);
        port_ = ntohs(address.sin_port);
        thread_ = std::thread([this] { run(); });
    }

    ~tcp_forwarder()
    {
        command('q');
        thread_.join();
        close_all();
        ::close(wake_[0]);
        ::close(wake_[1]);
    }

    tcp_forwarder(const tcp_forwarder&) = delete;
    tcp_forwarder& operator=(const tcp_forwarder&) = delete;

    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

    void cut() { REQUIRE(command('c')); }

    // Fails the test when the port cannot be had again.
    void restore() { REQUIRE(command('r')); }

    // Whether etcd has sent `text` back through the forwarder, on any connection.
    bool etcd_sent(std::string_view text) const
    {
        std::lock_guard lock(mutex_);
        return from_etcd_.find(text) != std::string::npos;
    }

private:
    struct link {
        int client;
        int server;
    };

    // A listening socket on 127.0.0.1:`port` (0 for any), or -1. SO_REUSEADDR lets it have its
    // port again while connections closed by cut() linger in TIME_WAIT.
    static int open_listener(std::uint16_t port)
    {
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            return -1;
        }
        const int on = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        address.sin_port = htons(port);
        if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
            ::listen(fd, 16) != 0) {
            ::close(fd);
            return -1;
        }
        return fd;
    }

    // Has the thread carry out `what` ('c'ut, 'r'estore, 'q'uit); whether that worked. Bounded,
    // so a stuck thread fails the test rather than hanging it.
    bool command(char what)
    {
        std::unique_lock lock(mutex_);
        const auto wanted = ++commands_sent_;
        if (::write(wake_[1], &what, 1) != 1) {
            return false;
        }
        return done_.wait_for(lock, 5s, [&] { return commands_done_ >= wanted; }) &&
               command_worked_;
    }

    void run()
    {
        std::vector<char> buffer(64 * 1024);
        for (;;) {
            std::vector<pollfd> polled;
            for (const auto& each : links_) {
                polled.push_back({each.client, POLLIN, 0});
                polled.push_back({each.server, POLLIN, 0});
            }
            polled.push_back({wake_[0], POLLIN, 0});
            if (listener_ >= 0) {
                polled.push_back({listener_, POLLIN, 0});
            }
            if (::poll(polled.data(), polled.size(), 1000) < 0) {
                continue;
            }

            std::vector<bool> dead(links_.size(), false);
            for (std::size_t i = 0; i < links_.size(); ++i) {
                const auto ready = POLLIN | POLLHUP | POLLERR;
                if ((polled[2 * i].revents & ready) != 0) {
                    dead[i] = !pass_on(links_[i].client, links_[i].server, buffer, false);
                }
                if (!dead[i] && (polled[2 * i + 1].revents & ready) != 0) {
                    dead[i] = !pass_on(links_[i].server, links_[i].client, buffer, true);
                }
            }
            for (std::size_t i = links_.size(); i-- > 0;) {
                if (dead[i]) {
                    ::close(links_[i].client);
                    ::close(links_[i].server);
                    links_.erase(links_.begin() + static_cast<std::ptrdiff_t>(i));
                }
            }
            const std::size_t wake = 2 * dead.size();
            if (polled.size() > wake + 1 && (polled[wake + 1].revents & POLLIN) != 0) {
                accept_one();
            }
            if ((polled[wake].revents & POLLIN) != 0) {
                char what = 0;
                while (::read(wake_[0], &what, 1) == 1) {
                    bool worked = true;
                    if (what == 'c' || what == 'q') {
                        close_all();
                    } else if (what == 'r' && listener_ < 0) {
                        listener_ = open_listener(port_);
                        worked = listener_ >= 0;
                    }
                    {
                        std::lock_guard lock(mutex_);
                        ++commands_done_;
                        command_worked_ = worked;
                    }
                    done_.notify_all();
                    if (what == 'q') {
                        return;
                    }
                }
            }
        }
    }

    // Moves what `from` has to `to`; false once either side is done or broken.
    bool pass_on(int from, int to, std::vector<char>& buffer, bool from_etcd)
    {
        const auto received = ::recv(from, buffer.data(), buffer.size(), 0);
        if (received <= 0) {
            return false;
        }
        if (from_etcd) {
            std::lock_guard lock(mutex_);
            from_etcd_.append(buffer.data(), static_cast<std::size_t>(received));
        }
        for (ssize_t sent = 0; sent < received;) {
            const auto wrote = ::send(to, buffer.data() + sent,
                                      static_cast<std::size_t>(received - sent), MSG_NOSIGNAL);
            if (wrote <= 0) {
                return false;
            }
            sent += wrote;
        }
        return true;
    }

    // Takes one connection and opens its twin to etcd; a client etcd will not take is closed.
    void accept_one()
    {
        const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) {
            return;
        }
        const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        address.sin_port = htons(target_port_);
        if (server < 0 ||
            ::connect(server, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
            if (server >= 0) {
                ::close(server);
            }
            ::close(client);
            return;
        }
        links_.push_back({client, server});
    }

    void close_all()
    {
        if (listener_ >= 0) {
            ::close(listener_);
            listener_ = -1;
        }
        for (const auto& each : links_) {
            ::close(each.client);
            ::close(each.server);
        }
        links_.clear();
    }

    const std::uint16_t target_port_;
    std::uint16_t port_ = 0;
    int wake_[2] = {-1, -1};
    // Touched only by the thread once it runs.
    int listener_ = -1;
    std::vector<link> links_;
    std::thread thread_;

    mutable std::mutex mutex_;
    std::condition_variable done_;
    std::uint64_t commands_sent_ = 0;
    std::uint64_t commands_done_ = 0;
    bool command_worked_ = false;
    std::string from_etcd_;
};

etcd_options options_for(std::vector<std::string> endpoints)
{
    etcd_options options;
    options.endpoints = std::move(endpoints);
    options.request_timeout = 2s;
    return options;
}

std::unique_ptr<store> open_store(const etcd_options& options)
{
    std::string why;
    auto opened = open_etcd_store(options, &why);
    INFO(why);
    REQUIRE(opened);
    return std::move(*opened);
}

std::unique_ptr<store> open_store(const etcd_process& etcd)
{
    return open_store(options_for({etcd.url()}));
}

std::unique_ptr<watch_handle> watch_into(store& target, std::string_view prefix,
                                         std::shared_ptr<event_recorder> recorder)
{
    auto handle = target.watch(prefix, [recorder](const change_event& e) { (*recorder)(e); });
    REQUIRE(handle);
    return std::move(*handle);
}

std::optional<gatehouse::store::lock_lease> require_lock(store& target, std::string_view name,
                                                         std::chrono::seconds ttl)
{
    auto taken = target.try_lock(name, ttl);
    REQUIRE(taken);
    return *taken;
}

} // namespace

TEST_CASE("an etcd store puts, reads, replaces and removes values byte for byte", "[etcd]")
{
    etcd_process etcd;
    etcd.start();
    auto store = open_store(etcd);
    const std::string binary("\0\x01\xff\n\r binary", 12);
    const std::string large(256 * 1024, 'x');

    REQUIRE(store->put("certificates/example.com", "first"));
    CHECK(store->get("certificates/example.com").value() == "first");
    REQUIRE(store->put("certificates/example.com", "second"));
    CHECK(store->get("certificates/example.com").value() == "second");
    REQUIRE(store->put("a/binary", binary));
    REQUIRE(store->put("a/empty", ""));
    REQUIRE(store->put("a/large", large));
    CHECK(store->get("a/binary").value() == binary);
    CHECK(store->get("a/empty").value() == std::string());
    CHECK(store->get("a/large").value() == large);

    REQUIRE(store->remove("certificates/example.com"));
    CHECK(store->get("certificates/example.com").value() == std::nullopt);
    CHECK(store->remove("never/written"));
    CHECK(store->describe() == "etcd:" + etcd.url() + "/gatehouse/");
}

TEST_CASE("an etcd store lists keys under a prefix at any depth, sorted", "[etcd]")
{
    etcd_process etcd;
    etcd.start();
    auto store = open_store(etcd);
    for (const char* key :
         {"certificates/b.example", "certificates/a.example", "certificates/*.example",
          "certificates/a.example/deeper", "challenges/token", "certificatesX"}) {
        REQUIRE(store->put(key, "v"));
    }
    // A lock record lives beside the values but is never listed.
    REQUIRE(require_lock(*store, "certificates/a.example", 5s));

    CHECK(store->list("certificates/").value() ==
          std::vector<std::string>{"certificates/*.example", "certificates/a.example",
                                   "certificates/a.example/deeper", "certificates/b.example"});
    CHECK(store->list("certificates/a").value() ==
          std::vector<std::string>{"certificates/a.example", "certificates/a.example/deeper"});
    CHECK(store->list("").value().size() == 6);
    CHECK(store->list("nothing/").value().empty());
}

TEST_CASE("two etcd stores with different prefixes share a cluster without seeing each other",
          "[etcd]")
{
    etcd_process etcd;
    etcd.start();
    auto blue_options = options_for({etcd.url()});
    blue_options.prefix = "/blue/";
    auto green_options = blue_options;
    green_options.prefix = "/green/";
    auto blue = open_store(blue_options);
    auto green = open_store(green_options);

    REQUIRE(blue->put("certificates/example.com", "blue"));
    REQUIRE(green->put("certificates/example.com", "green"));

    CHECK(blue->get("certificates/example.com").value() == "blue");
    CHECK(green->get("certificates/example.com").value() == "green");
    CHECK(blue->list("").value() == std::vector<std::string>{"certificates/example.com"});
    CHECK(blue->describe() == "etcd:" + etcd.url() + "/blue/");
}

TEST_CASE("an etcd store refuses invalid keys and lock arguments without asking etcd", "[etcd]")
{
    etcd_process etcd;
    etcd.start();
    auto store = open_store(etcd);

    CHECK(store->get("../x").error() == errc::invalid_key);
    CHECK(store->put(".locks/certificates/x", "forged").error() == errc::invalid_key);
    CHECK(store->remove("a//b").error() == errc::invalid_key);
    CHECK(store->list("/").error() == errc::invalid_key);
    CHECK(store->try_lock("", 5s).error() == errc::invalid_key);
    CHECK(store->try_lock("certificates/x", 0s).error() == errc::invalid_argument);
    CHECK(store->watch("a//", [](const change_event&) {}).error() == errc::invalid_key);
}

TEST_CASE("an etcd lock is held by one store at a time until it is released", "[etcd]")
{
    etcd_process etcd;
    etcd.start();
    auto first = open_store(etcd);
    auto second = open_store(etcd);

    const auto lease = require_lock(*first, "certificates/example.com", 10s);
    REQUIRE(lease);
    CHECK(lease->token.size() == 32);
    CHECK(lease->ttl == 10s);
    CHECK_FALSE(require_lock(*second, "certificates/example.com", 10s));
    // Not re-entrant, and other names are free.
    CHECK_FALSE(require_lock(*first, "certificates/example.com", 10s));
    const auto other = require_lock(*second, "certificates/other.example", 10s);
    CHECK(other);
    // Locks and values do not share names.
    CHECK(first->get("certificates/example.com").value() == std::nullopt);

    REQUIRE(first->refresh(*lease));
    REQUIRE(first->unlock(*lease));
    const auto taken = require_lock(*second, "certificates/example.com", 10s);
    REQUIRE(taken);
    CHECK(taken->token != lease->token);
    CHECK(first->refresh(*lease).error() == errc::lock_lost);
    CHECK(first->unlock(*lease).error() == errc::lock_lost);
    // Any store may refresh a lease it did not take itself, given the lease.
    CHECK(first->refresh(*taken));
}

TEST_CASE("an etcd lock whose holder stopped refreshing is taken over after its ttl", "[etcd]")
{
    etcd_process etcd;
    etcd.start();
    auto holder = open_store(etcd);
    auto taker = open_store(etcd);
    const auto lease = require_lock(*holder, "ca/internal", 1s);
    REQUIRE(lease);

    const auto started = std::chrono::steady_clock::now();
    std::optional<gatehouse::store::lock_lease> taken;
    REQUIRE(wait_until(
        [&] {
            taken = require_lock(*taker, "ca/internal", 5s);
            return taken.has_value();
        },
        5s));
    const auto waited = std::chrono::steady_clock::now() - started;

    // etcd checks for expired leases every half second.
    CHECK(waited >= 900ms);
    CHECK(holder->refresh(*lease).error() == errc::lock_lost);
    CHECK(holder->unlock(*lease).error() == errc::lock_lost);
    CHECK(taker->refresh(*taken));
}

TEST_CASE("a refreshed etcd lock outlives its ttl", "[etcd]")
{
    etcd_process etcd;
    etcd.start();
    auto holder = open_store(etcd);
    auto other = open_store(etcd);
    const auto lease = require_lock(*holder, "accounts/ca-1", 1s);
    REQUIRE(lease);

    for (int beat = 0; beat < 6; ++beat) {
        std::this_thread::sleep_for(300ms);
        REQUIRE(holder->refresh(*lease));
        CHECK_FALSE(require_lock(*other, "accounts/ca-1", 1s));
    }
    CHECK(holder->unlock(*lease));
}

TEST_CASE("an etcd lock whose record was deleted by hand is lost", "[etcd]")
{
    etcd_process etcd;
    etcd.start();
    auto holder = open_store(etcd);
    const auto lease = require_lock(*holder, "certificates/example.com", 10s);
    REQUIRE(lease);

    // What `etcdctl del /gatehouse/.locks/certificates/example.com` does.
    const std::string key = "L2dhdGVob3VzZS8ubG9ja3MvY2VydGlmaWNhdGVzL2V4YW1wbGUuY29t";
    REQUIRE(etcd.post("/v3/kv/deleterange", R"({"key":")" + key + R"("})") == 200);

    CHECK(holder->refresh(*lease).error() == errc::lock_lost);
    CHECK(require_lock(*holder, "certificates/example.com", 10s));
}

TEST_CASE("an etcd watch reports puts and removes under its prefix from any store", "[etcd]")
{
    etcd_process etcd;
    etcd.start();
    auto watching = open_store(etcd);
    auto writing = open_store(etcd);
    auto challenges = std::make_shared<event_recorder>();
    auto everything = std::make_shared<event_recorder>();
    const auto challenge_handle = watch_into(*watching, "challenges/", challenges);
    const auto everything_handle = watch_into(*watching, "", everything);

    REQUIRE(writing->put("challenges/token-1", "key authorization"));
    REQUIRE(writing->put("certificates/example.com", "bundle"));
    REQUIRE(require_lock(*writing, "challenges/token-1", 5s));
    REQUIRE(writing->remove("challenges/token-1"));

    REQUIRE(wait_until([&] { return challenges->has(change_kind::removed, "challenges/token-1"); },
                       report_deadline));
    CHECK(challenges->has(change_kind::put, "challenges/token-1"));
    CHECK_FALSE(challenges->saw_key("certificates/example.com"));
    REQUIRE(wait_until([&] { return everything->size() >= 3; }, report_deadline));
    CHECK(everything->has(change_kind::put, "certificates/example.com"));
    // Lock records are never reported, and nothing asked for a resync.
    for (const auto& event : everything->events()) {
        CHECK(event.key.find("locks") == std::string::npos);
        CHECK(event.kind != change_kind::resync);
    }
}

TEST_CASE("an etcd watch handle stops its callbacks, even from inside one", "[etcd]")
{
    etcd_process etcd;
    etcd.start();
    auto store = open_store(etcd);

    SECTION("destroyed from another thread")
    {
        auto stopped = std::make_shared<event_recorder>();
        auto sentinel = std::make_shared<event_recorder>();
        auto handle = watch_into(*store, "", stopped);
        const auto sentinel_handle = watch_into(*store, "", sentinel);
        handle.reset();
        REQUIRE(store->put("certificates/example.com", "bundle"));
        REQUIRE(wait_until([&] { return sentinel->saw_key("certificates/example.com"); },
                           report_deadline));
        CHECK(stopped->size() == 0);
    }
    SECTION("destroyed by its own callback")
    {
        CHECK(calls_to_a_watch_that_ends_itself(*store, report_deadline) == 1);
    }
    SECTION("outliving its store")
    {
        auto handle = watch_into(*store, "", std::make_shared<event_recorder>());
        store.reset();
        handle.reset();
        SUCCEED("destroyed in that order without a crash");
    }
}

TEST_CASE("an etcd watch hears resync once etcd is back after a crash, then new changes", "[etcd]")
{
    etcd_process etcd;
    etcd.start();
    auto store = open_store(etcd);
    auto events = std::make_shared<event_recorder>();
    const auto handle = watch_into(*store, "certificates/", events);
    REQUIRE(store->put("certificates/before.example", "1"));
    REQUIRE(wait_until([&] { return events->saw_key("certificates/before.example"); },
                       report_deadline));

    etcd.stop();
    std::this_thread::sleep_for(300ms);
    CHECK_FALSE(events->has(change_kind::resync, ""));
    etcd.start();

    REQUIRE(wait_until([&] { return events->has(change_kind::resync, ""); }, 8s));
    REQUIRE(store->put("certificates/after.example", "2"));
    CHECK(
        wait_until([&] { return events->saw_key("certificates/after.example"); }, report_deadline));
}

TEST_CASE("an etcd watch resyncs when etcd compacted the revision it resumes from, then hears "
          "new changes",
          "[etcd]")
{
    etcd_process etcd;
    etcd.start();
    // The watching store reaches etcd only through the forwarder, so it can be cut off while
    // etcd runs on; the writing store talks to etcd directly.
    tcp_forwarder forwarder(etcd.client_port());
    auto watching = open_store(options_for({forwarder.url()}));
    auto writing = open_store(etcd);
    auto events = std::make_shared<event_recorder>();
    const auto handle = watch_into(*watching, "certificates/", events);
    REQUIRE(writing->put("certificates/before.example", "1"));
    REQUIRE(wait_until([&] { return events->saw_key("certificates/before.example"); },
                       report_deadline));

    // Cut off, the watcher will resume from the revision after that put. Changes made
    // meanwhile, then compacted away, are history etcd can no longer replay to it.
    forwarder.cut();
    REQUIRE(writing->put("certificates/a.example", "A"));
    REQUIRE(writing->put("certificates/b.example", "B"));
    const auto revision = etcd.revision();
    REQUIRE(revision > 0);
    REQUIRE(etcd.post("/v3/kv/compaction", R"({"revision":")" + std::to_string(revision) +
                                               R"(","physical":true})") == 200);
    CHECK_FALSE(events->saw_key("certificates/a.example"));
    CHECK_FALSE(events->has(change_kind::resync, ""));
    forwarder.restore();

    REQUIRE(wait_until([&] { return events->has(change_kind::resync, ""); }, 8s));
    // etcd did cancel the resumed watch as compacted, naming where its history now begins: the
    // path under test, not merely a reconnect that etcd could replay.
    CHECK(wait_until(
        [&] {
            return forwarder.etcd_sent(R"("compact_revision":")" + std::to_string(revision) +
                                       R"(")");
        },
        report_deadline));
    CHECK(watching->get("certificates/a.example").value() == "A");
    CHECK(watching->get("certificates/b.example").value() == "B");
    // Only a stream that stands delivers changes, so hearing one made now shows the watcher
    // moved on to where etcd's history begins instead of asking again for the compacted
    // revision. The deadline allows for the watcher's pause before it reconnects.
    REQUIRE(writing->put("certificates/c.example", "C"));
    CHECK(wait_until([&] { return events->has(change_kind::put, "certificates/c.example"); }, 8s));
}

TEST_CASE("an etcd store fails fast with unavailable while etcd is down, and recovers", "[etcd]")
{
    etcd_process etcd;
    etcd.start();
    auto store = open_store(etcd);
    REQUIRE(store->put("certificates/example.com", "bundle"));

    etcd.stop();
    const auto started = std::chrono::steady_clock::now();
    CHECK(store->get("certificates/example.com").error() == errc::unavailable);
    CHECK(store->put("certificates/example.com", "new").error() == errc::unavailable);
    CHECK(store->list("").error() == errc::unavailable);
    CHECK(store->try_lock("certificates/example.com", 5s).error() == errc::unavailable);
    CHECK(std::chrono::steady_clock::now() - started < 1s);

    // A watch set up while etcd is down stands, and reports a resync once etcd is back, so a
    // reader serving from a local copy meanwhile knows to read everything again.
    auto events = std::make_shared<event_recorder>();
    const auto handle = watch_into(*store, "certificates/", events);

    etcd.start();
    CHECK(store->get("certificates/example.com").value() == "bundle");
    REQUIRE(wait_until([&] { return events->has(change_kind::resync, ""); }, 8s));
    REQUIRE(store->put("certificates/late.example", "3"));
    CHECK(
        wait_until([&] { return events->saw_key("certificates/late.example"); }, report_deadline));
}

TEST_CASE("opening an etcd store that no endpoint answers for fails, naming the endpoint", "[etcd]")
{
    const std::string nowhere = "http://127.0.0.1:" + std::to_string(free_port());
    std::string why;

    const auto started = std::chrono::steady_clock::now();
    const auto opened = open_etcd_store(options_for({nowhere}), &why);

    REQUIRE_FALSE(opened);
    CHECK(opened.error() == errc::unavailable);
    CHECK_THAT(why, Contains("etcd store etcd:" + nowhere + "/gatehouse/ is unavailable"));
    CHECK_THAT(why, Contains("connect to 127.0.0.1:"));
    CHECK(std::chrono::steady_clock::now() - started < 1s);
}

TEST_CASE("an etcd store moves on to the next endpoint when one is down", "[etcd]")
{
    etcd_process etcd;
    etcd.start();
    const std::string nowhere = "http://127.0.0.1:" + std::to_string(free_port());
    auto store = open_store(options_for({nowhere, etcd.url()}));
    auto events = std::make_shared<event_recorder>();
    const auto handle = watch_into(*store, "", events);

    REQUIRE(store->put("certificates/example.com", "bundle"));
    CHECK(store->get("certificates/example.com").value() == "bundle");
    CHECK(wait_until([&] { return events->saw_key("certificates/example.com"); }, report_deadline));
    CHECK(store->describe() == "etcd:" + nowhere + "," + etcd.url() + "/gatehouse/");
}

TEST_CASE("etcd store options that cannot work are refused before connecting", "[etcd]")
{
    auto options = options_for({"http://127.0.0.1:2379"});
    SECTION("no endpoint")
    {
        options.endpoints.clear();
    }
    SECTION("an endpoint with a path")
    {
        options.endpoints = {"http://127.0.0.1:2379/v3"};
    }
    SECTION("an endpoint of another scheme")
    {
        options.endpoints = {"unix:///run/etcd.sock"};
    }
    SECTION("a prefix without its slashes")
    {
        options.prefix = "gatehouse";
    }
    SECTION("a password without a username")
    {
        options.password = "secret-password";
    }
    SECTION("a client certificate without its key")
    {
        options.certificate_file = "/etc/ssl/client.pem";
    }
    std::string why;

    const auto opened = open_etcd_store(options, &why);

    REQUIRE_FALSE(opened);
    CHECK(opened.error() == errc::invalid_argument);
    CHECK_FALSE(why.empty());
    CHECK_THAT(why, !Contains("secret-password"));
}

TEST_CASE("an etcd store authenticates, and again once its token has expired", "[etcd]")
{
    etcd_process etcd({"--auth-token-ttl=1"});
    etcd.start();
    REQUIRE(etcd.post("/v3/auth/user/add", R"({"name":"root","password":"root-password"})") == 200);
    REQUIRE(etcd.post("/v3/auth/user/grant", R"({"user":"root","role":"root"})") == 200);
    // A user who may only read below the prefix: "/gatehouse/" up to "/gatehouse0".
    REQUIRE(etcd.post("/v3/auth/user/add", R"({"name":"reader","password":"reader-password"})") ==
            200);
    REQUIRE(etcd.post("/v3/auth/role/add", R"({"name":"reader"})") == 200);
    REQUIRE(etcd.post("/v3/auth/role/grant",
                      R"({"name":"reader","perm":{"permType":"READ","key":"L2dhdGVob3VzZS8=",)"
                      R"("range_end":"L2dhdGVob3VzZTA="}})") == 200);
    REQUIRE(etcd.post("/v3/auth/user/grant", R"({"user":"reader","role":"reader"})") == 200);
    REQUIRE(etcd.post("/v3/auth/enable", "{}") == 200);
    auto options = options_for({etcd.url()});

    SECTION("with the right password")
    {
        options.username = "root";
        options.password = "root-password";
        auto store = open_store(options);
        auto events = std::make_shared<event_recorder>();
        const auto handle = watch_into(*store, "", events);
        REQUIRE(store->put("certificates/example.com", "bundle"));
        REQUIRE(wait_until([&] { return events->saw_key("certificates/example.com"); },
                           report_deadline));

        // Simple tokens lapse after --auth-token-ttl seconds unused.
        std::this_thread::sleep_for(2500ms);
        CHECK(store->get("certificates/example.com").value() == "bundle");
        CHECK(require_lock(*store, "certificates/example.com", 5s));
        CHECK_THAT(store->describe(), !Contains("root-password"));
    }
    SECTION("with a wrong password")
    {
        options.username = "root";
        options.password = "wrong-password";
        std::string why;
        const auto opened = open_etcd_store(options, &why);
        REQUIRE_FALSE(opened);
        CHECK(opened.error() == errc::io_failed);
        CHECK_THAT(why, Contains("authentication failed"));
        CHECK_THAT(why, !Contains("wrong-password"));
    }
    SECTION("as a user who may only read")
    {
        options.username = "reader";
        options.password = "reader-password";
        std::string why;
        const auto opened = open_etcd_store(options, &why);
        REQUIRE_FALSE(opened);
        CHECK(opened.error() == errc::not_writable);
        CHECK_THAT(why, Contains("permission denied"));
    }
    SECTION("without credentials")
    {
        std::string why;
        const auto opened = open_etcd_store(options, &why);
        REQUIRE_FALSE(opened);
        CHECK(opened.error() == errc::io_failed);
    }
}

TEST_CASE("an etcd store speaks mutual TLS to a cluster that requires it", "[etcd]")
{
    // A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
    const temporary_directory certificates;
    const auto& dir = certificates.path();
    const std::string script =
        "cd '" + dir.string() +
        "' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
        "-subj /CN=test-ca -keyout ca.key -out ca.pem"
        " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=etcd "
        "-keyout server.key -out server.csr"
        " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
        "-extfile <(printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth') "
        "-out server.pem"
        " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=gatehouse "
        "-keyout client.key -out client.csr"
        " && openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
        "-extfile <(printf 'extendedKeyUsage=clientAuth') -out client.pem";
    const std::string command = "bash -c \"" + script + "\" >/dev/null 2>&1";
    REQUIRE(std::system(command.c_str()) == 0);
    const auto file = [&](const char* name) {
        return (dir / name).string();
    };

    etcd_process etcd({"--cert-file=" + file("server.pem"), "--key-file=" + file("server.key"),
                       "--trusted-ca-file=" + file("ca.pem"), "--client-cert-auth"},
                      "https");
    auto options = options_for({etcd.url()});
    options.ca_file = file("ca.pem");
    options.certificate_file = file("client.pem");
    options.key_file = file("client.key");
    etcd.start([&] { return static_cast<bool>(open_etcd_store(options)); });

    auto store = open_store(options);
    auto events = std::make_shared<event_recorder>();
    const auto handle = watch_into(*store, "", events);
    REQUIRE(store->put("certificates/example.com", "bundle"));
    CHECK(store->get("certificates/example.com").value() == "bundle");
    CHECK(wait_until([&] { return events->saw_key("certificates/example.com"); }, report_deadline));

    SECTION("but not without the client certificate")
    {
        options.certificate_file.clear();
        options.key_file.clear();
        const auto opened = open_etcd_store(options);
        REQUIRE_FALSE(opened);
        CHECK(opened.error() == errc::unavailable);
    }
}

TEST_CASE("a heartbeat that cannot reach etcd gives the lock up before its lease runs out",
          "[etcd]")
{
    etcd_process etcd;
    etcd.start();
    auto store = open_store(etcd);
    const auto lease = require_lock(*store, "certificates/example.com", 3s);
    REQUIRE(lease);
    const auto taken_at = std::chrono::steady_clock::now();
    gatehouse::store::lock_heartbeat heartbeat(*store, *lease);

    // etcd away: every refresh fails with unavailable, and the holder must stop while its
    // lease (3 s) still keeps everyone else out.
    etcd.stop();
    REQUIRE(wait_until([&] { return heartbeat.lost(); }, 4s));
    const auto lost_after = std::chrono::steady_clock::now() - taken_at;
    CHECK(lost_after < 3s);
    CHECK(lost_after >= 1900ms);
}
