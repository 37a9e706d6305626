"""The HTTPS listener: certificates chosen by SNI, unknown names, protocol versions and ciphers,
and certificates from the internal CA that real clients (openssl, curl) accept."""

import json
import ssl
import subprocess

import tlshelpers
from harness import route

EXACT_HOST = "app.example.test"
WILDCARD_HOST = "*.example.test"
FAILURES_METRIC = "gatehouse_tls_handshake_failures_total"


def sni_routes(backend):
    return [route(EXACT_HOST, backend), route(WILDCARD_HOST, backend)]


def assert_unrecognized_name(error, name):
    assert error is not None, f"the handshake naming {name!r} succeeded; it must be refused"
    assert error.reason == "TLSV1_UNRECOGNIZED_NAME", \
        f"the handshake naming {name!r} failed, but not with an unrecognized_name alert: {error!r}"


def test_sni_picks_the_exact_certificate_then_the_one_label_wildcard(start_gatehouse, backend):
    gatehouse = start_gatehouse(sni_routes(backend), https=True)
    ca = tlshelpers.trust_pem(gatehouse)
    port = gatehouse.https_port

    # Python checks the chain against the internal CA and the name against the SNI host.
    exact = tlshelpers.handshake(port, EXACT_HOST, ca)
    assert exact.dns_names == [EXACT_HOST]
    assert exact.common_name == EXACT_HOST

    covered = tlshelpers.handshake(port, "a.example.test", ca)
    assert covered.dns_names == [WILDCARD_HOST]
    assert covered.serial != exact.serial

    # Names are case-insensitive (RFC 4343), and the wildcard covers one label only.
    assert tlshelpers.handshake(port, "APP.Example.TEST", ca).serial == exact.serial
    for name in ("a.b.example.test", "example.test"):
        assert_unrecognized_name(tlshelpers.handshake_error(port, name), name)


def test_unknown_or_missing_sni_is_refused_with_unrecognized_name_by_default(
        start_gatehouse, backend):
    gatehouse = start_gatehouse(sni_routes(backend), https=True)
    port = gatehouse.https_port
    before = tlshelpers.metric(gatehouse, FAILURES_METRIC)

    assert_unrecognized_name(tlshelpers.handshake_error(port, "unknown.test"), "unknown.test")
    assert_unrecognized_name(tlshelpers.handshake_error(port, None), "no SNI at all")

    # A known name still works on the same listener, so the refusals were about the names.
    assert tlshelpers.handshake_error(port, EXACT_HOST) is None
    counted = tlshelpers.wait_until(
        lambda: tlshelpers.metric(gatehouse, FAILURES_METRIC) >= before + 2, 2.0)
    assert counted, f"{FAILURES_METRIC} did not count the two refusals"


def test_unknown_and_missing_sni_get_the_default_certificate_when_configured(
        start_gatehouse, backend):
    gatehouse = start_gatehouse(sni_routes(backend), https=True,
                                tls={"unknown_sni": "default", "default_certificate": EXACT_HOST})
    ca = tlshelpers.trust_pem(gatehouse)
    port = gatehouse.https_port
    app_serial = tlshelpers.handshake(port, EXACT_HOST, ca).serial

    # The chain is verified; the name cannot be, since the client asked for another one.
    unknown = tlshelpers.handshake(port, "unknown.test", ca, check_hostname=False)
    assert unknown.dns_names == [EXACT_HOST]
    assert unknown.serial == app_serial

    nameless = tlshelpers.handshake(port, None, ca)
    assert nameless.dns_names == [EXACT_HOST]
    assert nameless.serial == app_serial

    # Names a route covers keep their own certificate.
    assert tlshelpers.handshake(port, "b.example.test", ca).dns_names == [WILDCARD_HOST]


def test_tls_1_0_and_1_1_are_refused_by_the_server(start_gatehouse, backend):
    gatehouse = start_gatehouse(sni_routes(backend), https=True)
    for flag in ("-tls1", "-tls1_1"):
        # SECLEVEL=0 lets this client offer the old protocol at all; the refusal we look for
        # is the server's protocol_version alert (70), which a client-side refusal never shows.
        output = tlshelpers.s_client(gatehouse.https_port, "-servername", EXACT_HOST, flag,
                                     "-cipher", "DEFAULT@SECLEVEL=0")
        assert "alert protocol version" in output and "SSL alert number 70" in output, \
            f"s_client {flag} was not refused with a protocol_version alert:\n{output}"
        assert "Cipher is (NONE)" in output, f"s_client {flag} negotiated a cipher:\n{output}"


def test_tls_1_2_accepts_only_ecdhe_with_aead_ciphers(start_gatehouse, backend, tmp_path):
    # An RSA certificate as well as the internal CA's ECDSA ones: RSA key exchange and the
    # ECDHE-RSA suites can only be negotiated with an RSA certificate, so without one the
    # refusals below would prove nothing about the server's cipher list.
    user_ca = tlshelpers.UserCA(tmp_path / "pki")
    rsa = user_ca.issue("rsa.example.test", "rsa", key_type="rsa")
    rsa_tls = {"cert": str(rsa.certificate), "key": str(rsa.key)}
    routes = sni_routes(backend) + [dict(route("rsa.example.test", backend), tls=rsa_tls)]
    gatehouse = start_gatehouse(routes, https=True)
    port = gatehouse.https_port

    refused = [("rsa.example.test", "AES128-SHA"),            # RSA key exchange, CBC
               ("rsa.example.test", "AES128-GCM-SHA256"),     # RSA key exchange, AEAD
               ("rsa.example.test", "DHE-RSA-AES128-GCM-SHA256"),  # finite-field DHE
               ("rsa.example.test", "ECDHE-RSA-AES128-SHA"),  # ECDHE, CBC
               (EXACT_HOST, "ECDHE-ECDSA-AES128-SHA"),        # ECDHE, CBC
               (EXACT_HOST, "ECDHE-ECDSA-AES256-SHA384")]     # ECDHE, CBC
    for name, cipher in refused:
        output = tlshelpers.s_client(port, "-servername", name, "-tls1_2", "-cipher", cipher)
        assert "alert handshake failure" in output and "Cipher is (NONE)" in output, \
            f"TLS 1.2 with {cipher} for {name} was not refused:\n{output}"

    accepted = [(EXACT_HOST, "ECDHE-ECDSA-AES128-GCM-SHA256"),
                (EXACT_HOST, "ECDHE-ECDSA-CHACHA20-POLY1305"),
                ("rsa.example.test", "ECDHE-RSA-AES128-GCM-SHA256")]
    for name, cipher in accepted:
        output = tlshelpers.s_client(port, "-servername", name, "-tls1_2", "-cipher", cipher)
        assert f"New, TLSv1.2, Cipher is {cipher}" in output, \
            f"TLS 1.2 with {cipher} for {name} did not succeed:\n{output}"


def test_min_version_1_3_refuses_tls_1_2(start_gatehouse, backend):
    gatehouse = start_gatehouse(sni_routes(backend), https=True, tls={"min_version": "1.3"})
    port = gatehouse.https_port

    error = tlshelpers.handshake_error(port, EXACT_HOST, maximum=ssl.TLSVersion.TLSv1_2)
    assert error is not None, "a TLS 1.2 handshake succeeded although min_version is 1.3"
    assert error.reason == "TLSV1_ALERT_PROTOCOL_VERSION", f"unexpected failure: {error!r}"

    assert tlshelpers.handshake(port, EXACT_HOST).version == "TLSv1.3"


def test_internal_certificates_verify_with_openssl_and_curl_and_match_status(
        start_gatehouse, backend, tmp_path):
    gatehouse = start_gatehouse(sni_routes(backend), https=True)
    ca = tlshelpers.trust_pem(gatehouse)
    port = gatehouse.https_port
    served = {EXACT_HOST: tlshelpers.handshake(port, EXACT_HOST, ca),
              WILDCARD_HOST: tlshelpers.handshake(port, "w.example.test", ca)}
    assert served[EXACT_HOST].alpn == "http/1.1"

    # openssl's own verifier, with the purpose and name a TLS client would check.
    leaf = tmp_path / "leaf.pem"
    leaf.write_text(served[EXACT_HOST].pem)
    done = tlshelpers.run_openssl(["verify", "-CAfile", str(ca), "-purpose", "sslserver",
                                   "-verify_hostname", EXACT_HOST, str(leaf)])
    assert done.returncode == 0 and f"{leaf}: OK" in done.stdout, done.stdout

    # curl, trusting only `gatehouse trust`'s output, reaches the backend through the proxy.
    curl = subprocess.run(
        ["curl", "--silent", "--show-error", "--noproxy", "*", "--max-time", "10",
         "--cacert", str(ca), "--resolve", f"{EXACT_HOST}:{port}:127.0.0.1",
         f"https://{EXACT_HOST}:{port}/echo/curl"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    assert curl.returncode == 0, f"curl failed ({curl.returncode}): {curl.stderr}"
    echoed = json.loads(curl.stdout)
    assert echoed["backend"] == backend.name and echoed["target"] == "/echo/curl"

    # /status describes exactly the certificates being served.
    certificates = {c["host"]: c for c in tlshelpers.status(gatehouse)["certificates"]}
    assert sorted(certificates) == sorted(served)
    issuer_cn = dict(rdn[0] for rdn in served[EXACT_HOST].peercert["issuer"])["commonName"]
    for host, handshake in served.items():
        entry = certificates[host]
        assert entry["source"] == "internal"
        assert entry["serial"] == handshake.serial, f"/status shows another serial for {host}"
        assert entry["serial"] == entry["serial"].upper()
        assert entry["names"] == [host]
        assert issuer_cn in entry["issuer"]
        assert entry["last_error"] is None
        assert entry["not_before"] and entry["not_after"] and entry["renew_at"]
    assert tlshelpers.status(gatehouse)["listeners"] == {
        "http": f"127.0.0.1:{gatehouse.http_port}", "https": f"127.0.0.1:{port}"}
    # The server counts a handshake once it has read the client's Finished, a moment after the
    # client is done, so allow it that moment.
    assert tlshelpers.wait_until(
        lambda: tlshelpers.metric(gatehouse, "gatehouse_tls_handshakes_total") >= 3, 3.0)
