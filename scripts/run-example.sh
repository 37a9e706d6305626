#!/usr/bin/env bash
# Builds gatehouse and runs it in the foreground on examples/gatehouse.yaml, which needs no
# network: it serves https://localhost:8443/ with a certificate from its own local CA and
# proxies it to gatehouse's own admin listener. Try
#   curl --cacert build/example-ca.pem https://localhost:8443/   # the admin index, over TLS
#   curl -i http://localhost:8080/                                # a 308 redirect to HTTPS
#   curl http://localhost:8080/healthz                            # the load balancer's check
# Installs missing Debian packages first (as root). Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target gatehouse

# The local CA lives in the store (build/example-store); saving its certificate lets curl
# verify what gatehouse serves. `gatehouse trust --install` would add it to the system store.
build/gatehouse trust --config examples/gatehouse.yaml >build/example-ca.pem
echo "run-example: local CA certificate in build/example-ca.pem; try" >&2
echo "  curl --cacert build/example-ca.pem https://localhost:8443/" >&2
exec build/gatehouse run --config examples/gatehouse.yaml
