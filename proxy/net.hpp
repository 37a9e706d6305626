// Asio and Beast names used by the proxy's implementation files.
//
// Include this only from .cpp files: Beast templates are costly to compile, so they stay out of
// every header that other modules include. Asio and Beast are compiled once, separately, in
// net/asio_impl.cpp (BOOST_ASIO_SEPARATE_COMPILATION, BOOST_BEAST_SEPARATE_COMPILATION).
#pragma once

#include <chrono>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

namespace gatehouse::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

// Every proxy object runs on one io_context, so its executor is named by that context's concrete
// type. Asio's default, the type-erased any_io_executor, makes an indirect call for each copy,
// move, comparison and prefer, and coroutines and their handlers do those at every operation.
using executor = asio::io_context::executor_type;

// A coroutine on a worker's (or the admin listener's) io_context.
template <typename T = void>
using task = asio::awaitable<T, executor>;

// Asio's I/O objects bound to that executor.
using tcp_socket = asio::basic_stream_socket<tcp, executor>;
using tcp_acceptor = asio::basic_socket_acceptor<tcp, executor>;
using tcp_resolver = asio::ip::basic_resolver<tcp, executor>;
using steady_timer =
    asio::basic_waitable_timer<std::chrono::steady_clock,
                               asio::wait_traits<std::chrono::steady_clock>, executor>;
using tcp_stream = beast::basic_stream<tcp, executor, beast::unlimited_rate_policy>;

// Completion token for coroutines that test errors by value instead of catching exceptions:
// `auto [ec, n] = co_await stream.async_read_some(buffer, use_nothrow);`
inline constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable_t<executor>{});

// "address:port" for logs; IPv6 addresses in brackets.
std::string endpoint_text(const tcp::endpoint& endpoint);

// The textual client IP, with IPv4-mapped IPv6 addresses shown as plain IPv4.
std::string address_text(const asio::ip::address& address);

} // namespace gatehouse::proxy
