"""Starting and stopping the processes the integration tests run: gatehouse itself and nginx.

Everything here is bounded in time: a process that does not become ready, or does not stop,
fails the test after a fixed wait instead of hanging the suite.
"""

import copy
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

import rawhttp

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0


def gatehouse_binary():
    """The binary under test: $GATEHOUSE_BINARY, else <repo>/build/gatehouse.

    Made absolute here, because gatehouse runs with its workdir as cwd and a relative path
    (GATEHOUSE_BINARY=build/gatehouse) would otherwise be looked up from there.
    """
    return Path(os.environ.get("GATEHOUSE_BINARY") or REPO_ROOT / "build" / "gatehouse").absolute()


def require_gatehouse_binary():
    """The binary's path; fails the test (never skips it) when the binary is missing."""
    binary = gatehouse_binary()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"gatehouse binary not found or not executable at {binary}; build it "
                    "(cmake --build build) or point GATEHOUSE_BINARY at it", pytrace=False)
    return binary


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RefusingPort:
    """A port that is bound but never listens, so every connection to it is refused.

    Holding the bound socket keeps any other process from taking the port; release() frees it
    for a backend that should appear there later.
    """

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def release(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def upstream_url(upstream):
    """Accepts a Backend, an Nginx, a RefusingPort or a URL string."""
    return upstream if isinstance(upstream, str) else upstream.url


def path_route(prefix, *upstreams, strip_prefix=False):
    entry = {"prefix": prefix}
    if strip_prefix:
        entry["strip_prefix"] = True
    urls = [upstream_url(u) for u in upstreams]
    if len(urls) == 1:
        entry["upstream"] = urls[0]
    else:
        entry["upstreams"] = urls
    return entry


def route(host, *upstreams, paths=None):
    """A route for `host`: either every path to `upstreams`, or the given path entries."""
    if paths is None:
        paths = [path_route("/", *upstreams)]
    return {"host": host, "paths": paths}


def base_config(http_port, admin_port, routes):
    return {
        "listen": {"http": f"127.0.0.1:{http_port}", "admin": f"127.0.0.1:{admin_port}"},
        "health_path": "/healthz",
        "threads": 2,
        "timeouts": {"header_read": "10s", "idle": "60s", "upstream_connect": "5s",
                     "upstream_response": "60s", "drain": "3s"},
        "limits": {"max_header_bytes": "16KiB", "max_uri_bytes": "8KiB", "max_body_bytes": 0,
                   "max_connections": 10000},
        "upstream_health": {"max_fails": 1, "cooldown": "10s"},
        "trusted_proxies": ["10.0.0.0/8"],
        "log": {"format": "text", "level": "info", "access": True},
        "routes": routes,
    }


def with_https(config, https_port, store_dir):
    """`config` with a TLS listener on `https_port` and, unless it names one, a file store in
    `store_dir`, so that no test ever touches the default /var/lib/gatehouse."""
    result = merge(config, {"listen": {"https": f"127.0.0.1:{https_port}"}})
    if "store" not in result:
        result["store"] = {"file": str(store_dir)}
    return result


def merge(base, overrides):
    """`base` with `overrides` merged in; nested mappings merge key by key."""
    result = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def wait_for_line(read_lines, predicate, timeout):
    """The first of read_lines() for which predicate(line) holds, reading again every 50 ms;
    None after `timeout` seconds. For log files that other processes are still writing."""
    deadline = time.monotonic() + timeout
    while True:
        for line in read_lines():
            if predicate(line):
                return line
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


class Gatehouse:
    """One gatehouse process started with `run --config`, logging to a file."""

    def __init__(self, binary, workdir, config):
        self.binary = binary
        self.workdir = Path(workdir)
        self.config = config
        self.config_path = self.workdir / "gatehouse.yaml"
        self.log_path = self.workdir / "gatehouse.log"
        self.proc = None
        self._log_file = None
        self.stopped_by_test = False

    @property
    def http_port(self):
        return int(self.config["listen"]["http"].rsplit(":", 1)[1])

    @property
    def admin_port(self):
        return int(self.config["listen"]["admin"].rsplit(":", 1)[1])

    @property
    def https_port(self):
        """The TLS listener's port, or None when the config has no listen.https."""
        address = self.config["listen"].get("https")
        return int(address.rsplit(":", 1)[1]) if address else None

    @property
    def pid(self):
        return self.proc.pid

    def write_config(self, config=None, text=None):
        """Writes `config` (a dict) or raw YAML `text` to the config file."""
        if text is None:
            if config is not None:
                self.config = config
            text = yaml.safe_dump(self.config, sort_keys=False)
        self.config_path.write_text(text)
        return text

    def start(self):
        self.write_config()
        self._log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(self.binary), "run", "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            cwd=self.workdir)
        self.wait_ready()
        return self

    def wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_S
        last_error = None
        while time.monotonic() < deadline:
            code = self.proc.poll()
            assert code is None, f"gatehouse exited with {code} before it was ready\n{self.log_tail()}"
            try:
                response = rawhttp.get(self.admin_port, "/readyz", host="127.0.0.1", timeout=1.0)
                if response.status == 200:
                    return
                last_error = f"/readyz answered {response.status}"
            except (OSError, rawhttp.ProtocolError, rawhttp.ConnectionClosed) as error:
                last_error = repr(error)
            time.sleep(0.05)
        raise AssertionError(
            f"gatehouse not ready within {READY_TIMEOUT_S}s (last: {last_error})\n{self.log_tail()}")

    def send_signal(self, signum):
        if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
            self.stopped_by_test = True
        self.proc.send_signal(signum)

    def reload(self, config=None, text=None):
        """Rewrites the config file and sends SIGHUP."""
        self.write_config(config, text)
        self.send_signal(signal.SIGHUP)

    def wait_exit(self, timeout):
        """The exit code, or None if the process is still running after `timeout` seconds."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        """SIGTERM, a bounded wait, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait_exit(STOP_TIMEOUT_S) is None:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self):
        return self.log_text().splitlines()

    def log_tail(self, lines=60):
        return "\n".join(self.log_lines()[-lines:])

    def wait_for_log(self, predicate, timeout=5.0):
        """The first log line for which predicate(line) holds, or None after `timeout`."""
        return wait_for_line(self.log_lines, predicate, timeout)

    def vm_hwm_kib(self):
        """Peak resident memory so far (VmHWM from /proc/PID/status), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("VmHWM missing from /proc status")


class Nginx:
    """A real nginx on a free loopback port, configured from `server_body` in its own prefix."""

    def __init__(self, workdir, server_body):
        self.prefix = Path(workdir)
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.server_body = server_body
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        assert os.access(binary, os.X_OK), "nginx is not installed; scripts/install-deps.sh installs it"
        for name in ("logs", "tmp"):
            (self.prefix / name).mkdir(exist_ok=True)
        tmp = self.prefix / "tmp"
        conf = self.prefix / "nginx.conf"
        conf.write_text(f"""
user root;
worker_processes 1;
daemon off;
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    sendfile on;
    keepalive_requests 10000;
    server {{
        listen 127.0.0.1:{self.port};
        {self.server_body}
    }}
}}
""")
        self.proc = subprocess.Popen([binary, "-p", str(self.prefix), "-c", str(conf)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.prefix / "logs" / "stderr.log", "wb"),
                                     start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"nginx exited early: {self.error_log()}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"nginx did not start listening: {self.error_log()}")

    def error_log(self):
        parts = []
        for name in ("error.log", "stderr.log"):
            path = self.prefix / "logs" / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                # nginx runs in its own session, so its group holds only its master and workers.
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


def assert_never_forwarded(*backends, settle_s=0.3):
    """Fails if any backend received anything (after a short wait for stragglers)."""
    time.sleep(settle_s)
    for backend in backends:
        assert backend.requests == [], f"{backend.name} received {backend.requests!r}"
