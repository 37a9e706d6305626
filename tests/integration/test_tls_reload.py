"""SIGHUP with TLS: a route added by a reload gets its certificate within seconds, and
connections already open keep being served."""

import ssl

import tlshelpers
from harness import route

OLD_HOST = "app.example.test"
NEW_HOST = "added.example.test"

# The brief: a new name has a certificate within 3 s of the reload.
NEW_CERTIFICATE_S = 3.0


def test_a_reload_adding_a_tls_route_serves_its_certificate_and_keeps_open_connections(
        start_gatehouse, backend):
    gatehouse = start_gatehouse([route(OLD_HOST, backend)], https=True)
    ca = tlshelpers.trust_pem(gatehouse)
    port = gatehouse.https_port
    error = tlshelpers.handshake_error(port, NEW_HOST)
    assert error is not None and error.reason == "TLSV1_UNRECOGNIZED_NAME", repr(error)

    with tlshelpers.TlsClient(port, OLD_HOST, tlshelpers.client_context(ca)) as kept:
        assert kept.get("/echo/before", host=OLD_HOST).status == 200

        config = dict(gatehouse.config)
        config["routes"] = config["routes"] + [route(NEW_HOST, backend)]
        gatehouse.reload(config)

        def new_handshake():
            try:
                return tlshelpers.handshake(port, NEW_HOST, ca)
            except ssl.SSLError:
                return None

        added = tlshelpers.wait_until(new_handshake, NEW_CERTIFICATE_S)
        assert added is not None, f"no certificate for {NEW_HOST} {NEW_CERTIFICATE_S}s after SIGHUP"
        assert added.dns_names == [NEW_HOST]

        # The connection opened before the reload is still the same one, and still served.
        after = kept.get("/echo/after", host=OLD_HOST)
        assert after.status == 200 and after.json()["target"] == "/echo/after"
        assert not kept.is_closed_by_peer(0.2)

    response = tlshelpers.https_request(port, NEW_HOST, "GET", "/echo/new", ca)
    assert response.status == 200 and response.json()["target"] == "/echo/new"
    assert tlshelpers.certificate_status(gatehouse, NEW_HOST)["serial"] == added.serial
    assert tlshelpers.certificate_status(gatehouse, OLD_HOST)["last_error"] is None
