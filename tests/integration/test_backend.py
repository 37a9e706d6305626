"""The test backend, the raw client and nginx, checked directly with no gatehouse in between.

When a proxy test fails, these say whether the harness itself still works.
"""

import base64
import hashlib
import os
import socket

import pytest

import harness
import rawhttp
from backend import encode_ws_frame, pattern_bytes, read_ws_frame, websocket_accept


def test_the_backend_echoes_the_request_it_received(backend):
    response = rawhttp.request(backend.port, "POST", "/echo/x?y=1", headers=[("X-One", "1")],
                               body=b"hello")
    echoed = response.json()
    assert echoed["method"] == "POST"
    assert echoed["target"] == "/echo/x?y=1"
    assert ["X-One", "1"] in echoed["headers"]
    assert echoed["body_length"] == 5
    assert echoed["body_sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert echoed["backend"] == "alpha"


def test_the_backend_serves_pattern_bytes_with_each_framing(backend):
    with rawhttp.Client(backend.port) as client:
        sized = client.get("/bytes/100000")
        chunked = client.get("/chunked/100000")
        delimited = client.get("/close-delimited/100000")
    assert (sized.framing, chunked.framing, delimited.framing) == ("length", "chunked", "close")
    assert sized.body == chunked.body == delimited.body == pattern_bytes(100000)


def test_the_backend_keeps_a_connection_alive_and_records_it(backend):
    with rawhttp.Client(backend.port) as client:
        for _ in range(3):
            assert client.get("/echo").status == 200
    assert len(backend.connections) == 1
    assert {r.connection_id for r in backend.requests} == {1}


def test_the_backend_hashes_a_chunked_upload(backend):
    body = os.urandom(300000)
    response = rawhttp.request(backend.port, "POST", "/upload",
                               headers=[("Transfer-Encoding", "chunked")],
                               body=rawhttp.chunked(body, 7777))
    assert response.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_the_backend_answers_204_and_304_without_a_body_and_stays_open(backend):
    with rawhttp.Client(backend.port) as client:
        assert client.get("/status/204").body == b""
        assert client.get("/status/304").body == b""
        assert client.get("/echo").status == 200


def test_the_backend_resets_the_connection_on_reset(backend):
    with rawhttp.Client(backend.port) as client:
        client.send(rawhttp.build_request("GET", "/reset"))
        assert client.is_closed_by_peer(3.0)
        assert client.pending_bytes == b""


def test_the_backend_speaks_websocket(backend):
    key = base64.b64encode(os.urandom(16)).decode()
    with rawhttp.Client(backend.port) as client:
        response = client.get("/ws", headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                              ("Sec-WebSocket-Key", key),
                                              ("Sec-WebSocket-Version", "13")])
        assert response.status == 101
        assert response.header("Sec-WebSocket-Accept") == websocket_accept(key)
        assert read_ws_frame(lambda n: client.reader.read_exact(n)) == (1, b"hello from alpha")
        client.send(encode_ws_frame(2, b"\x00\x01\x02" * 50000, mask=os.urandom(4)))
        assert read_ws_frame(lambda n: client.reader.read_exact(n)) == (2, b"\x00\x01\x02" * 50000)


def test_a_refusing_port_refuses_connections():
    refusing = harness.RefusingPort()
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", refusing.port), timeout=2)
    finally:
        refusing.release()


def test_nginx_starts_and_answers_with_its_name(nginx_factory):
    nginx = nginx_factory("n1", 'location / { return 200 "nginx-n1\\n"; }')
    response = rawhttp.get(nginx.port, "/", host="localhost")
    assert response.body == b"nginx-n1\n"
