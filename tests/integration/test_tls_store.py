"""The file store on disk: private modes, a clear failure when it cannot be created, and
entries that stay whole when gatehouse is killed while it writes them."""

import json
import os
import random
import signal
import ssl
import stat
import subprocess
import time
from pathlib import Path

import yaml

import harness
import tlshelpers
from harness import route

UNUSED_UPSTREAM = "http://127.0.0.1:9"


def modes_under(root):
    """{path relative to root: permission bits} for root and everything below it."""
    modes = {".": stat.S_IMODE(os.lstat(root).st_mode)}
    for folder, directories, files in os.walk(root):
        for name in directories + files:
            path = Path(folder) / name
            modes[str(path.relative_to(root))] = stat.S_IMODE(os.lstat(path).st_mode)
    return modes


def test_the_store_folder_is_0700_and_its_files_0600_whatever_the_umask(
        start_gatehouse, backend, tmp_path):
    store = tmp_path / "store"
    store.mkdir(mode=0o755)
    os.chmod(store, 0o755)  # an existing, too open folder is tightened

    # A umask of 0 takes nothing away, so every mode below is one gatehouse asked for.
    previous = os.umask(0)
    try:
        gatehouse = start_gatehouse([route("app.example.test", backend)], https=True,
                                    store={"file": str(store)})
    finally:
        os.umask(previous)

    modes = modes_under(store)
    for entry in ("certificates/app.example.test.entry", "ca/internal.entry"):
        assert entry in modes, sorted(modes)
    wrong = {}
    for relative, mode in modes.items():
        expected = 0o700 if (store / relative).is_dir() else 0o600
        if mode != expected:
            wrong[relative] = f"{mode:04o}, expected {expected:04o}"
    assert not wrong, f"store modes: {wrong}"
    assert tlshelpers.certificate_status(gatehouse, "app.example.test")["last_error"] is None


def test_run_exits_non_zero_naming_a_store_folder_that_cannot_be_created(tmp_path):
    binary = harness.require_gatehouse_binary()
    blocker = tmp_path / "a-regular-file"
    blocker.write_text("not a folder\n")
    store = blocker / "store"
    http_port, https_port, admin_port = tlshelpers.free_ports(3)
    config = harness.with_https(
        harness.base_config(http_port, admin_port, [route("app.example.test", UNUSED_UPSTREAM)]),
        https_port, store)
    config_path = tmp_path / "gatehouse.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    for command in ("run", "trust"):
        done = subprocess.run([str(binary), command, "--config", str(config_path)],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
        output = done.stdout + done.stderr
        assert done.returncode != 0, f"gatehouse {command} exited 0 with store {store}:\n{output}"
        assert str(store) in output, f"gatehouse {command} did not name {store}:\n{output}"
    assert not blocker.with_name("store").exists()


# ---- torn writes ----------------------------------------------------------------------------


def check_entry(path, scratch):
    """Fails unless `path` is a whole bundle: JSON with a chain and a key that OpenSSL parses
    and that belong together. Returns the bundle."""
    try:
        bundle = json.loads(path.read_text())
    except ValueError as error:
        raise AssertionError(f"{path} is not JSON ({error}): {path.read_bytes()[:200]!r}") from None
    for field in ("certificate_chain_pem", "private_key_pem"):
        assert isinstance(bundle.get(field), str) and bundle[field], f"{path} has no {field}"
    (scratch / "chain.pem").write_text(bundle["certificate_chain_pem"])
    (scratch / "key.pem").write_text(bundle["private_key_pem"])
    try:
        # The same OpenSSL the CLI uses: parses the chain and the key, and checks the pair.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(scratch / "chain.pem", scratch / "key.pem")
    except ssl.SSLError as error:
        raise AssertionError(f"{path} holds a chain and key OpenSSL refuses: {error!r}") from None
    return bundle


class StoreChecker:
    """Checks that every visible file in a store is whole, re-reading only files that changed."""

    def __init__(self, store, scratch):
        self.store = store
        self.scratch = scratch
        self.checked = {}  # path -> ((inode, size, mtime_ns), bundle)

    def check(self):
        """{key: bundle} for every entry, and the hidden files (names starting with '.': the
        temporary files and write probes that gatehouse never reads)."""
        entries, hidden = {}, []
        for folder, directories, files in os.walk(self.store):
            folder = Path(folder)
            in_locks = ".locks" in folder.relative_to(self.store).parts
            for name in files:
                path = folder / name
                relative = str(path.relative_to(self.store))
                if name.startswith("."):
                    hidden.append(relative)
                elif in_locks:
                    record = json.loads(path.read_text())
                    assert "token" in record, f"lock record {path} has no token"
                else:
                    assert name.endswith(".entry"), f"unexpected file {path}"
                    entries[relative[:-len(".entry")]] = self._bundle(path)
        return entries, hidden

    def _bundle(self, path):
        info = os.stat(path)
        identity = (info.st_ino, info.st_size, info.st_mtime_ns)
        known = self.checked.get(path)
        if known is None or known[0] != identity:
            known = (identity, check_entry(path, self.scratch))
            self.checked[path] = known
        return known[1]


def seconds_until_issued(binary, config_path, log_path, timeout=10.0):
    """Runs gatehouse once to the end of its start; how long it took to have its certificates."""
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(binary), "run", "--config", str(config_path)],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        while "certificates loaded" not in log_path.read_text(errors="replace"):
            assert process.poll() is None, f"gatehouse exited early:\n{log_path.read_text()}"
            assert time.monotonic() - started < timeout, "gatehouse did not load its certificates"
            time.sleep(0.002)
        return time.monotonic() - started
    finally:
        process.kill()
        process.wait(timeout=10)


def test_gatehouse_killed_while_issuing_never_leaves_a_torn_store_entry(start_gatehouse, tmp_path):
    # What this can prove: across many SIGKILLs spread over gatehouse's start, some of which
    # demonstrably land while an entry is being written (its temporary file is left behind),
    # every *.entry file a reader can find is a whole bundle whose chain and key OpenSSL parses
    # and pairs, no visible file is partial, a later gatehouse ignores the leftover temporary
    # files, and it serves exactly the certificates the store holds.
    # What it cannot prove: where inside the write a kill landed (before, during or after
    # write(2) and fsync: a leftover temporary file only says "before the rename"), and
    # anything about power loss or a kernel crash, which is what the fsyncs are for and what a
    # kill -9 never exercises.
    binary = harness.require_gatehouse_binary()
    store = tmp_path / "store"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    http_port, https_port, admin_port = tlshelpers.free_ports(3)
    config_path = tmp_path / "torn.yaml"

    def write_config(hosts):
        config = harness.with_https(
            harness.base_config(http_port, admin_port, [route(h, UNUSED_UPSTREAM) for h in hosts]),
            https_port, store)
        config["threads"] = 1
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    # The CA exists first: a kill while creating it would leave its lock held for a minute.
    write_config(["ca.example.test"])
    subprocess.run([str(binary), "trust", "--config", str(config_path)], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=20)

    # Kills are spread over the whole start, whose length is measured first, so a good share
    # of them lands between two certificate writes on a slow machine and on a fast one.
    hosts_per_run, min_runs, max_runs, budget_s = 8, 30, 120, 20.0
    write_config([f"calibration-{k}.example.test" for k in range(hosts_per_run)])
    start_s = seconds_until_issued(binary, config_path, tmp_path / "calibration.log")
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    checker = StoreChecker(store, scratch)
    started = time.monotonic()
    mid_issue_kills = runs = 0
    torn_temporaries = set()
    for iteration in range(max_runs):
        # Past min_runs, go on only until some kill has left a temporary file behind.
        if time.monotonic() - started > budget_s or (iteration >= min_runs and torn_temporaries):
            break
        runs += 1
        # New names every run, so each start issues (and writes) a certificate for each.
        hosts = [f"t{iteration}-{k}.example.test" for k in range(hosts_per_run)]
        write_config(hosts)
        delay = rng.uniform(0.0, start_s * 1.3)
        with open(tmp_path / f"torn-{iteration}.log", "wb") as log:
            process = subprocess.Popen([str(binary), "run", "--config", str(config_path)],
                                       stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT)
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        entries, hidden = checker.check()
        written = sum(f"certificates/{h}" in entries for h in hosts)
        mid_issue_kills += 0 < written < hosts_per_run
        torn_temporaries.update(name for name in hidden if ".entry.tmp-" in name)
    # Without kills inside the issuing phase, and inside a write, the loop tested nothing.
    context = f"{runs} runs, seed {seed}, start {start_s * 1000:.0f} ms"
    assert mid_issue_kills >= 3, \
        f"only {mid_issue_kills} kills landed between two certificate writes ({context})"
    assert torn_temporaries, \
        f"no kill landed between creating an entry's temporary file and renaming it ({context})"

    # A temporary file where the entry of a configured host would be: it must not be read.
    certificates = store / "certificates"
    (certificates / ".ghost.example.test.entry.tmp-00112233deadbeef").write_text('{"certificate_ch')
    entries, _ = checker.check()
    stored_hosts = sorted(key.split("/", 1)[1] for key in entries
                          if key.startswith("certificates/"))
    routes = [route(h, UNUSED_UPSTREAM) for h in stored_hosts + ["ghost.example.test"]]
    gatehouse = start_gatehouse(routes, https=True, store={"file": str(store)})
    ca = tlshelpers.trust_pem(gatehouse)
    for host in stored_hosts:
        served = tlshelpers.handshake(gatehouse.https_port, host, ca)
        stored = entries[f"certificates/{host}"]["serial"]
        assert served.serial == stored, f"{host}: served {served.serial}, the store holds {stored}"
    ghost = tlshelpers.handshake(gatehouse.https_port, "ghost.example.test", ca)
    assert ghost.dns_names == ["ghost.example.test"]
    assert all(c["last_error"] is None for c in tlshelpers.status(gatehouse)["certificates"])

    # The command line tools agree with Python's OpenSSL on a sample of the bundles.
    for key in sorted(entries)[:6]:
        (scratch / "chain.pem").write_text(entries[key]["certificate_chain_pem"])
        (scratch / "key.pem").write_text(entries[key]["private_key_pem"])
        tlshelpers.check_openssl(["x509", "-noout", "-in", str(scratch / "chain.pem")])
        tlshelpers.check_openssl(["pkey", "-noout", "-in", str(scratch / "key.pem")])
