#include "store/etcd_client.hpp"

#include <array>
#include <charconv>
#include <utility>

namespace gatehouse::store::etcd {

namespace {

constexpr std::string_view base64_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// gRPC status codes that etcd's gateway puts in the "code" field of an error answer
// (https://grpc.github.io/grpc/core/md_doc_statuscodes.html).
constexpr int grpc_deadline_exceeded = 4;
constexpr int grpc_permission_denied = 7;
constexpr int grpc_unavailable = 14;
constexpr int grpc_unauthenticated = 16;

net::client_options http_options(const etcd_options& options)
{
    net::client_options http;
    // A private cluster's CA alone is trusted once it is named: etcd is never behind a
    // public CA, so the system store would only widen who could pose as a member.
    http.system_trust = options.ca_file.empty();
    http.extra_ca_file = options.ca_file;
    http.client_certificate_file = options.certificate_file;
    http.client_key_file = options.key_file;
    http.connect_timeout = options.request_timeout;
    http.request_timeout = options.request_timeout;
    http.user_agent = "gatehouse";
    return http;
}

std::vector<std::string> trimmed(std::vector<std::string> endpoints)
{
    for (auto& endpoint : endpoints) {
        while (endpoint.ends_with('/')) {
            endpoint.pop_back();
        }
    }
    return endpoints;
}

int base64_value(char c)
{
    const auto found = base64_alphabet.find(c);
    return found == std::string_view::npos ? -1 : static_cast<int>(found);
}

// The "message" of an error answer ({"error":..,"message":..,"code":..}), or the start of the
// body when it is not one.
std::string error_message(const nlohmann::json& answer, const std::string& body)
{
    if (answer.is_object() && answer.contains("message") && answer["message"].is_string()) {
        return answer["message"].get<std::string>();
    }
    return body.substr(0, 200);
}

} // namespace

std::string base64_encode(std::string_view bytes)
{
    std::string text;
    text.reserve((bytes.size() + 2) / 3 * 4);
    for (std::size_t i = 0; i < bytes.size(); i += 3) {
        const std::size_t left = bytes.size() - i;
        std::uint32_t group = static_cast<unsigned char>(bytes[i]) << 16;
        if (left > 1) {
            group |= static_cast<unsigned char>(bytes[i + 1]) << 8;
        }
        if (left > 2) {
            group |= static_cast<unsigned char>(bytes[i + 2]);
        }
        text += base64_alphabet[(group >> 18) & 63];
        text += base64_alphabet[(group >> 12) & 63];
        text += left > 1 ? base64_alphabet[(group >> 6) & 63] : '=';
        text += left > 2 ? base64_alphabet[group & 63] : '=';
    }
    return text;
}

std::optional<std::string> base64_decode(std::string_view text)
{
    if (text.size() % 4 != 0) {
        return std::nullopt;
    }
    std::string bytes;
    bytes.reserve(text.size() / 4 * 3);
    for (std::size_t i = 0; i < text.size(); i += 4) {
        const bool last = i + 4 == text.size();
        const int padding = last ? (text[i + 3] == '=') + (text[i + 2] == '=') : 0;
        if (padding == 1 && text[i + 2] == '=') {
            return std::nullopt;
        }
        std::uint32_t group = 0;
        for (int j = 0; j < 4; ++j) {
            const int value = j >= 4 - padding ? 0 : base64_value(text[i + j]);
            if (value < 0) {
                return std::nullopt;
            }
            group = (group << 6) | static_cast<std::uint32_t>(value);
        }
        bytes += static_cast<char>((group >> 16) & 0xff);
        if (padding < 2) {
            bytes += static_cast<char>((group >> 8) & 0xff);
        }
        if (padding < 1) {
            bytes += static_cast<char>(group & 0xff);
        }
    }
    return bytes;
}

std::string range_end(std::string_view prefix)
{
    std::string end(prefix);
    while (!end.empty()) {
        const auto last = static_cast<unsigned char>(end.back());
        if (last < 0xff) {
            end.back() = static_cast<char>(last + 1);
            return end;
        }
        end.pop_back();
    }
    return std::string(1, '\0');
}

std::int64_t int64_field(const nlohmann::json& object, std::string_view name)
{
    if (!object.is_object()) {
        return 0;
    }
    const auto found = object.find(name);
    if (found == object.end()) {
        return 0;
    }
    if (found->is_number_integer()) {
        return found->get<std::int64_t>();
    }
    if (!found->is_string()) {
        return 0;
    }
    const auto& text = found->get_ref<const std::string&>();
    std::int64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    return error == std::errc() && end == text.data() + text.size() ? value : 0;
}

std::optional<std::string> bytes_field(const nlohmann::json& object, std::string_view name)
{
    if (!object.is_object()) {
        return std::nullopt;
    }
    const auto found = object.find(name);
    if (found == object.end()) {
        return std::string();
    }
    if (!found->is_string()) {
        return std::nullopt;
    }
    return base64_decode(found->get_ref<const std::string&>());
}

bool bool_field(const nlohmann::json& object, std::string_view name)
{
    if (!object.is_object()) {
        return false;
    }
    const auto found = object.find(name);
    return found != object.end() && found->is_boolean() && found->get<bool>();
}

std::string string_field(const nlohmann::json& object, std::string_view name)
{
    if (!object.is_object()) {
        return {};
    }
    const auto found = object.find(name);
    return found != object.end() && found->is_string() ? found->get<std::string>() : std::string();
}

client::client(const etcd_options& options)
    : endpoints_(trimmed(options.endpoints)), username_(options.username),
      password_(options.password), http_(http_options(options))
{}

json_result client::call(std::string_view path, const nlohmann::json& body)
{
    const std::string text = body.dump();
    const std::size_t start = preferred_.load();
    bool timed_out = false;
    for (std::size_t i = 0; i < endpoints_.size(); ++i) {
        const std::size_t endpoint = (start + i) % endpoints_.size();
        auto tried = try_member(endpoint, path, text);
        if (tried.kind == attempt_kind::answered || tried.kind == attempt_kind::refused) {
            preferred_ = endpoint;
            return std::move(tried.outcome);
        }
        timed_out = timed_out || tried.kind == attempt_kind::timed_out;
    }
    return json_failure(timed_out ? errc::timeout : errc::unavailable);
}

result<net::request> client::stream_request(std::size_t endpoint, std::string_view path,
                                            const nlohmann::json& body)
{
    if (!username_.empty() && !token()) {
        if (auto failed = authenticate(endpoint)) {
            if (failed->kind == attempt_kind::refused) {
                return failed->outcome.error();
            }
            return failed->kind == attempt_kind::timed_out ? errc::timeout : errc::unavailable;
        }
    }
    return make_request(endpoint, path, body.dump(), token());
}

net::result<int> client::stream(const net::request& request, const net::body_handler& on_body,
                                std::chrono::milliseconds idle_timeout,
                                const std::atomic<bool>* stop)
{
    return http_.stream(request, on_body, idle_timeout, stop);
}

void client::drop_token()
{
    std::lock_guard lock(mutex_);
    token_.reset();
}

std::string client::endpoints_text() const
{
    std::string text;
    for (const auto& endpoint : endpoints_) {
        text += (text.empty() ? "" : ",") + endpoint;
    }
    return text;
}

std::string client::last_failure() const
{
    std::lock_guard lock(mutex_);
    return last_failure_;
}

// One request on one member, authenticating first when needed and once more when etcd says
// the token is no longer valid (simple tokens expire after five idle minutes by default).
client::attempt client::try_member(std::size_t endpoint, std::string_view path,
                                   const std::string& body)
{
    if (!username_.empty() && !token()) {
        if (auto failed = authenticate(endpoint)) {
            return std::move(*failed);
        }
    }
    int grpc_code = 0;
    auto tried = send_once(endpoint, path, body, token(), grpc_code);
    if (tried.kind != attempt_kind::refused || grpc_code != grpc_unauthenticated ||
        username_.empty()) {
        return tried;
    }
    drop_token();
    if (auto failed = authenticate(endpoint)) {
        return std::move(*failed);
    }
    return send_once(endpoint, path, body, token(), grpc_code);
}

client::attempt client::send_once(std::size_t endpoint, std::string_view path,
                                  const std::string& body, const std::optional<std::string>& token,
                                  int& grpc_code)
{
    auto sent = http_.send(make_request(endpoint, path, body, token));
    if (!sent) {
        record_failure(sent.error().message);
        switch (sent.error().kind) {
        case net::failure_kind::timeout:
            return {attempt_kind::timed_out, json_failure(errc::timeout)};
        case net::failure_kind::resolve:
        case net::failure_kind::connect:
        case net::failure_kind::tls:
        case net::failure_kind::protocol:
            return {attempt_kind::unreachable, json_failure(errc::unavailable)};
        default:
            return {attempt_kind::refused, json_failure(errc::io_failed)};
        }
    }

    auto answer = nlohmann::json::parse(sent->body, nullptr, false);
    if (sent->status == 200 && answer.is_object()) {
        return {attempt_kind::answered, json_answer(std::move(answer))};
    }
    grpc_code = static_cast<int>(int64_field(answer, "code"));
    record_failure("etcd " + endpoints_[endpoint] + " refused " + std::string(path) + ": " +
                   error_message(answer, sent->body) + " (HTTP " + std::to_string(sent->status) +
                   ")");
    switch (grpc_code) {
    case grpc_unavailable:
        return {attempt_kind::unreachable, json_failure(errc::unavailable)};
    case grpc_deadline_exceeded:
        return {attempt_kind::timed_out, json_failure(errc::timeout)};
    case grpc_permission_denied:
        return {attempt_kind::refused, json_failure(errc::not_writable)};
    default:
        return {attempt_kind::refused, json_failure(errc::io_failed)};
    }
}

net::request client::make_request(std::size_t endpoint, std::string_view path, std::string body,
                                  const std::optional<std::string>& token) const
{
    net::request request;
    request.method = "POST";
    request.url = endpoints_.at(endpoint) + std::string(path);
    request.headers.push_back({"Content-Type", "application/json"});
    if (token) {
        // etcd reads the token from this field, without a scheme such as "Bearer".
        request.headers.push_back({"Authorization", *token});
    }
    request.body = std::move(body);
    return request;
}

// Gets a token for the user (/v3/auth/authenticate). Returns how it failed, or nothing.
std::optional<client::attempt> client::authenticate(std::size_t endpoint)
{
    const nlohmann::json credentials = {{"name", username_}, {"password", password_}};
    int grpc_code = 0;
    // Bytes that are not UTF-8 are replaced rather than thrown about: etcd then refuses the
    // name or password like any other wrong one.
    const auto body = credentials.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    auto tried = send_once(endpoint, "/v3/auth/authenticate", body, std::nullopt, grpc_code);
    if (tried.kind != attempt_kind::answered) {
        return tried;
    }
    const auto& answer = *tried.outcome;
    if (!answer.contains("token") || !answer["token"].is_string() ||
        answer["token"].get_ref<const std::string&>().empty()) {
        record_failure("etcd " + endpoints_[endpoint] +
                       " answered /v3/auth/authenticate without a token: is auth enabled?");
        return attempt{attempt_kind::refused, json_failure(errc::io_failed)};
    }
    std::lock_guard lock(mutex_);
    token_ = answer["token"].get<std::string>();
    return std::nullopt;
}

std::optional<std::string> client::token() const
{
    std::lock_guard lock(mutex_);
    return token_;
}

void client::record_failure(std::string message)
{
    std::lock_guard lock(mutex_);
    last_failure_ = std::move(message);
}

} // namespace gatehouse::store::etcd
