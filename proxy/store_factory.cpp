#include "proxy/store_factory.hpp"

#include "store/file_store.hpp"
#include "store/store.hpp"

#include <stdexcept>

namespace gatehouse::proxy {

std::unique_ptr<store::store> open_configured_store(const config::gatehouse_config& config)
{
    std::string why;
    auto opened = store::open_file_store(config.store.file_directory, &why);
    if (!opened) {
        throw std::runtime_error(why.empty() ? "store " + config.store.file_directory + ": " +
                                                   opened.error().message()
                                             : why);
    }
    return std::move(*opened);
}

} // namespace gatehouse::proxy
