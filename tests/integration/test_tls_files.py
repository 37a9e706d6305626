"""Certificates from operator files (tls: {cert, key}): replaced pairs are picked up within
seconds, broken ones never replace a working certificate, and swaps under load drop nothing."""

import json
import shutil
import threading
import time

import pytest

import tlshelpers
from harness import route

HOST = "files.example.test"

# The brief: a replaced pair reaches new handshakes within 2 s (the files are checked every 1 s).
PICKUP_S = 2.0
# How long a broken pair may take to show up as last_error on /status.
FAILURE_REPORT_S = 3.0


class FilesRoute:
    """A started gatehouse whose route HOST serves the pair at live.pem / live.key."""

    def __init__(self, gatehouse, user_ca, live_certificate, live_key):
        self.gatehouse = gatehouse
        self.user_ca = user_ca
        self.certificate = live_certificate
        self.key = live_key

    @property
    def port(self):
        return self.gatehouse.https_port

    def served_serial(self):
        return tlshelpers.handshake(self.port, HOST, self.user_ca.certificate).serial

    def status(self):
        return tlshelpers.certificate_status(self.gatehouse, HOST)

    def install(self, pair, atomic=True):
        tlshelpers.install_pair(self.certificate, self.key, pair, atomic)

    def assert_picked_up(self, pair, how):
        elapsed, seen = tlshelpers.wait_for_serial(self.port, HOST, self.user_ca.certificate,
                                                   pair.serial, PICKUP_S)
        assert elapsed is not None, \
            f"after {how}, new handshakes still got {seen}, not {pair.serial}, after {PICKUP_S}s"
        status = self.status()
        assert status["serial"] == pair.serial and status["last_error"] is None, status

    def wait_for_last_error(self):
        return tlshelpers.wait_until(lambda: self.status()["last_error"], FAILURE_REPORT_S)


@pytest.fixture
def user_ca(tmp_path):
    return tlshelpers.UserCA(tmp_path / "pki")


def start_files_route(start_gatehouse, backend, user_ca, tmp_path, first_pair):
    live = tmp_path / "live"
    live.mkdir()
    certificate, key = live / "live.pem", live / "live.key"
    shutil.copyfile(first_pair.certificate, certificate)
    shutil.copyfile(first_pair.key, key)
    files_route = dict(route(HOST, backend), tls={"cert": str(certificate), "key": str(key)})
    gatehouse = start_gatehouse([files_route], https=True)
    served = FilesRoute(gatehouse, user_ca, certificate, key)
    assert served.served_serial() == first_pair.serial
    assert served.status()["source"] == "files"
    return served


def test_a_replaced_file_pair_reaches_new_handshakes_within_two_seconds(
        start_gatehouse, backend, user_ca, tmp_path):
    pairs = user_ca.issue_many(HOST, 3, "swap")
    served = start_files_route(start_gatehouse, backend, user_ca, tmp_path, pairs[0])

    # Renamed into place, as careful deploy tools do.
    served.install(pairs[1], atomic=True)
    served.assert_picked_up(pairs[1], "os.replace of key and certificate")

    # Truncated and rewritten in place, as `cp` does: a reader may see an empty or half file.
    served.install(pairs[2], atomic=False)
    served.assert_picked_up(pairs[2], "an in-place overwrite of key and certificate")


def test_a_broken_replacement_keeps_the_old_certificate_and_reports_last_error(
        start_gatehouse, backend, user_ca, tmp_path):
    pairs = user_ca.issue_many(HOST, 4, "broken")
    served = start_files_route(start_gatehouse, backend, user_ca, tmp_path, pairs[0])

    # Garbage in place of the certificate.
    tlshelpers.write_atomically(served.certificate, b"-----BEGIN CERTIFICATE-----\nnot base64!\n")
    error = served.wait_for_last_error()
    assert error, f"/status shows no last_error {FAILURE_REPORT_S}s after a garbage certificate"
    assert served.served_serial() == pairs[0].serial
    assert served.status()["serial"] == pairs[0].serial
    logged = served.gatehouse.wait_for_log(
        lambda line: "certificate update failed, keeping the current one" in line, 1.0)
    assert logged and f"host={HOST}" in logged, logged

    served.install(pairs[1])
    served.assert_picked_up(pairs[1], "fixing the garbage certificate")

    # A valid certificate whose key is not the one next to it.
    tlshelpers.write_atomically(served.certificate, pairs[2].certificate_pem())
    error = served.wait_for_last_error()
    assert error, f"/status shows no last_error {FAILURE_REPORT_S}s after a mismatched pair"
    assert "key" in error, f"last_error does not say the key is wrong: {error!r}"
    assert served.served_serial() == pairs[1].serial

    served.install(pairs[3])
    served.assert_picked_up(pairs[3], "fixing the mismatched pair")


class LoadClient(threading.Thread):
    """Sends GETs through gatehouse until stopped, on one kept-alive connection or on a new
    connection per request, and records every failure and the serials it was served."""

    def __init__(self, name, port, ca, keep_alive, stop, deadline, max_requests=100_000):
        super().__init__(name=name, daemon=True)
        self.port, self.keep_alive, self.stop, self.deadline = port, keep_alive, stop, deadline
        self.context = tlshelpers.client_context(ca)
        self.max_requests = max_requests
        self.requests = 0
        self.failures = []
        self.serials = set()
        self.connects = 0

    def run(self):
        connection = None
        while not self.stop.is_set() and time.monotonic() < self.deadline \
                and self.requests < self.max_requests:
            if connection is None:
                connection = tlshelpers.LoopbackHTTPSConnection(HOST, self.port, self.context, 10)
            target = f"/echo/{self.name}/{self.requests}"
            try:
                connection.request("GET", target)
                response = connection.getresponse()
                body = response.read()
                if connection.sock is not None:
                    self.serials.add(connection.sock.getpeercert()["serialNumber"])
                if response.status != 200 or json.loads(body)["target"] != target:
                    self.failures.append(f"{target}: {response.status} {body[:200]!r}")
            except Exception as error:  # every kind of failure counts, and is reported
                self.failures.append(f"{target}: {error!r}")
                connection = self._close(connection)
            self.requests += 1
            if connection is not None and not self.keep_alive:
                connection = self._close(connection)
        if connection is not None:
            self._close(connection)

    def _close(self, connection):
        self.connects += connection.connects
        connection.close()
        return None


def test_fifty_certificate_swaps_under_load_fail_no_request(
        start_gatehouse, backend, user_ca, tmp_path):
    swaps = 50
    pairs = user_ca.issue_many(HOST, swaps + 1, "load")
    served = start_files_route(start_gatehouse, backend, user_ca, tmp_path, pairs[0])

    stop = threading.Event()
    deadline = time.monotonic() + 90
    clients = [LoadClient(f"keep{i}", served.port, user_ca.certificate, True, stop, deadline)
               for i in range(2)]
    clients += [LoadClient(f"fresh{i}", served.port, user_ca.certificate, False, stop, deadline)
                for i in range(2)]
    for client in clients:
        client.start()

    # Each swap waits until a fresh handshake shows it, so every one of them is really served
    # while the load runs. Key and certificate are renamed into place one after the other; a
    # check between the two sees a mismatched pair, which must be refused, not served.
    missed = []
    try:
        for index, pair in enumerate(pairs[1:], start=1):
            served.install(pair)
            elapsed, seen = tlshelpers.wait_for_serial(served.port, HOST, user_ca.certificate,
                                                       pair.serial, 3.0, interval=0.02)
            if elapsed is None:
                missed.append(f"swap {index}: served {seen}, wanted {pair.serial}")
                break
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=15)
    assert not any(client.is_alive() for client in clients), "a load client did not stop"

    assert not missed, missed
    failures = [f for client in clients for f in client.failures]
    total = sum(client.requests for client in clients)
    assert not failures, f"{len(failures)} of {total} requests failed, first: {failures[:5]}"
    for client in clients:
        assert client.requests >= 50, f"{client.name} sent only {client.requests} requests"
    for client in clients[:2]:
        assert client.connects == 1, f"{client.name}'s kept-alive connection was reopened"
    fresh_serials = set().union(*(client.serials for client in clients[2:]))
    assert len(fresh_serials) >= swaps // 2, \
        f"new connections saw only {len(fresh_serials)} certificates during {swaps} swaps"
    assert served.served_serial() == pairs[-1].serial
    assert served.status()["serial"] == pairs[-1].serial
