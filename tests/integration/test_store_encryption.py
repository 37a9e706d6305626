"""Private keys encrypted at rest (`store.encryption_key_file`): HTTPS works from a sealed store,
no file below the store holds a private key, a restart (with a rotated key ring, too) serves the
same certificate, `gatehouse trust` reads the sealed CA, and a key file others can read stops
gatehouse before it writes anything."""

import hashlib
import os
import secrets
import subprocess
from pathlib import Path

import yaml

import harness
import tlshelpers
from harness import route

HOST = "sealed.example.test"
UNUSED_UPSTREAM = "http://127.0.0.1:9"


def write_key_ring(path, *keys_hex, mode=0o600):
    """A key file holding `keys_hex` in order (the first one seals), with a comment line."""
    path.write_text("# gatehouse store keys, newest first\n" + "".join(k + "\n" for k in keys_hex))
    os.chmod(path, mode)
    return path


def key_id(key_hex):
    return hashlib.sha256(bytes.fromhex(key_hex)).hexdigest()[:16]


def files_under(root):
    """Every regular file below `root`, hidden ones (lock records, temporaries) included."""
    return [Path(folder) / name for folder, _, names in os.walk(root) for name in names]


def start_sealed(start_gatehouse, backend, store, key_file):
    return start_gatehouse([dict(route(HOST, backend), tls="internal")], https=True,
                           store={"file": str(store), "encryption_key_file": str(key_file)})


def test_a_sealed_store_serves_https_and_holds_no_private_key_in_the_clear(
        start_gatehouse, backend, tmp_path):
    store = tmp_path / "store"
    old_key, new_key = secrets.token_hex(32), secrets.token_hex(32)
    key_file = write_key_ring(tmp_path / "store.keys", old_key)

    first = start_sealed(start_gatehouse, backend, store, key_file)
    ca = tlshelpers.trust_pem(first)
    response = tlshelpers.https_request(first.https_port, HOST, "GET", "/hello", ca)
    assert response.status == 200
    served = tlshelpers.handshake(first.https_port, HOST, ca)
    assert served.dns_names == [HOST]
    assert any(", encrypted" in line for line in first.log_lines()), first.log_tail()

    # Every entry holding a key is sealed with the ring's first key; nothing anywhere is a PEM key.
    sealed_head = f"gatehouse-encrypted:v1:{key_id(old_key)}:".encode()
    for entry in (f"certificates/{HOST}.entry", "ca/internal.entry"):
        content = (store / entry).read_bytes()
        assert content.startswith(sealed_head), f"{entry} is not sealed: {content[:80]!r}"
    leaks = [str(p) for p in files_under(store) if b"PRIVATE KEY" in p.read_bytes()]
    assert not leaks, f"private keys in the clear: {leaks}"
    assert old_key not in "".join(first.log_lines())

    # Rotated: a new key first, the old one kept to open what it sealed. Same CA, same leaf.
    first.stop()
    write_key_ring(key_file, new_key, old_key)
    second = start_sealed(start_gatehouse, backend, store, key_file)
    assert tlshelpers.handshake(second.https_port, HOST, ca).serial == served.serial
    assert tlshelpers.trust_pem(second).read_text() == ca.read_text()
    response = tlshelpers.https_request(second.https_port, HOST, "GET", "/again", ca)
    assert response.status == 200
    leaks = [str(p) for p in files_under(store) if b"PRIVATE KEY" in p.read_bytes()]
    assert not leaks, f"private keys in the clear after the restart: {leaks}"


def test_a_key_file_others_can_read_stops_run_and_trust_before_the_store_is_written(tmp_path):
    binary = harness.require_gatehouse_binary()
    key = secrets.token_hex(32)
    key_file = write_key_ring(tmp_path / "store.keys", key, mode=0o644)
    store = tmp_path / "store"
    http_port, https_port, admin_port = tlshelpers.free_ports(3)
    config = harness.with_https(
        harness.base_config(http_port, admin_port, [route(HOST, UNUSED_UPSTREAM)]), https_port,
        store)
    config["store"]["encryption_key_file"] = str(key_file)
    config_path = tmp_path / "gatehouse.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    for command in ("run", "trust"):
        done = subprocess.run([str(binary), command, "--config", str(config_path)],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
        output = done.stdout + done.stderr
        assert done.returncode != 0, f"gatehouse {command} exited 0 with a 0644 key file:\n{output}"
        assert str(key_file) in output and "chmod 600" in output, output
        assert key not in output
    assert not (store / "ca").exists() and not (store / "certificates").exists()
