#include "store/encrypted_store.hpp"

#include "store/keys.hpp"
#include "store/posix_file.hpp"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

namespace gatehouse::store {

namespace {

constexpr std::string_view envelope_prefix = "gatehouse-encrypted:";
constexpr std::string_view envelope_version = "v1";
constexpr std::size_t nonce_bytes = 12;
constexpr std::size_t tag_bytes = 16;
constexpr std::size_t key_id_chars = 16;

// A key file holds a few keys; anything larger is not one.
constexpr off_t max_key_file_bytes = 64 * 1024;

// Long enough for one read and one write to any backend, short enough that a rewrap that died
// holds up a renewal only briefly.
constexpr std::chrono::seconds rewrap_lock_ttl{30};

struct cipher_context_deleter {
    void operator()(EVP_CIPHER_CTX* context) const noexcept { EVP_CIPHER_CTX_free(context); }
};
using cipher_context_ptr = std::unique_ptr<EVP_CIPHER_CTX, cipher_context_deleter>;

// Wipes a buffer that held key material when it goes out of scope.
class wipe_on_exit {
public:
    explicit wipe_on_exit(std::string& buffer) : buffer_(buffer) {}
    wipe_on_exit(const wipe_on_exit&) = delete;
    wipe_on_exit& operator=(const wipe_on_exit&) = delete;
    ~wipe_on_exit() { OPENSSL_cleanse(buffer_.data(), buffer_.size()); }

private:
    std::string& buffer_;
};

const unsigned char* bytes_of(std::string_view text)
{
    return reinterpret_cast<const unsigned char*>(text.data());
}

unsigned char* bytes_of(std::string& text)
{
    return reinterpret_cast<unsigned char*>(text.data());
}

bool is_hex_digit(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

unsigned char hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return static_cast<unsigned char>(c - '0');
    }
    return static_cast<unsigned char>((c | 0x20) - 'a' + 10);
}

bool is_base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

std::string encode_base64(std::string_view bytes)
{
    std::string text(4 * ((bytes.size() + 2) / 3) + 1, '\0');
    const int written =
        EVP_EncodeBlock(bytes_of(text), bytes_of(bytes), static_cast<int>(bytes.size()));
    text.resize(static_cast<std::size_t>(written));
    return text;
}

// Standard base64 with padding (RFC 4648 section 4), nothing else: no line breaks, no blanks.
// OpenSSL's decoder is lenient about both, so the text is checked here first.
std::optional<std::string> decode_base64(std::string_view text)
{
    if (text.empty() || text.size() % 4 != 0) {
        return std::nullopt;
    }
    const std::size_t padding = text.ends_with("==") ? 2 : text.ends_with('=') ? 1 : 0;
    const auto body = text.substr(0, text.size() - padding);
    if (!std::all_of(body.begin(), body.end(), is_base64_char)) {
        return std::nullopt;
    }
    std::string bytes(3 * text.size() / 4, '\0');
    if (EVP_DecodeBlock(bytes_of(bytes), bytes_of(text), static_cast<int>(text.size())) < 0) {
        return std::nullopt;
    }
    bytes.resize(bytes.size() - padding);
    return bytes;
}

// ---- the key file ---------------------------------------------------------------------------

using key_bytes = std::array<unsigned char, encryption_key::size_bytes>;

// The key a line of the key file holds: 64 hex digits or 44 characters of base64.
std::optional<key_bytes> parse_key_line(std::string_view line)
{
    key_bytes key{};
    if (line.size() == 2 * key.size() && std::all_of(line.begin(), line.end(), is_hex_digit)) {
        for (std::size_t i = 0; i < key.size(); ++i) {
            key[i] = static_cast<unsigned char>((hex_value(line[2 * i]) << 4) |
                                                hex_value(line[2 * i + 1]));
        }
        return key;
    }
    auto decoded = decode_base64(line);
    if (!decoded) {
        return std::nullopt;
    }
    const wipe_on_exit wipe(*decoded);
    if (decoded->size() != key.size()) {
        return std::nullopt;
    }
    std::copy(decoded->begin(), decoded->end(), key.begin());
    return key;
}

std::string_view trimmed(std::string_view line)
{
    constexpr std::string_view blanks = " \t\r";
    const auto first = line.find_first_not_of(blanks);
    if (first == std::string_view::npos) {
        return {};
    }
    return line.substr(first, line.find_last_not_of(blanks) - first + 1);
}

std::string mode_text(mode_t mode)
{
    char text[8];
    std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
    return text;
}

// Reads the whole key file, refusing anything but a small regular file only its owner may use.
// The status is taken from the open descriptor, so it describes the file that is read.
result<std::string> read_key_file(const std::string& path, std::string& why)
{
    const posix::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd.is_open()) {
        why = "cannot read encryption key file " + path + ": " + posix::last_error().message();
        return errc::io_failed;
    }
    struct stat status;
    if (::fstat(fd.get(), &status) != 0) {
        why = "cannot read encryption key file " + path + ": " + posix::last_error().message();
        return errc::io_failed;
    }
    if (!S_ISREG(status.st_mode)) {
        why = "encryption key file " + path + " is not a regular file";
        return errc::invalid_argument;
    }
    if ((status.st_mode & 077) != 0) {
        why = "encryption key file " + path + " may be read or written by group or others (mode " +
              mode_text(status.st_mode) + "); run chmod 600 " + path;
        return errc::invalid_argument;
    }
    if (status.st_size > max_key_file_bytes) {
        why = "encryption key file " + path + " is larger than 64 KiB; it should hold a few keys";
        return errc::invalid_argument;
    }

    std::string content(static_cast<std::size_t>(status.st_size), '\0');
    std::size_t filled = 0;
    while (filled < content.size()) {
        const auto got = ::read(fd.get(), content.data() + filled, content.size() - filled);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            OPENSSL_cleanse(content.data(), content.size());
            why = "cannot read encryption key file " + path + ": " + posix::last_error().message();
            return errc::io_failed;
        }
        if (got == 0) {
            break;
        }
        filled += static_cast<std::size_t>(got);
    }
    content.resize(filled);
    return content;
}

// The keys of the file's text, in order; on a bad line, its number and the reason in `why`.
result<key_ring> parse_key_file(const std::string& path, std::string_view content, std::string& why)
{
    key_ring ring;
    std::vector<int> line_of_key;
    int line_number = 0;
    while (!content.empty()) {
        ++line_number;
        const auto end = std::min(content.find('\n'), content.size());
        const auto line = trimmed(content.substr(0, end));
        content.remove_prefix(std::min(end + 1, content.size()));
        if (line.empty() || line.front() == '#') {
            continue;
        }

        // Never echo the line: it may be a key with a typo in it.
        const std::string where = path + ":" + std::to_string(line_number) + ": ";
        auto bytes = parse_key_line(line);
        if (!bytes) {
            why =
                where + "not a key: expected 32 bytes as 64 hex digits or 44 characters of base64";
            return errc::invalid_argument;
        }
        encryption_key key(*bytes);
        OPENSSL_cleanse(bytes->data(), bytes->size());
        for (std::size_t i = 0; i < ring.keys.size(); ++i) {
            if (ring.keys[i].id() == key.id()) {
                why = where + "the same key as line " + std::to_string(line_of_key[i]);
                return errc::invalid_argument;
            }
        }
        ring.keys.push_back(std::move(key));
        line_of_key.push_back(line_number);
    }
    if (ring.keys.empty()) {
        why = "encryption key file " + path +
              " holds no key: expected one per line, 64 hex digits or 44 characters of base64";
        return errc::invalid_argument;
    }
    return ring;
}

// ---- the envelope ---------------------------------------------------------------------------

// "gatehouse-encrypted:v1:<id>:", the part of an envelope before its base64.
std::string envelope_head(const encryption_key& key)
{
    return std::string(envelope_prefix) + std::string(envelope_version) + ":" + key.id() + ":";
}

bool is_envelope(std::string_view value)
{
    return value.starts_with(envelope_prefix);
}

// The first segment of a key that keys.hpp builds, with its '/': "accounts/".
std::string first_segment(const std::string& key)
{
    return key.substr(0, key.find('/') + 1);
}

// Derived from keys.hpp rather than spelled again, so the two cannot drift apart.
const std::array<std::string, 3>& secret_prefixes()
{
    static const std::array<std::string, 3> prefixes{
        keys::certificates_prefix(),
        first_segment(keys::account("https://example.invalid/directory")),
        first_segment(keys::internal_ca()),
    };
    return prefixes;
}

bool fits_in_int(std::size_t size)
{
    return size <= static_cast<std::size_t>(INT_MAX);
}

} // namespace

// ---- keys and the ring ----------------------------------------------------------------------

encryption_key::encryption_key(const std::array<unsigned char, size_bytes>& bytes) : bytes_(bytes)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_size = 0;
    if (EVP_Digest(bytes_.data(), bytes_.size(), digest, &digest_size, EVP_sha256(), nullptr) !=
        1) {
        throw std::runtime_error("SHA-256 is not available from OpenSSL");
    }
    constexpr char digits[] = "0123456789abcdef";
    for (std::size_t i = 0; i < key_id_chars / 2; ++i) {
        id_.push_back(digits[digest[i] >> 4]);
        id_.push_back(digits[digest[i] & 0x0f]);
    }
}

encryption_key::~encryption_key()
{
    OPENSSL_cleanse(bytes_.data(), bytes_.size());
}

result<key_ring> load_key_ring(const std::filesystem::path& path, std::string* why)
{
    std::string message;
    auto ring = [&]() -> result<key_ring> {
        auto content = read_key_file(path.string(), message);
        if (!content) {
            return content.error();
        }
        const wipe_on_exit wipe(*content);
        return parse_key_file(path.string(), *content, message);
    }();
    if (!ring && why != nullptr) {
        *why = std::move(message);
    }
    return ring;
}

bool holds_secret(std::string_view key)
{
    const auto& prefixes = secret_prefixes();
    return std::any_of(prefixes.begin(), prefixes.end(),
                       [&](const std::string& prefix) { return key.starts_with(prefix); });
}

// ---- the decorator --------------------------------------------------------------------------

encrypted_store::encrypted_store(std::unique_ptr<store> backend, key_ring ring)
    : forwarding_store(std::move(backend)), ring_(std::move(ring))
{
    if (ring_.keys.empty()) {
        throw std::invalid_argument("an encrypted store needs at least one key");
    }
}

result<std::optional<std::string>> encrypted_store::get(std::string_view key)
{
    auto stored = backend_->get(key);
    if (!stored || !stored->has_value() || !holds_secret(key) || !is_envelope(**stored)) {
        return stored;
    }
    auto plaintext = open(key, **stored);
    if (!plaintext) {
        return plaintext.error();
    }
    return std::optional<std::string>(std::move(*plaintext));
}

result<void> encrypted_store::put(std::string_view key, std::string_view value)
{
    if (!holds_secret(key)) {
        return backend_->put(key, value);
    }
    // Checked first so that a bad key is reported as such, not as a failed encryption.
    if (!is_valid_key(key)) {
        return errc::invalid_key;
    }
    const auto sealed = seal(key, value);
    if (!sealed) {
        return errc::io_failed;
    }
    return backend_->put(key, *sealed);
}

std::optional<std::string> encrypted_store::seal(std::string_view key,
                                                 std::string_view plaintext) const
{
    if (!fits_in_int(plaintext.size()) || !fits_in_int(key.size())) {
        return std::nullopt;
    }
    const encryption_key& sealing_key = ring_.keys.front();
    std::string raw(nonce_bytes + plaintext.size() + tag_bytes, '\0');
    unsigned char* const nonce = bytes_of(raw);
    unsigned char* const ciphertext = nonce + nonce_bytes;
    if (RAND_bytes(nonce, static_cast<int>(nonce_bytes)) != 1) {
        return std::nullopt;
    }

    // AES-256-GCM with the store key as additional data (NIST SP 800-38D): the tag covers where
    // the value belongs as well as what it says.
    const cipher_context_ptr context(EVP_CIPHER_CTX_new());
    int length = 0;
    const bool sealed =
        context &&
        EVP_EncryptInit_ex(context.get(), EVP_aes_256_gcm(), nullptr, sealing_key.bytes().data(),
                           nonce) == 1 &&
        EVP_EncryptUpdate(context.get(), nullptr, &length, bytes_of(key),
                          static_cast<int>(key.size())) == 1 &&
        EVP_EncryptUpdate(context.get(), ciphertext, &length, bytes_of(plaintext),
                          static_cast<int>(plaintext.size())) == 1 &&
        EVP_EncryptFinal_ex(context.get(), ciphertext + length, &length) == 1 &&
        EVP_CIPHER_CTX_ctrl(context.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(tag_bytes),
                            ciphertext + plaintext.size()) == 1;
    if (!sealed) {
        return std::nullopt;
    }
    return envelope_head(sealing_key) + encode_base64(raw);
}

result<std::string> encrypted_store::open(std::string_view key, std::string_view envelope) const
{
    // gatehouse-encrypted:v1:<id>:<base64>; another version is one this build cannot read.
    envelope.remove_prefix(envelope_prefix.size());
    const std::string version = std::string(envelope_version) + ":";
    if (!envelope.starts_with(version)) {
        return errc::corrupt;
    }
    envelope.remove_prefix(version.size());
    if (envelope.size() <= key_id_chars || envelope[key_id_chars] != ':') {
        return errc::corrupt;
    }
    const auto id = envelope.substr(0, key_id_chars);
    const auto found = std::find_if(ring_.keys.begin(), ring_.keys.end(),
                                    [&](const encryption_key& k) { return k.id() == id; });
    auto raw = decode_base64(envelope.substr(key_id_chars + 1));
    if (found == ring_.keys.end() || !raw || raw->size() < nonce_bytes + tag_bytes ||
        !fits_in_int(raw->size()) || !fits_in_int(key.size())) {
        return errc::corrupt;
    }

    const std::size_t text_size = raw->size() - nonce_bytes - tag_bytes;
    unsigned char* const nonce = bytes_of(*raw);
    unsigned char* const ciphertext = nonce + nonce_bytes;
    std::string plaintext(text_size, '\0');
    const cipher_context_ptr context(EVP_CIPHER_CTX_new());
    int length = 0;
    const bool opened =
        context &&
        EVP_DecryptInit_ex(context.get(), EVP_aes_256_gcm(), nullptr, found->bytes().data(),
                           nonce) == 1 &&
        EVP_DecryptUpdate(context.get(), nullptr, &length, bytes_of(key),
                          static_cast<int>(key.size())) == 1 &&
        EVP_DecryptUpdate(context.get(), bytes_of(plaintext), &length, ciphertext,
                          static_cast<int>(text_size)) == 1 &&
        EVP_CIPHER_CTX_ctrl(context.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(tag_bytes),
                            ciphertext + text_size) == 1 &&
        EVP_DecryptFinal_ex(context.get(), bytes_of(plaintext) + length, &length) == 1;
    if (!opened) {
        // Whatever was decrypted before the tag failed is not to be trusted, or kept.
        OPENSSL_cleanse(plaintext.data(), plaintext.size());
        return errc::corrupt;
    }
    return plaintext;
}

std::string encrypted_store::describe() const
{
    return backend_->describe() + ", encrypted";
}

// ---- rewrapping -----------------------------------------------------------------------------

result<rewrap_outcome> encrypted_store::rewrap_all()
{
    rewrap_outcome outcome;
    for (const auto& prefix : secret_prefixes()) {
        auto keys = backend_->list(prefix);
        if (!keys) {
            return keys.error();
        }
        for (const auto& key : *keys) {
            auto step = rewrap_one(key);
            if (!step) {
                return step.error();
            }
            if (*step == rewrap_step::rewritten) {
                ++outcome.rewritten;
            } else if (*step == rewrap_step::busy) {
                outcome.busy.push_back(key);
            }
        }
    }
    return outcome;
}

auto encrypted_store::rewrap_one(const std::string& key) -> result<rewrap_step>
{
    // The lock that gatehouse takes before writing this key (to obtain or renew a certificate,
    // register an account, create the CA), so a value written meanwhile is never replaced by the
    // older one read here.
    auto lease = backend_->try_lock(key, rewrap_lock_ttl);
    if (!lease) {
        return lease.error();
    }
    if (!lease->has_value()) {
        return rewrap_step::busy;
    }
    // A failed unlock only keeps the next holder waiting until the short ttl runs out.
    const auto release = [&] {
        (void)backend_->unlock(**lease);
    };

    auto stored = backend_->get(key);
    if (!stored || !stored->has_value() ||
        (*stored)->starts_with(envelope_head(ring_.keys.front()))) {
        release();
        return stored ? result<rewrap_step>(rewrap_step::unchanged) : stored.error();
    }
    auto plaintext = is_envelope(**stored) ? open(key, **stored) : result<std::string>(**stored);
    auto written = plaintext ? put(key, *plaintext) : result<void>(plaintext.error());
    release();
    if (!written) {
        return written.error();
    }
    return rewrap_step::rewritten;
}

} // namespace gatehouse::store
