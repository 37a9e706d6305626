"""Requests whose framing two HTTP parsers could read differently are refused outright.

RFC 9112 sections 6.1, 6.3 and 5.2 make each of these either invalid or ambiguous; a proxy
that forwarded one could let the upstream see a different request boundary than the proxy did.
Each must get 400, the connection must then close, and the backend must receive nothing.
"""

import pytest

import rawhttp
from harness import assert_never_forwarded

CASES = {
    "content-length and transfer-encoding":
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "transfer-encoding and content-length":
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "two equal content-lengths":
        b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "two different content-lengths":
        b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "a content-length list":
        b"Content-Length: 5, 5\r\n\r\nhello",
    "transfer-encoding gzip then chunked":
        b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "transfer-encoding chunked then gzip":
        b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "transfer-encoding xchunked":
        b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "transfer-encoding chunked on two lines":
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "transfer-encoding identity":
        b"Transfer-Encoding: identity\r\n\r\n",
    "an obs-fold continued with a space":
        b"X-Folded: first\r\n second\r\n\r\n",
    "an obs-fold continued with a tab":
        b"X-Folded: first\r\n\tsecond\r\n\r\n",
    "a bare carriage return in a header":
        b"X-Test: a\rb\r\n\r\n",
    "a bare line feed ending a header line":
        b"X-Test: a\nX-Other: b\r\n\r\n",
    "a nul byte in a header value":
        b"X-Test: a\x00b\r\n\r\n",
    "a space before the colon":
        b"Content-Length : 5\r\n\r\nhello",
    "a plus-signed content-length":
        b"Content-Length: +5\r\n\r\nhello",
    "a hexadecimal content-length":
        b"Content-Length: 0x5\r\n\r\nhello",
    "a negative content-length":
        b"Content-Length: -1\r\n\r\nhello",
}


@pytest.mark.parametrize("headers_and_body", list(CASES.values()), ids=list(CASES))
def test_an_ambiguous_request_gets_400_closes_and_is_never_forwarded(
        gatehouse, backend, headers_and_body):
    request = b"POST /echo HTTP/1.1\r\nHost: app.test\r\n" + headers_and_body
    response, closed = rawhttp.send_raw(gatehouse.http_port, request)
    assert response is not None, "the connection closed without a response"
    assert response.status == 400
    assert closed, "the connection stayed open after the 400"
    assert_never_forwarded(backend)


def test_chunked_transfer_coding_on_an_http10_request_gets_400_and_is_never_forwarded(
        gatehouse, backend):
    request = (b"POST /echo HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"0\r\n\r\n")
    response, closed = rawhttp.send_raw(gatehouse.http_port, request)
    assert response is not None and response.status == 400
    assert closed
    assert_never_forwarded(backend)


def test_a_well_formed_request_on_the_same_route_is_forwarded(gatehouse, backend):
    # The control for the cases above: the same bytes minus the ambiguity do reach the backend.
    response, _ = rawhttp.send_raw(
        gatehouse.http_port, b"POST /echo HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n"
                             b"Connection: close\r\n\r\nhello")
    assert response.status == 200
    assert backend.requests[0].body_length == 5
