// Everything a request needs to know about the running configuration, as one immutable value.
//
// A reload builds a new proxy_settings and hands it to every worker; requests already running
// keep the one they started with, so a reload never changes the rules halfway through a request.
#pragma once

#include "config/config.hpp"
#include "proxy/route_table.hpp"

#include <memory>

namespace gatehouse::proxy {

struct proxy_settings {
    explicit proxy_settings(std::shared_ptr<const config::gatehouse_config> loaded)
        : config(std::move(loaded)), routes(config->routes)
    {}

    std::shared_ptr<const config::gatehouse_config> config;
    route_table routes;
};

} // namespace gatehouse::proxy
