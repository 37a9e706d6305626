"""ACME (RFC 8555) against Pebble, Let's Encrypt's test CA: gatehouse obtains certificates by
itself, answers HTTP-01 on its own plain-HTTP listener, keeps the account and certificates in
its store, renews, retries, and falls back to another CA.

Every Pebble validates on 127.0.0.1 at gatehouse's HTTP port (its DNS answers every name with
127.0.0.1), so the whole exchange stays on loopback.
"""

import json
import threading
import time

import pytest

import harness
import rawhttp
import tlshelpers
from pebble import free_port, pebble_factory  # noqa: F401  (pytest fixture)

ISSUE_TIMEOUT_S = 30.0


def acme_section(pebble, **extra):
    section = {"directory": pebble.directory_url, "ca_bundle": str(pebble.ca_bundle),
               "email": "ops@example.test", "retry": {"min": "1s", "max": "4s"}}
    section.update(extra)
    return section


def acme_route(host, backend, **tls):
    return {"host": host, "paths": [{"prefix": "/", "upstream": backend.url}],
            "tls": {"acme": tls} if tls else "acme"}


def start_with_acme(start_gatehouse, http_port, routes, acme, **overrides):
    return start_gatehouse(routes, https=True, acme=acme,
                           listen={"http": f"127.0.0.1:{http_port}"}, **overrides)


def wait_for_certificate(gatehouse, host, roots, timeout=ISSUE_TIMEOUT_S, not_serial=None):
    """The first handshake for `host` that verifies against `roots` (and, with `not_serial`,
    shows another serial), as a tlshelpers.Handshake; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            shown = tlshelpers.handshake(gatehouse.https_port, host, roots)
            if not_serial is None or shown.serial != not_serial:
                return shown
            last = f"still serial {shown.serial}"
        except (OSError, ValueError) as error:
            last = repr(error)
        time.sleep(0.1)
    status = [c for c in tlshelpers.status(gatehouse)["certificates"] if c["host"] == host]
    raise AssertionError(f"no certificate for {host} within {timeout}s (last: {last}); "
                         f"status: {status}\n{gatehouse.log_tail(30)}")


def wait_for_error(gatehouse, host, timeout=20.0):
    """The /status entry of `host` once it reports a failed attempt; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = tlshelpers.certificate_status(gatehouse, host)
        if status["last_error"]:
            return status
        time.sleep(0.1)
    raise AssertionError(f"no failure reported for {host} within {timeout}s: {status}")


def test_two_names_are_issued_by_pebble_and_served_over_https(start_gatehouse, pebble_factory,
                                                              backend, tmp_path):
    http_port = free_port()
    pebble = pebble_factory(http_port)
    routes = [acme_route("one.example.test", backend), acme_route("two.example.test", backend)]
    gatehouse = start_with_acme(start_gatehouse, http_port, routes, acme_section(pebble))
    roots = pebble.write_roots(tmp_path / "roots.pem")

    for host in ("one.example.test", "two.example.test"):
        shown = wait_for_certificate(gatehouse, host, roots)
        assert shown.dns_names == [host]
        with tlshelpers.TlsClient(gatehouse.https_port, host,
                                  tlshelpers.client_context(roots)) as client:
            assert client.request("GET", "/hello", host).status == 200
        listed = tlshelpers.certificate_status(gatehouse, host)
        assert listed["source"] == "acme"
        assert listed["ca"] == pebble.directory_url
        assert listed["last_error"] is None
        assert listed["renew_at"] is not None

    # A fresh key for every certificate.
    keys = set()
    for host in ("one.example.test", "two.example.test"):
        with open(gatehouse.workdir / "store" / "certificates" / f"{host}.entry") as entry:
            keys.add(json.load(entry)["private_key_pem"])
    assert len(keys) == 2

    # One account, one order per name; each challenge answered from the HTTP listener.
    assert pebble.count_new_accounts() == 1
    assert pebble.count_new_orders() == 2
    assert tlshelpers.metric(gatehouse, "gatehouse_acme_challenges_answered_total") >= 2
    assert tlshelpers.metric(gatehouse, "gatehouse_acme_orders_total") == 2


def test_a_restart_reuses_the_account_and_the_stored_certificate(start_gatehouse, pebble_factory,
                                                                 backend, tmp_path):
    http_port = free_port()
    pebble = pebble_factory(http_port)
    store = tmp_path / "shared-store"
    routes = [acme_route("keep.example.test", backend)]
    first = start_with_acme(start_gatehouse, http_port, routes, acme_section(pebble),
                            store={"file": str(store)})
    roots = pebble.write_roots(tmp_path / "roots.pem")
    issued = wait_for_certificate(first, "keep.example.test", roots)
    assert (pebble.count_new_accounts(), pebble.count_new_orders()) == (1, 1)
    first.stop()

    second = start_with_acme(start_gatehouse, http_port, routes, acme_section(pebble),
                             store={"file": str(store)})
    # Served from the store at once, before any talk with the CA.
    again = tlshelpers.handshake(second.https_port, "keep.example.test", roots)
    assert again.serial == issued.serial
    time.sleep(2)
    assert (pebble.count_new_accounts(), pebble.count_new_orders()) == (1, 1)
    assert tlshelpers.certificate_status(second, "keep.example.test")["serial"] is not None


class Load:
    """HTTPS requests in a loop on two threads (one keep-alive connection, one new connection
    per request) until stopped, counting answers and failures. Bounded in count and time."""

    def __init__(self, port, host, cafile, max_seconds=60.0, max_requests=200_000):
        self.port, self.host, self.cafile = port, host, cafile
        self.deadline = time.monotonic() + max_seconds
        self.max_requests = max_requests
        self.stop_flag = threading.Event()
        self.ok = 0
        self.failures = []
        self.serials = set()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.keep_alive, daemon=True),
                        threading.Thread(target=self.new_connections, daemon=True)]

    def running(self):
        return (not self.stop_flag.is_set() and time.monotonic() < self.deadline
                and self.ok + len(self.failures) < self.max_requests)

    def record(self, status, error=None):
        with self.lock:
            if error is None and status == 200:
                self.ok += 1
            else:
                self.failures.append(error or f"status {status}")

    def keep_alive(self):
        while self.running():
            try:
                with tlshelpers.TlsClient(self.port, self.host,
                                          tlshelpers.client_context(self.cafile)) as client:
                    for _ in range(200):
                        if not self.running():
                            return
                        self.record(client.request("GET", "/load", self.host).status)
            except (OSError, ValueError) as error:
                self.record(None, repr(error))

    def new_connections(self):
        while self.running():
            try:
                shown = tlshelpers.handshake(self.port, self.host, self.cafile)
                with self.lock:
                    self.serials.add(shown.serial)
                self.record(200)
            except (OSError, ValueError) as error:
                self.record(None, repr(error))

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for thread in self.threads:
            thread.join(timeout=10)


def test_a_short_lived_certificate_is_renewed_and_swapped_in_with_no_failed_request(
        start_gatehouse, pebble_factory, backend, tmp_path):
    http_port = free_port()
    pebble = pebble_factory(http_port, validity=30)
    host = "renew.example.test"
    # Renew once less than 80% of the 30 s remain: about every 6 s.
    gatehouse = start_with_acme(start_gatehouse, http_port, [acme_route(host, backend)],
                                acme_section(pebble, renew_when_remaining="80%"))
    roots = pebble.write_roots(tmp_path / "roots.pem")
    first = wait_for_certificate(gatehouse, host, roots)

    with Load(gatehouse.https_port, host, roots) as load:
        renewed = wait_for_certificate(gatehouse, host, roots, timeout=20, not_serial=first.serial)
        time.sleep(1)
    assert renewed.serial != first.serial
    assert load.failures == [], load.failures[:5]
    assert load.ok > 50
    assert pebble.count_new_orders() >= 2
    status = tlshelpers.certificate_status(gatehouse, host)
    assert status["last_error"] is None


def test_issuance_succeeds_when_half_of_all_nonces_are_rejected(start_gatehouse, pebble_factory,
                                                                 backend, tmp_path):
    http_port = free_port()
    pebble = pebble_factory(http_port, nonce_reject=50)
    host = "nonce.example.test"
    gatehouse = start_with_acme(start_gatehouse, http_port, [acme_route(host, backend)],
                                acme_section(pebble))
    roots = pebble.write_roots(tmp_path / "roots.pem")
    shown = wait_for_certificate(gatehouse, host, roots)
    assert shown.dns_names == [host]
    # One order for one name takes 8 POSTs when no nonce is refused (newAccount, newOrder,
    # authorization, challenge, authorization poll, finalize, order poll, certificate), and
    # Pebble logs every POST it receives, refused or not. More than 8 shows refusals were
    # retried; all 8 accepted happens once in 256 runs.
    posts = sum(1 for line in pebble.log_lines() if " POST /" in line)
    assert posts > 8, f"only {posts} POSTs: no nonce was refused"
    assert pebble.count_new_orders() >= 1


def test_a_validation_that_fails_while_the_port_is_closed_succeeds_on_a_later_retry(
        start_gatehouse, pebble_factory, backend, tmp_path):
    gatehouse_http = free_port()
    validation_port = free_port(exclude=(gatehouse_http,))
    pebble = pebble_factory(validation_port)
    host = "retry.example.test"
    gatehouse = start_with_acme(start_gatehouse, gatehouse_http, [acme_route(host, backend)],
                                acme_section(pebble))
    roots = pebble.write_roots(tmp_path / "roots.pem")

    # Nothing listens where Pebble connects: the first attempt fails and is reported.
    status = wait_for_error(gatehouse, host)
    assert status["failed_attempts"] >= 1
    assert status["next_attempt"] is not None
    assert gatehouse.wait_for_log(lambda line: "retry_in" in line and host in line, timeout=5)

    forwarder = harness.Forwarder(gatehouse_http, port=validation_port)
    forwarder.start()
    try:
        shown = wait_for_certificate(gatehouse, host, roots)
    finally:
        forwarder.close()
    assert shown.dns_names == [host]
    assert tlshelpers.certificate_status(gatehouse, host)["last_error"] is None
    assert pebble.count_new_orders() >= 2


def test_an_account_bound_to_an_external_account_is_registered(start_gatehouse, pebble_factory,
                                                               backend, tmp_path):
    from pebble import make_eab_key
    kid, key = make_eab_key("gatehouse-kid")
    http_port = free_port()
    pebble = pebble_factory(http_port, eab={kid: key})
    host = "eab.example.test"
    gatehouse = start_with_acme(start_gatehouse, http_port, [acme_route(host, backend)],
                                acme_section(pebble, eab={"kid": kid, "hmac_key": key}))
    roots = pebble.write_roots(tmp_path / "roots.pem")
    assert wait_for_certificate(gatehouse, host, roots).dns_names == [host]
    assert pebble.count_new_accounts() == 1


def test_without_the_binding_a_ca_that_requires_one_is_refused_and_reported(
        start_gatehouse, pebble_factory, backend):
    from pebble import make_eab_key
    kid, key = make_eab_key("gatehouse-kid")
    http_port = free_port()
    pebble = pebble_factory(http_port, eab={kid: key})
    host = "noeab.example.test"
    gatehouse = start_with_acme(start_gatehouse, http_port, [acme_route(host, backend)],
                                acme_section(pebble))
    status = wait_for_error(gatehouse, host)
    assert "externalAccountRequired" in status["last_error"], status
    assert pebble.count_new_accounts() == 0


def run_command(gatehouse, *args, timeout=30):
    import subprocess
    return subprocess.run([str(gatehouse.binary), *args, "--config", str(gatehouse.config_path)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, cwd=gatehouse.workdir)


def cert_status_at_pebble(pebble, serial_hex):
    """Pebble's view of a certificate: its management API's cert-status-by-serial."""
    import ssl
    import urllib.request
    context = ssl.create_default_context(cafile=str(pebble.ca_bundle))
    url = f"{pebble.management_url}/cert-status-by-serial/{serial_hex.lower()}"
    with urllib.request.urlopen(url, context=context, timeout=5) as answer:
        return json.loads(answer.read())


def test_revoke_revokes_at_the_ca_and_a_new_certificate_replaces_it(start_gatehouse,
                                                                    pebble_factory, backend,
                                                                    tmp_path):
    http_port = free_port()
    pebble = pebble_factory(http_port)
    host = "revoke.example.test"
    gatehouse = start_with_acme(start_gatehouse, http_port, [acme_route(host, backend)],
                                acme_section(pebble))
    roots = pebble.write_roots(tmp_path / "roots.pem")
    first = wait_for_certificate(gatehouse, host, roots)
    serial = tlshelpers.certificate_status(gatehouse, host)["serial"]
    assert cert_status_at_pebble(pebble, serial)["Status"] == "Valid"

    done = run_command(gatehouse, "revoke", host, "--reason", "superseded")
    assert done.returncode == 0, done.stderr
    assert "revoked" in done.stdout
    assert cert_status_at_pebble(pebble, serial)["Status"] == "Revoked"

    # The running instance sees the bundle go and orders a replacement.
    replaced = wait_for_certificate(gatehouse, host, roots, not_serial=first.serial)
    assert replaced.serial != first.serial

    refused = run_command(gatehouse, "revoke", host, "--reason", "because")
    assert refused.returncode == 2
    assert "unknown revocation reason" in refused.stderr


def test_account_rollover_replaces_the_key_and_orders_keep_working(start_gatehouse,
                                                                   pebble_factory, backend,
                                                                   tmp_path):
    http_port = free_port()
    pebble = pebble_factory(http_port)
    host = "roll.example.test"
    store = tmp_path / "store"
    routes = [acme_route(host, backend)]
    gatehouse = start_with_acme(start_gatehouse, http_port, routes, acme_section(pebble),
                                store={"file": str(store)})
    roots = pebble.write_roots(tmp_path / "roots.pem")
    wait_for_certificate(gatehouse, host, roots)
    accounts = list((store / "accounts").glob("*.entry"))
    assert len(accounts) == 1
    before = json.loads(accounts[0].read_text())

    done = run_command(gatehouse, "account", "rollover")
    assert done.returncode == 0, done.stderr
    assert "replaced the account key" in done.stdout
    after = json.loads(accounts[0].read_text())
    assert after["private_key_pem"] != before["private_key_pem"]
    assert after["account_url"] == before["account_url"]
    assert "PRIVATE KEY" not in done.stdout + done.stderr

    # A new name, added by reload, is ordered with the new key by the running instance.
    added = "rolled.example.test"
    config = harness.merge(gatehouse.config, {})
    config["routes"] = routes + [acme_route(added, backend)]
    gatehouse.reload(config)
    assert wait_for_certificate(gatehouse, added, roots).dns_names == [added]
    assert pebble.count_new_accounts() == 1


def test_a_second_ca_takes_over_when_the_first_is_down(start_gatehouse, pebble_factory, backend,
                                                       tmp_path):
    http_port = free_port()
    down = pebble_factory(http_port)
    up = pebble_factory(http_port)
    down.stop()
    bundle = tmp_path / "both-cas.pem"
    bundle.write_text(open(down.ca_bundle).read() + open(up.ca_bundle).read())
    host = "fallback.example.test"
    acme = acme_section(up, directory=[down.directory_url, up.directory_url],
                        ca_bundle=str(bundle))
    gatehouse = start_with_acme(start_gatehouse, http_port, [acme_route(host, backend)], acme)
    roots = up.write_roots(tmp_path / "roots.pem")
    shown = wait_for_certificate(gatehouse, host, roots)
    assert shown.dns_names == [host]
    status = tlshelpers.certificate_status(gatehouse, host)
    assert status["ca"] == up.directory_url
    assert up.count_new_orders() == 1


def test_unknown_challenge_tokens_go_to_the_route_and_are_never_redirected(
        start_gatehouse, pebble_factory, backend):
    http_port = free_port()
    pebble = pebble_factory(http_port)
    host = "passthrough.example.test"
    gatehouse = start_with_acme(start_gatehouse, http_port, [acme_route(host, backend)],
                                acme_section(pebble))
    response = rawhttp.get(http_port, "/.well-known/acme-challenge/not-ours", host=host)
    assert response.status == 200
    assert backend.requests, "the unknown token was not forwarded to the route's backend"
    redirected = rawhttp.get(http_port, "/elsewhere", host=host)
    assert redirected.status == 308


def test_diagnose_explains_what_works_and_what_does_not(start_gatehouse, pebble_factory, backend):
    http_port = free_port()
    pebble = pebble_factory(http_port)
    gatehouse = start_with_acme(start_gatehouse, http_port, [acme_route("localhost", backend)],
                                acme_section(pebble))
    good = run_command(gatehouse, "diagnose", "localhost", "--port", str(http_port))
    assert good.returncode == 0, good.stdout + good.stderr
    assert "returned the probe's answer" in good.stdout

    closed = free_port(exclude=(http_port,))
    bad = run_command(gatehouse, "diagnose", "localhost", "--port", str(closed))
    assert bad.returncode == 1
    assert "FAIL  HTTP" in bad.stdout
    unrouted = run_command(gatehouse, "diagnose", "nowhere.example.test", "--port", str(http_port))
    assert unrouted.returncode == 1
    assert "no route serves nowhere.example.test" in unrouted.stdout


class RateLimitingCA:
    """A CA that refuses every account with rateLimited and Retry-After, over HTTPS. Pebble
    sends neither, so this small server stands in for a CA that is rate limiting us."""

    def __init__(self, directory, retry_after_s):
        import http.server
        import ssl
        from pebble import ServerCA
        self.tls = ServerCA(directory)
        self.retry_after_s = retry_after_s
        self.requests = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body=b"", headers=()):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Replay-Nonce", "nonce-" + str(len(owner.requests)))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self):
                owner.requests.append(("GET", self.path))
                base = f"https://127.0.0.1:{owner.port}"
                directory = {"newNonce": base + "/nonce", "newAccount": base + "/account",
                             "newOrder": base + "/order", "revokeCert": base + "/revoke",
                             "keyChange": base + "/key"}
                self.reply(200, json.dumps(directory).encode(),
                           [("Content-Type", "application/json")])

            def do_HEAD(self):
                owner.requests.append(("HEAD", self.path))
                self.reply(200)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(length)
                owner.requests.append(("POST", self.path))
                problem = {"type": "urn:ietf:params:acme:error:rateLimited",
                           "detail": "too many new accounts", "status": 429}
                self.reply(429, json.dumps(problem).encode(),
                           [("Content-Type", "application/problem+json"),
                            ("Retry-After", str(owner.retry_after_s))])

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.tls.certificate), str(self.tls.key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def directory_url(self):
        return f"https://127.0.0.1:{self.port}/dir"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_a_rate_limited_ca_is_asked_again_only_after_its_retry_after(start_gatehouse, backend,
                                                                     tmp_path):
    from datetime import datetime
    host = "limited.example.test"
    with RateLimitingCA(tmp_path / "ca", retry_after_s=30) as ca:
        acme = {"directory": ca.directory_url, "ca_bundle": str(ca.tls.ca_bundle),
                "retry": {"min": "1s", "max": "4s"}}
        gatehouse = start_gatehouse([acme_route(host, backend)], https=True, acme=acme)
        status = wait_for_error(gatehouse, host)
        assert "rateLimited" in status["last_error"]
        assert "(permanent)" not in status["last_error"]
        # The backoff alone would retry after 1 s; the CA asked for 30.
        next_attempt = datetime.fromisoformat(status["next_attempt"].replace("Z", "+00:00"))
        wait_s = (next_attempt - datetime.now(next_attempt.tzinfo)).total_seconds()
        assert 25 <= wait_s <= 31, wait_s
        posts = sum(1 for method, _ in ca.requests if method == "POST")
        time.sleep(3)
        assert sum(1 for method, _ in ca.requests if method == "POST") == posts
        assert gatehouse.wait_for_log(lambda line: "retry_in=30" in line and host in line)


def test_the_local_order_cap_holds_orders_back(start_gatehouse, pebble_factory, backend,
                                              tmp_path):
    http_port = free_port()
    pebble = pebble_factory(http_port)
    routes = [acme_route("cap-one.example.test", backend),
              acme_route("cap-two.example.test", backend)]
    gatehouse = start_with_acme(start_gatehouse, http_port, routes,
                                acme_section(pebble, orders_per_minute=1))
    roots = pebble.write_roots(tmp_path / "roots.pem")
    first = wait_for_certificate(gatehouse, "cap-one.example.test", roots)
    assert first.dns_names == ["cap-one.example.test"]
    assert gatehouse.wait_for_log(lambda line: "order rate cap reached" in line, timeout=5)
    time.sleep(2)
    assert pebble.count_new_orders() == 1
    listed = tlshelpers.certificate_status(gatehouse, "cap-two.example.test")
    assert listed["serial"] in (None, "")


def test_instances_sharing_a_store_order_each_name_once_and_any_of_them_answers(
        start_gatehouse, pebble_factory, backend, tmp_path):
    """Two instances on one store: only one orders each name, both serve it, and Pebble's
    validation goes to the first instance's port even for names the second one ordered."""
    http_port = free_port()
    pebble = pebble_factory(http_port)
    store = str(tmp_path / "shared")
    names = [f"shared{i}.example.test" for i in range(4)]
    routes = [acme_route(name, backend) for name in names]
    first = start_with_acme(start_gatehouse, http_port, routes, acme_section(pebble),
                            store={"file": store})
    second = start_gatehouse(routes, https=True, acme=acme_section(pebble),
                             store={"file": store})
    roots = pebble.write_roots(tmp_path / "roots.pem")
    for name in names:
        for instance in (first, second):
            assert wait_for_certificate(instance, name, roots).dns_names == [name]
    assert pebble.count_new_orders() == len(names)
    assert pebble.count_new_accounts() == 1
    ordered_by_second = sum(1 for line in second.log_lines() if "certificate ordered" in line)
    answered_by_first = tlshelpers.metric(first, "gatehouse_acme_challenges_answered_total")
    # Whoever ordered, every challenge was answered on the first instance's port.
    assert answered_by_first >= len(names)
    for name in names:
        assert (tlshelpers.certificate_status(first, name)["serial"] ==
                tlshelpers.certificate_status(second, name)["serial"])
    print(f"second instance ordered {ordered_by_second} of {len(names)}")


def test_while_the_ca_is_down_the_old_certificate_keeps_serving(start_gatehouse, pebble_factory,
                                                                backend, tmp_path):
    http_port = free_port()
    pebble = pebble_factory(http_port, validity=40)
    host = "down.example.test"
    # Due for renewal once 90% of the 40 s remain: within about 4 s of issuance.
    gatehouse = start_with_acme(start_gatehouse, http_port, [acme_route(host, backend)],
                                acme_section(pebble, renew_when_remaining="90%"))
    roots = pebble.write_roots(tmp_path / "roots.pem")
    first = wait_for_certificate(gatehouse, host, roots)
    pebble.stop()

    status = wait_for_error(gatehouse, host, timeout=20)
    assert status["serial"] is not None
    assert status["next_attempt"] is not None
    served = tlshelpers.handshake(gatehouse.https_port, host, roots)
    assert served.serial == first.serial
    with tlshelpers.TlsClient(gatehouse.https_port, host,
                              tlshelpers.client_context(roots)) as client:
        assert client.request("GET", "/still-up", host).status == 200
    assert gatehouse.wait_for_log(
        lambda line: "keeping the current one" in line and host in line, timeout=5)


def pebble_root(pebble, index):
    """Pebble's root certificate number `index` (0 is the default chain's) as PEM."""
    import ssl
    import urllib.request
    context = ssl.create_default_context(cafile=str(pebble.ca_bundle))
    with urllib.request.urlopen(f"{pebble.management_url}/roots/{index}", context=context,
                                timeout=5) as answer:
        return answer.read().decode()


def test_the_preferred_chain_is_chosen_among_the_alternates(start_gatehouse, pebble_factory,
                                                            backend, tmp_path):
    http_port = free_port()
    pebble = pebble_factory(http_port, env={"PEBBLE_ALTERNATE_ROOTS": "1"})
    alternate = tmp_path / "alternate-root.pem"
    alternate.write_text(pebble_root(pebble, 1))
    subject = tlshelpers.check_openssl(["x509", "-in", str(alternate), "-noout", "-subject",
                                        "-nameopt", "multiline"])
    common_name = next(line.split("=", 1)[1].strip() for line in subject.splitlines()
                       if "commonName" in line)
    host = "chain.example.test"
    gatehouse = start_with_acme(start_gatehouse, http_port, [acme_route(host, backend)],
                                acme_section(pebble, preferred_chain=common_name))
    shown = wait_for_certificate(gatehouse, host, alternate)
    assert shown.dns_names == [host]
    # The default chain leads to root 0, which does not verify what is served now.
    default_root = pebble.write_roots(tmp_path / "root0.pem")
    with pytest.raises(Exception):
        tlshelpers.handshake(gatehouse.https_port, host, default_root)
