"""HTTP/1.1 message framing through the proxy (RFC 9112), 100-continue and WebSocket tunnels."""

import base64
import hashlib
import os
import socket

import pytest

import rawhttp
from backend import encode_ws_frame, pattern_bytes, read_ws_frame, websocket_accept
from harness import assert_never_forwarded, route, socket_option_of


def test_a_chunked_request_body_is_forwarded_intact(gatehouse):
    body = os.urandom(300000)
    response = rawhttp.request(gatehouse.http_port, "POST", "/upload",
                               headers=[("Transfer-Encoding", "chunked")],
                               body=rawhttp.chunked(body, 7777))
    assert response.status == 200, response
    assert response.json()["body_length"] == len(body)
    assert response.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_a_content_length_request_body_is_forwarded_intact(gatehouse):
    body = os.urandom(300000)
    response = rawhttp.request(gatehouse.http_port, "POST", "/upload", body=body)
    assert response.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_a_chunked_response_is_forwarded_intact(gatehouse):
    response = rawhttp.get(gatehouse.http_port, "/chunked/1000000")
    assert response.status == 200
    assert response.body == pattern_bytes(1000000)


def test_a_close_delimited_response_is_forwarded_intact(gatehouse):
    response = rawhttp.get(gatehouse.http_port, "/close-delimited/1000000")
    assert response.status == 200
    assert response.body == pattern_bytes(1000000)


@pytest.mark.parametrize("target", ["/chunked/100000", "/bytes/100000", "/close-delimited/100000"])
def test_an_http10_client_gets_a_response_without_chunked_coding(gatehouse, target):
    with rawhttp.Client(gatehouse.http_port) as client:
        response = client.request("GET", target, version="HTTP/1.0")
    assert response.status == 200
    assert not response.has_header("Transfer-Encoding")
    assert response.framing in ("length", "close")
    assert response.body == pattern_bytes(100000)


def test_pipelined_requests_are_answered_in_order(gatehouse):
    batch = b"".join(rawhttp.build_request("GET", f"/echo/{n}") for n in (1, 2, 3))
    with rawhttp.Client(gatehouse.http_port) as client:
        client.send(batch)
        targets = [client.read_response().json()["target"] for _ in range(3)]
    assert targets == ["/echo/1", "/echo/2", "/echo/3"]


def test_expect_100_continue_gets_100_before_the_body_is_sent(gatehouse):
    body = os.urandom(50000)
    head = rawhttp.build_request("POST", "/upload", headers=[
        ("Content-Length", str(len(body))), ("Expect", "100-continue")])
    with rawhttp.Client(gatehouse.http_port, timeout=5) as client:
        client.send(head)
        interim = rawhttp.read_status_and_headers(client.reader)
        assert (interim.version, interim.status) == ("HTTP/1.1", 100)

        client.send(body)
        response = client.read_response()
    assert response.status == 200
    assert response.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_expect_100_continue_with_a_body_over_the_limit_gets_413_without_100(start_gatehouse, backend):
    gatehouse = start_gatehouse([route("app.test", backend)], limits={"max_body_bytes": "1KiB"})
    head = rawhttp.build_request("POST", "/upload", headers=[
        ("Content-Length", "5000"), ("Expect", "100-continue")])
    with rawhttp.Client(gatehouse.http_port, timeout=5) as client:
        client.send(head)
        response = client.read_response()
    assert response.status == 413
    assert response.interim == []
    assert_never_forwarded(backend)


def test_a_head_response_has_no_body_and_the_connection_stays_usable(gatehouse):
    with rawhttp.Client(gatehouse.http_port) as client:
        head = client.request("HEAD", "/bytes/5000")
        following = client.get("/echo/after-head")
    assert head.status == 200
    assert following.json()["target"] == "/echo/after-head"


def test_a_head_response_keeps_the_upstream_content_length(gatehouse):
    with rawhttp.Client(gatehouse.http_port) as client:
        head = client.request("HEAD", "/bytes/5000")
    assert head.header("Content-Length") == "5000"


@pytest.mark.parametrize("status", [204, 304])
def test_a_bodiless_status_has_no_body_and_the_connection_stays_usable(gatehouse, status):
    with rawhttp.Client(gatehouse.http_port) as client:
        first = client.get(f"/status/{status}")
        following = client.get("/echo/after")
    assert first.status == status
    assert not first.has_header("Transfer-Encoding")
    assert following.json()["target"] == "/echo/after"


class WebSocketClient:
    def __init__(self, client):
        self.client = client

    def send(self, opcode, payload):
        self.client.send(encode_ws_frame(opcode, payload, mask=os.urandom(4)))

    def receive(self):
        return read_ws_frame(self.client.reader.read_exact)


def open_websocket(port):
    key = base64.b64encode(os.urandom(16)).decode()
    client = rawhttp.Client(port)
    response = client.get("/ws", headers=[
        ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")])
    return client, response, key


def test_a_websocket_upgrade_gets_101_with_the_upstream_accept_key(gatehouse):
    client, response, key = open_websocket(gatehouse.http_port)
    with client:
        assert response.status == 101
        assert response.header("Upgrade").lower() == "websocket"
        assert response.header("Sec-WebSocket-Accept") == websocket_accept(key)


def test_websocket_frames_flow_both_ways_through_the_tunnel(gatehouse):
    client, response, _ = open_websocket(gatehouse.http_port)
    with client:
        assert response.status == 101
        ws = WebSocketClient(client)
        assert ws.receive() == (0x1, b"hello from alpha")

        ws.send(0x1, b"ping through the proxy")
        assert ws.receive() == (0x1, b"ping through the proxy")

        large = os.urandom(300000)
        ws.send(0x2, large)
        assert ws.receive() == (0x2, large)

        ws.send(0x8, b"\x03\xe8")
        assert ws.receive()[0] == 0x8


def test_a_websocket_tunnel_closes_when_the_upstream_closes(gatehouse):
    client, response, _ = open_websocket(gatehouse.http_port)
    with client:
        assert response.status == 101
        ws = WebSocketClient(client)
        ws.receive()
        ws.send(0x8, b"\x03\xe8")
        ws.receive()
        assert client.is_closed_by_peer(5.0)


def test_client_and_upstream_connections_send_without_waiting_for_acks(gatehouse, backend):
    # Nagle's algorithm would hold a small write back until the peer acknowledged the last one:
    # a chunk of a streamed body, or a response written in pieces, could wait for a delayed ACK.
    with rawhttp.Client(gatehouse.http_port) as client:
        client.send(rawhttp.build_request("GET", "/echo", host="app.test"))
        assert client.read_response().status == 200
        client_port = client.sock.getsockname()[1]
        pid = gatehouse.pid
        assert socket_option_of(pid, gatehouse.http_port, client_port,
                                socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        # The pooled upstream connection that carried the request.
        assert socket_option_of(pid, None, backend.port,
                                socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
