"""Plain HTTP next to HTTPS: redirects to HTTPS, their exceptions, HSTS, X-Forwarded-Proto, and
421 for a plain-only host asked for over TLS."""

import base64
import hashlib
import os

import pytest

import harness
import rawhttp
import tlshelpers
from backend import encode_ws_frame, pattern_bytes, read_ws_frame, websocket_accept
from harness import route

HSTS_HOST = "app.example.test"
BOTH_HOST = "both.example.test"  # TLS, but redirect_http: false
PLAIN_HOST = "off.example.test"  # tls: off


@pytest.fixture
def mixed(start_gatehouse, backend):
    routes = [
        dict(route(HSTS_HOST, backend), hsts={"max_age": "30d", "include_subdomains": True}),
        dict(route(BOTH_HOST, backend), redirect_http=False),
        dict(route(PLAIN_HOST, backend), tls="off"),
    ]
    gatehouse = start_gatehouse(routes, https=True)
    gatehouse.ca = tlshelpers.trust_pem(gatehouse)
    return gatehouse


def echoed_header(response, name):
    """The values the backend saw for header `name`, from its /echo JSON."""
    return [v for k, v in response.json()["headers"] if k.lower() == name.lower()]


def https(gatehouse, server_name, target, host=None, method="GET", headers=(), body=None):
    return tlshelpers.https_request(gatehouse.https_port, server_name, method, target,
                                    gatehouse.ca, host=host, headers=headers, body=body)


def test_plain_requests_for_a_tls_route_get_308_to_the_https_port(mixed, backend):
    expected = f"https://{HSTS_HOST}:{mixed.https_port}/x?y=1"

    got = rawhttp.get(mixed.http_port, "/x?y=1", host=HSTS_HOST)
    assert got.status == 308
    assert got.header("Location") == expected

    # The Host header's own port is the plain one; the redirect names the HTTPS port instead.
    with_port = rawhttp.get(mixed.http_port, "/x?y=1", host=f"{HSTS_HOST}:{mixed.http_port}")
    assert with_port.status == 308 and with_port.header("Location") == expected

    # 308, not 301/302, so the method and body survive the redirect (RFC 9110 section 15.4.9).
    posted = rawhttp.request(mixed.http_port, "POST", "/x?y=1", host=HSTS_HOST, body=b"a=b")
    assert posted.status == 308 and posted.header("Location") == expected

    for response in (got, with_port, posted):
        assert not response.has_header("Strict-Transport-Security")
    harness.assert_never_forwarded(backend)


def test_the_health_path_and_acme_challenges_are_not_redirected(mixed, backend):
    health = rawhttp.get(mixed.http_port, "/healthz", host=HSTS_HOST)
    assert health.status == 200 and health.body == b"ok\n"

    challenge = rawhttp.get(mixed.http_port, "/.well-known/acme-challenge/tok", host=HSTS_HOST)
    assert challenge.status == 200, f"the ACME challenge got {challenge.status}, not the backend"
    assert challenge.json()["target"] == "/.well-known/acme-challenge/tok"
    assert echoed_header(challenge, "X-Forwarded-Proto") == ["http"]

    # A route with hsts still sends no HSTS over plain HTTP (RFC 6797 section 7.2).
    for response in (health, challenge):
        assert not response.has_header("Strict-Transport-Security")
    assert [r.target for r in backend.requests] == ["/.well-known/acme-challenge/tok"]


def test_redirect_http_false_serves_a_tls_route_over_plain_http_too(mixed):
    plain = rawhttp.get(mixed.http_port, "/echo/plain", host=BOTH_HOST)
    assert plain.status == 200, f"got {plain.status} {plain.header('Location')}"
    assert echoed_header(plain, "X-Forwarded-Proto") == ["http"]

    secure = https(mixed, BOTH_HOST, "/echo/secure")
    assert secure.status == 200
    assert echoed_header(secure, "X-Forwarded-Proto") == ["https"]
    # This route has no hsts setting.
    assert not secure.has_header("Strict-Transport-Security")


def test_https_responses_carry_hsts_and_the_backend_sees_forwarded_proto_https(mixed):
    # A client's own X-Forwarded-Proto is replaced, not passed on.
    secure = https(mixed, HSTS_HOST, "/echo/hsts", headers=[("X-Forwarded-Proto", "http")])
    assert secure.status == 200
    assert secure.header_values("Strict-Transport-Security") == [
        "max-age=2592000; includeSubDomains"]
    assert echoed_header(secure, "X-Forwarded-Proto") == ["https"]


def test_a_tls_off_host_requested_on_a_tls_connection_gets_421(mixed, backend):
    misdirected = https(mixed, HSTS_HOST, "/echo/off", host=PLAIN_HOST)
    assert misdirected.status == 421
    assert not backend.requests_for("/echo/off")

    # Over plain HTTP the same host is served and not redirected.
    plain = rawhttp.get(mixed.http_port, "/echo/off", host=PLAIN_HOST)
    assert plain.status == 200
    assert not plain.has_header("Strict-Transport-Security")


def test_a_host_whose_certificate_the_connection_never_showed_gets_421(mixed, backend):
    # The handshake named app.example.test; a request there for both.example.test, which has a
    # certificate of its own, is refused rather than fronted by app's certificate.
    fronted = https(mixed, HSTS_HOST, "/echo/fronted", host=BOTH_HOST)
    assert fronted.status == 421
    assert not backend.requests_for("/echo/fronted")

    # The same name as the handshake, with a port, in another case, is served.
    same = https(mixed, HSTS_HOST, "/echo/same", host=f"APP.example.test:{mixed.https_port}")
    assert same.status == 200
    assert backend.requests_for("/echo/same")


def test_large_bodies_cross_tls_both_ways_on_one_connection(mixed):
    # Many TLS records per message, in both directions, then more requests on the same
    # connection: its TLS state must still be in step after each.
    context = tlshelpers.client_context(mixed.ca)
    upload = os.urandom(1_500_000)
    with tlshelpers.TlsClient(mixed.https_port, BOTH_HOST, context) as client:
        sized = client.get("/bytes/3000000", host=BOTH_HOST)
        assert sized.status == 200 and sized.body == pattern_bytes(3000000)

        chunked = client.get("/chunked/700001", host=BOTH_HOST)
        assert chunked.status == 200 and chunked.body == pattern_bytes(700001)

        posted = client.request("POST", "/upload", BOTH_HOST, body=upload)
        assert posted.status == 200
        assert posted.json()["body_length"] == len(upload)
        assert posted.json()["body_sha256"] == hashlib.sha256(upload).hexdigest()

        after = client.get("/echo/after", host=BOTH_HOST)
        assert after.json()["target"] == "/echo/after"


def test_a_websocket_tunnel_over_tls_carries_frames_both_ways(mixed):
    context = tlshelpers.client_context(mixed.ca)
    key = base64.b64encode(os.urandom(16)).decode()
    with tlshelpers.TlsClient(mixed.https_port, BOTH_HOST, context) as client:
        response = client.get("/ws", host=BOTH_HOST, headers=[
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")])
        assert response.status == 101
        assert response.header("Sec-WebSocket-Accept") == websocket_accept(key)
        assert read_ws_frame(client.reader.read_exact) == (0x1, b"hello from alpha")

        # A frame larger than a socket buffer: the tunnel reads the client's TLS records while
        # it writes the echo back, both on the one TLS connection.
        large = os.urandom(600000)
        client.send(encode_ws_frame(0x2, large, mask=os.urandom(4)))
        assert read_ws_frame(client.reader.read_exact) == (0x2, large)

        for i in range(20):
            text = f"message {i}".encode()
            client.send(encode_ws_frame(0x1, text, mask=os.urandom(4)))
            assert read_ws_frame(client.reader.read_exact) == (0x1, text)

        client.send(encode_ws_frame(0x8, b"\x03\xe8", mask=os.urandom(4)))
        assert read_ws_frame(client.reader.read_exact)[0] == 0x8
