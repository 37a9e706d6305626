"""Size limits, malformed requests, client timeouts and the connection cap."""

import contextlib
import time

import pytest

import rawhttp
from harness import assert_never_forwarded, route


def test_a_header_block_over_max_header_bytes_gets_431(gatehouse, backend):
    response = rawhttp.get(gatehouse.http_port, "/echo", headers=[("X-Big", "a" * 20000)])
    assert response.status == 431
    assert_never_forwarded(backend)


def test_many_headers_adding_up_over_max_header_bytes_get_431(gatehouse, backend):
    headers = [(f"X-Filler-{n}", "b" * 100) for n in range(200)]
    response = rawhttp.get(gatehouse.http_port, "/echo", headers=headers)
    assert response.status == 431
    assert_never_forwarded(backend)


def test_a_header_block_under_max_header_bytes_is_forwarded(gatehouse):
    response = rawhttp.get(gatehouse.http_port, "/echo", headers=[("X-Big", "a" * 12000)])
    assert response.status == 200


def test_a_request_target_over_max_uri_bytes_gets_414(gatehouse, backend):
    response = rawhttp.get(gatehouse.http_port, "/echo?" + "q" * 9000)
    assert response.status == 414
    assert_never_forwarded(backend)


@pytest.fixture
def small_body_limit(start_gatehouse, backend):
    return start_gatehouse([route("app.test", backend)], limits={"max_body_bytes": "1KiB"})


def test_a_content_length_over_max_body_bytes_gets_413_and_is_never_forwarded(
        small_body_limit, backend):
    with rawhttp.Client(small_body_limit.http_port) as client:
        client.send(rawhttp.build_request("POST", "/upload", headers=[("Content-Length", "2048")]))
        response = client.read_response()
    assert response.status == 413
    assert_never_forwarded(backend)


def test_a_body_at_max_body_bytes_is_forwarded(small_body_limit):
    response = rawhttp.request(small_body_limit.http_port, "POST", "/upload", body=b"x" * 1024)
    assert response.status == 200
    assert response.json()["body_length"] == 1024


def test_a_chunked_body_over_max_body_bytes_gets_413_and_the_backend_never_sees_more(
        small_body_limit, backend):
    body = rawhttp.chunked(b"y" * 4096, 256)
    head = rawhttp.build_request("POST", "/upload", headers=[("Transfer-Encoding", "chunked")])
    response, _ = rawhttp.send_raw(small_body_limit.http_port, head + body)
    assert response is not None and response.status == 413
    time.sleep(0.3)
    assert all(r.body_length <= 1024 for r in backend.requests), backend.requests
    assert not any(r.body_complete for r in backend.requests)


@pytest.mark.parametrize("request_line", [
    b"this is not http",
    b"GET /echo HTTP/1.1 trailing-garbage",
    b"GET /echo HTTQ/1.1",
    b"GET",
])
def test_a_malformed_request_line_gets_400(gatehouse, backend, request_line):
    response, _ = rawhttp.send_raw(gatehouse.http_port, request_line + b"\r\nHost: app.test\r\n\r\n")
    assert response is not None and response.status == 400
    assert_never_forwarded(backend)


def test_a_client_trickling_its_header_is_closed_after_header_read(start_gatehouse, backend):
    gatehouse = start_gatehouse([route("app.test", backend)], timeouts={"header_read": "1s"})
    with rawhttp.Client(gatehouse.http_port) as client:
        started = time.monotonic()
        client.send(b"GET /echo HTTP/1.1\r\nHost: app.test\r\nX-Slow: ")
        closed = False
        while not closed and time.monotonic() - started < 5:
            try:
                client.send(b"a")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            closed = client.is_closed_by_peer(0.3)
        elapsed = time.monotonic() - started
        received = client.pending_bytes
    assert closed, "the trickling client was never closed"
    assert 0.9 <= elapsed <= 2.5, f"closed after {elapsed:.2f}s"
    assert received == b"" or received.startswith(b"HTTP/1.1 408"), received[:100]
    assert_never_forwarded(backend)


def test_a_client_that_never_sends_a_byte_is_closed_after_header_read(start_gatehouse, backend):
    # header_read runs from the accept, whether or not a byte ever arrives.
    gatehouse = start_gatehouse([route("app.test", backend)], timeouts={"header_read": "1s"})
    with rawhttp.Client(gatehouse.http_port) as client:
        started = time.monotonic()
        closed = client.is_closed_by_peer(6.0)
        elapsed = time.monotonic() - started
    assert closed, "a silent connection was still open after 6 s"
    assert 0.9 <= elapsed <= 2.5, f"closed after {elapsed:.2f}s"
    assert_never_forwarded(backend)


def test_an_idle_keep_alive_connection_is_closed_after_idle(start_gatehouse, backend):
    gatehouse = start_gatehouse([route("app.test", backend)], timeouts={"idle": "1s"})
    with rawhttp.Client(gatehouse.http_port) as client:
        assert client.get("/echo").status == 200
        answered = time.monotonic()
        assert not client.is_closed_by_peer(0.7), "closed well before the idle timeout"
        assert client.is_closed_by_peer(2.0), "still open 2.7 s into a 1 s idle timeout"
        elapsed = time.monotonic() - answered
    assert elapsed <= 2.5


class HeldConnections:
    """Client connections kept open, each proven accepted by a completed request."""

    def __init__(self, port, count):
        self.clients = []
        for _ in range(count):
            client = rawhttp.Client(port)
            assert client.get("/echo").status == 200
            self.clients.append(client)

    def close_one(self):
        self.clients.pop().close()

    def close(self):
        for client in self.clients:
            client.close()


def read_refusal(port):
    """Opens one more connection, sends a request on it, and returns (response, closed).

    gatehouse answers a connection over the cap as soon as it accepts it; the request goes at
    once all the same, so the answer does not depend on when that happens.
    """
    with rawhttp.Client(port, timeout=5) as client:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            client.send(rawhttp.build_request("GET", "/echo"))
        try:
            response = client.read_response()
        except (rawhttp.ConnectionClosed, ConnectionResetError):
            return None, True
        return response, client.is_closed_by_peer(3.0)


@pytest.fixture
def capped(start_gatehouse, backend):
    gatehouse = start_gatehouse([route("app.test", backend)], limits={"max_connections": 5})
    held = HeldConnections(gatehouse.http_port, 5)
    yield gatehouse, held
    held.close()


def test_a_connection_over_max_connections_gets_503_and_is_closed(capped):
    gatehouse, _ = capped
    response, closed = read_refusal(gatehouse.http_port)
    assert response is not None, "closed without a 503"
    assert response.version == "HTTP/1.1" and response.status == 503
    assert closed


def test_connections_are_accepted_again_once_one_closes(capped):
    gatehouse, held = capped
    held.close_one()
    deadline = time.monotonic() + 2
    while True:
        response = rawhttp.get(gatehouse.http_port, "/echo")
        if response.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert response.status == 200


def test_refusing_many_connections_logs_one_connection_limit_warning(capped):
    gatehouse, _ = capped
    for _ in range(20):
        response, _ = read_refusal(gatehouse.http_port)
        assert response is None or response.status == 503
    time.sleep(0.5)
    warnings = [line for line in gatehouse.log_lines() if "connection limit" in line.lower()]
    assert len(warnings) == 1, warnings

