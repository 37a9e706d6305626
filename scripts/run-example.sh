#!/usr/bin/env bash
# Builds gatehouse and runs it in the foreground on examples/gatehouse.yaml, which needs no
# network: it proxies http://localhost:8080/ to gatehouse's own admin listener. Try
#   curl http://localhost:8080/          # the admin index, through the proxy
#   curl http://localhost:8080/healthz   # the load balancer's health check
# Installs missing Debian packages first (as root). Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target gatehouse
exec build/gatehouse run --config examples/gatehouse.yaml
