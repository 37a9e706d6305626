"""The Pebble fixture works: its directory answers over HTTPS trusted through the throwaway CA,
real ACME clients (certbot, lego) obtain certificates from it over HTTP-01 on the port the test
chose, and what it reports (issuer chain, order and account counts, options) matches what
happened.

These tests exercise the fixture, not gatehouse; the ACME tests of gatehouse build on it.
"""

import http.client
import ssl
import subprocess

import pytest

import pebble as pebble_module
import tlshelpers
from pebble import free_port, pebble_factory  # noqa: F401 (pebble_factory is a fixture)

CLIENT_TIMEOUT_S = 15.0


def run_client(argv, env, log_path, timeout=CLIENT_TIMEOUT_S):
    """Runs an ACME client to completion; returns (exit code, its output). A client that runs
    past `timeout` is killed and fails the test."""
    try:
        done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        output = (expired.output or b"").decode(errors="replace")
        pytest.fail(f"{argv[0]} did not finish within {timeout}s:\n{output[-3000:]}")
    output = done.stdout.decode(errors="replace")
    log_path.write_text(output)
    return done.returncode, output


def certbot_certonly(pebble, name, workdir, extra=()):
    """certbot's standalone HTTP-01 server on 127.0.0.1:pebble.http_port; the fullchain PEM."""
    binary = pebble_module.require_binary("certbot")
    argv = [binary, "certonly", "--standalone", "--non-interactive",
            "--http-01-address", "127.0.0.1", "--http-01-port", str(pebble.http_port),
            "--server", pebble.directory_url, "--agree-tos",
            "--register-unsafely-without-email", "-d", name,
            "--config-dir", str(workdir / "config"), "--work-dir", str(workdir / "work"),
            "--logs-dir", str(workdir / "logs"), *extra]
    env = pebble_module.clean_environment({"REQUESTS_CA_BUNDLE": str(pebble.ca_bundle)})
    code, output = run_client(argv, env, workdir.parent / f"{workdir.name}.out")
    assert code == 0, f"certbot exited {code}:\n{output[-3000:]}\n{pebble.describe()}"
    return (workdir / "config" / "live" / name / "fullchain.pem").read_text()


def lego_run(pebble, name, workdir, extra=()):
    """lego's HTTP-01 server on 127.0.0.1:pebble.http_port; the certificate file's PEM (leaf,
    then the intermediate)."""
    binary = pebble_module.require_binary("lego")
    argv = [binary, "--server", pebble.directory_url, "--email", "x@example.test",
            "--domains", name, "--http", "--http.port", f"127.0.0.1:{pebble.http_port}",
            "--accept-tos", "--path", str(workdir), *extra, "run"]
    env = pebble_module.clean_environment({"LEGO_CA_CERTIFICATES": str(pebble.ca_bundle)})
    code, output = run_client(argv, env, workdir.parent / f"{workdir.name}.out")
    assert code == 0, f"lego exited {code}:\n{output[-3000:]}\n{pebble.describe()}"
    return (workdir / "certificates" / f"{name}.crt").read_text()


def leaf_names(pem):
    """The subjectAltName DNS entries of the first certificate in `pem`."""
    text = tlshelpers.check_openssl(
        ["x509", "-noout", "-ext", "subjectAltName"],
        stdin_text=pebble_module.split_pem(pem)[0])
    return sorted(part.strip()[len("DNS:"):] for part in text.splitlines()[-1].split(",")
                  if part.strip().startswith("DNS:"))


def test_the_directory_answers_over_https_trusted_only_through_the_throwaway_ca(
        pebble_factory, tmp_path):
    pebble = pebble_factory(free_port())
    directory = pebble.directory_document()
    for field in ("newNonce", "newAccount", "newOrder"):
        assert directory[field].startswith(f"https://127.0.0.1:{pebble.port}/"), directory
    assert directory["meta"]["externalAccountRequired"] is False

    # That trust means something: a CA that did not sign Pebble's certificate is refused.
    stranger = pebble_module.ServerCA(tmp_path / "stranger")
    connection = http.client.HTTPSConnection("127.0.0.1", pebble.port, timeout=5,
                                             context=stranger.client_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        connection.request("GET", "/dir")
    connection.close()

    # The issuing chain, fetched from the management port, is a root and an intermediate.
    assert len(pebble_module.split_pem(pebble.roots_pem())) == 1
    assert len(pebble_module.split_pem(pebble.intermediates_pem())) == 1
    assert pebble.count_new_orders() == 0
    assert pebble.count_new_accounts() == 0


def test_certbot_obtains_a_certificate_that_chains_to_pebbles_root(pebble_factory, tmp_path):
    pebble = pebble_factory(free_port())
    fullchain = certbot_certonly(pebble, "a.example.test", tmp_path / "certbot")

    assert leaf_names(fullchain) == ["a.example.test"]
    ok, output = pebble.explain_chain(fullchain, served_chain_only=True)
    assert ok, output
    assert pebble.count_new_orders() == 1
    assert pebble.count_new_accounts() == 1
    assert pebble.count_issued_certificates() == 1
    # Pebble validated over HTTP-01 against the port the test gave, through the mock DNS.
    assert pebble.wait_for_log(
        lambda line: f"http://a.example.test:{pebble.http_port}/.well-known/" in line, 0)


def test_lego_obtains_a_certificate_that_chains_to_pebbles_root(pebble_factory, tmp_path):
    pebble = pebble_factory(free_port())
    certificate = lego_run(pebble, "a.example.test", tmp_path / "lego")

    assert leaf_names(certificate) == ["a.example.test"]
    assert pebble.verify_chain(certificate)
    assert pebble.verify_chain(certificate, served_chain_only=True)
    assert pebble.count_new_orders() == 1
    assert pebble.count_new_accounts() == 1


def test_a_restart_keeps_ports_and_config_but_forgets_accounts_and_issuers(
        pebble_factory, tmp_path):
    pebble = pebble_factory(free_port())
    fullchain = certbot_certonly(pebble, "before.example.test", tmp_path / "certbot")
    old_root = pebble.roots_pem()
    old_url = pebble.directory_url
    assert pebble.verify_chain(fullchain)

    pebble.restart()
    assert pebble.directory_url == old_url
    assert "newOrder" in pebble.directory_document()
    assert pebble.roots_pem() != old_root
    # The old certificate no longer chains to the new root, whatever intermediate is offered.
    ok, output = pebble.explain_chain(fullchain)
    assert not ok, output
    assert pebble.count_new_orders() == 1
    assert pebble.count_new_orders(current_run_only=True) == 0
    assert pebble.count_new_accounts(current_run_only=True) == 0

    # certbot's stored account is unknown to the new Pebble; a fresh config dir registers anew.
    again = certbot_certonly(pebble, "after.example.test", tmp_path / "certbot2")
    assert pebble.verify_chain(again)
    assert pebble.count_new_orders() == 2
    assert pebble.count_new_orders(current_run_only=True) == 1


def test_eab_and_a_short_validity_reach_pebble_and_a_client_using_them_gets_a_certificate(
        pebble_factory, tmp_path):
    kid, key = pebble_module.make_eab_key()
    pebble = pebble_factory(free_port(), validity=300, eab={kid: key})
    assert pebble.directory_document()["meta"]["externalAccountRequired"] is True
    assert pebble.wait_for_log(lambda line: "validity period of 300 seconds" in line, 0)

    # The key as the fixture encodes it is the key Pebble checks the binding's MAC with.
    certificate = lego_run(pebble, "eab.example.test", tmp_path / "lego",
                           extra=["--eab", "--kid", kid, "--hmac", key])
    assert pebble.wait_for_log(lambda line: f'Binding with CA using kid "{kid}"' in line, 0)
    assert pebble.verify_chain(certificate)
    not_before, not_after = pebble_module.certificate_dates(certificate)
    assert 299 <= not_after - not_before <= 300
    assert pebble.count_new_orders() == 1
    assert pebble.count_new_accounts() == 1


def test_nonce_rejection_and_extra_environment_reach_pebble(pebble_factory):
    # Only Pebble's own account of its settings: a client run under 50% rejected nonces spends
    # an unbounded time in backoff (lego took from 2 to over 15 s here).
    pebble = pebble_factory(free_port(), nonce_reject=50, env={"PEBBLE_AUTHZREUSE": "100"})
    assert pebble.wait_for_log(lambda line: "reject 50% of good nonces" in line, 0)
    assert pebble.wait_for_log(
        lambda line: "authz reuse for each identifier 100% of the time" in line, 0)
    assert pebble.environment()["PEBBLE_VA_NOSLEEP"] == "1"

    default = pebble_factory(free_port())
    assert default.wait_for_log(lambda line: "reject 0% of good nonces" in line, 0)
    assert default.wait_for_log(lambda line: "authz reuse for each identifier 0% of" in line, 0)
    assert default.wait_for_log(lambda line: "Disabling random VA sleeps" in line, 0)
