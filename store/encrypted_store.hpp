// Private keys encrypted at rest (`store: {encryption_key_file: FILE}`): a decorator that wraps
// any backend and seals the values holding secrets (certificate bundles, ACME accounts, the
// internal CA) with AES-256-GCM before they reach it, and opens them on the way back. A leaked
// etcd dump or a copied backup of the store directory then holds no private key in the clear.
// It does not protect a running host: gatehouse holds the key ring in memory to serve TLS.
//
// A sealed value is one line of text that says how to open it:
//
//     gatehouse-encrypted:v1:<key id>:<base64 of nonce (12 bytes) | ciphertext | tag (16 bytes)>
//
// The key id names the key of the ring that sealed it, so keys can rotate: the first key of the
// ring seals every write and every key opens. The value's store key is authenticated with it
// (GCM's additional data), so a sealed value copied under another key does not open. Values
// without the envelope are read as they are, so an existing store can be switched over; each
// is sealed on its next write. docs/store.md describes the format, the key file and rotation.
#pragma once

#include "store/forwarding_store.hpp"
#include "store/store.hpp"

#include <array>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::store {

// One AES-256 key and its id. The bytes are wiped when the object is destroyed; copies are
// independent and each wipes its own. Never log or print the bytes; the id is not secret.
class encryption_key {
public:
    static constexpr std::size_t size_bytes = 32;

    // Computes the id. Throws std::runtime_error only when OpenSSL offers no SHA-256.
    explicit encryption_key(const std::array<unsigned char, size_bytes>& bytes);
    encryption_key(const encryption_key&) = default;
    encryption_key& operator=(const encryption_key&) = default;
    ~encryption_key();

    // The first 16 hex digits (lower case) of SHA-256 of the key bytes: "3f9a0c1d2e4b5a67".
    const std::string& id() const { return id_; }

    const std::array<unsigned char, size_bytes>& bytes() const { return bytes_; }

private:
    std::array<unsigned char, size_bytes> bytes_;
    std::string id_;
};

// The keys an encrypted store may use: keys.front() seals every write, and any of them opens a
// value sealed with it. Never empty once loaded.
struct key_ring {
    std::vector<encryption_key> keys;
};

// Reads the key ring from `path`: one key per line, each 32 bytes written as 64 hex digits or as
// 44 characters of base64 (`openssl rand -base64 32`); blank lines and lines whose first
// non-blank character is '#' are ignored; the first key seals. The file must be a regular file
// that neither group nor others may read or write (mode 0600 or 0400), or a copy of the store
// would often come with its key.
//
// Fails with io_failed when the file cannot be read, and with invalid_argument when it is too
// open, holds no key, has a line that is not a key, or repeats a key. When `why` is not null it
// receives a message naming the file and, for a bad line, the line number; no message ever
// contains key material. Call it at start-up, from any thread.
result<key_ring> load_key_ring(const std::filesystem::path& path, std::string* why = nullptr);

// True when the value under `key` holds a secret and is sealed: everything under
// "certificates/", "accounts/" and "ca/" (see store/keys.hpp). Challenge tokens stay clear, as
// do lock records, which are not values. Pure, thread-safe.
bool holds_secret(std::string_view key);

// What encrypted_store::rewrap_all did.
struct rewrap_outcome {
    // Values that were in the clear or sealed with an older key and are now sealed with the
    // first key of the ring.
    std::size_t rewritten = 0;

    // Keys left as they were because their lock was held (a renewal in progress, which writes
    // them anew anyway); run rewrap_all again later for these.
    std::vector<std::string> busy;
};

// The decorator. It owns the backend it wraps; every member is thread-safe, as the backend is.
class encrypted_store final : public forwarding_store {
public:
    // Throws std::invalid_argument when `ring` holds no key.
    encrypted_store(std::unique_ptr<store> backend, key_ring ring);

    // Opens a sealed value with the key its id names. Fails with corrupt when the envelope is
    // malformed, names a key the ring does not hold, or does not authenticate (tampered with,
    // or copied from another key); otherwise as the backend's get().
    result<std::optional<std::string>> get(std::string_view key) override;

    // Seals the value when holds_secret(key), with a fresh random nonce, then writes it. Fails
    // with io_failed when OpenSSL cannot encrypt; otherwise as the backend's put().
    result<void> put(std::string_view key, std::string_view value) override;

    // The backend's description followed by ", encrypted": "file:/var/lib/gatehouse, encrypted".
    // Every other call passes straight through to the backend.
    std::string describe() const override;

    // Seals again, with the first key of the ring, every secret value that is in the clear or
    // sealed with another key, so the older keys can then leave the ring. Each value is read and
    // written while holding the lock of the same name (the one gatehouse takes before writing
    // it), for a short ttl; a key whose lock is held is reported in `busy` and left alone. Fails on
    // the first store error (corrupt for a value no key of the ring opens); values already
    // rewritten stay so. Blocks; call it from a command, not from an I/O thread.
    result<rewrap_outcome> rewrap_all();

private:
    // Sealed with the first key, or nothing when OpenSSL fails.
    std::optional<std::string> seal(std::string_view key, std::string_view plaintext) const;

    // The plaintext of an envelope, or errc::corrupt.
    result<std::string> open(std::string_view key, std::string_view envelope) const;

    enum class rewrap_step { unchanged, rewritten, busy };

    // Seals one key again under its lock, unless it already is sealed with the first key.
    result<rewrap_step> rewrap_one(const std::string& key);

    const key_ring ring_;
};

} // namespace gatehouse::store
