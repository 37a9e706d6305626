#include "proxy/store_factory.hpp"

#include "store/caching_store.hpp"
#include "store/encrypted_store.hpp"
#include "store/etcd_store.hpp"
#include "store/file_store.hpp"
#include "store/store.hpp"

#include <ostream>
#include <stdexcept>

namespace gatehouse::proxy {

namespace {

// The opened backend, sealed with the configured key ring when there is one. A key file that
// cannot be used stops gatehouse: running on without it would write private keys in the clear.
std::unique_ptr<store::store> wrap_if_encrypted(std::unique_ptr<store::store> backend,
                                                const config::store_settings& settings)
{
    if (settings.encryption_key_file.empty()) {
        return backend;
    }
    std::string why;
    auto ring = store::load_key_ring(settings.encryption_key_file, &why);
    if (!ring) {
        throw std::runtime_error(why.empty()
                                     ? "encryption key file " + settings.encryption_key_file +
                                           ": " + ring.error().message()
                                     : why);
    }
    return std::make_unique<store::encrypted_store>(std::move(backend), std::move(*ring));
}

// The etcd cluster when one is configured, behind the local copy when there is one: then it
// need not answer at start, and its last known certificates serve meanwhile. Without the copy
// it must answer now.
std::unique_ptr<store::store> open_etcd(const config::etcd_store_settings& settings)
{
    store::etcd_options options;
    options.endpoints = settings.endpoints;
    options.prefix = settings.prefix;
    options.ca_file = settings.ca_file;
    options.certificate_file = settings.certificate_file;
    options.key_file = settings.key_file;
    options.username = settings.username;
    options.password = settings.password;
    options.open_while_unreachable = !settings.cache_dir.empty();
    std::string why;
    auto opened = store::open_etcd_store(options, &why);
    if (!opened) {
        throw std::runtime_error(why.empty() ? "etcd store: " + opened.error().message() : why);
    }
    if (settings.cache_dir.empty()) {
        return std::move(*opened);
    }
    auto cache = store::open_file_store(settings.cache_dir, &why);
    if (!cache) {
        throw std::runtime_error(why.empty() ? "etcd cache " + settings.cache_dir + ": " +
                                                   cache.error().message()
                                             : why);
    }
    return std::make_unique<store::caching_store>(std::move(*opened), std::move(*cache));
}

} // namespace

std::unique_ptr<store::store> open_configured_store(const config::gatehouse_config& config)
{
    if (config.store.etcd) {
        return wrap_if_encrypted(open_etcd(*config.store.etcd), config.store);
    }
    std::string why;
    auto opened = store::open_file_store(config.store.file_directory, &why);
    if (!opened) {
        throw std::runtime_error(why.empty() ? "store " + config.store.file_directory + ": " +
                                                   opened.error().message()
                                             : why);
    }
    return wrap_if_encrypted(std::move(*opened), config.store);
}

std::unique_ptr<store::store> open_store_for_command(const config::gatehouse_config& config,
                                                     std::ostream& err)
{
    try {
        return open_configured_store(config);
    } catch (const std::exception& failure) {
        err << "gatehouse: " << failure.what() << '\n';
        return nullptr;
    }
}

} // namespace gatehouse::proxy
