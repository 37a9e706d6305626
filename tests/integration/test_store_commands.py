"""`gatehouse store export` and `gatehouse store import` move every certificate, the internal CA
and the ACME accounts from one store to another in one step: an instance started on the new
store serves the certificates it finds there instead of issuing new ones, and trusts the same
CA. An import that is not a whole, valid export writes nothing; one that would replace a
different value needs --overwrite."""

import json
import ssl
import subprocess
from pathlib import Path

import yaml

import harness
import tlshelpers
from harness import route

HOST = "moved.example.test"
COMMAND_TIMEOUT_S = 20
NEW_CERTIFICATE_TIMEOUT_S = 5


def run_command(binary, args, stdin_text=None):
    """Runs `gatehouse ARGS`, feeding `stdin_text` (or nothing); returns the finished process."""
    return subprocess.run([str(binary), *args], input=stdin_text,
                          stdin=subprocess.DEVNULL if stdin_text is None else None,
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


def export_store(gatehouse, config_path=None):
    """The export document of a gatehouse's store, checked to be the only thing on stdout."""
    done = run_command(gatehouse.binary,
                       ["store", "export", "--config", str(config_path or gatehouse.config_path)])
    assert done.returncode == 0, f"export exited {done.returncode}: {done.stderr}"
    assert "private keys" in done.stderr, f"export did not warn about keys: {done.stderr}"
    document = json.loads(done.stdout)  # fails when anything else was printed
    return done.stdout, document


def import_store(binary, config_path, text, overwrite=False):
    args = ["store", "import", "--config", str(config_path)]
    if overwrite:
        args.append("--overwrite")
    return run_command(binary, args, stdin_text=text)


def config_for_store(gatehouse, store, path):
    """A copy of `gatehouse`'s configuration that names another store folder."""
    config = harness.merge(gatehouse.config, {"store": {"file": str(store)}})
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def store_contents(store):
    """{relative path: bytes} of every entry file in a file store."""
    return {str(path.relative_to(store)): path.read_bytes()
            for path in Path(store).rglob("*.entry")}


def test_an_imported_store_serves_the_same_certificate_and_ca_without_issuing_again(
        start_gatehouse, backend, tmp_path):
    first = start_gatehouse([route(HOST, backend)], https=True)
    first_ca = tlshelpers.trust_pem(first)
    served = tlshelpers.handshake(first.https_port, HOST, first_ca)
    text, document = export_store(first)

    assert document["format"] == "gatehouse-store-export"
    assert document["version"] == 1
    assert document["source"].startswith("file:")
    assert document["exported_at"].endswith("Z")
    entries = document["entries"]
    assert f"certificates/{HOST}" in entries and "ca/internal" in entries, sorted(entries)
    assert all(isinstance(value, str) for value in entries.values())
    assert all(key.split("/")[0] in ("certificates", "accounts", "ca") for key in entries)
    assert "BEGIN" in json.loads(entries[f"certificates/{HOST}"])["private_key_pem"]

    # Into a store that does not exist yet: every entry is written, and a second run finds
    # every one in place already.
    other = tmp_path / "other-store"
    other_config = config_for_store(first, other, tmp_path / "other.yaml")
    done = import_store(first.binary, other_config, text)
    assert done.returncode == 0, done.stderr
    assert f"{len(entries)} written, 0 unchanged, 0 skipped" in done.stdout, done.stdout
    again = import_store(first.binary, other_config, text)
    assert again.returncode == 0, again.stderr
    assert f"0 written, {len(entries)} unchanged, 0 skipped" in again.stdout, again.stdout

    # A gatehouse on the new store serves the same certificate, from the same CA.
    second = start_gatehouse([route(HOST, backend)], https=True, store={"file": str(other)})
    second_ca = tlshelpers.trust_pem(second)
    assert second_ca.read_text() == first_ca.read_text()
    moved = tlshelpers.handshake(second.https_port, HOST, second_ca)
    assert moved.serial == served.serial
    assert moved.der == served.der
    assert "certificate obtained" not in second.log_text()
    assert tlshelpers.certificate_status(second, HOST)["last_error"] is None
    _, after = export_store(second)
    assert after["entries"] == entries


def test_an_export_that_is_truncated_or_invalid_is_refused_whole_and_writes_nothing(
        start_gatehouse, backend, tmp_path):
    first = start_gatehouse([route(HOST, backend)], https=True)
    text, document = export_store(first)
    key = f"certificates/{HOST}"

    def variant(change):
        changed = json.loads(text)
        change(changed)
        return json.dumps(changed)

    def add_entry(name, value):
        return variant(lambda d: d["entries"].update({name: value}))

    bad_inputs = {
        "empty": "",
        "truncated": text[: len(text) // 2],
        "not an object": "[]",
        "another format": variant(lambda d: d.update(format="something-else")),
        "a newer version": variant(lambda d: d.update(version=2)),
        "no entries": variant(lambda d: d.pop("entries")),
        "a key outside the exported folders": add_entry("challenges/token", "answer"),
        "an invalid key": add_entry("certificates/.hidden", "{}"),
        "a value that is not a string": add_entry("accounts/example", {"kid": "x"}),
        "a bundle that does not parse": add_entry("certificates/broken.example.test",
                                                  '{"certificate_chain_pem": 1}'),
    }
    store = tmp_path / "never-created"
    config_path = config_for_store(first, store, tmp_path / "other.yaml")
    for name, bad in bad_inputs.items():
        done = import_store(first.binary, config_path, bad, overwrite=True)
        assert done.returncode == 2, f"{name}: exit {done.returncode}\n{done.stderr}"
        assert "nothing was written" in done.stderr, f"{name}: {done.stderr}"
        assert done.stdout == "", f"{name}: {done.stdout}"
        assert not store.exists(), f"{name}: the import created {store}"

    # Into a store that holds entries: one bad entry among changed good ones changes nothing.
    assert import_store(first.binary, config_path, text).returncode == 0
    before = store_contents(store)
    changed_bundle = json.loads(document["entries"][key])
    changed_bundle["issuer"] = "changed"
    mixed = variant(lambda d: d["entries"].update(
        {key: json.dumps(changed_bundle), "accounts/bad": 7}))
    done = import_store(first.binary, config_path, mixed, overwrite=True)
    assert done.returncode == 2, done.stderr
    assert "accounts/bad" in done.stderr
    assert store_contents(store) == before


def test_an_import_keeps_a_different_value_unless_overwrite_is_given(start_gatehouse, backend):
    source = start_gatehouse([route(HOST, backend)], https=True)
    text, exported = export_store(source)
    source_ca = tlshelpers.trust_pem(source)
    source_serial = tlshelpers.handshake(source.https_port, HOST, source_ca).serial

    # The target has its own CA and its own certificate for the same host.
    target = start_gatehouse([route(HOST, backend)], https=True)
    target_ca = tlshelpers.trust_pem(target)
    target_serial = tlshelpers.handshake(target.https_port, HOST, target_ca).serial
    assert target_serial != source_serial
    target_store = Path(target.config["store"]["file"])
    before = store_contents(target_store)

    done = import_store(target.binary, target.config_path, text)
    assert done.returncode == 1, f"exit {done.returncode}: {done.stderr}"
    assert f"certificates/{HOST} already holds another value" in done.stderr, done.stderr
    assert "ca/internal already holds another value" in done.stderr, done.stderr
    assert "0 written, 0 unchanged, 2 skipped" in done.stdout, done.stdout
    assert store_contents(target_store) == before
    assert tlshelpers.handshake(target.https_port, HOST, target_ca).serial == target_serial

    done = import_store(target.binary, target.config_path, text, overwrite=True)
    assert done.returncode == 0, done.stderr
    assert f"replaced certificates/{HOST}" in done.stdout, done.stdout
    assert "2 written, 0 unchanged, 0 skipped" in done.stdout, done.stdout
    _, after = export_store(target)
    assert after["entries"] == exported["entries"]

    # The running target picks the imported certificate up from the store.
    # Until then its handshakes do not verify against the source's CA.
    def serial_from_source_ca():
        try:
            return tlshelpers.handshake(target.https_port, HOST, source_ca).serial
        except ssl.SSLError:
            return None

    serial = tlshelpers.wait_until(serial_from_source_ca, timeout=NEW_CERTIFICATE_TIMEOUT_S)
    assert serial == source_serial, f"serving {serial} after the import"


def test_store_commands_reject_bad_usage(tmp_path):
    binary = harness.require_gatehouse_binary()
    config_path = tmp_path / "gatehouse.yaml"
    config_path.write_text(yaml.safe_dump({"store": {"file": str(tmp_path / "store")}}))
    for args in (["store"], ["store", "copy", "--config", str(config_path)],
                 ["store", "export"], ["store", "export", "--config", str(config_path),
                                       "--overwrite"],
                 ["store", "import", "--config", str(config_path), "--force"]):
        done = run_command(binary, args)
        assert done.returncode == 2, f"{args}: exit {done.returncode}\n{done.stderr}"
        assert done.stdout == "", f"{args}: {done.stdout}"
        assert "usage: gatehouse" in done.stderr
    assert not (tmp_path / "store").exists()
