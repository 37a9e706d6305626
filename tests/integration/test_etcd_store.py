"""The etcd store with real etcd (Debian's etcd-server) on loopback: instances sharing one
prefix serve the same certificates, a change put into etcd reaches every instance within 2 s,
an instance started while etcd is down serves its cached certificates, etcd going away under
load fails no request, with encryption on an etcd dump holds no private key in the clear, and an
instance cut off from etcd in the middle of an ACME order stops talking to the CA before its
order lock can pass to another instance.
"""

import base64
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request

import pytest

from pebble import pebble_factory  # noqa: F401  (pytest fixture)

import harness
import rawhttp
import tlshelpers

READY_TIMEOUT_S = 10.0


class Etcd:
    """One etcd member on free 127.0.0.1 ports with its data in `directory`; restartable."""

    def __init__(self, directory):
        self.directory = directory
        self.client_port, self.peer_port = tlshelpers.free_ports(2)
        self.proc = None
        self.log_path = directory / "etcd.log"

    @property
    def url(self):
        return f"http://127.0.0.1:{self.client_port}"

    def start(self):
        binary = shutil.which("etcd")
        if binary is None:
            pytest.fail("etcd not installed; run scripts/install-deps.sh", pytrace=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.proc = subprocess.Popen(
            [binary, "--name", "gh", "--data-dir", str(self.directory / "data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"gh={peer}", "--heartbeat-interval=10",
             "--election-timeout=100"],
            stdin=subprocess.DEVNULL, stdout=open(self.log_path, "ab"),
            stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                self.call("/v3/kv/range", {"key": base64.b64encode(b"x").decode()})
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"etcd not ready within {READY_TIMEOUT_S}s")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def call(self, path, body):
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=3) as answer:
            return json.loads(answer.read())

    def dump(self, prefix):
        """Every key and value under `prefix`, decoded."""
        start = prefix.encode()
        end = start[:-1] + bytes([start[-1] + 1])
        answer = self.call("/v3/kv/range", {"key": base64.b64encode(start).decode(),
                                            "range_end": base64.b64encode(end).decode()})
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", ""))
                for kv in answer.get("kvs", [])}

    def put(self, key, value):
        self.call("/v3/kv/put", {"key": base64.b64encode(key.encode()).decode(),
                                 "value": base64.b64encode(value.encode()).decode()})


@pytest.fixture
def etcd(tmp_path):
    server = Etcd(tmp_path / "etcd")
    server.directory.mkdir()
    server.start()
    yield server
    server.stop()


def etcd_store(etcd, tmp_path, name, **extra):
    section = {"etcd": {"endpoints": [etcd.url], "prefix": "/gatehouse/",
                        "cache_dir": str(tmp_path / f"cache-{name}")}}
    section.update(extra)
    return section


def internal_route(host, backend):
    return {"host": host, "paths": [{"prefix": "/", "upstream": backend.url}], "tls": "internal"}


def test_instances_on_one_prefix_serve_one_certificate_and_an_etcd_put_reaches_all_in_2s(
        start_gatehouse, etcd, backend, tmp_path):
    host = "shared.example.test"
    routes = [internal_route(host, backend)]
    first = start_gatehouse(routes, https=True, store=etcd_store(etcd, tmp_path, "a"))
    second = start_gatehouse(routes, https=True, store=etcd_store(etcd, tmp_path, "b"))
    ca = tlshelpers.trust_pem(first)
    served = [tlshelpers.handshake(g.https_port, host, ca).serial for g in (first, second)]
    assert served[0] == served[1]
    assert f"/gatehouse/certificates/{host}" in etcd.dump("/gatehouse/")

    # An operator puts another certificate straight into etcd: both serve it within 2 s.
    user_ca = tlshelpers.UserCA(tmp_path / "user-ca")
    pair = user_ca.issue(host, "operator")
    bundle = {"certificate_chain_pem": pair.certificate_pem().decode(),
              "private_key_pem": pair.key_pem().decode(), "issuer": "file"}
    put_at = time.monotonic()
    etcd.put(f"/gatehouse/certificates/{host}", json.dumps(bundle))
    # Each instance hands a new table to every worker thread; until the last worker has it, a
    # connection may still meet the old certificate, so every instance is polled until a
    # handshake verifies against the operator's CA, within the 2 s the store promises.
    for gatehouse in (first, second):
        shown, last_error = None, None
        while shown is None and time.monotonic() - put_at < 2.5:
            try:
                shown = tlshelpers.handshake(gatehouse.https_port, host, user_ca.certificate)
            except (OSError, ValueError) as error:
                last_error = error
                time.sleep(0.05)
        assert shown is not None, f"operator certificate not served within 2.5 s: {last_error}"
        assert shown.serial.lower() == pair.serial.lower()


def test_an_instance_started_while_etcd_is_down_serves_its_cached_certificates(
        start_gatehouse, etcd, backend, tmp_path):
    host = "cached.example.test"
    routes = [internal_route(host, backend)]
    store = etcd_store(etcd, tmp_path, "a")
    first = start_gatehouse(routes, https=True, store=store)
    ca = tlshelpers.trust_pem(first)
    serial = tlshelpers.handshake(first.https_port, host, ca).serial
    first.stop()

    etcd.stop()
    again = start_gatehouse(routes, https=True, store=store)
    assert tlshelpers.handshake(again.https_port, host, ca).serial == serial
    # Ready, with its certificates, and /status says where they came from.
    ready = rawhttp.get(again.admin_port, "/readyz", host="127.0.0.1")
    assert ready.status == 200
    assert b"certificates: 1 of 1 loaded" in ready.body
    store_state = tlshelpers.status(again)["store"]
    assert store_state["state"] == "degraded", store_state
    assert "local copy" in store_state["detail"]
    assert store_state["backend"].startswith("etcd:http://127.0.0.1:")

    # etcd back: the instance carries on with the same certificate.
    etcd.start()
    time.sleep(1.5)
    assert tlshelpers.handshake(again.https_port, host, ca).serial == serial


def test_etcd_stopping_and_restarting_under_https_load_fails_no_request(
        start_gatehouse, etcd, backend, tmp_path):
    host = "steady.example.test"
    gatehouse = start_gatehouse([internal_route(host, backend)], https=True,
                                store=etcd_store(etcd, tmp_path, "a"))
    ca = tlshelpers.trust_pem(gatehouse)
    failures, ok = [], [0]
    stop = threading.Event()
    deadline = time.monotonic() + 30

    def load():
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                with tlshelpers.TlsClient(gatehouse.https_port, host,
                                          tlshelpers.client_context(ca)) as client:
                    for _ in range(50):
                        status = client.request("GET", "/", host).status
                        ok[0] += status == 200
                        if status != 200:
                            failures.append(status)
            except (OSError, ValueError) as error:
                failures.append(repr(error))

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    time.sleep(1)
    etcd.stop()
    time.sleep(3)
    etcd.start()
    time.sleep(2)
    stop.set()
    worker.join(timeout=10)
    assert failures == [], failures[:5]
    assert ok[0] > 100


def test_with_encryption_an_etcd_dump_holds_no_private_key(start_gatehouse, etcd, backend,
                                                           tmp_path):
    key_file = tmp_path / "ring.key"
    key_file.write_text(os.urandom(32).hex() + "\n")
    key_file.chmod(0o600)
    host = "sealed.example.test"
    gatehouse = start_gatehouse([internal_route(host, backend)], https=True,
                                store=etcd_store(etcd, tmp_path, "a",
                                                 encryption_key_file=str(key_file)))
    ca = tlshelpers.trust_pem(gatehouse)
    assert tlshelpers.handshake(gatehouse.https_port, host, ca).dns_names == [host]
    dump = etcd.dump("/gatehouse/")
    assert f"/gatehouse/certificates/{host}" in dump and "/gatehouse/ca/internal" in dump
    for key, value in dump.items():
        assert b"PRIVATE KEY" not in value, key
    for path in (tmp_path / "cache-a").rglob("*"):
        if path.is_file():
            assert b"PRIVATE KEY" not in path.read_bytes(), path


def test_three_instances_on_etcd_order_each_name_once_and_share_renewals_within_2s(
        start_gatehouse, pebble_factory, etcd, backend, tmp_path):
    """Three instances, one etcd prefix, one Pebble that validates at the first instance only:
    each name is ordered once, all three serve it, orders placed by the others are validated
    at the first, and a renewal by any one reaches the other two within 2 s."""
    from pebble import free_port
    import test_acme
    http_port = free_port()
    pebble = pebble_factory(http_port, validity=40)
    names = [f"trio{i}.example.test" for i in range(3)]
    routes = [test_acme.acme_route(name, backend) for name in names]
    # Renew once less than 75% of the 40 s remain: about every 10 s.
    acme = test_acme.acme_section(pebble, renew_when_remaining="75%")
    started = time.monotonic()
    instances = [test_acme.start_with_acme(start_gatehouse, http_port, routes, acme,
                                           store=etcd_store(etcd, tmp_path, "0"))]
    for index in (1, 2):
        instances.append(start_gatehouse(routes, https=True, acme=acme,
                                         store=etcd_store(etcd, tmp_path, str(index))))
    roots = pebble.write_roots(tmp_path / "roots.pem")
    first_serials = {}
    for name in names:
        serials = {test_acme.wait_for_certificate(g, name, roots).serial for g in instances}
        assert len(serials) == 1, (name, serials)
        first_serials[name] = serials.pop()
    assert pebble.count_new_accounts() == 1
    orders_after_issue = pebble.count_new_orders()
    issued_within = time.monotonic() - started
    # Each name exactly once. Renewals are due 8-10 s after issue; only if the first round took
    # that long can one have begun already.
    if issued_within < 7:
        assert orders_after_issue == len(names), (orders_after_issue, issued_within)
    else:
        assert len(names) <= orders_after_issue <= 2 * len(names)

    # A renewal of trio0 by whichever instance holds the lock reaches all three within 2 s.
    renewed_at = None
    deadline = time.monotonic() + 30
    name = names[0]
    while time.monotonic() < deadline and renewed_at is None:
        for g in instances:
            shown = tlshelpers.handshake(g.https_port, name, roots)
            if shown.serial != first_serials[name]:
                renewed_at = time.monotonic()
                new_serial = shown.serial
                break
        time.sleep(0.05)
    assert renewed_at is not None, "no renewal within 30 s"
    for g in instances:
        elapsed, seen = tlshelpers.wait_for_serial_change(g.https_port, name, roots,
                                                          first_serials[name], timeout=3,
                                                          interval=0.05)
        assert elapsed is not None, seen
        assert tlshelpers.handshake(g.https_port, name, roots).serial == new_serial
    assert time.monotonic() - renewed_at < 2.5
    # Orders that finished, per instance. Pebble reaches only the first instance, so any order
    # the other two finished was validated there; Pebble may count one more renewal in flight.
    ordered = [sum(1 for line in g.log_lines() if "certificate ordered" in line)
               for g in instances]
    print(f"orders finished per instance: {ordered}")
    assert sum(ordered) <= pebble.count_new_orders()


# ---- an order lock holder cut off from etcd --------------------------------------------------

# The order lock's ttl in the test below: short enough for the test to take about half a minute,
# long enough that the CA deadlines derived from it (300 ms to connect, 1.2 s to answer) are
# roomy for Pebble on loopback.
LOCK_TTL_S = 9


@pytest.fixture
def forwarders():
    """make(target_port=None, hold=False) -> a started Forwarder; all are closed after the test."""
    made = []

    def make(target_port=None, hold=False):
        forwarder = harness.Forwarder(target_port, hold=hold)
        made.append(forwarder)
        return forwarder.start()

    yield make
    for forwarder in made:
        forwarder.close()


class LockRecords:
    """Reads one etcd key every 20 ms on a thread, straight from etcd, and keeps every read as
    (time.monotonic() before, time.monotonic() after, the lease the record is attached to or
    None when there is none). The record existed at some moment between the two times."""

    def __init__(self, etcd, key):
        self.etcd = etcd
        self.key = base64.b64encode(key.encode()).decode()
        self.reads = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self):
        while not self._stop.is_set():
            before = time.monotonic()
            try:
                kvs = self.etcd.call("/v3/kv/range", {"key": self.key}).get("kvs", [])
            except (OSError, ValueError):
                self._stop.wait(0.02)
                continue
            lease = kvs[0].get("lease", "0") if kvs else None
            self.reads.append((before, time.monotonic(), lease))
            self._stop.wait(0.02)

    def latest(self):
        return self.reads[-1][2] if self.reads else None

    def wait_for(self, predicate, timeout):
        """The first lease read that satisfies predicate(lease), or None after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, _, lease in list(self.reads):
                if predicate(lease):
                    return lease
            time.sleep(0.02)
        return None


def wait_until(condition, timeout, interval=0.05):
    """condition()'s first truthy value, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value or None
        time.sleep(interval)


@pytest.mark.parametrize("cut_off", ["refused", "silent"])
def test_an_instance_cut_off_from_etcd_mid_order_stops_before_another_takes_its_lock(
        start_gatehouse, pebble_factory, etcd, backend, forwarders, tmp_path, cut_off):
    """Instance A reaches etcd, and the CA, only through forwarders the test controls; B reaches
    both directly. A takes the order lock and is left waiting on a validation that Pebble cannot
    finish; then A's link to etcd is cut. A must give up and stop talking to the CA while its
    lease still stands, B must take the lock only once the lease has run out, and the one
    certificate in etcd must be B's, which A serves once its link is back.

    "refused": A's connections to etcd drop and new ones are refused. "silent": they are
    accepted and never answered, so A's lease refresh hangs rather than fails, and A must give
    up on the clock, not on an answer."""
    import test_acme
    host = "lease.example.test"
    ttl = LOCK_TTL_S
    # Pebble's HTTP-01 validations land here and wait, unanswered, until released to B.
    validations = forwarders(hold=True)
    pebble = pebble_factory(validations.port)
    roots = pebble.write_roots(tmp_path / "roots.pem")
    etcd_link = forwarders(etcd.client_port)
    ca_link = forwarders(pebble.port)
    routes = [test_acme.acme_route(host, backend)]
    # Pebble builds its URLs from the Host header, so all of A's requests to the CA go through
    # ca_link, where they can be timed. A and B thus use two accounts, and B's bundle names
    # B's directory.
    a_acme = test_acme.acme_section(pebble, directory=f"https://127.0.0.1:{ca_link.port}/dir",
                                    order_lock_ttl=f"{ttl}s")
    b_acme = test_acme.acme_section(pebble, order_lock_ttl=f"{ttl}s")
    a_store = {"etcd": {"endpoints": [f"http://127.0.0.1:{etcd_link.port}"],
                        "prefix": "/gatehouse/", "cache_dir": str(tmp_path / "cache-a")}}

    with LockRecords(etcd, f"/gatehouse/.locks/certificates/{host}") as lock:
        a = start_gatehouse(routes, https=True, acme=a_acme, store=a_store)
        a_lease = lock.wait_for(lambda lease: lease is not None, timeout=15)
        assert a_lease is not None, "A took no order lock within 15 s"
        # B starts once A holds the lock, and finds it taken.
        b = start_gatehouse(routes, https=True, acme=b_acme,
                            store=etcd_store(etcd, tmp_path, "b"))

        # A is in the middle of its order: Pebble is validating, and A polls for the result
        # while its heartbeat keeps the lease alive. Pebble gives up on a validation after
        # 15 s, long after A must have given up on the lock (at most 2/3 ttl after the cut).
        assert wait_until(lambda: validations.accepted, timeout=15), \
            "Pebble did not start validating A's challenge within 15 s"
        assert a.wait_for_log(lambda line: "ordering certificate" in line, timeout=1)
        assert wait_until(lambda: etcd_link.answered_requests("/v3/lease/keepalive"),
                          timeout=ttl), "A's heartbeat did not refresh its lease"
        assert lock.latest() == a_lease
        assert not any("ordering certificate" in line for line in b.log_lines())
        cut_at = etcd_link.cut()
        if cut_off == "silent":
            etcd_link.go_silent()

        # Silent, A's order thread may sit in a store call (one etcd request at a time, each
        # up to its 5 s deadline) before it hears that the lock is gone; it says nothing to the
        # CA meanwhile, which is what the assertions below check.
        gave_up = a.wait_for_log(lambda line: "certificate lock lost, order stopped" in line,
                                 timeout=ttl + 5 if cut_off == "refused" else ttl + 30)
        gave_up_seen = time.monotonic()
        assert gave_up, "A did not give its order up in time:\n" + "\n".join(a.log_lines()[-20:])
        validations.release(b.http_port)

        shown = test_acme.wait_for_certificate(b, host, roots, timeout=ttl + 20)
        # Requests only: every ACME request is hundreds of bytes, while the TLS alert that
        # closes an idle connection to the CA is a few dozen, and says nothing to it.
        a_to_ca = ca_link.up_times(longer_than=100)
    reads = lock.reads

    # A was still ordering when it was cut off: it polled the CA after the cut.
    assert a_to_ca and max(a_to_ca) > cut_at
    # The last read that still found A's record began after A's last byte to the CA, and after
    # A had given up: A was done while its lease stood, before anyone else could take the lock.
    a_last_seen = max(before for before, _, lease in reads if lease == a_lease)
    assert max(a_to_ca) < a_last_seen, (max(a_to_ca) - cut_at, a_last_seen - cut_at)
    if cut_off == "refused":
        # Silent, the log line can come later: it waits for the store call A was in.
        assert gave_up_seen < a_last_seen, (gave_up_seen - cut_at, a_last_seen - cut_at)
    # B's record appeared no sooner than a ttl after etcd last renewed A's lease (A's heartbeat
    # is its only one, so every keepalive through the link renews that lease).
    b_reads = [(before, after, lease) for before, after, lease in reads
               if lease not in (None, a_lease)]
    assert b_reads, "B's lock record was never seen"
    b_first_seen = min(after for _, after, _ in b_reads)
    last_renewal = max(etcd_link.answered_requests("/v3/lease/keepalive"))
    assert last_renewal < cut_at
    assert b_first_seen >= last_renewal + ttl, (b_first_seen - last_renewal)
    assert a_last_seen < b_first_seen

    # One certificate, B's, written once; A ordered none to completion and stored nothing.
    assert not any("certificate ordered" in line for line in a.log_lines())
    assert sum("certificate ordered" in line for line in b.log_lines()) == 1
    assert pebble.count_issued_certificates() == 1
    kvs = etcd.call("/v3/kv/range", {"key": base64.b64encode(
        f"/gatehouse/certificates/{host}".encode()).decode()})["kvs"]
    assert int(kvs[0]["version"]) == 1
    stored = json.loads(base64.b64decode(kvs[0]["value"]))
    assert stored["acme_directory"] == pebble.directory_url
    assert stored["serial"].lower().lstrip("0") == shown.serial.lower().lstrip("0")

    # Back in touch with etcd, A serves B's certificate within a few seconds.
    if cut_off == "silent":
        etcd_link.cut()
    restored_at = etcd_link.restore()
    served = test_acme.wait_for_certificate(a, host, roots, timeout=10)
    assert served.serial == shown.serial
    print(f"cut to A giving up {gave_up_seen - cut_at:.2f} s, to A's last CA request "
          f"{max(a_to_ca) - cut_at:.2f} s, to A's record gone {a_last_seen - cut_at:.2f} s, "
          f"to B's lock {b_first_seen - cut_at:.2f} s; A served B's certificate "
          f"{time.monotonic() - restored_at:.2f} s after the link came back")
