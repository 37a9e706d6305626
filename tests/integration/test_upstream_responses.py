"""Upstream responses that gatehouse reads itself: framing, keep-alive and malformed heads.

A scripted upstream answers each request with bytes the test chose, so the tests can send
what a well-behaved backend never would: heads with ambiguous framing, bodies that run past
their length, heads that trickle in a byte at a time.
"""

import socket
import threading
import time

import pytest

import rawhttp
from backend import loopback_listener, shut_down_all
from harness import route


class ScriptedUpstream:
    """Answers the n-th request it reads with replies[n] (bytes), on whatever connection it
    came. A reply given as a list of bytes is sent piece by piece with a pause between.
    After the last reply, further requests get a plain 200 "fallback"."""

    FALLBACK = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nfallback"

    def __init__(self, replies, close_after_reply=False):
        self.replies = list(replies)
        self.close_after_reply = close_after_reply
        self.connections = 0
        self.requests = 0
        self._stop = threading.Event()
        self._sockets = []
        self._listener = loopback_listener(0, backlog=16, accept_timeout=0.05)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads = [threading.Thread(target=self._accept_loop, daemon=True)]
        self._threads[0].start()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            self.connections += 1
            self._sockets.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock):
        sock.settimeout(5.0)
        pending = b""
        with sock:
            while not self._stop.is_set():
                while b"\r\n\r\n" not in pending:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    pending += data
                pending = pending[pending.index(b"\r\n\r\n") + 4:]
                index = self.requests
                self.requests += 1
                reply = self.replies[index] if index < len(self.replies) else self.FALLBACK
                pieces = reply if isinstance(reply, list) else [reply]
                try:
                    for piece in pieces:
                        sock.sendall(piece)
                        if len(pieces) > 1:
                            time.sleep(0.002)
                except OSError:
                    return
                if self.close_after_reply:
                    return

    def stop(self):
        self._stop.set()
        # Wakes the threads blocked reading connections that gatehouse keeps in its pool.
        shut_down_all(self._sockets)
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()


@pytest.fixture
def scripted(start_gatehouse):
    """scripted(replies, close_after_reply=False) -> (gatehouse, upstream)."""
    upstreams = []

    def make(replies, close_after_reply=False):
        upstream = ScriptedUpstream(replies, close_after_reply)
        upstreams.append(upstream)
        return start_gatehouse([route("app.test", upstream.url)]), upstream

    yield make
    for upstream in upstreams:
        upstream.stop()


MALFORMED_HEADS = {
    "repeated Content-Length":
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "Content-Length beside chunked":
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "a transfer coding other than chunked":
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello",
    "a Content-Length that is not digits":
        b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
    "an obs-fold line":
        b"HTTP/1.1 200 OK\r\nX-Long: one\r\n two\r\nContent-Length: 5\r\n\r\nhello",
    "a bare LF line end":
        b"HTTP/1.1 200 OK\nContent-Length: 5\r\n\r\nhello",
    "a bare CR":
        b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 5\r\n\r\nhello",
    "a NUL byte":
        b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello",
    "a space before the colon":
        b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello",
    "a malformed status line":
        b"HTTP/1.1 20 OK\r\nContent-Length: 5\r\n\r\nhello",
    "an unknown version":
        b"HTTP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
}


@pytest.mark.parametrize("name", sorted(MALFORMED_HEADS))
def test_a_malformed_upstream_head_gets_502_and_nothing_of_it_reaches_the_client(scripted, name):
    gatehouse, upstream = scripted([MALFORMED_HEADS[name]])
    with rawhttp.Client(gatehouse.http_port) as client:
        response = client.get("/")
        assert response.status == 502
        assert b"hello" not in response.body
        # The client's connection is still good; the bad upstream connection is not reused.
        follow_up = client.get("/")
    assert follow_up.status == 200
    assert follow_up.body == b"fallback"
    assert upstream.connections == 2


def test_bytes_past_the_content_length_are_not_relayed_and_retire_the_connection(scripted):
    # The extra bytes look like a response: were the connection pooled, the next request
    # would get them as its answer.
    smuggled = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"
    gatehouse, upstream = scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + smuggled])
    with rawhttp.Client(gatehouse.http_port) as client:
        first = client.get("/")
        second = client.get("/")
    assert (first.status, first.body) == (200, b"hello")
    assert (second.status, second.body) == (200, b"fallback")
    assert upstream.connections == 2


def test_a_response_head_that_trickles_in_byte_by_byte_is_read_whole(scripted):
    reply = b"HTTP/1.1 201 Created\r\nX-Trickled: yes\r\nContent-Length: 5\r\n\r\nhello"
    gatehouse, _ = scripted([[reply[i:i + 1] for i in range(len(reply))]])
    response = rawhttp.get(gatehouse.http_port, "/")
    assert (response.status, response.reason) == (201, "Created")
    assert response.header("X-Trickled") == "yes"
    assert response.body == b"hello"


def test_a_status_line_without_a_reason_gets_the_standard_one(scripted):
    gatehouse, _ = scripted([b"HTTP/1.1 404\r\nContent-Length: 4\r\n\r\ngone"])
    response = rawhttp.get(gatehouse.http_port, "/")
    assert (response.status, response.reason, response.body) == (404, "Not Found", b"gone")


def test_an_http10_upstream_connection_is_reused_only_when_it_asks_for_keep_alive(scripted):
    plain = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    gatehouse, upstream = scripted([plain, plain])
    with rawhttp.Client(gatehouse.http_port) as client:
        assert client.get("/").body == b"ok"
        assert client.get("/").body == b"ok"
    assert upstream.connections == 2

    kept = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
    gatehouse, upstream = scripted([kept, kept])
    with rawhttp.Client(gatehouse.http_port) as client:
        assert client.get("/").body == b"ok"
        assert client.get("/").body == b"ok"
    assert upstream.connections == 1


def test_a_body_cut_short_of_its_content_length_closes_the_client_connection(scripted):
    gatehouse, _ = scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"],
                            close_after_reply=True)
    with rawhttp.Client(gatehouse.http_port) as client:
        client.send(rawhttp.build_request("GET", "/"))
        head = rawhttp.read_status_and_headers(client.reader)
        assert head.status == 200
        # The head is out before the body falls short; the only honest signal left is closing.
        assert client.reader.read_to_close() == b"hello"


def test_an_interim_response_is_skipped_and_the_final_one_relayed(scripted):
    gatehouse, _ = scripted([b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                             b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"])
    response = rawhttp.get(gatehouse.http_port, "/")
    assert (response.status, response.body) == (200, b"hello")
