#!/usr/bin/env bash
# Installs every Debian 12 package gatehouse needs to build, run, test and benchmark.
# Idempotent: packages already present are left alone. Run as root (or through sudo).
set -euo pipefail

build_packages=(
    build-essential cmake ninja-build ccache pkg-config clang-format
    libboost1.81-dev libssl-dev libyaml-cpp-dev nlohmann-json3-dev libspdlog-dev catch2
    libmimalloc-dev
)
test_packages=(
    python3 python3-pytest python3-yaml curl ca-certificates openssl procps util-linux yamllint
    pebble  # the ACME test CA, with pebble-challtestsrv as its DNS server
    etcd-server etcd-client  # the etcd store's tests start their own etcd; etcdctl to inspect
    # peers the tests and benchmarks compare with: proxies, a load generator, ACME clients
    nginx wrk haproxy lego certbot
)

missing=()
for package in "${build_packages[@]}" "${test_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}; run this script as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

# The nginx package starts a system nginx on port 80; the tests and benchmarks run their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    systemctl stop nginx || true
fi
# Likewise etcd-server starts a system etcd on 127.0.0.1:2379; the etcd tests start their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl stop etcd || true
fi
