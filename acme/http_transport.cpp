#include "acme/http_transport.hpp"

#include "net/http_client.hpp"

namespace gatehouse::acme {

namespace {

class beast_transport final : public transport {
public:
    explicit beast_transport(net::client_options options) : client_(std::move(options)) {}

    result<http_response> exchange(const send_request& request) override
    {
        net::request outgoing;
        outgoing.method = std::string(to_string(request.method));
        outgoing.url = request.url;
        outgoing.body = request.body;
        if (!request.content_type.empty()) {
            outgoing.headers.push_back({"Content-Type", request.content_type});
        }
        if (!request.accept.empty()) {
            outgoing.headers.push_back({"Accept", request.accept});
        }
        auto answer = client_.send(outgoing);
        if (!answer) {
            return acme_error{errc::unreachable,
                              std::string(request.purpose) + ": " + answer.error().message};
        }
        http_response response;
        response.status = answer->status;
        response.body = std::move(answer->body);
        for (auto& field : answer->headers) {
            response.headers.emplace(std::move(field.name), std::move(field.value));
        }
        return response;
    }

private:
    net::http_client client_;
};

} // namespace

std::unique_ptr<transport> make_http_transport(const http_transport_options& options)
{
    net::client_options client;
    client.system_trust = true;
    client.extra_ca_file = options.extra_ca_file;
    client.connect_timeout = options.connect_timeout;
    client.request_timeout = options.request_timeout;
    client.user_agent = options.user_agent;
    return std::make_unique<beast_transport>(std::move(client));
}

} // namespace gatehouse::acme
