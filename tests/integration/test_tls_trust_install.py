"""`gatehouse trust --install` adds the internal CA to the system trust store, so that clients
using it (curl here) verify gatehouse's certificates without being pointed at the CA.

The install runs in a private mount namespace whose /etc/ssl/certs is a copy and whose
/usr/local/share/ca-certificates is empty, so the machine's own trust store is never touched.
That needs root, as the rest of the suite does (see README).
"""

import os
import shutil
import subprocess
import textwrap

import pytest

HOST = "trusted.example.test"
NAMESPACE_TIMEOUT_S = 60


def test_trust_install_makes_curl_accept_the_internal_ca(start_gatehouse, backend, tmp_path):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("this test needs root and unshare(1) to install a CA in a private mount "
                    "namespace; run the suite as root (scripts/test.sh)", pytrace=False)
    gatehouse = start_gatehouse([{"host": HOST, "paths": [{"upstream": backend.url}]}],
                                https=True)
    url = f"https://{HOST}:{gatehouse.https_port}/"
    resolve = f"{HOST}:{gatehouse.https_port}:127.0.0.1"
    certs_copy = tmp_path / "etc-ssl-certs"
    local_cas = tmp_path / "local-ca-certificates"
    local_cas.mkdir()

    # Before the install curl must refuse the certificate; after it, accept it. Both inside one
    # namespace, whose mounts vanish with it.
    script = textwrap.dedent(f"""\
        set -eu
        cp -a /etc/ssl/certs {certs_copy}
        mount --bind {certs_copy} /etc/ssl/certs
        mount --bind {local_cas} /usr/local/share/ca-certificates
        if curl -sS --max-time 5 --resolve {resolve} -o /dev/null {url} 2>/dev/null; then
            echo "curl accepted the certificate before the CA was installed"; exit 3
        fi
        {gatehouse.binary} trust --config {gatehouse.config_path} --install >/dev/null
        ls /usr/local/share/ca-certificates
        curl -sS --max-time 5 --resolve {resolve} -o /dev/null -w '%{{http_code}}\\n' {url}
        """)
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=NAMESPACE_TIMEOUT_S, cwd=gatehouse.workdir)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    lines = done.stdout.split()
    assert "gatehouse-local-ca.crt" in lines
    assert lines[-1] == "200", done.stdout

    # The machine's own store is as it was.
    assert not os.path.exists("/usr/local/share/ca-certificates/gatehouse-local-ca.crt")
