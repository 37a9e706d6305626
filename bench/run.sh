#!/usr/bin/env bash
# Side-by-side benchmark: gatehouse vs nginx vs HAProxy, on loopback. Cases: HTTP/1.1
# keep-alive, HTTPS keep-alive, and HTTPS with a full TLS handshake per request.
# See bench/README.md for what is measured and how to read it.
#
#   bench/run.sh [--binary build/gatehouse] [--duration 8] [--repeats 3] [--connections 50]
#                [--warmup 2] [--only gatehouse,nginx,haproxy,direct]
#                [--cases http,https,handshake] [--quick] [--keep-tmp]
#
# Layout: one backend nginx and wrk share core 1; each proxy runs one worker pinned to core 0.
# Every process this script starts is stopped on exit, whatever the exit path.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
PY=/usr/bin/python3
HELPER="$HERE/bench_helper.py"

BINARY="$REPO/build/gatehouse"
DURATION=8
REPEATS=3
CONNECTIONS=50
WARMUP=2
ONLY="gatehouse,nginx,haproxy,direct"
CASES="http,https,handshake"
KEEP_TMP=0
PROXY_CORE=0
LOAD_CORE=1
RESULTS_DIR="$HERE/results"

usage() {
    sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<'EOF'

Options:
  --binary PATH       gatehouse binary (default: build/gatehouse in the repository)
  --duration S        seconds per measured wrk run (default 8)
  --repeats N         interleaved rounds over all cases and targets (default 3)
  --connections N     wrk connections, one wrk thread (default 50)
  --warmup S          unrecorded wrk run per case and target before round 1 (default 2)
  --only LIST         comma list from gatehouse,nginx,haproxy,direct (default: all four)
  --cases LIST        comma list from http,https,handshake (default: all three); direct
                      takes part in http only (the backend speaks plain HTTP)
  --quick             smoke test: --duration 2 --repeats 1 --warmup 1
  --keep-tmp          keep the temporary directory (configs, logs, raw wrk output)
Results: printed, and written to bench/results/latest.md (+ latest.json, the raw records).
EOF
}

die() { echo "run.sh: $*" >&2; exit 2; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]] && (( $1 > 0 )); }

while (( $# )); do
    case $1 in
        --binary) BINARY=${2:?--binary needs a path}; shift 2 ;;
        --binary=*) BINARY=${1#*=}; shift ;;
        --duration) DURATION=${2:?}; shift 2 ;;
        --duration=*) DURATION=${1#*=}; shift ;;
        --repeats) REPEATS=${2:?}; shift 2 ;;
        --repeats=*) REPEATS=${1#*=}; shift ;;
        --connections) CONNECTIONS=${2:?}; shift 2 ;;
        --connections=*) CONNECTIONS=${1#*=}; shift ;;
        --warmup) WARMUP=${2:?}; shift 2 ;;
        --warmup=*) WARMUP=${1#*=}; shift ;;
        --only) ONLY=${2:?}; shift 2 ;;
        --only=*) ONLY=${1#*=}; shift ;;
        --cases) CASES=${2:?}; shift 2 ;;
        --cases=*) CASES=${1#*=}; shift ;;
        --quick) DURATION=2; REPEATS=1; WARMUP=1; shift ;;
        --keep-tmp) KEEP_TMP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

is_uint "$DURATION" || die "--duration must be a whole number of seconds > 0"
is_uint "$REPEATS" || die "--repeats must be a whole number > 0"
is_uint "$CONNECTIONS" || die "--connections must be a whole number > 0"
[[ $WARMUP =~ ^[0-9]+$ ]] || die "--warmup must be a whole number of seconds (0 to skip)"
(( DURATION <= 600 && REPEATS <= 50 && CONNECTIONS <= 5000 )) ||
    die "refusing an unbounded-looking run (duration <= 600, repeats <= 50, connections <= 5000)"

# Targets, always in this order so runs interleave the same way every time.
TARGETS=()
for t in gatehouse nginx haproxy direct; do
    [[ ",$ONLY," == *",$t,"* ]] && TARGETS+=("$t")
done
for t in ${ONLY//,/ }; do
    case $t in gatehouse|nginx|haproxy|direct) ;; *) die "--only: unknown target '$t'" ;; esac
done
(( ${#TARGETS[@]} )) || die "--only selected nothing"
wants() { [[ " ${TARGETS[*]} " == *" $1 "* ]]; }

# Cases, likewise in a fixed order. Within a round every selected case runs over its targets
# before the next round starts, so slow drifts of the machine hit all cases alike.
CASE_LIST=()
for c in http https handshake; do
    [[ ",$CASES," == *",$c,"* ]] && CASE_LIST+=("$c")
done
for c in ${CASES//,/ }; do
    case $c in http|https|handshake) ;; *) die "--cases: unknown case '$c'" ;; esac
done
(( ${#CASE_LIST[@]} )) || die "--cases selected nothing"
wants_case() { [[ " ${CASE_LIST[*]} " == *" $1 "* ]]; }
TLS=0
if wants_case https || wants_case handshake; then TLS=1; fi

# targets_of CASE : the selected targets that take part in CASE, into CASE_TARGETS.
targets_of() {
    CASE_TARGETS=()
    local t
    for t in "${TARGETS[@]}"; do
        [[ $1 != http && $t == direct ]] && continue
        CASE_TARGETS+=("$t")
    done
}
for c in "${CASE_LIST[@]}"; do
    targets_of "$c"
    (( ${#CASE_TARGETS[@]} )) || die "case '$c' has no target among --only $ONLY (direct is plain HTTP only; add --cases http)"
done

# ---------------------------------------------------------------------------------------------
# Preconditions, all checked before anything is started.

for tool in nginx haproxy wrk taskset; do
    command -v "$tool" >/dev/null || die "'$tool' not found (Debian packages: nginx haproxy wrk util-linux)"
done
if (( TLS )); then
    command -v openssl >/dev/null || die "'openssl' not found (Debian package: openssl); it makes the test certificate"
fi
[[ -x $PY ]] || die "$PY not found"
CORES=$(nproc --all)
(( CORES >= 2 )) || die "needs at least 2 CPU cores (proxy on core $PROXY_CORE, load on core $LOAD_CORE); this machine has $CORES"

if wants gatehouse; then
    [[ $BINARY == /* ]] || BINARY="$PWD/$BINARY"
    if [[ ! -e $BINARY ]]; then
        echo "run.sh: gatehouse binary not found: $BINARY" >&2
        echo "run.sh: build it first, pass --binary PATH, or run without it: --only nginx,haproxy,direct" >&2
        exit 3
    fi
    [[ -x $BINARY && -f $BINARY ]] || { echo "run.sh: gatehouse binary is not an executable file: $BINARY" >&2; exit 3; }
fi

# ---------------------------------------------------------------------------------------------
# Process bookkeeping and cleanup.

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-bench.XXXXXX")
STARTED_PIDS=()

stop_pid() {
    # TERM the process and anything under it; KILL whatever is left after 5 s.
    local pid=$1 tree i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    tree=$("$PY" "$HELPER" tree "$pid" 2>/dev/null || echo "$pid")
    kill -TERM "$pid" 2>/dev/null
    for (( i = 0; i < 50; i++ )); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    for p in $tree; do
        kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    done
    wait "$pid" 2>/dev/null
    return 0
}

cleanup() {
    local rc=$? i
    set +e
    trap - EXIT INT TERM
    for (( i = ${#STARTED_PIDS[@]} - 1; i >= 0; i-- )); do
        stop_pid "${STARTED_PIDS[i]}"
    done
    if (( KEEP_TMP )); then
        echo "run.sh: temporary files kept in $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "run.sh: unexpected failure at line $LINENO: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CORE CMD... : run CMD pinned to CORE, output to $TMP/NAME.log; sets LAST_PID.
start() {
    local name=$1 core=$2
    shift 2
    taskset -c "$core" "$@" >"$TMP/$name.log" 2>&1 &
    LAST_PID=$!
    STARTED_PIDS+=("$LAST_PID")
}

show_log() {
    echo "---- last lines of $1's output ----" >&2
    tail -n 20 "$TMP/$1.log" >&2 || true
    echo "----" >&2
}

# wait_ready NAME PID PORT [TLS_PORT] : bounded wait for 200 "hello\n" via 127.0.0.1:PORT,
# Host: localhost; with TLS_PORT, then the same over HTTPS there, trusting only the test
# certificate (so a proxy serving some other certificate is caught here).
wait_ready() {
    "$PY" "$HELPER" probe --port "$3" --pid "$2" --timeout 10 || return 1
    [[ -z ${4:-} ]] || "$PY" "$HELPER" probe --tls --cafile "$TLS_CERT" --port "$4" --pid "$2" --timeout 10
}

# ---------------------------------------------------------------------------------------------
# Ports and configuration files.

mapfile -t PORTS < <("$PY" "$HELPER" ports 8)
(( ${#PORTS[@]} == 8 )) || die "could not pick free ports"
BACKEND_PORT=${PORTS[0]}
GATEHOUSE_PORT=${PORTS[1]}
GATEHOUSE_ADMIN_PORT=${PORTS[2]}
NGINX_PORT=${PORTS[3]}
HAPROXY_PORT=${PORTS[4]}
GATEHOUSE_TLS_PORT=${PORTS[5]}
NGINX_TLS_PORT=${PORTS[6]}
HAPROXY_TLS_PORT=${PORTS[7]}

mkdir -p "$TMP/backend" "$TMP/nginx" "$TMP/haproxy" "$TMP/gatehouse" "$TMP/gatehouse/store" \
    "$TMP/raw" "$TMP/tls"

# TLS: one certificate and key for every proxy, so that all of them do the same signature per
# handshake. ECDSA P-256, self-signed, valid for two days; localhost and 127.0.0.1 as names.
TLS_CERT=$TMP/tls/cert.pem
TLS_KEY=$TMP/tls/key.pem
TLS_COMBINED=$TMP/tls/combined.pem   # HAProxy wants certificate and key in one file
# The same cipher preferences for every proxy, server's order first. TLS 1.2: gatehouse's own
# list (proxy/tls_table.cpp: ECDHE + AEAD only). TLS 1.3: OpenSSL's default order, which is
# what gatehouse leaves in place. Groups as gatehouse's (X25519 first). wrk (OpenSSL 3)
# negotiates TLS 1.3 with X25519 on all of them; the TLS check below shows what was agreed.
TLS12_CIPHERS="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
TLS13_SUITES="TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
if (( TLS )); then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$TLS_KEY" -out "$TLS_CERT" >"$TMP/openssl-req.log" 2>&1 ||
        { cat "$TMP/openssl-req.log" >&2; die "could not generate the test certificate"; }
    cat "$TLS_CERT" "$TLS_KEY" >"$TLS_COMBINED"
fi

# nginx's temp paths, so neither nginx instance needs /var/lib/nginx or /etc/nginx.
nginx_temp_paths() {
    local dir=$1
    printf '    client_body_temp_path %s/client_body;\n' "$dir"
    printf '    proxy_temp_path %s/proxy;\n' "$dir"
    printf '    fastcgi_temp_path %s/fastcgi;\n' "$dir"
    printf '    uwsgi_temp_path %s/uwsgi;\n' "$dir"
    printf '    scgi_temp_path %s/scgi;\n' "$dir"
}

cat >"$TMP/backend/nginx.conf" <<EOF
# Backend: answers every request with a 6-byte body.
worker_processes 1;
pid $TMP/backend/nginx.pid;
error_log $TMP/backend/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
$(nginx_temp_paths "$TMP/backend")
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$BACKEND_PORT;
        location / {
            default_type text/plain;
            return 200 "hello\n";
        }
    }
}
EOF

# nginx's HTTPS server for the TLS cases (nothing at all without them): the same proxying as
# the plain server, resumption off.
nginx_tls_server() {
    (( TLS )) || return 0
    cat <<EOF
    server {
        listen 127.0.0.1:$NGINX_TLS_PORT ssl;
        ssl_certificate $TLS_CERT;
        ssl_certificate_key $TLS_KEY;
        # nginx 1.22's default is TLSv1 TLSv1.1 TLSv1.2: without this it would not speak 1.3.
        ssl_protocols TLSv1.2 TLSv1.3;
        # No resumption: no tickets, and "off" (not the default "none") refuses session IDs
        # outright. NumTickets 0 also stops the TLS 1.3 tickets it would otherwise still send
        # (useless without a cache), as gatehouse sends none.
        ssl_session_tickets off;
        ssl_session_cache off;
        ssl_conf_command NumTickets 0;
        ssl_prefer_server_ciphers on;
        ssl_ciphers $TLS12_CIPHERS;
        ssl_conf_command Ciphersuites $TLS13_SUITES;
        ssl_ecdh_curve X25519:prime256v1:secp384r1;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF
}

cat >"$TMP/nginx/nginx.conf" <<EOF
# nginx as the proxy under test: one worker, keep-alive to the backend.
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
$(nginx_temp_paths "$TMP/nginx")
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
$(nginx_tls_server)
}
EOF

# HAProxy's TLS settings and HTTPS frontend for the TLS cases (nothing without them).
# Resumption off: no tickets, and no session cache (cachesize 0). HAProxy 2.6 has no setting
# for the TLS 1.3 tickets OpenSSL still sends then; they cannot resume (see the TLS check).
haproxy_tls_global() {
    (( TLS )) || return 0
    cat <<EOF
    tune.ssl.cachesize 0
    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets
    ssl-default-bind-ciphers $TLS12_CIPHERS
    ssl-default-bind-ciphersuites $TLS13_SUITES
    ssl-default-bind-curves X25519:P-256:P-384
EOF
}
haproxy_tls_frontend() {
    (( TLS )) || return 0
    cat <<EOF

frontend bench_tls_in
    bind 127.0.0.1:$HAPROXY_TLS_PORT ssl crt $TLS_COMBINED
    default_backend bench_backend
EOF
}

cat >"$TMP/haproxy/haproxy.cfg" <<EOF
# HAProxy as the proxy under test: one thread, no logging, reused backend connections.
global
    nbthread 1
    maxconn 4096
$(haproxy_tls_global)

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 60s

frontend bench_in
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend bench_backend
$(haproxy_tls_frontend)

backend bench_backend
    http-reuse always
    server backend1 127.0.0.1:$BACKEND_PORT
EOF

# gatehouse's TLS parts for the TLS cases (nothing without them). wrk puts the IP of its URL
# in SNI, which no route names, so unknown names get the route's certificate. Resumption off.
# The route keeps serving plain HTTP too (redirect_http: false) for the http case.
gatehouse_https_listen() {
    (( TLS )) || return 0
    printf ', https: "127.0.0.1:%s"' "$GATEHOUSE_TLS_PORT"
}
gatehouse_tls_global() {
    (( TLS )) || return 0
    echo "tls: {session_tickets: false, unknown_sni: default, default_certificate: localhost}"
}
gatehouse_tls_route() {
    (( TLS )) || return 0
    echo "    tls: {cert: \"$TLS_CERT\", key: \"$TLS_KEY\"}"
    echo "    redirect_http: false"
}

cat >"$TMP/gatehouse/gatehouse.yaml" <<EOF
# gatehouse as the proxy under test: one worker thread, no access log.
listen: {http: "127.0.0.1:$GATEHOUSE_PORT"$(gatehouse_https_listen), admin: "127.0.0.1:$GATEHOUSE_ADMIN_PORT"}
threads: 1
log: {level: warn, access: false}
# Its own store in the temp dir, so nothing under /var/lib/gatehouse (the default) is touched.
store: {file: "$TMP/gatehouse/store"}
$(gatehouse_tls_global)
routes:
  - host: localhost
$(gatehouse_tls_route)
    paths:
      - prefix: /
        upstream: "http://127.0.0.1:$BACKEND_PORT"
EOF

"$PY" "$HELPER" quiet "$PROXY_CORE" "$LOAD_CORE"

# Check the third-party configs before starting anything (fast, and gives a clear message).
nginx -t -q -c "$TMP/backend/nginx.conf" -p "$TMP/backend" -e "$TMP/backend/error.log" \
    >"$TMP/nginx-t.log" 2>&1 || { cat "$TMP/nginx-t.log" >&2; die "backend nginx config rejected"; }
if wants nginx; then
    nginx -t -q -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" -e "$TMP/nginx/error.log" \
        >"$TMP/nginx-t.log" 2>&1 || { cat "$TMP/nginx-t.log" >&2; die "proxy nginx config rejected"; }
fi
if wants haproxy; then
    haproxy -c -q -f "$TMP/haproxy/haproxy.cfg" >"$TMP/haproxy-c.log" 2>&1 ||
        { cat "$TMP/haproxy-c.log" >&2; die "haproxy config rejected"; }
fi

# ---------------------------------------------------------------------------------------------
# Start everything, each one checked end to end (a real request through it) before going on.

declare -A PORT_OF TLS_PORT_OF PID_OF RSS_PID_OF
PORT_OF[direct]=$BACKEND_PORT
PORT_OF[gatehouse]=$GATEHOUSE_PORT
PORT_OF[nginx]=$NGINX_PORT
PORT_OF[haproxy]=$HAPROXY_PORT
if (( TLS )); then
    TLS_PORT_OF[gatehouse]=$GATEHOUSE_TLS_PORT
    TLS_PORT_OF[nginx]=$NGINX_TLS_PORT
    TLS_PORT_OF[haproxy]=$HAPROXY_TLS_PORT
fi

echo "run.sh: temp dir $TMP; backend 127.0.0.1:$BACKEND_PORT"
start backend "$LOAD_CORE" nginx -c "$TMP/backend/nginx.conf" -p "$TMP/backend" \
    -e "$TMP/backend/error.log" -g 'daemon off;'
BACKEND_PID=$LAST_PID
wait_ready backend "$BACKEND_PID" "$BACKEND_PORT" || { show_log backend; die "backend nginx did not start"; }

if wants gatehouse; then
    start gatehouse "$PROXY_CORE" "$BINARY" run --config "$TMP/gatehouse/gatehouse.yaml"
    PID_OF[gatehouse]=$LAST_PID
    if ! wait_ready gatehouse "$LAST_PID" "$GATEHOUSE_PORT" "${TLS_PORT_OF[gatehouse]:-}"; then
        echo "run.sh: gatehouse FAILED TO START or does not proxy correctly: $BINARY run --config $TMP/gatehouse/gatehouse.yaml" >&2
        show_log gatehouse
        KEEP_TMP=1
        exit 3
    fi
    RSS_PID_OF[gatehouse]=$LAST_PID
fi

if wants nginx; then
    start nginx "$PROXY_CORE" nginx -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" \
        -e "$TMP/nginx/error.log" -g 'daemon off;'
    PID_OF[nginx]=$LAST_PID
    wait_ready nginx "$LAST_PID" "$NGINX_PORT" "${TLS_PORT_OF[nginx]:-}" || { show_log nginx; die "proxy nginx did not start"; }
    # RSS is reported for the single worker (the master holds little and does no proxying).
    workers=$("$PY" "$HELPER" tree "$LAST_PID")
    workers=${workers#"$LAST_PID"}
    read -r -a workers <<<"$workers"
    (( ${#workers[@]} == 1 )) || die "expected one nginx worker under $LAST_PID, found: ${workers[*]:-none}"
    RSS_PID_OF[nginx]=${workers[0]}
fi

if wants haproxy; then
    start haproxy "$PROXY_CORE" haproxy -db -f "$TMP/haproxy/haproxy.cfg"
    PID_OF[haproxy]=$LAST_PID
    wait_ready haproxy "$LAST_PID" "$HAPROXY_PORT" "${TLS_PORT_OF[haproxy]:-}" || { show_log haproxy; die "haproxy did not start"; }
    RSS_PID_OF[haproxy]=$LAST_PID
fi

# Idle RSS: after one probe request (one per listener), before any load.
read -r _ _ backend_cpus < <("$PY" "$HELPER" rss "$BACKEND_PID")
META_ITEMS=("backend_cpus_allowed=$backend_cpus")
for t in "${TARGETS[@]}"; do
    [[ -n ${RSS_PID_OF[$t]:-} ]] || continue
    read -r rss _ < <("$PY" "$HELPER" rss "${RSS_PID_OF[$t]}")
    META_ITEMS+=("idle_rss_kib.$t=$rss")
done

# ---------------------------------------------------------------------------------------------
# Measure.

# Resumption must be off everywhere, or the handshake case measures resumed handshakes (wrk
# keeps each connection's session and offers it again when it reconnects). Checked once here
# with two independent clients; gatehouse's own counters are also recorded around every run.
TLS_CHECKS="$TMP/tlscheck.jsonl"
: >"$TLS_CHECKS"
if (( TLS )); then
    echo "run.sh: TLS check (does a second connection resume the first one's session?)"
    for t in "${TARGETS[@]}"; do
        [[ -n ${TLS_PORT_OF[$t]:-} ]] || continue
        "$PY" "$HELPER" tlscheck --label "$t" --port "${TLS_PORT_OF[$t]}" --cafile "$TLS_CERT" \
            --out "$TLS_CHECKS" || die "TLS check of $t failed"
    done
fi

# set_wrk CASE TARGET SECONDS [--latency] : the pinned wrk command line, into WRK.
#   http:      plain keep-alive, as before the TLS cases existed.
#   https:     the same over TLS: one handshake per connection, then only requests.
#   handshake: "Connection: close" makes every proxy close after each response, and wrk then
#              opens a new connection, so every request pays a full TCP + TLS handshake.
# The URL is always 127.0.0.1; wrk's SNI is that IP, gatehouse's route is found by Host.
set_wrk() {
    local url extra=()
    case $1 in
        http) url="http://127.0.0.1:${PORT_OF[$2]}/" ;;
        https) url="https://127.0.0.1:${TLS_PORT_OF[$2]}/" ;;
        handshake) url="https://127.0.0.1:${TLS_PORT_OF[$2]}/"; extra=(-H "Connection: close") ;;
    esac
    WRK=(taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNECTIONS" -d"$3"s ${4:+"$4"}
         -H "Host: localhost" "${extra[@]}" "$url")
}

LOADAVG_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if (( WARMUP > 0 )); then
    for c in "${CASE_LIST[@]}"; do
        targets_of "$c"
        for t in "${CASE_TARGETS[@]}"; do
            echo "run.sh: warm-up $c $t (${WARMUP} s, not recorded)"
            set_wrk "$c" "$t" "$WARMUP"
            timeout -k 5 $(( WARMUP + 30 )) "${WRK[@]}" >"$TMP/raw/warmup-$c-$t.txt" 2>&1 ||
                { cat "$TMP/raw/warmup-$c-$t.txt" >&2; die "warm-up of $c $t failed"; }
            # wrk exits 0 even when every request failed (a refused handshake, say): say so now
            # rather than only in the measured runs.
            if grep -qE "Socket errors|Non-2xx" "$TMP/raw/warmup-$c-$t.txt"; then
                echo "run.sh: WARNING: warm-up $c $t had errors:" >&2
                grep -E "requests in|Socket errors|Non-2xx" "$TMP/raw/warmup-$c-$t.txt" >&2
            fi
        done
    done
fi

RUNS="$TMP/runs.jsonl"
: >"$RUNS"
TOTAL=0
for c in "${CASE_LIST[@]}"; do targets_of "$c"; TOTAL=$(( TOTAL + REPEATS * ${#CASE_TARGETS[@]} )); done
echo "run.sh: $TOTAL measured runs of ${DURATION} s (wrk -t1 -c$CONNECTIONS), interleaved: cases ${CASE_LIST[*]}; targets ${TARGETS[*]}"
for (( round = 1; round <= REPEATS; round++ )); do
    for c in "${CASE_LIST[@]}"; do
        targets_of "$c"
        for t in "${CASE_TARGETS[@]}"; do
            if [[ -n ${PID_OF[$t]:-} ]] && ! kill -0 "${PID_OF[$t]}" 2>/dev/null; then
                show_log "$t"
                die "$t (pid ${PID_OF[$t]}) has exited"
            fi
            set_wrk "$c" "$t" "$DURATION" --latency
            metrics=0
            [[ $t == gatehouse ]] && metrics=$GATEHOUSE_ADMIN_PORT
            "$PY" "$HELPER" measure --case "$c" --label "$t" --round "$round" \
                --pid "${PID_OF[$t]:-0}" --rss-pid "${RSS_PID_OF[$t]:-0}" \
                --backend-pid "$BACKEND_PID" --timeout $(( DURATION + 30 )) \
                --proxy-core "$PROXY_CORE" --load-core "$LOAD_CORE" --metrics-port "$metrics" \
                --out "$RUNS" --raw "$TMP/raw/$c-$t-$round.txt" \
                -- "${WRK[@]}" || die "measurement of $c $t round $round failed"
            sleep 1
        done
    done
done

# ---------------------------------------------------------------------------------------------
# Report.

commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "no commit")
if [[ -n $(git -C "$REPO" status --porcelain 2>/dev/null | head -1) ]]; then commit="$commit (working tree has changes)"; fi
# Each of these is best effort: a failing probe (wrk -v exits 1) must not stop the report.
version() { "$@" 2>&1 | head -1 || true; }
NGINX_VERSION=$(version nginx -v); NGINX_VERSION=${NGINX_VERSION#nginx version: }
HAPROXY_VERSION=$(version haproxy -v | cut -d' ' -f1-3)
WRK_VERSION=$(version wrk -v | cut -d' ' -f1-2)
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
META_ITEMS+=(
    "started=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    "targets=$(IFS=,; echo "${TARGETS[*]}")"
    "cases=$(IFS=,; echo "${CASE_LIST[*]}")"
    "duration=$DURATION" "repeats=$REPEATS" "connections=$CONNECTIONS"
    "proxy_core=$PROXY_CORE" "load_core=$LOAD_CORE"
    "host=$(uname -n)" "kernel=$(uname -sr)" "cores=$CORES"
    "cpu=$CPU_MODEL" "loadavg_before=$LOADAVG_BEFORE"
    "nginx=$NGINX_VERSION" "haproxy=$HAPROXY_VERSION" "wrk=$WRK_VERSION"
)
if wants gatehouse; then
    META_ITEMS+=("gatehouse=$BINARY" "gatehouse_commit=$commit")
fi
if (( TLS )); then
    META_ITEMS+=("openssl=$(version openssl version)"
                 "tls_certificate=ECDSA P-256 self-signed, CN=localhost, SAN localhost + 127.0.0.1; no resumption on any proxy")
fi
"$PY" "$HELPER" meta --out "$TMP/meta.json" "${META_ITEMS[@]}"

mkdir -p "$RESULTS_DIR"
"$PY" "$HELPER" report --runs "$RUNS" --meta "$TMP/meta.json" --md "$RESULTS_DIR/latest.md" \
    --tls-checks "$TLS_CHECKS"
"$PY" - "$TMP/meta.json" "$RUNS" "$TLS_CHECKS" "$RESULTS_DIR/latest.json" <<'EOF'
import json, sys
meta = json.load(open(sys.argv[1]))
runs = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
tls_checks = [json.loads(l) for l in open(sys.argv[3]) if l.strip()]
json.dump({"meta": meta, "runs": runs, "tls_checks": tls_checks}, open(sys.argv[4], "w"), indent=1)
EOF
echo "wrote $RESULTS_DIR/latest.json"
