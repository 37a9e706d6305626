// Which allocator serves malloc in this process.
//
// The gatehouse executable links mimalloc (unless built with GATEHOUSE_MIMALLOC=OFF), which
// then answers every malloc and free, OpenSSL's included. glibc's allocator takes an arena
// lock around most calls as soon as a process has a second thread, and gatehouse always has
// several; a TLS handshake makes some 650 allocations, so that tax was about 5% of its CPU.
// mimalloc's per-thread heaps need no lock when a thread frees what it allocated.
#pragma once

#include <string>

namespace gatehouse::proxy {

// "mimalloc 2.0.9", or what the process uses instead and why, for `gatehouse version` and
// the start-up log. Allocates and frees a few bytes to find out.
std::string allocator_description();

} // namespace gatehouse::proxy
