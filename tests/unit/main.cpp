// The Catch2 entry point for gatehouse_unit_tests; the tests live in the *_test.cpp files.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
