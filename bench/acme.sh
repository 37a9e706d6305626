#!/usr/bin/env bash
# ACME cold-start benchmark: wall time from starting a client to its first certificate for a
# name it has never seen, against one local Pebble, HTTP-01, on loopback. Clients: certbot,
# lego and gatehouse. See bench/README.md ("ACME: time to the first certificate").
#
#   bench/acme.sh [--binary build/gatehouse] [--repeats 3] [--only gatehouse,certbot,lego]
#                 [--timeout 30] [--keep-tmp]
#
# Pebble runs with PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=0 and PEBBLE_AUTHZREUSE=0, and
# pebble-challtestsrv answers every A query with 127.0.0.1. Every process this script starts
# is stopped on exit, whatever the exit path.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
PY=/usr/bin/python3
HELPER="$HERE/bench_helper.py"

BINARY="$REPO/build/gatehouse"
REPEATS=3
ONLY="certbot,lego,gatehouse"
TIMEOUT=30
KEEP_TMP=0
READY_TIMEOUT=10
POLL_INTERVAL=0.02
RESULTS_DIR="$HERE/results"

usage() {
    sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<'EOF'

Options:
  --binary PATH   gatehouse binary (default: build/gatehouse in the repository)
  --repeats N     runs per client, interleaved certbot, lego, gatehouse (default 3)
  --only LIST     comma list from certbot,lego,gatehouse (default: all three)
  --timeout S     longest wait for one client's certificate (default 30); a client past it
                  is stopped and its run counts as failed
  --keep-tmp      keep the temporary directory (configs, logs, certificates)
Results: printed, and written to bench/results/acme.md. A client that fails a run (exit
status, no certificate, a certificate that does not chain to Pebble's root, a timeout) shows
"failed" for that run; the benchmark goes on.
EOF
}

die() { echo "acme.sh: $*" >&2; exit 2; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]] && (( $1 > 0 )); }

while (( $# )); do
    case $1 in
        --binary) BINARY=${2:?--binary needs a path}; shift 2 ;;
        --binary=*) BINARY=${1#*=}; shift ;;
        --repeats) REPEATS=${2:?}; shift 2 ;;
        --repeats=*) REPEATS=${1#*=}; shift ;;
        --only) ONLY=${2:?}; shift 2 ;;
        --only=*) ONLY=${1#*=}; shift ;;
        --timeout) TIMEOUT=${2:?}; shift 2 ;;
        --timeout=*) TIMEOUT=${1#*=}; shift ;;
        --keep-tmp) KEEP_TMP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

is_uint "$REPEATS" || die "--repeats must be a whole number > 0"
is_uint "$TIMEOUT" || die "--timeout must be a whole number of seconds > 0"
(( REPEATS <= 50 && TIMEOUT <= 300 )) ||
    die "refusing an unbounded-looking run (repeats <= 50, timeout <= 300)"

# Clients, always in this order so runs interleave the same way every time.
CLIENTS=()
for c in certbot lego gatehouse; do
    [[ ",$ONLY," == *",$c,"* ]] && CLIENTS+=("$c")
done
for c in ${ONLY//,/ }; do
    case $c in certbot|lego|gatehouse) ;; *) die "--only: unknown client '$c'" ;; esac
done
(( ${#CLIENTS[@]} )) || die "--only selected nothing"
wants() { [[ " ${CLIENTS[*]} " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------------------------
# Preconditions, all checked before anything is started. A missing gatehouse binary is not
# fatal: its row says "failed" and why.

for tool in pebble pebble-challtestsrv openssl curl timeout; do
    command -v "$tool" >/dev/null || die "'$tool' not found (Debian packages: pebble openssl curl coreutils; scripts/install-deps.sh)"
done
for tool in certbot lego; do
    if wants "$tool"; then
        command -v "$tool" >/dev/null || die "'$tool' not found (Debian package: $tool), or leave it out with --only"
    fi
done
[[ -x $PY ]] || die "$PY not found"
[[ -n ${EPOCHREALTIME:-} ]] || die "needs bash 5 (EPOCHREALTIME)"

GATEHOUSE_PROBLEM=""
if wants gatehouse; then
    [[ $BINARY == /* ]] || BINARY="$PWD/$BINARY"
    if [[ ! -f $BINARY || ! -x $BINARY ]]; then
        GATEHOUSE_PROBLEM="binary not found or not executable: $BINARY"
        echo "acme.sh: gatehouse $GATEHOUSE_PROBLEM; its runs will show as failed" >&2
    fi
fi

# Nothing below may leave loopback: no proxy, and every URL names 127.0.0.1.
unset http_proxy https_proxy all_proxy no_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY NO_PROXY
for var in $(compgen -e); do
    [[ $var == PEBBLE_* ]] && unset "$var"
done

# ---------------------------------------------------------------------------------------------
# Process bookkeeping and cleanup.

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-acme-bench.XXXXXX")
STARTED_PIDS=()

stop_pid() {
    # TERM the process and anything under it; KILL whatever is left after 5 s. Also called
    # between runs, under set -e, so the reaped child's exit status is not a failure here.
    local pid=$1 tree i p
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    tree=$("$PY" "$HELPER" tree "$pid" 2>/dev/null || echo "$pid")
    kill -TERM "$pid" 2>/dev/null
    for (( i = 0; i < 50; i++ )); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    for p in $tree; do
        kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    done
    wait "$pid" 2>/dev/null || true
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
        echo "acme.sh: temporary files kept in $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "acme.sh: unexpected failure at line $LINENO: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD... : run CMD in the background, output to $TMP/NAME.log; sets LAST_PID.
start() {
    local name=$1
    shift
    "$@" >"$TMP/$name.log" 2>&1 &
    LAST_PID=$!
    STARTED_PIDS+=("$LAST_PID")
}

show_log() {
    echo "---- last lines of $1 ----" >&2
    tail -n "${2:-20}" "$1" >&2 || true
    echo "----" >&2
}

# seconds_since T0 : wall seconds since EPOCHREALTIME value T0, 3 decimals.
seconds_since() {
    awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'
}

# ---------------------------------------------------------------------------------------------
# Ports, Pebble's own HTTPS certificate, and Pebble.

mapfile -t PORTS < <("$PY" "$HELPER" ports 8)
(( ${#PORTS[@]} == 8 )) || die "could not pick free ports"
PEBBLE_PORT=${PORTS[0]}
PEBBLE_MGMT_PORT=${PORTS[1]}
DNS_PORT=${PORTS[2]}
DNS_MGMT_PORT=${PORTS[3]}
HTTP_PORT=${PORTS[4]}          # every client's HTTP-01 server, one client at a time
TLS_ALPN_PORT=${PORTS[5]}      # pebble's tlsPort; unused (every client here uses HTTP-01)
HTTPS_PORT=${PORTS[6]}         # gatehouse's HTTPS listener
ADMIN_PORT=${PORTS[7]}         # gatehouse's admin listener
DIRECTORY="https://127.0.0.1:$PEBBLE_PORT/dir"

mkdir -p "$TMP/pki" "$TMP/runs"
CA_BUNDLE=$TMP/pki/pebble-https-ca.pem
ec_key=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
{
    openssl req -x509 "${ec_key[@]}" -keyout "$TMP/pki/ca.key" -out "$CA_BUNDLE" -days 2 \
        -subj "/CN=gatehouse bench pebble HTTPS CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign &&
    openssl req "${ec_key[@]}" -keyout "$TMP/pki/pebble.key" -out "$TMP/pki/pebble.pem" -days 2 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -addext basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=serverAuth \
        -CA "$CA_BUNDLE" -CAkey "$TMP/pki/ca.key"
} >"$TMP/openssl-req.log" 2>&1 ||
    { cat "$TMP/openssl-req.log" >&2; die "could not make Pebble's HTTPS certificate"; }

cat >"$TMP/pebble-config.json" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$PEBBLE_PORT",
    "managementListenAddress": "127.0.0.1:$PEBBLE_MGMT_PORT",
    "certificate": "$TMP/pki/pebble.pem",
    "privateKey": "$TMP/pki/pebble.key",
    "httpPort": $HTTP_PORT,
    "tlsPort": $TLS_ALPN_PORT,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
EOF

# wait_until SECONDS PID CMD... : CMD succeeds within SECONDS while PID lives.
wait_until() {
    local limit=$1 pid=$2 t0=$EPOCHREALTIME
    shift 2
    while :; do
        kill -0 "$pid" 2>/dev/null || return 1
        "$@" >/dev/null 2>&1 && return 0
        awk -v a="$t0" -v b="$EPOCHREALTIME" -v l="$limit" 'BEGIN { exit !(b - a < l) }' || return 1
        sleep 0.05
    done
}

tcp_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1"; }
pebble_answers() {
    curl -fsS --noproxy '*' --max-time 1 --cacert "$CA_BUNDLE" "$DIRECTORY" | grep -q newOrder
}

echo "acme.sh: temp dir $TMP; pebble $DIRECTORY; HTTP-01 on 127.0.0.1:$HTTP_PORT"
start challtestsrv pebble-challtestsrv -dns01 "127.0.0.1:$DNS_PORT" \
    -management "127.0.0.1:$DNS_MGMT_PORT" -http01 "" -https01 "" -tlsalpn01 "" \
    -defaultIPv4 127.0.0.1 -defaultIPv6 ""
DNS_PID=$LAST_PID
# Its DNS server takes TCP and UDP together: TCP accepting means queries are answered.
if ! wait_until "$READY_TIMEOUT" "$DNS_PID" tcp_open "$DNS_PORT" ||
    ! wait_until "$READY_TIMEOUT" "$DNS_PID" tcp_open "$DNS_MGMT_PORT"; then
    show_log "$TMP/challtestsrv.log"
    die "pebble-challtestsrv did not start"
fi

start pebble env PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
    pebble -strict -dnsserver "127.0.0.1:$DNS_PORT" -config "$TMP/pebble-config.json"
PEBBLE_PID=$LAST_PID
if ! wait_until "$READY_TIMEOUT" "$PEBBLE_PID" pebble_answers; then
    show_log "$TMP/pebble.log"
    die "pebble did not answer $DIRECTORY within ${READY_TIMEOUT} s"
fi

# Pebble's issuing root and intermediate, generated at its start: what every issued
# certificate must chain to. ISSUERS holds both, for clients that take one CA file.
ROOTS=$TMP/pki/pebble-roots.pem
INTERMEDIATES=$TMP/pki/pebble-intermediates.pem
ISSUERS=$TMP/pki/pebble-issuers.pem
for what in roots intermediates; do
    out=$TMP/pki/pebble-$what.pem
    curl -fsS --noproxy '*' --max-time 5 --cacert "$CA_BUNDLE" -o "$out" \
        "https://127.0.0.1:$PEBBLE_MGMT_PORT/$what/0" || die "could not fetch pebble's $what"
done
cat "$ROOTS" "$INTERMEDIATES" >"$ISSUERS"

# chains_to_pebble FILE NAME : FILE's first certificate is for NAME and chains to Pebble's root.
chains_to_pebble() {
    [[ -s $1 ]] &&
        openssl verify -purpose sslserver -verify_hostname "$2" -CAfile "$ROOTS" \
            -untrusted "$INTERMEDIATES" "$1" 2>&1 | grep -q ": OK$"
}

# ---------------------------------------------------------------------------------------------
# One cold start per client. Each run_CLIENT NAME DIR sets RESULT to the seconds from starting
# the client to holding the certificate, or to "failed" (and WHY to the reason). Each run gets
# a fresh directory, so every client also registers a fresh account: that is part of a cold
# start.

CLIENT_TIMEOUT=$TIMEOUT

# run_bounded LOG CMD... : CMD under `timeout`, in the background so that a signal to this
# script is handled at once (bash defers traps while a foreground child runs); sets RC.
run_bounded() {
    local log=$1
    shift
    timeout -k 5 "$CLIENT_TIMEOUT" "$@" </dev/null >"$log" 2>&1 &
    STARTED_PIDS+=("$!")
    RC=0
    wait "$!" || RC=$?
}

# certbot and lego exit once the certificate is on disk: the time is up to their exit.
run_certbot() {
    local name=$1 dir=$2 t0
    t0=$EPOCHREALTIME
    run_bounded "$dir/out.log" env REQUESTS_CA_BUNDLE="$CA_BUNDLE" \
        certbot certonly --standalone --non-interactive --agree-tos \
        --register-unsafely-without-email --server "$DIRECTORY" -d "$name" \
        --http-01-address 127.0.0.1 --http-01-port "$HTTP_PORT" \
        --config-dir "$dir/config" --work-dir "$dir/work" --logs-dir "$dir/logs"
    RESULT=$(seconds_since "$t0")
    finish_file_client "$RC" "$dir/config/live/$name/fullchain.pem" "$name" "$dir/out.log"
}

run_lego() {
    local name=$1 dir=$2 t0
    t0=$EPOCHREALTIME
    run_bounded "$dir/out.log" env LEGO_CA_CERTIFICATES="$CA_BUNDLE" \
        lego --server "$DIRECTORY" --email bench@example.test --domains "$name" --accept-tos \
        --http --http.port "127.0.0.1:$HTTP_PORT" --path "$dir" run
    RESULT=$(seconds_since "$t0")
    finish_file_client "$RC" "$dir/certificates/$name.crt" "$name" "$dir/out.log"
}

# finish_file_client RC CERT NAME LOG : RESULT stays the time only for a verified certificate.
finish_file_client() {
    WHY=""
    if (( $1 == 124 || $1 == 137 )); then
        WHY="no certificate within $CLIENT_TIMEOUT s"
    elif (( $1 != 0 )); then
        WHY="exit status $1"
    elif ! chains_to_pebble "$2" "$3"; then
        WHY="certificate missing or not chaining to pebble's root: $2"
    fi
    if [[ -n $WHY ]]; then
        RESULT=failed
        show_log "$4" 8
    fi
}

# ---- gatehouse ------------------------------------------------------------------------------
# gatehouse's time runs from `gatehouse run` to the first TLS handshake on its HTTPS listener
# that serves, for SNI NAME, a certificate for NAME chaining to this Pebble's root. Polled
# with openssl s_client every POLL_INTERVAL s, bounded by --timeout. The config below is the
# ACME section as specified for gatehouse's ACME support; until that lands, gatehouse rejects
# `tls: acme` at load and every run shows "failed".

gatehouse_config() {
    local name=$1 dir=$2
    cat <<EOF
# gatehouse obtaining one certificate from the benchmark's Pebble over HTTP-01.
listen:
  http: "127.0.0.1:$HTTP_PORT"
  https: "127.0.0.1:$HTTPS_PORT"
  admin: "127.0.0.1:$ADMIN_PORT"
log: {level: info, access: false}
store: {file: "$dir/store"}
acme: {directory: "$DIRECTORY", ca_bundle: "$CA_BUNDLE", email: bench@example.test}
routes:
  - host: $name
    tls: acme
    paths:
      - prefix: /
        upstream: "http://127.0.0.1:1"
EOF
}

# serves_pebble_certificate NAME : one handshake; true when the served chain verifies against
# Pebble's issuers for NAME (a placeholder or self-signed certificate does not).
serves_pebble_certificate() {
    timeout 2 openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername "$1" \
        -verify_hostname "$1" -CAfile "$ISSUERS" </dev/null 2>/dev/null |
        grep -q "Verify return code: 0 (ok)"
}

run_gatehouse() {
    local name=$1 dir=$2 t0 pid
    RESULT=failed
    WHY=""
    if [[ -n $GATEHOUSE_PROBLEM ]]; then
        WHY=$GATEHOUSE_PROBLEM
        return 0
    fi
    mkdir -p "$dir/store"
    gatehouse_config "$name" "$dir" >"$dir/gatehouse.yaml"

    t0=$EPOCHREALTIME
    "$BINARY" run --config "$dir/gatehouse.yaml" </dev/null >"$dir/out.log" 2>&1 &
    pid=$!
    STARTED_PIDS+=("$pid")
    while :; do
        if serves_pebble_certificate "$name"; then
            RESULT=$(seconds_since "$t0")
            break
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null && WHY="exited with status 0" || WHY="exited with status $?"
            break
        fi
        if awk -v a="$t0" -v b="$EPOCHREALTIME" -v l="$TIMEOUT" 'BEGIN { exit !(b - a >= l) }'; then
            WHY="no certificate from pebble served within $TIMEOUT s"
            break
        fi
        sleep "$POLL_INTERVAL"
    done
    stop_pid "$pid"
    if [[ $RESULT == failed ]]; then
        show_log "$dir/out.log" 8
    fi
}

# ---------------------------------------------------------------------------------------------
# Measure: REPEATS rounds, each running every client once on a name nothing has seen.

declare -A TIMES OKS
for c in "${CLIENTS[@]}"; do TIMES[$c]=""; OKS[$c]=0; done
ORDERS_BEFORE=$(grep -c 'Added order "' "$TMP/pebble.log" || true)
run_index=0
echo "acme.sh: $REPEATS rounds over ${CLIENTS[*]}, timeout $TIMEOUT s per run"
for (( round = 1; round <= REPEATS; round++ )); do
    for c in "${CLIENTS[@]}"; do
        if ! kill -0 "$PEBBLE_PID" 2>/dev/null; then
            show_log "$TMP/pebble.log"
            die "pebble has exited"
        fi
        run_index=$(( run_index + 1 ))
        name="run-$run_index.example.test"
        dir="$TMP/runs/$run_index-$c"
        mkdir -p "$dir"
        "run_$c" "$name" "$dir"
        TIMES[$c]+="$RESULT "
        if [[ $RESULT != failed ]]; then
            OKS[$c]=$(( ${OKS[$c]} + 1 ))
            echo "acme.sh: round $round $c $name: $RESULT s"
        else
            echo "acme.sh: round $round $c $name: failed ($WHY)"
        fi
    done
done
ORDERS=$(( $(grep -c 'Added order "' "$TMP/pebble.log" || true) - ORDERS_BEFORE ))
ISSUED=$(grep -c 'Issued certificate serial' "$TMP/pebble.log" || true)

# ---------------------------------------------------------------------------------------------
# Report: medians over the successful runs; "failed" when none succeeded.

version_of() {
    case $1 in
        certbot) certbot --version 2>&1 | awk '{ print $2 }' ;;
        lego) dpkg-query -W -f='${Version}' lego 2>/dev/null ;;
        gatehouse) [[ -z $GATEHOUSE_PROBLEM ]] && "$BINARY" --version 2>/dev/null | head -n 1 ;;
    esac
}

# stats TIMES... : "median min max" of the numeric arguments, or "failed - -".
stats() {
    printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "failed - -"; exit }
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%.2f %.2f %.2f\n", m, v[1], v[NR]
        }'
}

REPORT=$TMP/acme.md
{
    echo "# ACME: time from process start to the first certificate for a new name"
    echo
    pebble_version=$(dpkg-query -W -f='${Version}' pebble 2>/dev/null || true)
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, pebble $pebble_version" \
         "(NOSLEEP=1, NONCEREJECT=0, AUTHZREUSE=0), HTTP-01 on loopback, $REPEATS rounds," \
         "timeout $TIMEOUT s; pebble created $ORDERS orders and issued $ISSUED certificates."
    echo
    echo "| client | version | median s | min s | max s | ok | every run, s |"
    echo "|---|---|---:|---:|---:|---:|---|"
    for c in "${CLIENTS[@]}"; do
        # shellcheck disable=SC2086  # TIMES holds one word per run
        read -r median low high < <(stats ${TIMES[$c]})
        version=$(version_of "$c" || true)
        echo "| $c | $version | $median | $low | $high | ${OKS[$c]}/$REPEATS |" \
             "${TIMES[$c]% } |"
    done
    echo
    echo "certbot and lego: until the client exits with its certificate on disk (the bench"
    echo "then checks that it chains to pebble's root). gatehouse: until the first handshake on"
    echo "its HTTPS listener that serves a certificate for the name chaining to pebble's root"
    echo "(openssl s_client every ${POLL_INTERVAL} s). Each run registers a new account. lego's"
    echo "times are bimodal: under 1 s when its first authorization poll already finds the"
    echo "challenge valid, about 5 s more when it has to wait for its next poll."
} >"$REPORT"

echo
cat "$REPORT"
mkdir -p "$RESULTS_DIR"
cp "$REPORT" "$RESULTS_DIR/acme.md"
echo
echo "acme.sh: written to $RESULTS_DIR/acme.md"
