// Tests for the http-01 answer table: lookups see every add and remove, a full reload replaces
// everything at once, and readers on other threads never see a torn table.
#include "proxy/challenge_responder.hpp"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

using gatehouse::proxy::challenge_responder;

TEST_CASE("answers come and go with add, remove and replace_all", "[proxy]")
{
    challenge_responder responder;
    CHECK_FALSE(responder.answer("token-a"));

    responder.add("token-a", "token-a.thumb");
    responder.add("token-b", "token-b.thumb");
    CHECK(responder.answer("token-a") == "token-a.thumb");
    CHECK(responder.answer("token-b") == "token-b.thumb");
    CHECK(responder.size() == 2);

    // A second add for the same token replaces its answer.
    responder.add("token-a", "token-a.other");
    CHECK(responder.answer("token-a") == "token-a.other");

    responder.remove("token-a");
    CHECK_FALSE(responder.answer("token-a"));
    responder.remove("never-added");
    CHECK(responder.size() == 1);

    responder.replace_all({{"token-c", "token-c.thumb"}});
    CHECK_FALSE(responder.answer("token-b"));
    CHECK(responder.answer("token-c") == "token-c.thumb");

    // Tokens are compared exactly: no prefix or case folding.
    CHECK_FALSE(responder.answer("token-"));
    CHECK_FALSE(responder.answer("TOKEN-C"));
}

TEST_CASE("readers on other threads see whole answers while writers change the table", "[proxy]")
{
    challenge_responder responder;
    responder.add("stable", "stable.answer");
    std::atomic<bool> stop{false};
    std::atomic<int> wrong{0};
    std::vector<std::thread> readers;
    for (int i = 0; i < 2; ++i) {
        readers.emplace_back([&] {
            while (!stop.load()) {
                auto answer = responder.answer("stable");
                if (!answer || *answer != "stable.answer") {
                    wrong.fetch_add(1);
                }
                if (auto moving = responder.answer("moving"); moving && *moving != "moving.x") {
                    wrong.fetch_add(1);
                }
            }
        });
    }
    for (int round = 0; round < 2000; ++round) {
        responder.add("moving", "moving.x");
        responder.remove("moving");
    }
    stop = true;
    for (auto& reader : readers) {
        reader.join();
    }
    CHECK(wrong.load() == 0);
    CHECK(responder.answer("stable") == "stable.answer");
}

TEST_CASE("tokens not recorded yet are answered statelessly for our names and one account",
          "[proxy]")
{
    challenge_responder responder;
    const std::string token = "abcdefghijklmnopqrstuvwxyz_-0123";
    CHECK_FALSE(responder.answer(token, "app.example.test"));

    responder.set_acme_hosts({"app.example.test"});
    CHECK_FALSE(responder.answer(token, "app.example.test")); // no account known yet
    responder.set_account_thumbprints({"THUMB"});
    CHECK(responder.answer(token, "app.example.test") == token + ".THUMB");

    // Only for names we order, only for well-formed tokens, only with one account.
    CHECK_FALSE(responder.answer(token, "other.example.test"));
    CHECK_FALSE(responder.answer("short", "app.example.test"));
    CHECK_FALSE(responder.answer("has/slash_0123456789abcdefgh", "app.example.test"));
    CHECK_FALSE(responder.answer(std::string(129, 'a'), "app.example.test"));
    responder.set_account_thumbprints({"ONE", "TWO"});
    CHECK_FALSE(responder.answer(token, "app.example.test"));

    // A thumbprint added by the worker joins those from the store, once.
    responder.set_account_thumbprints({});
    responder.add_account_thumbprint("THUMB");
    responder.add_account_thumbprint("THUMB");
    CHECK(responder.answer(token, "app.example.test") == token + ".THUMB");

    // A recorded answer wins over the stateless one.
    responder.set_account_thumbprints({"THUMB"});
    responder.add(token, token + ".RECORDED");
    CHECK(responder.answer(token, "app.example.test") == token + ".RECORDED");
}
