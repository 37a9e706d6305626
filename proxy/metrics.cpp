#include "proxy/metrics.hpp"

#include <string_view>

namespace gatehouse::proxy {

namespace {

template <class Value>
void append_metric(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help, const std::atomic<Value>& value)
{
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
    out += name;
    out += ' ';
    out += std::to_string(value.load(std::memory_order_relaxed));
    out += '\n';
}

} // namespace

std::string metrics::render_prometheus() const
{
    std::string out;
    out.reserve(2048);

    out += "# HELP gatehouse_requests_total Responses sent to clients, by status class.\n";
    out += "# TYPE gatehouse_requests_total counter\n";
    for (unsigned status_class = 1; status_class <= 5; ++status_class) {
        out += "gatehouse_requests_total{code=\"" + std::to_string(status_class) + "xx\"} ";
        out += std::to_string(responses_by_class[status_class].load(std::memory_order_relaxed));
        out += '\n';
    }

    append_metric(out, "gatehouse_connections_accepted_total", "counter",
                  "Client connections accepted.", connections_accepted);
    append_metric(out, "gatehouse_connections_refused_total", "counter",
                  "Client connections refused because max_connections was reached.",
                  connections_refused);
    append_metric(out, "gatehouse_connections_open", "gauge", "Client connections open now.",
                  connections_open);
    append_metric(out, "gatehouse_upstream_connects_total", "counter",
                  "New TCP connections opened to upstreams.", upstream_connects);
    append_metric(out, "gatehouse_upstream_failures_total", "counter",
                  "Upstream connections that were refused, reset or timed out.", upstream_failures);
    append_metric(out, "gatehouse_upstream_ejections_total", "counter",
                  "Times an upstream was taken out of rotation by passive health checks.",
                  upstream_ejections);
    append_metric(out, "gatehouse_request_body_bytes_total", "counter",
                  "Request body bytes forwarded to upstreams.", request_bytes);
    append_metric(out, "gatehouse_response_body_bytes_total", "counter",
                  "Response body bytes sent to clients.", response_bytes);
    append_metric(out, "gatehouse_config_reloads_total", "counter",
                  "Configuration reloads that took effect.", config_reloads);
    append_metric(out, "gatehouse_config_reload_failures_total", "counter",
                  "Configuration reloads refused because the new file was invalid.",
                  config_reload_failures);
    append_metric(out, "gatehouse_tls_handshakes_total", "counter",
                  "TLS handshakes completed on the HTTPS listener.", tls_handshakes);
    append_metric(out, "gatehouse_tls_handshake_failures_total", "counter",
                  "TLS handshakes that failed or were refused (unknown SNI, old versions).",
                  tls_handshake_failures);
    append_metric(out, "gatehouse_tls_resumptions_total", "counter",
                  "TLS handshakes that resumed an earlier session from a ticket.", tls_resumptions);
    append_metric(out, "gatehouse_certificate_updates_total", "counter",
                  "Certificates issued, renewed or reloaded and handed to the listeners.",
                  certificate_updates);
    append_metric(out, "gatehouse_certificate_failures_total", "counter",
                  "Certificate issues, renewals or reloads that failed; the old one kept serving.",
                  certificate_failures);
    append_metric(out, "gatehouse_acme_orders_total", "counter",
                  "ACME orders placed with a CA, whatever their outcome.", acme_orders);
    append_metric(out, "gatehouse_acme_order_failures_total", "counter",
                  "ACME orders that ended without a certificate.", acme_order_failures);
    append_metric(out, "gatehouse_acme_challenges_answered_total", "counter",
                  "ACME http-01 challenge requests answered on the HTTP listener.",
                  acme_challenges_answered);
    return out;
}

metrics& process_metrics()
{
    static metrics instance;
    return instance;
}

} // namespace gatehouse::proxy
