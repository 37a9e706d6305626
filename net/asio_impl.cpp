// The one translation unit that compiles the non-template parts of Asio and Beast, for every
// library that uses them (net's HTTP client, the proxy). Every other file sees them through
// BOOST_ASIO_SEPARATE_COMPILATION and BOOST_BEAST_SEPARATE_COMPILATION, set on gatehouse_net,
// which keeps a clean build fast on two cores.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
