#include "proxy/allocator.hpp"

#include <cstdlib>

#ifdef GATEHOUSE_WITH_MIMALLOC
#include <mimalloc.h>
#endif

namespace gatehouse::proxy {

std::string allocator_description()
{
#ifdef GATEHOUSE_WITH_MIMALLOC
    // Linking is not proof: mimalloc replaces malloc only if the dynamic linker finds its
    // malloc before glibc's. So ask whether a block from plain malloc lies in its heap. The
    // calls go through volatile pointers so that the compiler cannot drop the pair.
    void* (*volatile allocate)(std::size_t) = std::malloc;
    void (*volatile release)(void*) = std::free;
    void* probe = allocate(16);
    const bool in_effect = probe != nullptr && mi_is_in_heap_region(probe);
    release(probe);

    const int version = mi_version();
    std::string number = std::to_string(version / 100) + "." + std::to_string(version / 10 % 10) +
                         "." + std::to_string(version % 10);
    if (!in_effect) {
        return "glibc malloc (mimalloc " + number + " is linked but does not serve malloc)";
    }
    return "mimalloc " + number;
#else
    return "glibc malloc (built without mimalloc)";
#endif
}

} // namespace gatehouse::proxy
