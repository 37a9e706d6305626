// Fixed-size buffers that bodies stream through, kept by a worker for reuse.
//
// Every proxied response and every request with a body passes through one such buffer. Taking
// a fresh one per message cost a 32 KiB allocation, and often new pages from the kernel, for
// each request; reusing them keeps the request path free of that. Not thread-safe: a worker
// and its sessions use their own, on the worker's thread.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace gatehouse::proxy {

class relay_buffers {
public:
    static constexpr std::size_t buffer_bytes = 32 * 1024;

    // Buffers returned beyond this many are freed, so a burst of large transfers does not pin
    // its peak memory for the life of the process.
    static constexpr std::size_t max_spare = 64;

    // A buffer of buffer_bytes, uninitialised, handed back to `owner` when it goes away.
    class lease {
    public:
        explicit lease(relay_buffers& owner) : owner_(&owner), data_(owner.take()) {}
        ~lease() { owner_->give_back(std::move(data_)); }

        lease(const lease&) = delete;
        lease& operator=(const lease&) = delete;

        char* data() const noexcept { return data_.get(); }

    private:
        relay_buffers* owner_;
        std::unique_ptr<char[]> data_;
    };

private:
    std::unique_ptr<char[]> take()
    {
        if (spare_.empty()) {
            return std::make_unique_for_overwrite<char[]>(buffer_bytes);
        }
        auto buffer = std::move(spare_.back());
        spare_.pop_back();
        return buffer;
    }

    void give_back(std::unique_ptr<char[]> buffer)
    {
        if (buffer && spare_.size() < max_spare) {
            spare_.push_back(std::move(buffer));
        }
    }

    std::vector<std::unique_ptr<char[]>> spare_;
};

} // namespace gatehouse::proxy
