"""Forwarded headers and hop-by-hop header removal (RFC 9110 section 7.6.1)."""

import pytest

import rawhttp
from harness import route


def forwarded_values(response, name):
    """Values of header `name` as the backend received it, from an /echo response."""
    assert response.status == 200, response
    return [value for key, value in response.json()["headers"] if key.lower() == name.lower()]


def test_x_forwarded_for_is_set_to_the_client_address(gatehouse):
    response = rawhttp.get(gatehouse.http_port, "/echo")
    assert forwarded_values(response, "X-Forwarded-For") == ["127.0.0.1"]


def test_x_forwarded_for_from_an_untrusted_peer_is_replaced(gatehouse):
    response = rawhttp.get(gatehouse.http_port, "/echo",
                           headers=[("X-Forwarded-For", "203.0.113.9")])
    assert forwarded_values(response, "X-Forwarded-For") == ["127.0.0.1"]


def test_x_forwarded_for_from_a_trusted_peer_is_extended(start_gatehouse, backend):
    gatehouse = start_gatehouse([route("app.test", backend)], trusted_proxies=["127.0.0.0/8"])
    response = rawhttp.get(gatehouse.http_port, "/echo",
                           headers=[("X-Forwarded-For", "203.0.113.9")])
    assert forwarded_values(response, "X-Forwarded-For") == ["203.0.113.9, 127.0.0.1"]


def test_x_forwarded_proto_is_http(gatehouse):
    response = rawhttp.get(gatehouse.http_port, "/echo", headers=[("X-Forwarded-Proto", "https")])
    assert forwarded_values(response, "X-Forwarded-Proto") == ["http"]


def test_x_forwarded_host_is_the_host_header_as_received(gatehouse):
    response = rawhttp.get(gatehouse.http_port, "/echo", host="App.Test:8080")
    assert forwarded_values(response, "X-Forwarded-Host") == ["App.Test:8080"]


def test_the_host_header_is_forwarded_unchanged(gatehouse):
    response = rawhttp.get(gatehouse.http_port, "/echo", host="App.Test:8080")
    assert forwarded_values(response, "Host") == ["App.Test:8080"]


def test_end_to_end_request_headers_are_forwarded(gatehouse):
    response = rawhttp.get(gatehouse.http_port, "/echo",
                           headers=[("X-Custom", "one"), ("Accept", "text/plain")])
    assert forwarded_values(response, "X-Custom") == ["one"]
    assert forwarded_values(response, "Accept") == ["text/plain"]


@pytest.mark.parametrize("name,value", [
    ("Keep-Alive", "timeout=5"),
    ("Proxy-Connection", "keep-alive"),
    ("TE", "trailers"),
    ("Trailer", "X-Checksum"),
    ("Upgrade", "h2c"),
])
def test_a_hop_by_hop_request_header_is_not_forwarded(gatehouse, name, value):
    response = rawhttp.get(gatehouse.http_port, "/echo", headers=[(name, value)])
    assert forwarded_values(response, name) == []


def test_the_client_connection_header_is_not_forwarded(gatehouse):
    response = rawhttp.get(gatehouse.http_port, "/echo",
                           headers=[("Connection", "keep-alive, X-Marker")])
    values = forwarded_values(response, "Connection")
    assert all("x-marker" not in value.lower() for value in values)


def test_a_header_named_in_connection_is_not_forwarded(gatehouse):
    response = rawhttp.get(gatehouse.http_port, "/echo",
                           headers=[("Connection", "close, X-Secret"), ("X-Secret", "s3cret"),
                                    ("X-Public", "yes")])
    assert forwarded_values(response, "X-Secret") == []
    assert forwarded_values(response, "X-Public") == ["yes"]


def test_hop_by_hop_response_headers_are_removed(gatehouse):
    response = rawhttp.get(gatehouse.http_port, "/hop-headers")
    assert response.status == 200
    for name in ("Proxy-Connection", "TE", "Trailer", "Upgrade", "X-Private"):
        assert not response.has_header(name), f"{name} leaked: {response.headers}"
    # gatehouse may send Connection and Keep-Alive of its own, but not the upstream's.
    assert all("x-private" not in v.lower() for v in response.header_values("Connection"))
    assert "timeout=5, max=100" not in response.header_values("Keep-Alive")
    assert response.header("X-End-To-End") == "kept"
