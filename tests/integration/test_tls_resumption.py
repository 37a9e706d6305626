"""Session resumption: tickets on by default, surviving a new certificate table, and off when
configured (as the benchmarks need, to measure full handshakes)."""

import socket
import ssl
import time

import harness
import tlshelpers

HOST = "resume.example.test"
OTHER = "other.example.test"


def first_and_resumed(port, cafile, maximum):
    """Whether a second connection offering the first one's session resumed it."""
    context = tlshelpers.client_context(cafile, maximum=maximum)
    with tlshelpers.tls_connect(port, HOST, context) as first:
        # TLS 1.3 tickets arrive after the handshake: read a response so they are in.
        first.sendall(f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
                      .encode())
        while first.recv(4096):
            pass
        session = first.session
    raw = socket.create_connection(("127.0.0.1", port), timeout=tlshelpers.TLS_TIMEOUT_S)
    with context.wrap_socket(raw, server_hostname=HOST, session=session) as second:
        return second.session_reused


def routes(backend, *hosts):
    return [{"host": host, "paths": [{"upstream": backend.url}]} for host in hosts]


def test_sessions_resume_from_tickets_on_tls_1_2_and_1_3(start_gatehouse, backend):
    gatehouse = start_gatehouse(routes(backend, HOST), https=True)
    cafile = tlshelpers.trust_pem(gatehouse)
    assert first_and_resumed(gatehouse.https_port, cafile, ssl.TLSVersion.TLSv1_2)
    assert first_and_resumed(gatehouse.https_port, cafile, ssl.TLSVersion.TLSv1_3)
    # The client is done before the server has read its Finished, so the server's count may
    # lag the client by a moment.
    counted = tlshelpers.wait_until(
        lambda: tlshelpers.metric(gatehouse, "gatehouse_tls_resumptions_total") >= 2, timeout=3)
    assert counted, "gatehouse counted fewer resumptions than the client saw"


def test_a_new_certificate_table_keeps_the_ticket_keys(start_gatehouse, backend):
    gatehouse = start_gatehouse(routes(backend, HOST), https=True)
    cafile = tlshelpers.trust_pem(gatehouse)
    context = tlshelpers.client_context(cafile, maximum=ssl.TLSVersion.TLSv1_2)
    with tlshelpers.tls_connect(gatehouse.https_port, HOST, context) as first:
        session = first.session

    # A reload that adds a route publishes a new table with a new certificate in it.
    config = harness.merge(gatehouse.config, {"routes": routes(backend, HOST, OTHER)})
    gatehouse.reload(config)
    deadline = time.monotonic() + 5
    while not any(c["host"] == OTHER and c["serial"]
                  for c in tlshelpers.status(gatehouse)["certificates"]):
        assert time.monotonic() < deadline, "the reload did not add a certificate within 5 s"
        time.sleep(0.1)
    time.sleep(0.5)

    raw = socket.create_connection(("127.0.0.1", gatehouse.https_port),
                                   timeout=tlshelpers.TLS_TIMEOUT_S)
    with context.wrap_socket(raw, server_hostname=HOST, session=session) as again:
        assert again.session_reused, "a ticket issued before the reload no longer resumed"


def test_no_session_resumes_with_session_tickets_off(start_gatehouse, backend):
    gatehouse = start_gatehouse(routes(backend, HOST), https=True,
                                tls={"session_tickets": False})
    cafile = tlshelpers.trust_pem(gatehouse)
    assert not first_and_resumed(gatehouse.https_port, cafile, ssl.TLSVersion.TLSv1_2)
    assert not first_and_resumed(gatehouse.https_port, cafile, ssl.TLSVersion.TLSv1_3)
    assert tlshelpers.metric(gatehouse, "gatehouse_tls_resumptions_total") == 0
