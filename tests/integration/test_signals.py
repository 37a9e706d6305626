"""SIGTERM drains gracefully, a second SIGTERM ends at once, SIGHUP reloads the config."""

import signal
import socket
import threading
import time

import pytest
import yaml

import harness
import rawhttp
from harness import route


class InFlight:
    """A request running on its own thread; result() waits for its response."""

    def __init__(self, port, target, timeout=30):
        self.response = None
        self.error = None
        self._thread = threading.Thread(target=self._run, args=(port, target, timeout), daemon=True)
        self._thread.start()

    def _run(self, port, target, timeout):
        try:
            self.response = rawhttp.get(port, target, timeout=timeout)
        except Exception as error:  # reported by result()
            self.error = error

    def result(self, timeout):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the in-flight request did not finish"
        assert self.error is None, f"the in-flight request failed: {self.error!r}"
        return self.response


def start_slow_request(gatehouse, backend, seconds):
    """Starts GET /slow/SECONDS and returns once the backend has received it."""
    in_flight = InFlight(gatehouse.http_port, f"/slow/{seconds}")
    deadline = time.monotonic() + 5
    while not backend.requests_for("/slow/") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.requests_for("/slow/"), "the slow request never reached the backend"
    return in_flight


@pytest.fixture
def draining(start_gatehouse, backend):
    return start_gatehouse([route("app.test", backend)], timeouts={"drain": "10s"})


def readiness(gatehouse):
    """The /readyz status, or "refused" when the admin port no longer accepts."""
    try:
        return rawhttp.get(gatehouse.admin_port, "/readyz", host="127.0.0.1", timeout=1).status
    except (ConnectionRefusedError, ConnectionResetError, rawhttp.ConnectionClosed):
        return "refused"


def test_sigterm_makes_readyz_fail_within_half_a_second(draining, backend):
    in_flight = start_slow_request(draining, backend, 2)
    draining.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    seen = None
    while time.monotonic() - signalled < 0.5:
        seen = readiness(draining)
        if seen in (503, "refused"):
            break
        time.sleep(0.02)
    assert seen in (503, "refused"), f"/readyz still answered {seen} 0.5 s after SIGTERM"
    in_flight.result(10)


def test_sigterm_stops_accepting_new_connections(draining, backend):
    in_flight = start_slow_request(draining, backend, 2)
    draining.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 1.0
    refused = False
    while not refused and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", draining.http_port), timeout=1).close()
        except ConnectionRefusedError:
            refused = True
        except ConnectionResetError:
            # Caught in the backlog as the listener closed; the next attempt tells.
            pass
        time.sleep(0.05)
    assert refused, "the http listener still accepted connections 1 s after SIGTERM"
    in_flight.result(10)


def test_sigterm_lets_an_in_flight_request_complete(draining, backend):
    in_flight = start_slow_request(draining, backend, 2)
    draining.send_signal(signal.SIGTERM)
    response = in_flight.result(10)
    assert response.status == 200
    assert response.json()["target"] == "/slow/2"


def test_sigterm_exits_0_once_the_drain_is_done(draining, backend):
    in_flight = start_slow_request(draining, backend, 2)
    draining.send_signal(signal.SIGTERM)
    in_flight.result(10)
    assert draining.wait_exit(5) == 0


def test_a_second_sigterm_during_the_drain_exits_at_once(draining, backend):
    start_slow_request(draining, backend, 20)
    draining.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert draining.proc.poll() is None, "gatehouse exited without waiting for the drain"

    draining.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert draining.wait_exit(5) is not None
    assert time.monotonic() - signalled < 1.5


@pytest.fixture
def reloadable(start_gatehouse, backend_factory):
    old, new = backend_factory("old"), backend_factory("new")
    gatehouse = start_gatehouse([route("app.test", old)])
    return gatehouse, old, new


def wait_for_status(port, host, status, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        response = rawhttp.get(port, "/echo", host=host)
        if response.status == status or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_sighup_with_a_valid_config_serves_the_new_route(reloadable):
    gatehouse, old, new = reloadable
    assert rawhttp.get(gatehouse.http_port, "/echo", host="new.test").status == 404
    gatehouse.reload(harness.merge(gatehouse.config, {
        "routes": [route("app.test", old), route("new.test", new)]}))
    response = wait_for_status(gatehouse.http_port, "new.test", 200)
    assert response.status == 200
    assert response.header("X-Backend") == "new"


def test_sighup_keeps_a_keep_alive_connection_opened_before_it_working(reloadable):
    gatehouse, old, new = reloadable
    with rawhttp.Client(gatehouse.http_port) as client:
        assert client.get("/echo").status == 200
        gatehouse.reload(harness.merge(gatehouse.config, {
            "routes": [route("app.test", old), route("new.test", new)]}))
        assert wait_for_status(gatehouse.http_port, "new.test", 200).status == 200

        response = client.get("/echo/after-reload")
    assert response.status == 200
    assert response.json()["target"] == "/echo/after-reload"


def invalid_config_text(gatehouse):
    """The current config with `threads` made invalid; returns (text, line of the error)."""
    lines = yaml.safe_dump(gatehouse.config, sort_keys=False).splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("threads:"))
    lines[index] = "threads: lots"
    return "\n".join(lines) + "\n", index + 1


def test_sighup_with_an_invalid_config_keeps_the_old_routes_serving(reloadable):
    gatehouse, _, _ = reloadable
    text, _ = invalid_config_text(gatehouse)
    gatehouse.reload(text=text)
    time.sleep(1.0)
    assert gatehouse.proc.poll() is None, "gatehouse exited on an invalid reload"
    assert rawhttp.get(gatehouse.http_port, "/echo").status == 200


def test_sighup_with_an_invalid_config_logs_the_error_with_file_and_line(reloadable):
    gatehouse, _, _ = reloadable
    text, line = invalid_config_text(gatehouse)
    gatehouse.reload(text=text)
    location = f"{gatehouse.config_path.name}:{line}:"
    logged = gatehouse.wait_for_log(lambda entry: location in entry, timeout=5)
    assert logged, f"no log line mentions {location}"
