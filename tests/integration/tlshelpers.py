"""TLS tools for the integration tests: throwaway certificates, handshakes, HTTPS over loopback.

Certificates for `tls: {cert, key}` routes are made with the openssl command line, so the tests
do not depend on a Python crypto package. Handshakes go through Python's ssl module against
127.0.0.1 with whatever server name (SNI) a test chooses, and report what the server sent:
protocol, cipher and the leaf certificate's names and serial. Every network operation and every
child process has a timeout.
"""

import concurrent.futures
import http.client
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import harness
import rawhttp

TLS_TIMEOUT_S = 5.0
OPENSSL_TIMEOUT_S = 20.0
TRUST_TIMEOUT_S = 20.0


def openssl_binary():
    binary = shutil.which("openssl")
    assert binary, "the openssl command line tool is required by the TLS integration tests"
    return binary


def run_openssl(args, stdin_text=None, timeout=OPENSSL_TIMEOUT_S, cwd=None):
    """Runs `openssl ARGS`; returns the CompletedProcess with stdout and stderr merged as text."""
    return subprocess.run([openssl_binary(), *args], input=stdin_text if stdin_text else "",
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, cwd=cwd)


def check_openssl(args, **kwargs):
    """Like run_openssl, but fails the test when openssl exits non-zero."""
    done = run_openssl(args, **kwargs)
    assert done.returncode == 0, f"openssl {' '.join(args)} failed:\n{done.stdout}"
    return done.stdout


def free_ports(count):
    """`count` different ports on 127.0.0.1 that nothing listens on right now."""
    ports = set()
    while len(ports) < count:
        ports.add(harness.free_port())
    return sorted(ports)


def random_serial_hex():
    """A random 64-bit serial as uppercase hex, without a leading zero nibble, so the same text
    comes out of openssl, Python's ssl and gatehouse's /status."""
    return f"{secrets.randbelow(0x7 << 60) + (1 << 60):X}"


# ---- throwaway certificates ---------------------------------------------------------------


@dataclass
class CertificatePair:
    certificate: Path
    key: Path
    serial: str

    def certificate_pem(self):
        return self.certificate.read_bytes()

    def key_pem(self):
        return self.key.read_bytes()


class UserCA:
    """A CA made with openssl in `directory`, standing in for an operator's own PKI."""

    def __init__(self, directory, name="gatehouse tests user CA"):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.certificate = self.directory / "user-ca.pem"
        self.key = self.directory / "user-ca.key"
        check_openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                       "-nodes", "-keyout", str(self.key), "-out", str(self.certificate),
                       "-subj", f"/CN={name}", "-days", "2",
                       "-addext", "basicConstraints=critical,CA:TRUE",
                       "-addext", "keyUsage=critical,keyCertSign,cRLSign"])

    def issue(self, host, label, key_type="ec"):
        """A fresh key ("ec" P-256 or "rsa" 2048) and a leaf for `host` signed by this CA, as
        label.pem and label.key."""
        certificate = self.directory / f"{label}.pem"
        key = self.directory / f"{label}.key"
        serial = random_serial_hex()
        key_options = {"ec": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
                       "rsa": ["-newkey", "rsa:2048"]}[key_type]
        check_openssl(["req", *key_options, "-nodes",
                       "-keyout", str(key), "-out", str(certificate), "-subj", f"/CN={host}",
                       "-addext", f"subjectAltName=DNS:{host}",
                       "-addext", "basicConstraints=critical,CA:FALSE",
                       "-addext", "extendedKeyUsage=serverAuth",
                       "-CA", str(self.certificate), "-CAkey", str(self.key),
                       "-days", "2", "-set_serial", f"0x{serial}"])
        return CertificatePair(certificate, key, serial)

    def issue_many(self, host, count, prefix):
        """`count` pairs for `host`, each with its own key and serial, made two at a time."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(self.issue, host, f"{prefix}{index:03d}")
                       for index in range(count)]
            pairs = [future.result(timeout=OPENSSL_TIMEOUT_S * 4) for future in futures]
        assert len({pair.serial for pair in pairs}) == count, "openssl produced a repeated serial"
        return pairs


def write_atomically(path, data):
    """Replaces `path` with `data` the way careful tools do: a temporary file, then rename(2)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.new-{secrets.token_hex(4)}")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def overwrite_in_place(path, data):
    """Truncates and rewrites `path` in place (same inode), the way a plain `cp` or editor does."""
    with open(path, "r+b") as file:
        file.truncate(0)
        file.write(data)


def install_pair(live_certificate, live_key, pair, atomic=True):
    """Puts `pair` at the live paths, key first. Two files are never replaced together, so a
    watcher can see the new key next to the old certificate for a moment."""
    write = write_atomically if atomic else overwrite_in_place
    write(live_key, pair.key_pem())
    write(live_certificate, pair.certificate_pem())


# ---- gatehouse's internal CA --------------------------------------------------------------


def trust_pem(gatehouse):
    """Runs `gatehouse trust --config` for a started gatehouse; returns the PEM file it printed."""
    done = subprocess.run([str(gatehouse.binary), "trust", "--config", str(gatehouse.config_path)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=TRUST_TIMEOUT_S, cwd=gatehouse.workdir)
    assert done.returncode == 0, f"gatehouse trust exited {done.returncode}: {done.stderr.decode()}"
    text = done.stdout.decode()
    one_pem = text.startswith("-----BEGIN CERTIFICATE-----") and text.count("BEGIN CERT") == 1
    assert one_pem, f"gatehouse trust printed other than one PEM certificate:\n{text[:500]}"
    path = gatehouse.workdir / "trust.pem"
    path.write_text(text)
    return path


# ---- handshakes ---------------------------------------------------------------------------


def client_context(cafile=None, check_hostname=True, minimum=None, maximum=None, ciphers=None):
    """A client context. With `cafile` the server's chain must verify against it (and, with
    `check_hostname`, name the SNI host); without it nothing is verified."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile is not None:
        context.load_verify_locations(cafile=str(cafile))
        context.check_hostname = check_hostname
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass
class Handshake:
    """What one completed handshake showed of the server."""
    version: str
    cipher: str
    alpn: str
    peercert: dict
    der: bytes

    @property
    def serial(self):
        return self.peercert.get("serialNumber")

    @property
    def dns_names(self):
        names = self.peercert.get("subjectAltName", ())
        return sorted(value for kind, value in names if kind == "DNS")

    @property
    def common_name(self):
        for rdn in self.peercert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return value
        return None

    @property
    def pem(self):
        return ssl.DER_cert_to_PEM_cert(self.der)


def tls_connect(port, server_name, context, timeout=TLS_TIMEOUT_S):
    """A TLS connection to 127.0.0.1:port sending `server_name` as SNI (None sends none)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return context.wrap_socket(raw, server_hostname=server_name)
    except BaseException:
        raw.close()
        raise


def describe(sock):
    return Handshake(sock.version(), sock.cipher()[0], sock.selected_alpn_protocol(),
                     sock.getpeercert() or {}, sock.getpeercert(binary_form=True))


def handshake(port, server_name, cafile=None, check_hostname=True, **context_options):
    """Completes a handshake on a new connection, closes it, and returns what it showed.

    Raises ssl.SSLError (or OSError) when the handshake fails.
    """
    context = client_context(cafile, check_hostname and server_name is not None, **context_options)
    with tls_connect(port, server_name, context) as sock:
        return describe(sock)


def handshake_error(port, server_name, **context_options):
    """The ssl.SSLError a handshake ends with, or None when it succeeds. Nothing is verified on
    the client side, so any failure comes from the server."""
    try:
        handshake(port, server_name, **context_options)
    except ssl.SSLError as error:
        return error
    return None


def wait_for_serial(port, server_name, cafile, expected, timeout, interval=0.1):
    """Fresh handshakes every `interval` until the leaf's serial is `expected`.

    Returns (seconds until it was seen, or None, and the serials seen, in order).
    """
    started = time.monotonic()
    seen = []
    while True:
        serial = handshake(port, server_name, cafile).serial
        if not seen or seen[-1] != serial:
            seen.append(serial)
        elapsed = time.monotonic() - started
        if serial == expected:
            return elapsed, seen
        if elapsed >= timeout:
            return None, seen
        time.sleep(interval)


def wait_for_serial_change(port, server_name, cafile, old_serial, timeout, interval=0.5):
    """Fresh handshakes every `interval` until the leaf's serial differs from `old_serial`.

    Returns (seconds until it changed, or None, and the serials seen, in order).
    """
    started = time.monotonic()
    seen = []
    while True:
        serial = handshake(port, server_name, cafile).serial
        if not seen or seen[-1] != serial:
            seen.append(serial)
        elapsed = time.monotonic() - started
        if serial != old_serial:
            return elapsed, seen
        if elapsed >= timeout:
            return None, seen
        time.sleep(interval)


def s_client(port, *args, timeout=15.0):
    """`openssl s_client` against 127.0.0.1:port with stdin closed; its merged output."""
    done = run_openssl(["s_client", "-connect", f"127.0.0.1:{port}", *args], timeout=timeout)
    return done.stdout


# ---- HTTP over TLS ------------------------------------------------------------------------


class TlsClient(rawhttp.Client):
    """rawhttp.Client over TLS: one connection with any SNI, requests written byte by byte."""

    def __init__(self, port, server_name, context, timeout=rawhttp.DEFAULT_TIMEOUT_S):
        self.port = port
        self.sock = tls_connect(port, server_name, context, timeout)
        self.reader = rawhttp.Reader(self.sock)


def https_request(port, server_name, method, target, cafile, host=None, headers=(), body=None):
    """One request on a new TLS connection; Host defaults to the SNI name."""
    context = client_context(cafile)
    with TlsClient(port, server_name, context) as client:
        return client.request(method, target, host or server_name, headers, body)


class LoopbackHTTPSConnection(http.client.HTTPSConnection):
    """http.client's HTTPS connection for `server_name`, always dialling 127.0.0.1."""

    def __init__(self, server_name, port, context, timeout=rawhttp.DEFAULT_TIMEOUT_S):
        super().__init__(server_name, port, context=context, timeout=timeout)
        self.connects = 0

    def connect(self):
        raw = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)
        self.connects += 1


# ---- admin ---------------------------------------------------------------------------------


def status(gatehouse):
    response = rawhttp.get(gatehouse.admin_port, "/status", host="127.0.0.1", timeout=5)
    assert response.status == 200, f"/status answered {response.status}"
    return response.json()


def certificate_status(gatehouse, host):
    """The /status certificates entry for `host`; fails when there is none or several."""
    entries = [c for c in status(gatehouse)["certificates"] if c["host"] == host]
    assert len(entries) == 1, f"/status lists {len(entries)} certificates for {host}"
    return entries[0]


def metric(gatehouse, name):
    """The value of an unlabelled metric on /metrics."""
    response = rawhttp.get(gatehouse.admin_port, "/metrics", host="127.0.0.1", timeout=5)
    for line in response.body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} missing from /metrics")


def wait_until(predicate, timeout, interval=0.1):
    """predicate()'s first truthy value, or its last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
