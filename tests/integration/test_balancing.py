"""Round robin, passive health, upstream failures and upstream connection pooling."""

import collections
import time

import pytest

import rawhttp
from harness import RefusingPort, route


@pytest.fixture
def refusing_ports():
    ports = []

    def make():
        port = RefusingPort()
        ports.append(port)
        return port

    yield make
    for port in ports:
        port.release()


def backends_hit(port, count, target="/echo"):
    """Sends `count` GETs, each on its own connection; returns the answering backends' names."""
    names = []
    for _ in range(count):
        response = rawhttp.get(port, target)
        assert response.status == 200, response
        names.append(response.header("X-Backend"))
    return names


def test_round_robin_spreads_requests_evenly_over_two_upstreams(start_gatehouse, backend_factory):
    first, second = backend_factory("first"), backend_factory("second")
    gatehouse = start_gatehouse([route("app.test", first, second)])
    counts = collections.Counter(backends_hit(gatehouse.http_port, 20))
    assert set(counts) == {"first", "second"}
    assert abs(counts["first"] - 10) <= 1, counts


def test_round_robin_spreads_requests_over_two_nginx_upstreams(start_gatehouse, nginx_factory):
    upstreams = [nginx_factory(name, f'location / {{ return 200 "{name}"; }}')
                 for name in ("nginx-a", "nginx-b")]
    gatehouse = start_gatehouse([route("app.test", *upstreams)])
    counts = collections.Counter()
    for _ in range(20):
        response = rawhttp.get(gatehouse.http_port, "/")
        assert response.status == 200, response
        counts[response.body.decode()] += 1
    assert set(counts) == {"nginx-a", "nginx-b"}
    assert abs(counts["nginx-a"] - 10) <= 1, counts


def test_every_request_succeeds_when_one_upstream_refuses_connections(
        start_gatehouse, backend, refusing_ports):
    gatehouse = start_gatehouse([route("app.test", refusing_ports(), backend)])
    assert backends_hit(gatehouse.http_port, 10) == ["alpha"] * 10


def test_an_upstream_that_refused_is_skipped_for_the_cooldown(
        start_gatehouse, backend, backend_factory, refusing_ports):
    refusing = refusing_ports()
    # Each worker thread keeps its own health view; one thread makes "after the failure"
    # unambiguous, since the client cannot choose which thread accepts its connection.
    gatehouse = start_gatehouse([route("app.test", refusing, backend)], threads=1,
                                upstream_health={"max_fails": 1, "cooldown": "10s"})
    backends_hit(gatehouse.http_port, 4)

    # The port now accepts; within the cooldown gatehouse must still leave it out.
    refusing.release()
    revived = backend_factory("revived", port=refusing.port)
    assert backends_hit(gatehouse.http_port, 10) == ["alpha"] * 10
    assert revived.requests == []


def test_an_upstream_returns_to_rotation_after_the_cooldown(
        start_gatehouse, backend, backend_factory, refusing_ports):
    refusing = refusing_ports()
    gatehouse = start_gatehouse([route("app.test", refusing, backend)], threads=1,
                                upstream_health={"max_fails": 1, "cooldown": "1s"})
    backends_hit(gatehouse.http_port, 4)
    refusing.release()
    revived = backend_factory("revived", port=refusing.port)

    time.sleep(1.5)
    names = backends_hit(gatehouse.http_port, 6)
    assert "revived" in names


def test_a_request_gets_502_when_every_upstream_is_down(start_gatehouse, refusing_ports):
    gatehouse = start_gatehouse([route("app.test", refusing_ports(), refusing_ports())])
    assert rawhttp.get(gatehouse.http_port, "/echo").status == 502


def test_a_request_gets_502_when_the_upstream_resets_before_answering(gatehouse, backend):
    assert rawhttp.get(gatehouse.http_port, "/reset").status == 502
    assert backend.requests_for("/reset"), "the request should have reached the backend"


def test_a_request_gets_504_when_the_upstream_answers_too_slowly(start_gatehouse, backend):
    gatehouse = start_gatehouse([route("app.test", backend)], timeouts={"upstream_response": "1s"})
    started = time.monotonic()
    response = rawhttp.get(gatehouse.http_port, "/slow/3")
    elapsed = time.monotonic() - started
    assert response.status == 504
    assert 0.9 <= elapsed <= 2.5, f"504 after {elapsed:.2f}s"


def distinct_upstream_connections(backend):
    return {r.connection_id for r in backend.requests}


def test_sequential_requests_on_one_client_connection_reuse_upstream_connections(gatehouse, backend):
    with rawhttp.Client(gatehouse.http_port) as client:
        for _ in range(50):
            assert client.get("/echo").status == 200
    assert len(backend.requests) == 50
    assert len(distinct_upstream_connections(backend)) <= 4


def test_requests_on_separate_client_connections_reuse_upstream_connections(gatehouse, backend):
    for _ in range(50):
        assert rawhttp.get(gatehouse.http_port, "/echo").status == 200
    assert len(backend.requests) == 50
    assert len(distinct_upstream_connections(backend)) <= 4
