#include "proxy/challenge_responder.hpp"

namespace gatehouse::proxy {

challenge_responder::challenge_responder() : current_(std::make_shared<const table>()) {}

std::optional<std::string> challenge_responder::answer(std::string_view token) const
{
    const auto snapshot = current_.load(std::memory_order_acquire);
    const auto found = snapshot->find(token);
    if (found == snapshot->end()) {
        return std::nullopt;
    }
    return found->second;
}

void challenge_responder::add(const std::string& token, const std::string& key_authorization)
{
    std::lock_guard lock(writer_);
    auto next = std::make_shared<table>(*current_.load());
    (*next)[token] = key_authorization;
    current_.store(std::move(next), std::memory_order_release);
}

void challenge_responder::remove(const std::string& token)
{
    std::lock_guard lock(writer_);
    auto next = std::make_shared<table>(*current_.load());
    if (next->erase(token) > 0) {
        current_.store(std::move(next), std::memory_order_release);
    }
}

void challenge_responder::replace_all(std::map<std::string, std::string, std::less<>> answers)
{
    std::lock_guard lock(writer_);
    current_.store(std::make_shared<const table>(std::move(answers)), std::memory_order_release);
}

std::size_t challenge_responder::size() const
{
    return current_.load(std::memory_order_acquire)->size();
}

} // namespace gatehouse::proxy
