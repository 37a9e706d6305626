"""The certificate_updated hook: a program gatehouse runs after a certificate is obtained or
renewed, handed the host, the names and the certificate and key in private files. A failing
hook is logged and retried, and never touches the certificate being served; one that runs past
its timeout is killed with everything it started.

The renewal check uses the shortest internal lifetime the loader accepts (one minute, renewed
once two thirds of its validity have passed, less some jitter), so that test waits up to 40
seconds for it.
"""

import hashlib
import os
import signal
import ssl
import textwrap
import time

import rawhttp
import tlshelpers

HOST = "hooked.example.test"
FLAKY = "flaky.example.test"
LIFETIME_S = 60
FIRST_RETRY_S = 10

# The hook appends one line per successful run to hook.log:
#   HOST NAMES CERT_SHA256 KEY_MODE FOLDER_MODE FOLDER
# and copies the certificate and key it was given to copies/HOST-CERT_SHA256.{crt,key}. When
# fail-once-HOST exists it removes it and fails, so the first run for that host fails.
RECORDING_HOOK = textwrap.dedent("""\
    #!/bin/sh
    set -eu
    dir="{dir}"
    if [ -e "$dir/fail-once-$GATEHOUSE_HOST" ]; then
        rm "$dir/fail-once-$GATEHOUSE_HOST"
        echo "failing on purpose for $GATEHOUSE_HOST" >&2
        exit 1
    fi
    sha=$(sha256sum "$GATEHOUSE_CERTIFICATE_FILE" | cut -d' ' -f1)
    folder=$(dirname "$GATEHOUSE_KEY_FILE")
    mkdir -p "$dir/copies"
    cp "$GATEHOUSE_CERTIFICATE_FILE" "$dir/copies/$GATEHOUSE_HOST-$sha.crt"
    cp "$GATEHOUSE_KEY_FILE" "$dir/copies/$GATEHOUSE_HOST-$sha.key"
    key_mode=$(stat -c %a "$GATEHOUSE_KEY_FILE")
    folder_mode=$(stat -c %a "$folder")
    echo "$GATEHOUSE_HOST $GATEHOUSE_NAMES $sha $key_mode $folder_mode $folder" >> "$dir/hook.log"
    """)


def write_hook(directory, body):
    directory.mkdir(exist_ok=True)
    path = directory / "hook.sh"
    path.write_text(body.format(dir=directory))
    path.chmod(0o700)
    return path


def hook_runs(directory, host):
    """[{names, sha, key_mode, folder_mode, folder}] of the successful runs for `host`, in
    order."""
    try:
        lines = (directory / "hook.log").read_text().splitlines()
    except FileNotFoundError:
        return []
    runs = []
    for line in lines:
        logged_host, names, sha, key_mode, folder_mode, folder = line.split()
        if logged_host == host:
            runs.append({"names": names, "sha": sha, "key_mode": key_mode,
                         "folder_mode": folder_mode, "folder": folder})
    return runs


def wait_for_runs(directory, host, count, timeout):
    runs = tlshelpers.wait_until(lambda: len(hook_runs(directory, host)) >= count, timeout)
    assert runs, f"{host}: {len(hook_runs(directory, host))} hook runs after {timeout} s"
    return hook_runs(directory, host)


def check_run(directory, run, host, served):
    """The run was for `host` only, saw private files that are gone now, and was given the
    certificate being served together with its key."""
    assert run["names"] == host
    assert run["key_mode"] == "600", f"the key file had mode {run['key_mode']}"
    assert run["folder_mode"] == "700", f"the folder had mode {run['folder_mode']}"
    # The hook logs before it exits, and gatehouse removes the folder once it has.
    gone = tlshelpers.wait_until(lambda: not os.path.exists(run["folder"]), timeout=5)
    assert gone, f"{run['folder']} outlived the run"
    certificate = directory / "copies" / f"{host}-{run['sha']}.crt"
    key = directory / "copies" / f"{host}-{run['sha']}.key"
    assert hashlib.sha256(certificate.read_bytes()).hexdigest() == run["sha"]
    leaf = certificate.read_text().split("-----END CERTIFICATE-----")[0]
    assert ssl.PEM_cert_to_DER_cert(leaf + "-----END CERTIFICATE-----\n") == served.der
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certificate, key)


def hook_config(path, timeout="10s"):
    return {"certificate_updated": {"command": [str(path)], "timeout": timeout}}


def route_for(host, backend):
    return {"host": host, "paths": [{"upstream": backend.url}]}


def test_the_hook_gets_each_new_certificate_and_a_failed_run_is_retried_without_harm(
        start_gatehouse, backend, tmp_path):
    hooks = tmp_path / "hooks"
    script = write_hook(hooks, RECORDING_HOOK)
    (hooks / f"fail-once-{FLAKY}").touch()
    started = time.monotonic()
    gatehouse = start_gatehouse([route_for(HOST, backend), route_for(FLAKY, backend)], https=True,
                                tls={"internal_certificate_lifetime": f"{LIFETIME_S}s"},
                                hooks=hook_config(script))
    cafile = tlshelpers.trust_pem(gatehouse)

    # The first certificate reaches the hook, with its key, in files only gatehouse's user reads.
    first = tlshelpers.handshake(gatehouse.https_port, HOST, cafile)
    runs = wait_for_runs(hooks, HOST, 1, timeout=5)
    check_run(hooks, runs[0], HOST, first)

    # The flaky host's first run fails: logged with its output and a retry, while its
    # certificate serves as if nothing happened.
    failed = gatehouse.wait_for_log(
        lambda line: "certificate hook failed" in line and f"host={FLAKY}" in line, timeout=5)
    assert failed is not None, gatehouse.log_tail()
    for field in ("attempt=1", f"retry_in={FIRST_RETRY_S}", 'error="exit status 1"',
                  "failing on purpose"):
        assert field in failed, failed
    assert "PRIVATE KEY" not in gatehouse.log_text()
    flaky = tlshelpers.handshake(gatehouse.https_port, FLAKY, cafile)
    assert tlshelpers.https_request(gatehouse.https_port, FLAKY, "GET", "/", cafile).status == 200
    assert tlshelpers.certificate_status(gatehouse, FLAKY)["last_error"] is None
    assert hook_runs(hooks, FLAKY) == []

    # The retry succeeds with the same certificate.
    runs = wait_for_runs(hooks, FLAKY, 1, timeout=FIRST_RETRY_S + 5)
    check_run(hooks, runs[0], FLAKY, flaky)
    assert tlshelpers.certificate_status(gatehouse, FLAKY)["last_error"] is None
    assert tlshelpers.handshake(gatehouse.https_port, FLAKY, cafile).serial == flaky.serial

    # The renewal (due at about 40 s) runs the hook again, with the new certificate.
    remaining = LIFETIME_S - 5 - (time.monotonic() - started)
    elapsed, seen = tlshelpers.wait_for_serial_change(gatehouse.https_port, HOST, cafile,
                                                      first.serial, timeout=remaining)
    assert elapsed is not None, f"no renewal within {LIFETIME_S - 5} s; serials seen: {seen}"
    renewed = tlshelpers.handshake(gatehouse.https_port, HOST, cafile)
    runs = wait_for_runs(hooks, HOST, 2, timeout=5)
    assert len(runs) == 2, runs
    check_run(hooks, runs[1], HOST, renewed)
    assert tlshelpers.certificate_status(gatehouse, HOST)["last_error"] is None


# Starts a child that would run for five minutes, says where it is, and waits for it.
HANGING_HOOK = textwrap.dedent("""\
    #!/bin/sh
    sleep 300 &
    dirname "$GATEHOUSE_KEY_FILE" > "{dir}/folder"
    echo $! > "{dir}/child.pid"
    echo "hanging"
    wait
    """)


def wait_for_pid_file(path, timeout=5):
    assert tlshelpers.wait_until(lambda: path.exists() and path.read_text().strip(), timeout), \
        f"the hook did not start (no {path})"
    return int(path.read_text())


def is_running(pid):
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as status:
            return status.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_hook_past_its_timeout_is_killed_with_what_it_started(start_gatehouse, backend,
                                                                tmp_path):
    hooks = tmp_path / "hooks"
    script = write_hook(hooks, HANGING_HOOK)
    gatehouse = start_gatehouse([route_for(HOST, backend)], https=True,
                                hooks=hook_config(script, timeout="1s"))
    child = wait_for_pid_file(hooks / "child.pid")
    failed = gatehouse.wait_for_log(lambda line: "certificate hook failed" in line, timeout=5)
    assert failed is not None, gatehouse.log_tail()
    assert "timed out after 1s" in failed and "output=hanging" in failed, failed
    assert tlshelpers.wait_until(lambda: not is_running(child), timeout=2), \
        f"the hook's child {child} survived the timeout"
    cafile = tlshelpers.trust_pem(gatehouse)
    assert tlshelpers.https_request(gatehouse.https_port, HOST, "GET", "/", cafile).status == 200
    assert tlshelpers.certificate_status(gatehouse, HOST)["last_error"] is None


def test_stopping_gatehouse_kills_a_hook_that_is_running(start_gatehouse, backend, tmp_path):
    hooks = tmp_path / "hooks"
    script = write_hook(hooks, HANGING_HOOK)
    gatehouse = start_gatehouse([route_for(HOST, backend)], https=True,
                                hooks=hook_config(script, timeout="60s"))
    child = wait_for_pid_file(hooks / "child.pid")
    assert rawhttp.get(gatehouse.admin_port, "/readyz", host="127.0.0.1").status == 200

    gatehouse.send_signal(signal.SIGTERM)
    assert gatehouse.wait_exit(timeout=10) == 0, gatehouse.log_tail()
    assert tlshelpers.wait_until(lambda: not is_running(child), timeout=2), \
        f"the hook's child {child} outlived gatehouse"
    assert "certificate hook stopped" in gatehouse.log_text()
    folder = (hooks / "folder").read_text().strip()
    assert not os.path.exists(folder), f"{folder} outlived the hook"
