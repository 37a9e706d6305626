"""Pebble, Let's Encrypt's ACME test server, as a throwaway CA for the integration tests.

A PebbleCA owns three things, all in its own folder and all on 127.0.0.1:
- a throwaway CA made with the openssl command line, and a certificate it signs for `localhost`
  and 127.0.0.1 that Pebble serves its HTTPS listeners with (Debian's package ships none).
  Clients trust `ca_bundle` to talk to Pebble; it has nothing to do with the certificates Pebble
  issues, which chain to a root Pebble generates afresh at every start (`roots_pem()`);
- pebble-challtestsrv as Pebble's DNS server, answering every A query with 127.0.0.1 and every
  AAAA query with nothing, so HTTP-01 and TLS-ALPN-01 validations dial 127.0.0.1 on the ports
  the caller chose (Pebble asks AAAA first and dials only the first address it gets);
- pebble itself, started with -strict, no validation sleeps, no authorization reuse and, unless
  asked otherwise, no rejected nonces.

Tests get started instances from the `pebble_factory` fixture, which stops every process at
teardown and prints the logs of the failing test's instances. Use it with
`from pebble import pebble_factory` in the test module (pytest picks fixtures up from the
module's namespace). Every wait is bounded; nothing listens beyond loopback.
"""

import base64
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import harness
import tlshelpers

READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
HTTP_TIMEOUT_S = 5.0

# What pebble 2.4 logs, once per event (checked against its output; see count_new_orders).
# An order is logged when it is stored, after its JWS, nonce and identifiers passed; a request
# rejected with badNonce and retried logs "POST /order-plz" twice but this line once.
ORDER_ADDED = re.compile(r'Added order "[^"]+" to the db')
ACCOUNT_ADDED = re.compile(r"There are now \d+ accounts in memory")
CERTIFICATE_ISSUED = re.compile(r"Issued certificate serial [0-9a-f]+ for order \S+")
RESTART_MARKER = "==== gatehouse tests: pebble started ===="

# Environment variables of the outer shell that would change Pebble's behaviour behind a test's
# back are dropped; so are proxy settings, since every connection stays on loopback.
_DROPPED_ENV_PREFIXES = ("PEBBLE_",)
_DROPPED_ENV = {"http_proxy", "https_proxy", "all_proxy", "no_proxy",
                "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}


def free_port(exclude=()):
    """A TCP port on 127.0.0.1 that nothing listens on right now and that is not in `exclude`."""
    while True:
        port = harness.free_port()
        if port not in exclude:
            return port


def require_binary(name):
    """The absolute path of `name`; skips the test when it is not installed."""
    path = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/bin:/usr/sbin")
    if path is None:
        pytest.skip(f"{name} is not installed; scripts/install-deps.sh installs it")
    return path


def clean_environment(extra=None):
    """os.environ without PEBBLE_* and proxy variables, plus `extra`."""
    env = {key: value for key, value in os.environ.items()
           if key not in _DROPPED_ENV and not key.startswith(_DROPPED_ENV_PREFIXES)}
    env.update(extra or {})
    return env


def make_eab_key(kid="kid-1"):
    """A fresh External Account Binding (RFC 8555 section 7.3.4) entry for Pebble's config:
    (kid, HMAC key as base64url without padding), the form Pebble, lego and gatehouse take."""
    return kid, base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def split_pem(text):
    """The PEM certificates in `text` (str or bytes), in order, each ending with a newline."""
    if isinstance(text, bytes):
        text = text.decode()
    return re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", text,
                      flags=re.DOTALL)


def _pem_text(leaf_pem_or_chain):
    """PEM text from a str, bytes, or the path (Path) of a PEM file."""
    if isinstance(leaf_pem_or_chain, os.PathLike):
        return Path(leaf_pem_or_chain).read_text()
    if isinstance(leaf_pem_or_chain, bytes):
        return leaf_pem_or_chain.decode()
    return leaf_pem_or_chain


def certificate_dates(pem):
    """(notBefore, notAfter) of the first certificate in `pem`, as Unix times."""
    first = split_pem(_pem_text(pem))
    assert first, "no PEM certificate given"
    out = tlshelpers.check_openssl(["x509", "-noout", "-startdate", "-enddate"],
                                   stdin_text=first[0])
    dates = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return (ssl.cert_time_to_seconds(dates["notBefore"]),
            ssl.cert_time_to_seconds(dates["notAfter"]))


def _stop_process(proc, timeout=STOP_TIMEOUT_S):
    """SIGTERM, a bounded wait, then SIGKILL. Both pebble binaries are single processes."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def _tail(path, lines):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


# ---- the throwaway CA for Pebble's own HTTPS ------------------------------------------------


class ServerCA:
    """A CA and a certificate it signs for `localhost` and IP 127.0.0.1, made with openssl.

    `ca_bundle` is the CA certificate: what an ACME client (gatehouse's `acme.ca_bundle`,
    REQUESTS_CA_BUNDLE for certbot, LEGO_CA_CERTIFICATES for lego) trusts to reach Pebble.
    """

    def __init__(self, directory):
        self.directory = Path(directory).absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca_bundle = self.directory / "pebble-https-ca.pem"
        self.ca_key = self.directory / "pebble-https-ca.key"
        self.certificate = self.directory / "pebble-https.pem"
        self.key = self.directory / "pebble-https.key"
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        tlshelpers.check_openssl(["req", "-x509", *ec, "-keyout", str(self.ca_key),
                                  "-out", str(self.ca_bundle),
                                  "-subj", "/CN=gatehouse tests pebble HTTPS CA", "-days", "2",
                                  "-addext", "basicConstraints=critical,CA:TRUE",
                                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        tlshelpers.check_openssl(["req", *ec, "-keyout", str(self.key),
                                  "-out", str(self.certificate), "-subj", "/CN=localhost",
                                  "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                                  "-addext", "basicConstraints=critical,CA:FALSE",
                                  "-addext", "extendedKeyUsage=serverAuth",
                                  "-CA", str(self.ca_bundle), "-CAkey", str(self.ca_key),
                                  "-days", "2"])

    def client_context(self):
        """A client context that trusts only this CA and checks the name (127.0.0.1)."""
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


# ---- pebble-challtestsrv as the DNS server --------------------------------------------------


def _dns_query(name, qtype=1, query_id=0x4741):
    header = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.strip(".").split("."))
    return header + labels + b"\x00" + struct.pack("!HH", qtype, 1)


def _skip_name(message, offset):
    """The offset just past the (possibly compressed) domain name at `offset`."""
    while True:
        length = message[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += 1 + length
        if length == 0:
            return offset


def dns_a_answer(port, name, timeout=1.0):
    """The first A record that 127.0.0.1:port (UDP) answers for `name`, as text, or None."""
    query = _dns_query(name)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query, ("127.0.0.1", port))
        reply, _ = sock.recvfrom(4096)
    query_id, flags, questions, answers = struct.unpack("!HHHH", reply[:8])
    if query_id != 0x4741 or flags & 0x000F or answers == 0:
        return None
    offset = 12
    for _ in range(questions):
        offset = _skip_name(reply, offset) + 4
    offset = _skip_name(reply, offset)
    rtype, _, _, length = struct.unpack("!HHIH", reply[offset:offset + 10])
    if rtype != 1 or length != 4:
        return None
    return socket.inet_ntoa(reply[offset + 10:offset + 14])


class ChallTestSrv:
    """pebble-challtestsrv with only its DNS server and its management API, on loopback.

    Every A query is answered with 127.0.0.1, AAAA queries with nothing. TXT records for DNS-01
    are set through the management API (set_txt / clear_txt).
    """

    def __init__(self, directory, dns_port=None, management_port=None, exclude_ports=()):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.dns_port = dns_port or free_port(exclude_ports)
        self.management_port = management_port or free_port({*exclude_ports, self.dns_port})
        self.log_path = self.directory / "challtestsrv.log"
        self.proc = None
        self._log = None

    def start(self):
        binary = require_binary("pebble-challtestsrv")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [binary, "-dns01", f"127.0.0.1:{self.dns_port}",
             "-management", f"127.0.0.1:{self.management_port}",
             "-http01", "", "-https01", "", "-tlsalpn01", "",
             "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            cwd=self.directory, env=clean_environment())
        self._wait_ready()
        return self

    def _wait_ready(self):
        # Ready means a real query gets a real answer, not merely that the port is bound.
        deadline = time.monotonic() + READY_TIMEOUT_S
        last_error = None
        while time.monotonic() < deadline:
            code = self.proc.poll()
            assert code is None, f"pebble-challtestsrv exited with {code}:\n{self.log_tail()}"
            try:
                answer = dns_a_answer(self.dns_port, "ready.example.test", timeout=0.2)
                socket.create_connection(("127.0.0.1", self.management_port), timeout=0.2).close()
                if answer == "127.0.0.1":
                    return
                last_error = f"A ready.example.test answered {answer}"
            except OSError as error:
                last_error = repr(error)
            time.sleep(0.02)
        self.stop()
        raise AssertionError(f"pebble-challtestsrv did not answer DNS within {READY_TIMEOUT_S}s "
                             f"(last: {last_error})\n{self.log_tail()}")

    def _post(self, path, body):
        connection = http.client.HTTPConnection("127.0.0.1", self.management_port,
                                                timeout=HTTP_TIMEOUT_S)
        try:
            connection.request("POST", path, json.dumps(body),
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            assert response.status == 200, f"challtestsrv {path} answered {response.status}"
        finally:
            connection.close()

    def set_txt(self, name, value):
        """Serves TXT `value` for `name` (e.g. "_acme-challenge.a.example.test")."""
        self._post("/set-txt", {"host": name.rstrip(".") + ".", "value": value})

    def clear_txt(self, name):
        self._post("/clear-txt", {"host": name.rstrip(".") + "."})

    def stop(self):
        _stop_process(self.proc)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines=40):
        return _tail(self.log_path, lines)


# ---- pebble ---------------------------------------------------------------------------------


class PebbleCA:
    """One Pebble ACME server with its own DNS server and HTTPS certificate, on loopback.

    http_port / tls_port are the ports Pebble connects to on 127.0.0.1 for HTTP-01 and
    TLS-ALPN-01 (it listens on neither): gatehouse's plain-HTTP and HTTPS listeners. validity is
    the issued certificates' lifetime in seconds (None: Pebble's five years). nonce_reject is
    the percentage of good nonces rejected with badNonce. eab is {kid: base64url key}; with it,
    accounts need External Account Binding. env adds or overrides Pebble environment variables
    (e.g. {"PEBBLE_CHAIN_LENGTH": "3"}). dns_server "127.0.0.1:P" uses that DNS server (e.g.
    BIND) instead of starting pebble-challtestsrv.

    The object is not started by the constructor; start() may be called again after stop():
    same ports, same config, but Pebble keeps nothing (accounts, orders, issuing root and
    intermediate are all new). Not thread-safe; meant for one test at a time.
    """

    def __init__(self, directory, http_port, tls_port=None, validity=None, nonce_reject=0,
                 eab=None, env=None, authz_reuse=0, dns_server=None):
        self.directory = Path(directory).absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.http_port = int(http_port)
        taken = {self.http_port}
        self.tls_port = int(tls_port) if tls_port else free_port(taken)
        taken.add(self.tls_port)
        self.port = free_port(taken)
        taken.add(self.port)
        self.management_port = free_port(taken)
        taken.add(self.management_port)
        self.validity = validity
        self.nonce_reject = nonce_reject
        self.eab = dict(eab or {})
        self.extra_env = dict(env or {})
        self.authz_reuse = authz_reuse
        self.server_ca = ServerCA(self.directory / "https")
        self.dns = None if dns_server else ChallTestSrv(self.directory / "dns",
                                                        exclude_ports=taken)
        self.dns_server = dns_server or f"127.0.0.1:{self.dns.dns_port}"
        self.config_path = self.directory / "pebble-config.json"
        self.log_path = self.directory / "pebble.log"
        self.proc = None
        self._log = None
        self._issuers = None
        self._write_config()

    # -- addresses

    @property
    def ca_bundle(self):
        """The CA file that verifies Pebble's HTTPS listeners (not the issued certificates)."""
        return self.server_ca.ca_bundle

    @property
    def directory_url(self):
        return f"https://127.0.0.1:{self.port}/dir"

    @property
    def management_url(self):
        return f"https://127.0.0.1:{self.management_port}"

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- lifecycle

    def _write_config(self):
        settings = {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(self.server_ca.certificate),
            "privateKey": str(self.server_ca.key),
            "httpPort": self.http_port,
            "tlsPort": self.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": bool(self.eab),
        }
        if self.validity is not None:
            settings["certificateValidityPeriod"] = int(self.validity)
        if self.eab:
            settings["externalAccountMACKeys"] = self.eab
        self.config_path.write_text(json.dumps({"pebble": settings}, indent=2) + "\n")

    def environment(self):
        """The environment Pebble runs with."""
        return clean_environment({
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": str(self.nonce_reject),
            "PEBBLE_AUTHZREUSE": str(self.authz_reuse),
            **self.extra_env,
        })

    def start(self):
        """Starts the DNS server (once) and Pebble; returns when /dir and /roots/0 answer.

        Fails the test, with the log tail, if Pebble exits or is not ready within
        READY_TIMEOUT_S.
        """
        assert not self.running, "pebble is already running"
        binary = require_binary("pebble")
        if self.dns is not None and (self.dns.proc is None or self.dns.proc.poll() is not None):
            self.dns.start()
        self._issuers = None
        self._log = open(self.log_path, "ab")
        self._log.write(f"{RESTART_MARKER}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            [binary, "-strict", "-dnsserver", self.dns_server, "-config", str(self.config_path)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            cwd=self.directory, env=self.environment())
        self._wait_ready()
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_S
        last_error = None
        while time.monotonic() < deadline:
            code = self.proc.poll()
            assert code is None, f"pebble exited with {code} before it was ready\n{self.log_tail()}"
            try:
                if "newOrder" in self.directory_document(timeout=1.0):
                    self.roots_pem()
                    return
                last_error = "the directory has no newOrder"
            except (OSError, http.client.HTTPException, ValueError, AssertionError) as error:
                last_error = repr(error)
            time.sleep(0.02)
        self.stop()
        raise AssertionError(
            f"pebble not ready within {READY_TIMEOUT_S}s (last: {last_error})\n{self.log_tail()}")

    def stop(self):
        """Stops Pebble (not the DNS server, so a restart is quick). Idempotent."""
        _stop_process(self.proc)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._issuers = None

    def restart(self):
        self.stop()
        return self.start()

    def close(self):
        """Stops Pebble and its DNS server."""
        self.stop()
        if self.dns is not None:
            self.dns.stop()

    # -- HTTPS to Pebble, trusting only the throwaway CA

    def _get(self, port, path, timeout=HTTP_TIMEOUT_S):
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout,
                                                 context=self.server_ca.client_context())
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        assert response.status == 200, f"GET {path} on pebble answered {response.status}"
        return body

    def directory_document(self, timeout=HTTP_TIMEOUT_S):
        """The ACME directory (RFC 8555 section 7.1.1) as a dict."""
        return json.loads(self._get(self.port, "/dir", timeout))

    def _issuer_pems(self):
        if self._issuers is None:
            assert self.running, "pebble is not running: its issuers exist only while it runs"
            roots = self._get(self.management_port, "/roots/0").decode()
            intermediates = self._get(self.management_port, "/intermediates/0").decode()
            assert split_pem(roots) and split_pem(intermediates), "pebble served no issuer PEM"
            self._issuers = (roots, intermediates)
        return self._issuers

    def roots_pem(self):
        """The root that issued certificates chain to, for the current run of Pebble."""
        return self._issuer_pems()[0]

    def intermediates_pem(self):
        """The intermediate that signs issued certificates, for the current run of Pebble."""
        return self._issuer_pems()[1]

    def write_roots(self, path=None):
        """Writes roots_pem() to `path` (default: <dir>/roots.pem) and returns the path, for
        clients that want a CA file for the issued certificates."""
        path = Path(path or self.directory / "roots.pem")
        path.write_text(self.roots_pem())
        return path

    # -- checking what was issued

    def explain_chain(self, leaf_pem_or_chain, served_chain_only=False):
        """(verified, openssl's output) for the first certificate of `leaf_pem_or_chain`.

        Runs `openssl verify -purpose sslserver -CAfile roots -untrusted I` where I holds the
        rest of the given chain plus, unless served_chain_only, Pebble's intermediate. With
        served_chain_only the chain must be complete as given (what a server must send).
        """
        certificates = split_pem(_pem_text(leaf_pem_or_chain))
        if not certificates:
            return False, "no PEM certificate given"
        untrusted = certificates[1:]
        if not served_chain_only:
            untrusted += split_pem(self.intermediates_pem())
        with tempfile.TemporaryDirectory(dir=self.directory) as scratch:
            roots = Path(scratch) / "roots.pem"
            roots.write_text(self.roots_pem())
            leaf = Path(scratch) / "leaf.pem"
            leaf.write_text(certificates[0])
            args = ["verify", "-purpose", "sslserver", "-CAfile", str(roots)]
            if untrusted:
                others = Path(scratch) / "untrusted.pem"
                others.write_text("".join(untrusted))
                args += ["-untrusted", str(others)]
            done = tlshelpers.run_openssl([*args, str(leaf)])
        return done.returncode == 0 and ": OK" in done.stdout, done.stdout

    def verify_chain(self, leaf_pem_or_chain, served_chain_only=False):
        """True when the leaf verifies against this run's root; see explain_chain."""
        return self.explain_chain(leaf_pem_or_chain, served_chain_only)[0]

    # -- the log

    def log_text(self, current_run_only=False):
        """Pebble's stdout and stderr (every run, each after a RESTART_MARKER line)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        if current_run_only:
            text = text.rsplit(RESTART_MARKER, 1)[-1]
        return text

    def log_lines(self, current_run_only=False):
        return self.log_text(current_run_only).splitlines()

    def log_tail(self, lines=60):
        return "\n".join(self.log_lines()[-lines:])

    def _count(self, pattern, current_run_only):
        return sum(1 for line in self.log_lines(current_run_only) if pattern.search(line))

    def count_new_orders(self, current_run_only=False):
        """Orders Pebble created (`Added order "ID" to the db`), over every run by default.

        Requests Pebble turned down (badNonce, bad JWS, EAB or identifier errors) are not
        counted, so a client that retries a rejected newOrder still counts once.
        """
        return self._count(ORDER_ADDED, current_run_only)

    def count_new_accounts(self, current_run_only=False):
        """Accounts Pebble created (`There are now N accounts in memory`, logged as it stores
        one). Requests it turned down, or that found an existing account, are not counted."""
        return self._count(ACCOUNT_ADDED, current_run_only)

    def count_issued_certificates(self, current_run_only=False):
        """Certificates Pebble issued (`Issued certificate serial S for order O`)."""
        return self._count(CERTIFICATE_ISSUED, current_run_only)

    def wait_for_log(self, predicate, timeout=5.0):
        """The first log line for which predicate(line) holds, or None after `timeout`."""
        return harness.wait_for_line(self.log_lines, predicate, timeout)

    def describe(self):
        """Where everything is and the last log lines, for failure reports."""
        parts = [f"pebble {self.directory_url} (management {self.management_url}, "
                 f"http_port {self.http_port}, tls_port {self.tls_port}, dns {self.dns_server})",
                 f"---- pebble log tail ({self.log_path}) ----", self.log_tail(80)]
        if self.dns is not None:
            parts += [f"---- pebble-challtestsrv log tail ({self.dns.log_path}) ----",
                      self.dns.log_tail(20)]
        return "\n".join(parts)


# ---- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def pebble_factory(tmp_path, request):
    """make(http_port, validity=None, nonce_reject=0, eab=None, **options) -> a started PebbleCA.

    options are PebbleCA's other keyword arguments (tls_port, env, authz_reuse, dns_server).
    Every instance is stopped after the test, with its DNS server; when the test failed, the
    tail of each instance's logs is printed into the report.
    """
    started = []
    failures_before = request.session.testsfailed

    def make(http_port, validity=None, nonce_reject=0, eab=None, **options):
        pebble = PebbleCA(tmp_path / f"pebble{len(started)}", http_port, validity=validity,
                          nonce_reject=nonce_reject, eab=eab, **options)
        started.append(pebble)
        return pebble.start()

    yield make

    # The call phase has been reported by now, so a failure of this test is already counted.
    failed = request.session.testsfailed > failures_before
    for pebble in started:
        if failed:
            print(pebble.describe())
        pebble.close()
