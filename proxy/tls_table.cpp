#include "proxy/tls_table.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

namespace gatehouse::proxy {

namespace {

// TLS 1.2 suites with forward secrecy and AEAD only, strongest key exchange first. TLS 1.3's
// suites all qualify, so OpenSSL's defaults stay for it.
constexpr const char* tls12_ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                      "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                      "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

constexpr const char* key_exchange_groups = "X25519:P-256:P-384";

// "http/1.1" in ALPN wire format (RFC 7301 section 3.1). TODO: offer h2 once the listener
// speaks HTTP/2.
constexpr unsigned char alpn_http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

// The error text OpenSSL queued for `call`, for an exception message.
std::string openssl_failure(std::string_view call)
{
    std::string text(call);
    text += " failed";
    while (const unsigned long code = ERR_get_error()) {
        char reason[256];
        ERR_error_string_n(code, reason, sizeof reason);
        text += ": ";
        text += reason;
    }
    return text;
}

std::string joined(const std::vector<std::string>& hosts)
{
    std::string text;
    for (const auto& host : hosts) {
        text += (text.empty() ? "" : ",") + host;
    }
    return text;
}

// Where each connection's SSL object keeps its table, for the callbacks.
int table_index()
{
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

const tls_table* table_of(SSL* ssl)
{
    return static_cast<const tls_table*>(SSL_get_ex_data(ssl, table_index()));
}

int select_alpn(SSL*, const unsigned char** out, unsigned char* out_length, const unsigned char* in,
                unsigned int in_length, void*)
{
    unsigned char* selected = nullptr;
    const int outcome = SSL_select_next_proto(&selected, out_length, alpn_http11,
                                              sizeof alpn_http11, in, in_length);
    if (outcome != OPENSSL_NPN_NEGOTIATED) {
        // A client offering only protocols we lack still gets HTTP/1.1 without ALPN, as
        // RFC 7301 section 3.2 allows, rather than a failed handshake.
        return SSL_TLSEXT_ERR_NOACK;
    }
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

// RFC 6066 section 3: the server picks its certificate from the client's server_name.
int select_certificate(SSL* ssl, int* alert, void*)
{
    const tls_table* table = table_of(ssl);
    if (table == nullptr) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    SSL_CTX* chosen = table->select(name != nullptr ? name : "");
    if (chosen == nullptr) {
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    if (SSL_get_SSL_CTX(ssl) != chosen && SSL_set_SSL_CTX(ssl, chosen) == nullptr) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

bool init_ticket_mac(EVP_MAC_CTX* mac, const ticket_key& key)
{
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_init(mac, key.hmac_key.data(), key.hmac_key.size(), params) == 1;
}

// Encrypts new tickets with the first key and opens tickets made with any key of the table.
// Returns 1 to use the ticket, 2 to use it and issue a fresh one under the current key, 0 for
// an unknown key (a full handshake follows), -1 on failure.
int handle_ticket(SSL* ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                  EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int encrypting)
{
    const tls_table* table = table_of(ssl);
    if (table == nullptr || table->ticket_keys().empty()) {
        return encrypting ? -1 : 0;
    }
    const auto& keys = table->ticket_keys();
    if (encrypting) {
        const ticket_key& current = keys.front();
        std::memcpy(key_name, current.name.data(), current.name.size());
        if (RAND_bytes(iv, 16) != 1 ||
            EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, current.aes_key.data(), iv) !=
                1 ||
            !init_ticket_mac(mac, current)) {
            return -1;
        }
        return 1;
    }

    const auto found = std::find_if(keys.begin(), keys.end(), [key_name](const ticket_key& key) {
        return std::memcmp(key.name.data(), key_name, key.name.size()) == 0;
    });
    if (found == keys.end()) {
        return 0;
    }
    if (EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, found->aes_key.data(), iv) != 1 ||
        !init_ticket_mac(mac, *found)) {
        return -1;
    }
    return found == keys.begin() ? 1 : 2;
}

void apply_protocol_settings(SSL_CTX* context, const tls_policy& policy)
{
    const int minimum = policy.min_version >= 3 ? TLS1_3_VERSION : TLS1_2_VERSION;
    if (SSL_CTX_set_min_proto_version(context, minimum) != 1 ||
        SSL_CTX_set_max_proto_version(context, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(context, tls12_ciphers) != 1 ||
        SSL_CTX_set1_groups_list(context, key_exchange_groups) != 1) {
        throw std::runtime_error(openssl_failure("SSL_CTX protocol settings"));
    }
    SSL_CTX_set_options(context, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                     SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_alpn_select_cb(context, select_alpn, nullptr);
    // The chain sent is exactly the one loaded with the certificate. Without this, OpenSSL
    // tries to build a chain from the context's (empty) trust store on every handshake of a
    // certificate that came without intermediates, which costs a verification each time.
    SSL_CTX_set_mode(context, SSL_MODE_NO_AUTO_CHAIN);
    // Stateless tickets are the only resumption: no per-process session cache to grow.
    SSL_CTX_set_session_cache_mode(context, SSL_SESS_CACHE_OFF);
}

using bio_ptr = std::unique_ptr<BIO, decltype(&BIO_free)>;

bio_ptr memory_bio(std::string_view pem)
{
    return bio_ptr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
}

// Loads the chain and key into `context`, checking that they belong together.
void load_certificate(SSL_CTX* context, const certificate_material& material)
{
    const std::string hosts = joined(material.hosts);
    auto chain = memory_bio(material.chain_pem);
    X509* leaf = PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr);
    if (leaf == nullptr) {
        throw std::runtime_error(openssl_failure("PEM_read_bio_X509") + " (hosts " + hosts + ")");
    }
    const int used = SSL_CTX_use_certificate(context, leaf);
    X509_free(leaf);
    if (used != 1) {
        throw std::runtime_error(openssl_failure("SSL_CTX_use_certificate") + " (hosts " + hosts +
                                 ")");
    }
    while (X509* intermediate = PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr)) {
        // add0 takes ownership on success only.
        if (SSL_CTX_add0_chain_cert(context, intermediate) != 1) {
            X509_free(intermediate);
            throw std::runtime_error(openssl_failure("SSL_CTX_add0_chain_cert"));
        }
    }
    ERR_clear_error(); // the loop ends on an expected "no start line"

    auto key_bio = memory_bio(material.private_key_pem);
    EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr);
    if (key == nullptr) {
        throw std::runtime_error(openssl_failure("PEM_read_bio_PrivateKey") + " (hosts " + hosts +
                                 ")");
    }
    const int key_used = SSL_CTX_use_PrivateKey(context, key);
    EVP_PKEY_free(key);
    if (key_used != 1 || SSL_CTX_check_private_key(context) != 1) {
        throw std::runtime_error(openssl_failure("SSL_CTX_check_private_key") +
                                 " (the key does not match the certificate for hosts " + hosts +
                                 ")");
    }
}

} // namespace

ticket_key make_ticket_key()
{
    ticket_key key;
    if (RAND_bytes(key.name.data(), static_cast<int>(key.name.size())) != 1 ||
        RAND_bytes(key.aes_key.data(), static_cast<int>(key.aes_key.size())) != 1 ||
        RAND_bytes(key.hmac_key.data(), static_cast<int>(key.hmac_key.size())) != 1) {
        throw std::runtime_error(openssl_failure("RAND_bytes"));
    }
    return key;
}

tls_table::tls_table(const tls_policy& policy,
                     const std::vector<certificate_material>& certificates,
                     std::vector<ticket_key> ticket_keys)
    : ticket_keys_(std::move(ticket_keys)), session_tickets_(policy.session_tickets)
{
    // Every context gets the callbacks and the ticket settings: a connection starts from one
    // of them (see start_context_) and OpenSSL reads those from the one it started with.
    const auto make_context = [&] {
        ctx_ptr context(SSL_CTX_new(TLS_server_method()));
        if (!context) {
            throw std::runtime_error(openssl_failure("SSL_CTX_new"));
        }
        apply_protocol_settings(context.get(), policy);
        SSL_CTX_set_tlsext_servername_callback(context.get(), select_certificate);
        if (policy.session_tickets && !ticket_keys_.empty()) {
            SSL_CTX_set_tlsext_ticket_key_evp_cb(context.get(), handle_ticket);
        } else {
            SSL_CTX_set_options(context.get(), SSL_OP_NO_TICKET);
            SSL_CTX_set_num_tickets(context.get(), 0);
        }
        return context;
    };

    base_ = make_context();
    for (const auto& material : certificates) {
        ctx_ptr context = make_context();
        load_certificate(context.get(), material);
        for (const auto& host : material.hosts) {
            if (host.starts_with("*.")) {
                wildcard_.emplace(host.substr(1), context.get());
            } else {
                exact_.emplace(host, context.get());
            }
            if (policy.unknown_sni == config::unknown_sni_action::serve_default &&
                host == policy.default_host) {
                default_ = context.get();
            }
        }
        contexts_.push_back(std::move(context));
    }

    // Connections start from the certificate most likely to answer them, so that the SNI
    // callback, finding it already in place, skips SSL_set_SSL_CTX and its copy of the
    // certificate data. With a single certificate that is every connection.
    start_context_ = default_ != nullptr ? default_
                     : contexts_.empty() ? base_.get()
                                         : contexts_.front().get();
}

tls_table::~tls_table() = default;

void tls_table::attach(SSL* ssl) const
{
    SSL_set_ex_data(ssl, table_index(), const_cast<tls_table*>(this));
}

void tls_table::detach(SSL* ssl)
{
    SSL_set_ex_data(ssl, table_index(), nullptr);
}

SSL_CTX* tls_table::select(std::string_view server_name) const
{
    if (server_name.empty()) {
        return default_;
    }
    std::string name(server_name);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (name.ends_with('.')) {
        name.pop_back();
    }
    if (const auto exact = exact_.find(name); exact != exact_.end()) {
        return exact->second;
    }
    // One label only: "a.example.com" may use "*.example.com", "a.b.example.com" may not.
    if (const auto dot = name.find('.'); dot != std::string::npos && dot > 0) {
        if (const auto wild = wildcard_.find(name.substr(dot)); wild != wildcard_.end()) {
            return wild->second;
        }
    }
    return default_;
}

} // namespace gatehouse::proxy
