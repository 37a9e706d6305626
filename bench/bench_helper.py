#!/usr/bin/python3
"""Helper for bench/run.sh: ports, readiness probes, /proc sampling, wrk parsing, the report.

Standard library only. run.sh owns every long-lived process (backend and proxies); this helper
only ever starts wrk, and only inside `measure`, with a hard timeout.

Subcommands:
  ports N                      print N free TCP ports on 127.0.0.1 (one per line)
  probe --port P --pid PID     wait until GET / through 127.0.0.1:P answers 200 "hello\\n"
                               (--tls --cafile CERT: over TLS, trusting only CERT)
  quiet CORE...                warn if those cores are already busy (samples 1 s)
  tree PID                     print PID and all of its descendants
  rss PID                      print VmRSS and VmHWM of PID in KiB, and its CPU affinity
  measure ... -- WRK ARGV      run wrk once, sample CPU/RSS around it, append a JSON record
  tlscheck --port P ...        negotiated TLS parameters and whether a session is resumed
  report ...                   medians per target, printed and written as Markdown
  meta --out F key=value ...   write the run's description as JSON for `report`
"""

import argparse
import http.client
import json
import os
import random
import re
import resource
import socket
import ssl
import statistics
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
EXPECTED_BODY = b"hello\n"

# The load cases, in the order they run within a round, with their titles in the report and the
# targets each applies to. `direct` is wrk straight at the plain-HTTP backend, so it only exists
# for the plain-HTTP case.
CASES = {
    "http": "HTTP keep-alive, 6-byte body",
    "https": "HTTPS keep-alive, 6-byte body",
    "handshake": "HTTPS, new connection per request (full handshake)",
}
TLS_CASES = ("https", "handshake")


def case_targets(case, targets):
    return [t for t in targets if t != "direct" or case not in TLS_CASES]


# ---------------------------------------------------------------------------------------------
# /proc sampling


def read_stat(pid):
    """Return (ppid, utime+stime in ticks) for pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses, so the
    # fixed fields are counted from the last ')'.
    rest = data[data.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    ppid = int(rest[1])
    return ppid, int(rest[11]) + int(rest[12])


def process_tree(root):
    """root and every live descendant of it."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = read_stat(int(name))
        if st is not None:
            children.setdefault(st[0], []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if read_stat(pid) is None:
            continue
        out.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(out)


def run_ns(pid):
    """CPU time of every thread of pid so far, in ns, from the scheduler's own account
    (/proc/PID/task/TID/schedstat, first field), or None when the kernel keeps none. The
    user and system times in /proc/PID/stat are sampled at each timer tick instead: a process
    busy half the time for 6 s gets a few hundred samples, about 2% of error on its own."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        # Gone: the caller falls back to the ticks and flags the changed process set.
        return None
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            # The thread ended between listing and reading.
            continue
        except (OSError, ValueError, IndexError):
            return None
    return total


def cpu_ns(pids):
    """Sum of run_ns over pids, or None when any of them has no scheduler account."""
    total = 0
    for pid in pids:
        ns = run_ns(pid)
        if ns is None:
            return None
        total += ns
    return total


def cpu_ticks(pids):
    """Sum of utime+stime over pids; also the pids actually seen."""
    total, seen = 0, []
    for pid in pids:
        st = read_stat(pid)
        if st is not None:
            total += st[1]
            seen.append(pid)
    return total, seen


def core_busy_ticks():
    """{core number: (busy ticks, steal ticks)} from /proc/stat; busy is user+nice+system.

    Interrupt and softirq time is left out on purpose: loopback traffic lands there, and it is
    not time any process can be charged with, so it would blur the comparison below."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+)\s+(.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()]
                out[int(m.group(1))] = (v[0] + v[1] + v[2], v[7] if len(v) > 7 else 0)
    return out


def tcp_passive_opens():
    """Connections accepted by any listener on the machine so far (PassiveOpens, /proc/net/snmp).

    Machine-wide, but during a run only the proxy under test accepts many (its backend
    connections are kept alive), so the delta over requests says whether each request really
    came on a new connection, for every proxy alike."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("PassiveOpens")])


def status_fields(pid):
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
    except OSError:
        return None
    return fields


def kib(value):
    # "12345 kB" -> 12345
    return int(value.split()[0]) if value else None


# ---------------------------------------------------------------------------------------------
# wrk output

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def to_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"unrecognised latency {text!r}")
    return float(m.group(1)) * UNIT_MS[m.group(2)]


def parse_wrk(text):
    """Pull the numbers out of `wrk --latency` output. Missing pieces raise ValueError."""
    out = {"non2xx": 0, "sock_connect": 0, "sock_read": 0, "sock_write": 0, "sock_timeout": 0}
    m = re.search(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h)", text, re.M)
    if not m:
        raise ValueError("no 'N requests in T' line in wrk output")
    out["requests"] = int(m.group(1))
    out["wrk_seconds"] = to_ms(m.group(2) + m.group(3)) / 1000.0
    m = re.search(r"^Requests/sec:\s*([0-9.]+)", text, re.M)
    if not m:
        raise ValueError("no 'Requests/sec' line in wrk output")
    out["rps"] = float(m.group(1))
    pct = dict(re.findall(r"^\s*(50|75|90|99)%\s+(\S+)\s*$", text, re.M))
    if "50" not in pct or "99" not in pct:
        raise ValueError("no latency distribution in wrk output (was --latency given?)")
    out["p50_ms"] = to_ms(pct["50"])
    out["p99_ms"] = to_ms(pct["99"])
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        (out["sock_connect"], out["sock_read"], out["sock_write"],
         out["sock_timeout"]) = map(int, m.groups())
    out["socket_errors"] = (out["sock_connect"] + out["sock_read"] + out["sock_write"]
                            + out["sock_timeout"])
    return out


# ---------------------------------------------------------------------------------------------
# subcommands


def cmd_ports(args):
    # Below the kernel's ephemeral range (32768+ here) so wrk's own client sockets cannot take
    # one of them between this check and the server's bind.
    lo, hi = 20000, 32000
    held, ports = [], []
    rng = random.Random()
    for _ in range(args.count * 50):
        if len(ports) == args.count:
            break
        port = rng.randint(lo, hi)
        if port in ports:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        held.append(s)
        ports.append(port)
    for s in held:
        s.close()
    if len(ports) < args.count:
        sys.exit("bench_helper: could not find enough free ports")
    print("\n".join(map(str, ports)))


def tls_client_context(cafile):
    """A client context that trusts only the benchmark's own certificate.

    A proxy that answers with any other certificate (gatehouse falling back to its internal CA,
    say) fails the check instead of being measured with a key type nobody asked for. The host
    name is not checked: wrk connects to 127.0.0.1 and does not check it either."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    return ctx


def fetch_once(port, host, timeout, tls_context=None):
    if tls_context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout,
                                           context=tls_context)
    try:
        conn.request("GET", "/", headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def cmd_probe(args):
    if args.tls and not args.cafile:
        sys.exit("bench_helper probe: --tls needs --cafile")
    tls_context = tls_client_context(args.cafile) if args.tls else None
    deadline = time.monotonic() + args.timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        if args.pid and read_stat(args.pid) is None:
            print(f"process {args.pid} exited before 127.0.0.1:{args.port} became ready",
                  file=sys.stderr)
            sys.exit(1)
        try:
            status, body = fetch_once(args.port, args.host, 1.0, tls_context)
            if status == 200 and body == EXPECTED_BODY:
                return
            last = f"HTTP {status}, body {body[:80]!r}"
        except (OSError, http.client.HTTPException) as e:
            # ssl.SSLError (a wrong certificate, a failed handshake) is an OSError too.
            last = str(e)
        time.sleep(0.1)
    print(f"{'https' if args.tls else 'http'}://127.0.0.1:{args.port}/ not serving 200 {EXPECTED_BODY!r} after {args.timeout}s "
          f"(last: {last})", file=sys.stderr)
    sys.exit(1)


def cmd_quiet(args):
    """Warn (never fail) when the cores are already busy before anything is started."""
    before = core_busy_ticks()
    time.sleep(args.seconds)
    after = core_busy_ticks()
    for core in args.cores:
        if core in before and core in after:
            pct = 100.0 * (after[core][0] - before[core][0]) / (args.seconds * CLK_TCK)
            if pct > OTHER_LOAD_LIMIT_PCT:
                print(f"run.sh: WARNING: core {core} is already {pct:.0f}% busy before the "
                      f"benchmark starts; results will be noisy (see `top`)", file=sys.stderr)


def cmd_tree(args):
    print(" ".join(map(str, process_tree(args.pid))))


def cmd_rss(args):
    st = status_fields(args.pid)
    if st is None:
        sys.exit(f"bench_helper: no process {args.pid}")
    print(kib(st.get("VmRSS")), kib(st.get("VmHWM")), st.get("Cpus_allowed_list", "?"))


def scrape_counters(port):
    """gatehouse's counters from its admin /metrics, {name: value}; {} if it does not answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return {}
    finally:
        conn.close()
    out = {}
    for m in re.finditer(r"^(gatehouse_[a-z_]+_total) ([0-9]+)$", text, re.M):
        out[m.group(1)] = int(m.group(2))
    return out


# Counter deltas kept per run (as record keys without the gatehouse_ prefix and _total suffix).
# They show what the load really did: a full handshake per request, no resumption, upstream
# connections reused.
GATEHOUSE_COUNTERS = ("connections_accepted", "tls_handshakes", "tls_handshake_failures",
                      "tls_resumptions", "upstream_connects")


def reset_peak_rss(pid):
    """Restart VmHWM from the current RSS (Linux 4.0+, "5" > clear_refs), so that the peak
    after a run belongs to that run and not to an earlier case served by the same process.
    Returns False when the kernel or permissions do not allow it."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cmd_measure(args):
    wrk = args.wrk
    if wrk and wrk[0] == "--":
        wrk = wrk[1:]
    if not wrk:
        sys.exit("bench_helper measure: no wrk command after --")
    pids = process_tree(args.pid) if args.pid else []
    backend_pids = process_tree(args.backend_pid) if args.backend_pid else []

    # The admin scrape and the peak reset happen before the CPU sample starts (and the second
    # scrape after it ends), so their cost is not charged to the requests.
    counters_before = scrape_counters(args.metrics_port) if args.metrics_port else {}
    peak_reset = reset_peak_rss(args.rss_pid) if args.rss_pid else False
    before, seen_before = cpu_ticks(pids)
    before_ns = cpu_ns(pids)
    backend_before, _ = cpu_ticks(backend_pids)
    cores_before = core_busy_ticks()
    opens_before = tcp_passive_opens()
    # wrk is this helper's only child, so the children's rusage delta is wrk's own CPU time.
    ru_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(wrk, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        # subprocess.run has already killed and reaped wrk.
        sys.exit(f"bench_helper: wrk exceeded {args.timeout}s and was killed")
    wall = time.monotonic() - t0
    after_ns = cpu_ns(pids)
    after, seen_after = cpu_ticks(pids)
    backend_after, _ = cpu_ticks(backend_pids)
    cores_after = core_busy_ticks()
    opens_after = tcp_passive_opens()
    ru_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_ticks = ((ru_after.ru_utime + ru_after.ru_stime)
                 - (ru_before.ru_utime + ru_before.ru_stime)) * CLK_TCK
    counters_after = scrape_counters(args.metrics_port) if args.metrics_port else {}

    if args.raw:
        with open(args.raw, "w") as f:
            f.write(proc.stdout)
            f.write(proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"bench_helper: wrk exited {proc.returncode}: {proc.stderr.strip()[:500]}")
    rec = parse_wrk(proc.stdout)
    rec.update(case=args.case, target=args.label, round=args.round, wall_seconds=round(wall, 3))
    # wrk's own share of its core: near 100% means wrk, not the proxy, set the pace.
    rec["wrk_util_pct"] = 100.0 * wrk_ticks / (wall * CLK_TCK)
    rec["tcp_accepts"] = opens_after - opens_before
    rec["accepts_per_req"] = rec["tcp_accepts"] / rec["requests"] if rec["requests"] else None
    for name in GATEHOUSE_COUNTERS:
        key = f"gatehouse_{name}_total"
        if key in counters_before and key in counters_after:
            rec[name] = counters_after[key] - counters_before[key]

    if pids:
        tree_after = process_tree(args.pid)
        if seen_before != seen_after or tree_after != pids:
            rec["warning"] = (f"process set changed during the run: {pids} -> "
                              f"{tree_after}; CPU figure is unreliable")
        ticks = after - before
        rec["proxy_pids"] = seen_after
        rec["cpu_ticks_seconds"] = ticks / CLK_TCK
        # The scheduler's exact account where the kernel keeps one, else the ticks.
        if before_ns is not None and after_ns is not None:
            rec["cpu_seconds"] = (after_ns - before_ns) / 1e9
            rec["cpu_source"] = "schedstat"
        else:
            rec["cpu_seconds"] = ticks / CLK_TCK
            rec["cpu_source"] = "ticks"
        rec["cpu_us_per_req"] = (rec["cpu_seconds"] * 1e6 / rec["requests"]
                                 if rec["requests"] else None)
        rec["cpu_util_pct"] = 100.0 * rec["cpu_seconds"] / wall
    backend_ticks = backend_after - backend_before
    if backend_pids:
        rec["backend_cpu_us_per_req"] = (backend_ticks / CLK_TCK * 1e6 / rec["requests"]
                                         if rec["requests"] else None)
    # Anything else that ran on the two cores during the run (a compiler, another benchmark)
    # skews the comparison. Estimate it as each core's process time minus what the processes
    # placed there (proxy on the proxy core; wrk and backend on the load core) were charged.
    wall_ticks = wall * CLK_TCK
    own = {args.proxy_core: after - before if pids else 0,
           args.load_core: wrk_ticks + backend_ticks}
    for core, mine in own.items():
        if core in cores_before and core in cores_after:
            busy = cores_after[core][0] - cores_before[core][0]
            steal = cores_after[core][1] - cores_before[core][1]
            rec[f"other_load_core{core}_pct"] = max(0.0, 100.0 * (busy - mine) / wall_ticks)
            rec[f"steal_core{core}_pct"] = 100.0 * steal / wall_ticks
    if args.rss_pid:
        st = status_fields(args.rss_pid) or {}
        rec["rss_kib"] = kib(st.get("VmRSS"))
        rec["peak_rss_kib"] = kib(st.get("VmHWM"))
        rec["cpus_allowed"] = st.get("Cpus_allowed_list")
        rec["peak_rss_scope"] = "run" if peak_reset else "lifetime"

    with open(args.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    if not args.quiet:
        line = (f"  {args.case:<9} {args.label:<10} round {args.round}: {rec['rps']:>8.0f} req/s  "
                f"p50 {rec['p50_ms']:.3f} ms  p99 {rec['p99_ms']:.3f} ms")
        if rec.get("cpu_us_per_req") is not None:
            line += f"  cpu {rec['cpu_us_per_req']:.1f} us/req ({rec['cpu_util_pct']:.0f}% core)"
        if "tls_handshakes" in rec and args.case in TLS_CASES:
            line += (f"  tls: {rec['tls_handshakes']} handshakes, "
                     f"{rec.get('tls_resumptions', '?')} resumed")
        errs = rec["non2xx"] + rec["socket_errors"]
        if errs:
            line += f"  ERRORS {errs}"
        print(line, flush=True)
        if "warning" in rec:
            print("  warning: " + rec["warning"], flush=True)
        for w in disturbance(rec):
            print("  warning: " + w, flush=True)


def tls_request(ctx, port, session=None, timeout=5.0):
    """One HTTPS request on a new connection, offering `session` for resumption.

    The response is read to the end because a TLS 1.3 server sends its session tickets after
    the handshake: only then does the client hold a session it could resume. server_hostname
    is the IP, as wrk's URL is; Python then sends no SNI at all (wrk sends the IP as SNI),
    and gatehouse's `unknown_sni: default` covers both."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while len(data) < 65536:
                try:
                    chunk = s.recv(4096)
                except ssl.SSLZeroReturnError:
                    break
                if not chunk:
                    break
                data += chunk
            return {"session": s.session, "reused": s.session_reused, "version": s.version(),
                    "cipher": s.cipher()[0], "ok": data.startswith(b"HTTP/1.1 200")}


def sclient_negotiated(port):
    """What an OpenSSL 3 client with default settings (as wrk is) agrees on with this listener:
    version, cipher, key exchange group and signature, from `openssl s_client -brief`."""
    try:
        proc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief"],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"not run ({e})"
    # -brief writes its summary to stderr.
    fields = dict(re.findall(r"^([A-Za-z ]+): (.*)$", proc.stderr, re.M))
    parts = [fields.get("Protocol version"), fields.get("Ciphersuite"),
             (fields.get("Server Temp Key") or "").split(",")[0] or None,
             fields.get("Signature type")]
    if not any(parts):
        return f"failed (exit {proc.returncode}): {proc.stderr.strip()[:200]}"
    return " ".join(p or "?" for p in parts)


def sclient_reconnect(port):
    """`openssl s_client -reconnect` over TLS 1.2: how many of its reconnects were resumed.

    A second opinion from another TLS client. Only TLS 1.2: s_client -reconnect closes each
    connection before a TLS 1.3 server's tickets arrive, so it would report "New" over 1.3
    even against a server that does resume (checked against nginx with tickets on)."""
    try:
        proc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                               "-tls1_2", "-reconnect"], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"not run ({e})"
    reused = len(re.findall(r"^Reused,", proc.stdout, re.M))
    new = len(re.findall(r"^New,", proc.stdout, re.M))
    if reused + new == 0:
        return f"failed (exit {proc.returncode}): {proc.stderr.strip()[:200]}"
    # The first line is the initial connection, which can only be new.
    return f"{reused} of {reused + new - 1} reconnects resumed"


def cmd_tlscheck(args):
    """What a client gets from this TLS listener, and whether a second connection resumes.

    For TLS 1.2 and 1.3 separately: connect, request, keep the session (and any ticket),
    connect again offering it. `resumed` must be false for the handshake case to measure
    full handshakes."""
    rec = {"target": args.label, "port": args.port}
    ctx = tls_client_context(args.cafile)
    try:
        first = tls_request(ctx, args.port)
    except OSError as e:
        sys.exit(f"bench_helper tlscheck: {args.label}: HTTPS request failed: {e}")
    rec["negotiated"] = sclient_negotiated(args.port)
    ok = first["ok"]
    for name, version in (("tls1.2", ssl.TLSVersion.TLSv1_2), ("tls1.3", ssl.TLSVersion.TLSv1_3)):
        ctx = tls_client_context(args.cafile)
        ctx.minimum_version = ctx.maximum_version = version
        try:
            first = tls_request(ctx, args.port)
            second = tls_request(ctx, args.port, session=first["session"])
        except OSError as e:
            rec[name] = {"error": str(e)}
            continue
        ok = ok and first["ok"] and second["ok"]
        rec[name] = {"cipher": first["cipher"], "resumed": bool(second["reused"]),
                     "ticket_sent": bool(first["session"] and first["session"].has_ticket)}
    rec["ok"] = ok
    rec["sclient_tls12_reconnect"] = sclient_reconnect(args.port)
    rec["resumption_seen"] = (any(rec[v].get("resumed") for v in ("tls1.2", "tls1.3"))
                              or not rec["sclient_tls12_reconnect"].startswith("0 of"))
    with open(args.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    parts = []
    for v in ("tls1.2", "tls1.3"):
        r = rec[v]
        parts.append(f"{v} {r['error']}" if "error" in r else
                     f"{v} {r['cipher']} resumed={'YES' if r['resumed'] else 'no'} "
                     f"ticket={'yes' if r['ticket_sent'] else 'no'}")
    print(f"  {args.label:<10} {rec['negotiated']}; " + "; ".join(parts)
          + f"; s_client: {rec['sclient_tls12_reconnect']}", flush=True)
    if not ok:
        sys.exit(f"bench_helper tlscheck: {args.label} did not answer 200 over TLS")


# ---------------------------------------------------------------------------------------------
# report


# A few percent of foreign CPU on the load core is enough to stall wrk and the backend for whole
# scheduler slices, which shows up at once as a p99 of 10 ms or more.
OTHER_LOAD_LIMIT_PCT = 2.0


def disturbance(rec):
    """A one-line warning about foreign CPU use or steal during one run, or nothing."""
    parts = []
    for key, value in sorted(rec.items()):
        m = re.fullmatch(r"(other_load|steal)_core(\d+)_pct", key)
        if m and value > OTHER_LOAD_LIMIT_PCT:
            what = "other processes" if m.group(1) == "other_load" else "steal"
            parts.append(f"{what} {value:.0f}% of core {m.group(2)}")
    return ["machine not quiet: " + ", ".join(parts)] if parts else []


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec, suffix=""):
    return "-" if value is None else format(value, spec) + suffix


def fmt_ratio(num, den):
    if num is None or not den:
        return "n/a"
    return f"{num / den:.2f}x"


def paired_ratio(runs, target, key, better):
    """The median over rounds of target/nginx within each round, and in how many rounds the
    target did better. Rounds interleave the targets, so a round's ratio cancels most of the
    machine's drift between rounds, which the ratio of two medians does not."""
    nginx_by_round = {r["round"]: r.get(key) for r in runs if r["target"] == "nginx"}
    ratios = []
    for r in runs:
        base = nginx_by_round.get(r["round"])
        if r["target"] == target and r.get(key) is not None and base:
            ratios.append(r[key] / base)
    if not ratios:
        return "n/a"
    won = sum(1 for x in ratios if (x < 1.0 if better == "lower" else x > 1.0))
    return f"{median(ratios):.2f}x ({won} of {len(ratios)} rounds better)"


def build_rows(order, runs, idle):
    """Rows of the summary: (label, {target: text})."""
    by = {t: [r for r in runs if r["target"] == t] for t in order}
    rows = []

    def add(label, fn):
        rows.append((label, {t: fn(t, by[t]) for t in order}))

    add("runs", lambda t, rs: str(len(rs)))
    add("req/s (median)", lambda t, rs: fmt(median(r["rps"] for r in rs), ",.0f"))
    add("req/s (min - max)", lambda t, rs: (
        f"{min(r['rps'] for r in rs):,.0f} - {max(r['rps'] for r in rs):,.0f}" if rs else "-"))
    add("p50 latency, ms", lambda t, rs: fmt(median(r["p50_ms"] for r in rs), ".3f"))
    add("p99 latency, ms", lambda t, rs: fmt(median(r["p99_ms"] for r in rs), ".3f"))
    add("proxy CPU, us/request", lambda t, rs: fmt(median(r.get("cpu_us_per_req") for r in rs),
                                                   ".1f"))
    add("proxy core busy, %", lambda t, rs: fmt(median(r.get("cpu_util_pct") for r in rs),
                                                ".0f"))
    add("wrk busy, % of its core", lambda t, rs: fmt(median(r.get("wrk_util_pct") for r in rs),
                                                     ".0f"))
    add("TCP accepts per request (machine-wide)", lambda t, rs: fmt(
        median(r.get("accepts_per_req") for r in rs), ".3f"))
    add("errors (non-2xx + socket, all runs)", lambda t, rs: (
        str(sum(r["non2xx"] + r["socket_errors"] for r in rs)) if rs else "-"))

    def idle_rss(t, rs):
        v = idle.get(t)
        return "-" if v is None else f"{v / 1024:.1f}"

    add("idle RSS, MiB", idle_rss)
    add("peak RSS (VmHWM), MiB", lambda t, rs: fmt(
        (max((r.get("peak_rss_kib") or 0) for r in rs) / 1024) if rs and any(
            r.get("peak_rss_kib") for r in rs) else None, ".1f"))
    return rows, by


def render_text(headers, rows):
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                       for i, (h, w) in enumerate(zip(headers, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def render_md(headers, rows, left=1):
    """A Markdown table; the first `left` columns are text, the rest numbers (right-aligned)."""
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join(["---"] * left + ["---:"] * (len(headers) - left)) + "|"]
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    return "\n".join(out)


# Per case: one line under its title, and the ratios to nginx worth showing (label, record key,
# which way is better). With a handshake per request wrk is the bottleneck, so CPU per request
# comes first there and latency is left out (wrk starts its clock after the handshake).
CASE_NOTES = {
    "http": "Plain HTTP/1.1 keep-alive, `Host: localhost`.",
    "https": "TLS from wrk to the proxy, keep-alive: each of the connections does one full "
             "handshake at the start, then only requests.",
    "handshake": "TLS with `Connection: close`: every request is a new TCP connection and a "
                 "full handshake (resumption off on every proxy, see the TLS check below). wrk "
                 "on its one core is the bottleneck here, so compare proxy CPU per request, not "
                 "req/s. wrk's latency clock starts after the handshake, so p50/p99 leave it "
                 "out.",
}
CASE_RATIOS = {
    "http": (("req/s", "rps", "higher"), ("p99 latency", "p99_ms", "lower"),
             ("proxy CPU per request", "cpu_us_per_req", "lower")),
    "handshake": (("proxy CPU per request", "cpu_us_per_req", "lower"),
                  ("req/s", "rps", "higher")),
}
CASE_RATIOS["https"] = CASE_RATIOS["http"]


def case_summary(case, order, runs, idle):
    """The summary table and ratio table of one case, as (headers, rows) pairs."""
    rows, by = build_rows(order, runs, idle)
    table = (["metric"] + order, [[label] + [vals[t] for t in order] for label, vals in rows])
    others = [t for t in order if t not in ("nginx", "direct")]
    ratios = None
    if "nginx" in order and others:
        def med(t, key):
            return median(r.get(key) for r in by[t])

        rows_of_ratios = [[label] + [fmt_ratio(med(t, key), med("nginx", key)) for t in others]
                          + [f"{better} is better"] for label, key, better in CASE_RATIOS[case]]
        rows_of_ratios += [[f"{label}, per round"]
                           + [paired_ratio(runs, t, key, better) for t in others]
                           + [f"{better} is better"]
                           for label, key, better in CASE_RATIOS[case]
                           if key == "cpu_us_per_req"]
        ratios = (["ratio to nginx"] + [f"{t} / nginx" for t in others] + ["better when"],
                  rows_of_ratios)
    return table, ratios


def gatehouse_tls_notes(runs):
    """What gatehouse's own counters say about its TLS runs: handshakes per request, resumptions
    (must be 0), failed handshakes, and new upstream connections."""
    notes, warnings = [], []
    for case in TLS_CASES:
        rs = [r for r in runs if r["case"] == case and r["target"] == "gatehouse"
              and "tls_handshakes" in r]
        if not rs:
            continue
        total = {k: sum(r.get(k, 0) for r in rs) for k in
                 ("requests", "tls_handshakes", "tls_resumptions", "tls_handshake_failures",
                  "upstream_connects")}
        notes.append(
            f"{case}: gatehouse counted {total['tls_handshakes']:,} handshakes for "
            f"{total['requests']:,} requests, {total['tls_resumptions']} resumed, "
            f"{total['tls_handshake_failures']} failed, {total['upstream_connects']} new "
            f"upstream connections (admin /metrics, summed over {len(rs)} run(s)).")
        if total["tls_resumptions"]:
            warnings.append(f"{case}: gatehouse resumed {total['tls_resumptions']} TLS sessions; "
                            f"these are not all full handshakes")
        for r in rs:
            # Expected failures: wrk's own connect-and-close check of the address before it
            # starts, and the connections wrk leaves mid-handshake when it stops.
            allowed = r.get("connections", 0) + 1
            if r.get("tls_handshake_failures", 0) > allowed:
                warnings.append(f"{case} gatehouse round {r['round']}: "
                                f"{r['tls_handshake_failures']} failed TLS handshakes (more than "
                                f"the {allowed} expected from wrk starting and stopping)")
    return notes, warnings


def cmd_report(args):
    with open(args.meta) as f:
        meta = json.load(f)
    runs = []
    if os.path.exists(args.runs):
        with open(args.runs) as f:
            runs = [json.loads(line) for line in f if line.strip()]
    for r in runs:
        r.setdefault("case", "http")  # records from before there were cases
        r.setdefault("connections", meta.get("connections", 0))
    tls_checks = []
    if args.tls_checks and os.path.exists(args.tls_checks):
        with open(args.tls_checks) as f:
            tls_checks = [json.loads(line) for line in f if line.strip()]
    cases = [c for c in meta.get("cases", ["http"]) if c in CASES]
    idle = {t: v for t, v in meta.get("idle_rss_kib", {}).items()}

    sections = []
    for case in cases:
        order = case_targets(case, meta["targets"])
        case_runs = [r for r in runs if r["case"] == case]
        sections.append((case, order) + case_summary(case, order, case_runs, idle))

    notes = []
    if "nginx" in meta["targets"]:
        notes.append("nginx RSS is its single worker process; its CPU is master + worker.")
    if "direct" in meta["targets"] and "http" in cases:
        notes.append("direct: wrk straight at the backend, no proxy (the ceiling of this setup).")
    if any(r.get("peak_rss_scope") == "run" for r in runs):
        notes.append("peak RSS is the high-water mark during each run (VmHWM restarted before "
                     "it), so each case shows its own peak; the table gives the largest.")
    tls_notes, warnings = gatehouse_tls_notes(runs)
    warnings = [f"{r['case']} {r['target']} round {r['round']}: {r['warning']}" for r in runs
                if "warning" in r] + warnings
    for r in runs:
        # Connections accepted during the run against what the case intends: keep-alive cases
        # open each of wrk's connections once (plus wrk's own address check); the handshake case
        # must open one per request, or it is not measuring handshakes. The count is
        # machine-wide, so other programs can only add to it: too few is always a finding,
        # too many only on a machine that was otherwise quiet.
        accepts = r.get("tcp_accepts")
        if accepts is None:
            continue
        where = f"{r['case']} {r['target']} round {r['round']}"
        if r["case"] == "handshake" and r["requests"] and accepts < 0.95 * r["requests"]:
            warnings.append(f"{where}: only {accepts} connections accepted for {r['requests']} "
                            f"requests: connections were reused, not one handshake per request")
        elif (r["case"] != "handshake" and accepts > 2 * r["connections"] + 10
              and not disturbance(r)):
            warnings.append(f"{where}: {accepts} connections accepted during a keep-alive run "
                            f"with {r['connections']} connections: something closes them")
    for c in tls_checks:
        if c.get("resumption_seen"):
            warnings.append(f"TLS check: {c['target']} RESUMED a session: its handshake figures "
                            f"are not full handshakes")
    noisy = [r for r in runs if disturbance(r)]
    if noisy:
        warnings.append(f"{len(noisy)} of {len(runs)} runs had other processes (or steal) "
                        f"taking over {OTHER_LOAD_LIMIT_PCT:.0f}% of a core: they are not "
                        f"comparable; rerun when nothing else is running (per-run figures in "
                        f"latest.md)")
    err_runs = [f"{r['case']} {r['target']} round {r['round']}: {r['non2xx']} non-2xx, "
                f"{r['socket_errors']} socket errors" for r in runs
                if r["non2xx"] or r["socket_errors"]]
    pinning = sorted({f"{r['target']}={r.get('cpus_allowed')}" for r in runs
                      if r.get("cpus_allowed") is not None})

    def tls_check_rows():
        rows = []
        for c in tls_checks:
            cells = [c["target"], c["negotiated"]]
            for v in ("tls1.2", "tls1.3"):
                r = c.get(v, {})
                cells.append(r["error"] if "error" in r else
                             f"{'YES' if r['resumed'] else 'no'} (ticket "
                             f"{'sent' if r['ticket_sent'] else 'not sent'})")
            cells.append(c["sclient_tls12_reconnect"])
            rows.append(cells)
        return rows

    tls_headers = ["target", "negotiated by openssl s_client (as wrk)", "TLS 1.2 resumed",
                   "TLS 1.3 resumed", "openssl s_client -reconnect, TLS 1.2"]

    # Plain text for the terminal.
    for case, order, (headers, table), ratios in sections:
        print()
        print(f"== {CASES[case]} ==")
        print(render_text(headers, table))
        if ratios:
            print()
            print(render_text(*ratios))
    if tls_checks:
        print()
        print("== TLS check: a second connection offering the first one's session ==")
        print(render_text(tls_headers, tls_check_rows()))
    for n in notes + tls_notes:
        print("note: " + n)
    for w in warnings + err_runs:
        print("WARNING: " + w)
    print(f"(medians of {meta['repeats']} interleaved run(s) of {meta['duration']} s, "
          f"wrk -t1 -c{meta['connections']}; differences under about 25% in req/s or 20% in "
          f"CPU/request are within run-to-run noise here)")

    # Markdown file.
    md = [f"# gatehouse benchmark: {meta['started']}", ""]
    md.append(f"Medians of {meta['repeats']} interleaved run(s) of {meta['duration']} s each, "
              f"`wrk -t1 -c{meta['connections']} --latency`, one worker per proxy pinned to "
              f"core 0, wrk and the backend nginx pinned to core 1, loopback only, "
              f"{len(EXPECTED_BODY)}-byte response body, HTTP/1.1 keep-alive from each proxy to "
              f"the backend. Within a round the cases run one after another "
              f"({', '.join(cases)}), each over its targets in turn.")
    md.append("")
    for case, order, (headers, table), ratios in sections:
        md.append(f"## {CASES[case]}")
        md.append("")
        md.append(CASE_NOTES[case])
        md.append("")
        md.append(render_md(headers, table))
        md.append("")
        if ratios:
            md.append(render_md(*ratios))
            md.append("")
    md.append("## Notes")
    md.append("")
    for n in notes + tls_notes:
        md.append(f"- {n}")
    md.append("- Same-proxy run-to-run noise on this kind of machine is up to about 25% in "
              "req/s and 20% in CPU per request; prefer CPU per request.")
    for w in warnings + err_runs:
        md.append(f"- **warning**: {w}")
    md.append("")
    if tls_checks:
        md.append("## TLS check")
        md.append("")
        md.append("Before the runs, each TLS listener got a request on a new connection, then a "
                  "second connection offering the first one's session (and ticket, if one was "
                  "sent). \"resumed\" must be \"no\" everywhere for the handshake case to "
                  "measure full handshakes. A TLS 1.3 ticket that was sent but did not resume "
                  "is only extra work for that proxy. The same certificate (ECDSA P-256, "
                  "self-signed, generated for this run) and the same cipher preferences are "
                  "given to every proxy.")
        md.append("")
        md.append(render_md(tls_headers, tls_check_rows(), left=len(tls_headers)))
        md.append("")
    md.append("## Environment")
    md.append("")
    for key in ("host", "kernel", "cpu", "cores", "loadavg_before", "backend_cpus_allowed",
                "gatehouse", "gatehouse_commit", "nginx", "haproxy", "wrk", "openssl",
                "tls_certificate"):
        if meta.get(key):
            md.append(f"- {key}: `{meta[key]}`")
    if pinning:
        md.append(f"- CPU affinity seen (Cpus_allowed_list): `{', '.join(pinning)}`")
    md.append("")
    md.append("## Every run, in the order run")
    md.append("")
    run_headers = ["#", "case", "target", "round", "req/s", "p50 ms", "p99 ms", "CPU us/req",
                   "core %", "wrk %", "conns/req", "non-2xx", "socket err", "peak RSS MiB",
                   "other load c0/c1 %", "gatehouse TLS hs / resumed / failed, upstream conns"]
    run_rows = []
    for i, r in enumerate(runs, 1):
        counters = "-"
        if "tls_handshakes" in r:
            counters = (f"{r['tls_handshakes']} / {r.get('tls_resumptions', '?')} / "
                        f"{r.get('tls_handshake_failures', '?')}, "
                        f"{r.get('upstream_connects', '?')}")
        run_rows.append([str(i), r["case"], r["target"], str(r["round"]), f"{r['rps']:,.0f}",
                         f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}",
                         fmt(r.get("cpu_us_per_req"), ".1f"), fmt(r.get("cpu_util_pct"), ".0f"),
                         fmt(r.get("wrk_util_pct"), ".0f"), fmt(r.get("accepts_per_req"), ".3f"),
                         str(r["non2xx"]), str(r["socket_errors"]),
                         fmt((r.get("peak_rss_kib") or 0) / 1024 if r.get("peak_rss_kib")
                             else None, ".1f"),
                         "/".join(fmt(r.get(f"other_load_core{c}_pct"), ".0f")
                                  for c in (meta.get("proxy_core", 0),
                                            meta.get("load_core", 1))),
                         counters])
    md.append(render_md(run_headers, run_rows, left=3))
    md.append("")
    os.makedirs(os.path.dirname(os.path.abspath(args.md)), exist_ok=True)
    with open(args.md, "w") as f:
        f.write("\n".join(md))
    print(f"wrote {args.md}")


def cmd_meta(args):
    meta = {}
    for item in args.items:
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"bench_helper meta: expected key=value, got {item!r}")
        if key in ("targets", "cases"):
            value = [t for t in value.split(",") if t]
        elif value.isdigit():
            value = int(value)
        node = meta
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    with open(args.out, "w") as f:
        json.dump(meta, f, indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("ports")
    s.add_argument("count", type=int)
    s.set_defaults(fn=cmd_ports)

    s = sub.add_parser("probe")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--host", default="localhost")
    s.add_argument("--tls", action="store_true", help="HTTPS, trusting only --cafile")
    s.add_argument("--cafile")
    s.add_argument("--pid", type=int, default=0, help="give up at once if this process exits")
    s.add_argument("--timeout", type=float, default=10.0)
    s.set_defaults(fn=cmd_probe)

    s = sub.add_parser("quiet", help="warn if the given cores are busy")
    s.add_argument("--seconds", type=float, default=1.0)
    s.add_argument("cores", type=int, nargs="+")
    s.set_defaults(fn=cmd_quiet)

    s = sub.add_parser("tree")
    s.add_argument("pid", type=int)
    s.set_defaults(fn=cmd_tree)

    s = sub.add_parser("rss")
    s.add_argument("pid", type=int)
    s.set_defaults(fn=cmd_rss)

    s = sub.add_parser("measure")
    s.add_argument("--case", default="http", choices=list(CASES))
    s.add_argument("--label", required=True)
    s.add_argument("--round", type=int, default=0)
    s.add_argument("--pid", type=int, default=0,
                   help="proxy's top process; CPU is summed over it and its descendants")
    s.add_argument("--rss-pid", type=int, default=0, help="process whose VmHWM is reported")
    s.add_argument("--backend-pid", type=int, default=0)
    s.add_argument("--metrics-port", type=int, default=0,
                   help="gatehouse admin port: record counter deltas from /metrics")
    s.add_argument("--timeout", type=float, required=True, help="hard limit for wrk, seconds")
    s.add_argument("--proxy-core", type=int, default=0)
    s.add_argument("--load-core", type=int, default=1)
    s.add_argument("--out", required=True, help="JSON lines file to append the record to")
    s.add_argument("--raw", help="file to keep wrk's own output in")
    s.add_argument("--quiet", action="store_true")
    s.add_argument("wrk", nargs=argparse.REMAINDER)
    s.set_defaults(fn=cmd_measure)

    s = sub.add_parser("tlscheck")
    s.add_argument("--label", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--cafile", required=True)
    s.add_argument("--out", required=True, help="JSON lines file to append the result to")
    s.set_defaults(fn=cmd_tlscheck)

    s = sub.add_parser("report")
    s.add_argument("--runs", required=True)
    s.add_argument("--meta", required=True)
    s.add_argument("--md", required=True)
    s.add_argument("--tls-checks", help="JSON lines written by tlscheck")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("meta", help="write key=value pairs (dots nest) as JSON")
    s.add_argument("--out", required=True)
    s.add_argument("items", nargs="*")
    s.set_defaults(fn=cmd_meta)

    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
