#!/usr/bin/env bash
# Builds gatehouse and runs every test it has: unit tests, integration tests against the real
# binary, deployment checks and the format check. Installs missing Debian packages first
# (as root). Extra arguments go to ctest, e.g. `scripts/test.sh -R unit`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build
ctest --test-dir build --output-on-failure "$@"
