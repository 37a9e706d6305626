"""The internal CA renews its certificates by itself, long before they expire, and the new one
reaches new handshakes while a connection opened before keeps working.

The shortest lifetime the configuration accepts is one minute, renewed at two thirds of it (less
up to a twentieth of jitter), so this test waits about 40 seconds.
"""

import time

import rawhttp
import tlshelpers

HOST = "renew.example.test"
LIFETIME_S = 60


def test_an_internal_certificate_is_renewed_before_it_expires_without_dropping_a_connection(
        start_gatehouse, backend):
    gatehouse = start_gatehouse(
        [{"host": HOST, "paths": [{"upstream": backend.url}]}], https=True,
        tls={"internal_certificate_lifetime": f"{LIFETIME_S}s"})
    cafile = tlshelpers.trust_pem(gatehouse)
    first = tlshelpers.handshake(gatehouse.https_port, HOST, cafile)
    listed = tlshelpers.certificate_status(gatehouse, HOST)
    assert listed["source"] == "internal"
    assert listed["renew_at"] is not None

    # A keep-alive connection opened on the first certificate.
    kept = tlshelpers.TlsClient(gatehouse.https_port, HOST, tlshelpers.client_context(cafile))
    with kept:
        assert kept.request("GET", "/before", HOST).status == 200

        # Renewal is due at 40 s; allow until the old certificate would expire.
        elapsed, seen = tlshelpers.wait_for_serial_change(gatehouse.https_port, HOST, cafile,
                                                          first.serial, timeout=LIFETIME_S - 5)
        assert elapsed is not None, f"no renewal within {LIFETIME_S - 5} s; serials seen: {seen}"
        renewed = tlshelpers.handshake(gatehouse.https_port, HOST, cafile)
        assert renewed.serial != first.serial
        assert renewed.dns_names == [HOST]

        # The connection made before the renewal carries on with the old certificate.
        assert kept.request("GET", "/after", HOST).status == 200

    after = tlshelpers.certificate_status(gatehouse, HOST)
    assert after["serial"] != listed["serial"]
    assert after["last_error"] is None
    assert after["not_after"] > listed["not_after"]
    assert tlshelpers.metric(gatehouse, "gatehouse_certificate_updates_total") >= 2
