// A TCP socket whose reads, writes and connects end at a deadline.
//
// Beast's tcp_stream does the same by arming a timer when an operation starts and cancelling it
// when the operation ends: under keep-alive load that is a timer-queue insertion, a removal and
// one extra completion through the scheduler for every read and every write, a good part of what
// a proxied request costs. Here the deadline is a plain time point, and the socket's one timer
// runs lazily: it is armed for the earliest deadline an operation has started under, and when it
// fires it either closes the socket (the deadline passed with an operation pending) or re-arms
// for the deadline now in force. Pushing a deadline later, which every keep-alive request does,
// costs a store.
//
// An operation cut short by its deadline completes with beast::error::timeout, as with Beast.
// The socket is closed then, and stays closed: whoever sees the timeout drops the connection.
//
// Internal to proxy/: it exposes Asio, and is included by .cpp files only.
#pragma once

#include "proxy/coarse_clock.hpp"
#include "proxy/net.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <sys/socket.h>
#include <sys/uio.h>
#include <utility>

#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/connect.hpp>
#include <boost/beast/core/error.hpp>

namespace gatehouse::proxy {

namespace timed_socket_detail {

using clock = std::chrono::steady_clock;

// What the socket's operations and its timer share. Operations in flight hold it, so it outlives
// the timed_socket when one is destroyed with an operation pending; the timer's handler holds it
// weakly, so a forgotten timer keeps nothing alive.
struct state : std::enable_shared_from_this<state> {
    explicit state(tcp_socket s) : socket(std::move(s)), timer(socket.get_executor()) {}

    tcp_socket socket;
    steady_timer timer;

    // The deadline for operations starting from now; max() for none.
    clock::time_point deadline = clock::time_point::max();
    // When the timer will fire; max() while it is not armed.
    clock::time_point armed_for = clock::time_point::max();
    // Tells the current arming from cancelled ones whose handlers are still queued.
    std::uint64_t generation = 0;
    unsigned pending = 0;
    bool timed_out = false;

    void operation_started()
    {
        ++pending;
        if (deadline < armed_for) {
            arm(deadline);
        }
    }

    void arm(clock::time_point when)
    {
        armed_for = when;
        const auto current = ++generation;
        timer.expires_at(when);
        timer.async_wait([weak = weak_from_this(), current](error_code ec) {
            auto self = weak.lock();
            if (!ec && self && self->generation == current) {
                self->fired();
            }
        });
    }

    void fired()
    {
        armed_for = clock::time_point::max();
        if (pending == 0 || deadline == clock::time_point::max()) {
            // Nothing waits under a deadline: the next operation arms the timer again.
            return;
        }
        if (clock::now() >= deadline) {
            timed_out = true;
            error_code ignored;
            socket.close(ignored);
            return;
        }
        arm(deadline);
    }

    // The error an operation reports: after a timeout, whatever failed, it failed for that.
    error_code finished(error_code ec)
    {
        --pending;
        return ec && timed_out ? error_code(beast::error::timeout) : ec;
    }
};

// Wraps an operation's completion handler to count the operation out and report timeouts. The
// associator below hands Asio the wrapped handler's executor, allocator and cancellation slot, so
// the operation completes exactly as it would have without the wrapper.
template <typename Handler>
struct completion {
    Handler handler;
    std::shared_ptr<state> shared;

    template <typename... Results>
    void operator()(error_code ec, Results&&... results)
    {
        ec = shared->finished(ec);
        std::move(handler)(ec, std::forward<Results>(results)...);
    }
};

} // namespace timed_socket_detail

class timed_socket {
public:
    using executor_type = tcp_socket::executor_type;
    using lowest_layer_type = tcp_socket::lowest_layer_type;
    using clock = timed_socket_detail::clock;

    explicit timed_socket(tcp_socket socket)
        : state_(std::make_shared<timed_socket_detail::state>(std::move(socket)))
    {}

    explicit timed_socket(const executor_type& executor) : timed_socket(tcp_socket(executor)) {}

    timed_socket(timed_socket&&) noexcept = default;
    timed_socket& operator=(timed_socket&&) = delete;
    timed_socket(const timed_socket&) = delete;
    timed_socket& operator=(const timed_socket&) = delete;

    // Operations still in flight complete with an error, as when a plain socket is destroyed.
    ~timed_socket()
    {
        if (state_) {
            close();
        }
    }

    executor_type get_executor() noexcept { return state_->socket.get_executor(); }
    tcp_socket& socket() noexcept { return state_->socket; }
    lowest_layer_type& lowest_layer() noexcept { return state_->socket.lowest_layer(); }

    // The deadline applies to operations started from now on. One already in flight is held
    // to the later of its own deadline and the new one, which is all a caller that sets the
    // deadline before each operation needs.
    void expires_at(clock::time_point deadline) noexcept { state_->deadline = deadline; }
    // From the coarse clock: a few milliseconds early, for a fraction of the cost per request.
    void expires_after(clock::duration timeout) noexcept
    {
        expires_at(coarse_clock::now() + timeout);
    }
    void expires_never() noexcept { state_->deadline = clock::time_point::max(); }

    void close() noexcept
    {
        error_code ignored;
        state_->socket.close(ignored);
        state_->timer.cancel();
        state_->armed_for = clock::time_point::max();
    }

    // Writes what the kernel takes at once, without waiting, and returns how many bytes that
    // was: 0 when the socket's send buffer is full or the write failed. The caller sends the
    // rest with async_write, which reports any error. A response that fits the send buffer,
    // as most do, then costs one system call and no trip through the scheduler; Asio's own
    // async_write would make the same call and then post its completion.
    //
    // Only for a socket with no asynchronous write in flight, or bytes would go out of order.
    template <typename ConstBuffers>
    std::size_t write_some_now(const ConstBuffers& buffers) noexcept
    {
        std::array<iovec, 8> pieces;
        std::size_t count = 0;
        for (auto it = asio::buffer_sequence_begin(buffers);
             it != asio::buffer_sequence_end(buffers) && count < pieces.size(); ++it) {
            const asio::const_buffer piece(*it);
            if (piece.size() > 0) {
                pieces[count++] = {const_cast<void*>(piece.data()), piece.size()};
            }
        }
        if (count == 0 || !state_->socket.is_open()) {
            return 0;
        }
        msghdr message{};
        message.msg_iov = pieces.data();
        message.msg_iovlen = count;
        const ssize_t sent =
            ::sendmsg(state_->socket.native_handle(), &message, MSG_DONTWAIT | MSG_NOSIGNAL);
        return sent > 0 ? static_cast<std::size_t>(sent) : 0;
    }

    template <typename MutableBuffers, typename Token>
    auto async_read_some(const MutableBuffers& buffers, Token&& token)
    {
        return asio::async_initiate<Token, void(error_code, std::size_t)>(
            [this](auto handler, const MutableBuffers& into) {
                state_->operation_started();
                state_->socket.async_read_some(into, wrap(std::move(handler)));
            },
            token, buffers);
    }

    template <typename ConstBuffers, typename Token>
    auto async_write_some(const ConstBuffers& buffers, Token&& token)
    {
        return asio::async_initiate<Token, void(error_code, std::size_t)>(
            [this](auto handler, const ConstBuffers& from) {
                state_->operation_started();
                state_->socket.async_write_some(from, wrap(std::move(handler)));
            },
            token, buffers);
    }

    template <typename Token>
    auto async_connect(const tcp::endpoint& endpoint, Token&& token)
    {
        return asio::async_initiate<Token, void(error_code)>(
            [this](auto handler, const tcp::endpoint& to) {
                state_->operation_started();
                state_->socket.async_connect(to, wrap(std::move(handler)));
            },
            token, endpoint);
    }

    // Tries each resolved address in turn, all under the one deadline.
    template <typename Token>
    auto async_connect(const tcp::resolver::results_type& endpoints, Token&& token)
    {
        return asio::async_initiate<Token, void(error_code, tcp::endpoint)>(
            [this](auto handler, const tcp::resolver::results_type& to) {
                state_->operation_started();
                asio::async_connect(state_->socket, to, wrap(std::move(handler)));
            },
            token, endpoints);
    }

private:
    template <typename Handler>
    timed_socket_detail::completion<Handler> wrap(Handler handler)
    {
        return {std::move(handler), state_};
    }

    std::shared_ptr<timed_socket_detail::state> state_;
};

} // namespace gatehouse::proxy

namespace boost::asio {

template <template <typename, typename> class Associator, typename Handler,
          typename DefaultCandidate>
struct associator<Associator, gatehouse::proxy::timed_socket_detail::completion<Handler>,
                  DefaultCandidate> : Associator<Handler, DefaultCandidate> {
    static typename Associator<Handler, DefaultCandidate>::type
    get(const gatehouse::proxy::timed_socket_detail::completion<Handler>& wrapped) noexcept
    {
        return Associator<Handler, DefaultCandidate>::get(wrapped.handler);
    }

    static auto get(const gatehouse::proxy::timed_socket_detail::completion<Handler>& wrapped,
                    const DefaultCandidate& candidate) noexcept
        -> decltype(Associator<Handler, DefaultCandidate>::get(wrapped.handler, candidate))
    {
        return Associator<Handler, DefaultCandidate>::get(wrapped.handler, candidate);
    }
};

} // namespace boost::asio
