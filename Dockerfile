# syntax=docker/dockerfile:1
#
# The gatehouse container image, in two stages: a full Debian 12 that compiles the proxy, and a
# slim Debian 12 that only runs it. docs/deployment.md explains how the image is deployed.
#
#   docker build -t gatehouse .
#   docker run --rm -v "$PWD/gatehouse.yaml:/etc/gatehouse/gatehouse.yaml:ro" \
#       -p 8080:8080 gatehouse

# --- build stage -------------------------------------------------------------------------------
FROM debian:bookworm AS build
WORKDIR /src

# The toolchain and libraries come from the same script developers and CI run, so the image can
# never drift from what the tests were built against. Copying the script alone first keeps this
# slow layer cached while only the sources change.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN bash scripts/install-deps.sh \
    && rm -rf /var/lib/apt/lists/*

COPY . .

# Only the proxy itself: the unit tests and their Catch2 dependency stay out of the image build.
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGATEHOUSE_BUILD_TESTS=OFF \
    && cmake --build build --target gatehouse

# --- runtime stage -----------------------------------------------------------------------------
FROM debian:bookworm-slim

# The shared libraries the binary links against, and nothing else. Boost (Asio, Beast) and
# nlohmann/json are header-only. ca-certificates is for verifying ACME servers once certificate
# management lands.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates \
        libfmt9 \
        libmimalloc2.0 \
        libspdlog1.10 \
        libssl3 \
        libyaml-cpp0.7 \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid, so Kubernetes' runAsUser and fsGroup (deploy/deployment.yaml) and file
# ownership on persistent volumes agree with the image. The certificate store holds private keys:
# only the gatehouse user may enter it.
RUN groupadd --system --gid 10001 gatehouse \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/gatehouse --no-create-home \
        --shell /usr/sbin/nologin gatehouse \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/gatehouse \
    && install -d -o root -g root -m 0755 /etc/gatehouse

COPY --from=build /src/build/gatehouse /usr/local/bin/gatehouse

# A library missing from the list above fails the image build here rather than the first start of
# a pod.
RUN ldd /usr/local/bin/gatehouse | { ! grep 'not found'; } \
    && /usr/local/bin/gatehouse version

# The configuration is not baked in: mount it at /etc/gatehouse/gatehouse.yaml (deploy/ mounts a
# ConfigMap there). Certificates and ACME state live in /var/lib/gatehouse; keep it on a volume.
VOLUME ["/var/lib/gatehouse"]

USER 10001:10001

# 8080 is the plain-HTTP listener, 8443 the HTTPS one, 9901 the admin listener (readiness,
# status, metrics) that must stay inside the cluster.
EXPOSE 8080 8443 9901

# gatehouse drains on SIGTERM: it fails readiness, stops accepting and lets in-flight requests
# finish for up to timeouts.drain before it exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["run", "--config", "/etc/gatehouse/gatehouse.yaml"]
