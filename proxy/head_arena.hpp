// Memory for the header fields one exchange parses, request and response.
//
// Beast's parser allocates every header field on its own, and a proxied request parses two
// heads: that was most of the heap allocations a request cost. One connection's fields come
// from this fixed block instead, handed out in order and reclaimed as a whole once every piece
// handed out has been given back, which happens when the exchange's parsers are destroyed.
// A head too large for the block spills over to the heap, so the block bounds nothing; it only
// makes the common case cheap.
#pragma once

#include <array>
#include <cstddef>
#include <new>

namespace gatehouse::proxy {

class head_arena {
public:
    // Room for the fields of a typical browser request and its response together.
    static constexpr std::size_t capacity = 2048;

    void* allocate(std::size_t bytes, std::size_t alignment)
    {
        const std::size_t start = (used_ + alignment - 1) & ~(alignment - 1);
        if (alignment <= alignof(std::max_align_t) && start + bytes <= capacity) {
            used_ = start + bytes;
            ++live_;
            return storage_.data() + start;
        }
        return ::operator new(bytes, std::align_val_t(alignment));
    }

    void deallocate(void* pointer, std::size_t bytes, std::size_t alignment) noexcept
    {
        auto* byte = static_cast<std::byte*>(pointer);
        if (byte >= storage_.data() && byte < storage_.data() + capacity) {
            if (--live_ == 0) {
                used_ = 0;
            }
            return;
        }
        ::operator delete(pointer, bytes, std::align_val_t(alignment));
    }

private:
    alignas(std::max_align_t) std::array<std::byte, capacity> storage_;
    std::size_t used_ = 0;
    std::size_t live_ = 0;
};

// A standard allocator over a head_arena; without one (default-constructed) it uses the heap.
template <typename T>
class arena_allocator {
public:
    using value_type = T;

    arena_allocator() noexcept = default;
    explicit arena_allocator(head_arena& arena) noexcept : arena_(&arena) {}
    template <typename U>
    arena_allocator(const arena_allocator<U>& other) noexcept : arena_(other.arena())
    {}

    T* allocate(std::size_t count)
    {
        if (arena_ == nullptr) {
            return static_cast<T*>(::operator new(count * sizeof(T), std::align_val_t(alignof(T))));
        }
        return static_cast<T*>(arena_->allocate(count * sizeof(T), alignof(T)));
    }

    void deallocate(T* pointer, std::size_t count) noexcept
    {
        if (arena_ == nullptr) {
            ::operator delete(pointer, count * sizeof(T), std::align_val_t(alignof(T)));
            return;
        }
        arena_->deallocate(pointer, count * sizeof(T), alignof(T));
    }

    head_arena* arena() const noexcept { return arena_; }

    template <typename U>
    bool operator==(const arena_allocator<U>& other) const noexcept
    {
        return arena_ == other.arena();
    }

private:
    head_arena* arena_ = nullptr;
};

} // namespace gatehouse::proxy
