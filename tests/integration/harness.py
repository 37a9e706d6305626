"""Starting and stopping the processes the integration tests run: gatehouse itself and nginx.

Everything here is bounded in time: a process that does not become ready, or does not stop,
fails the test after a fixed wait instead of hanging the suite.
"""

import copy
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

import rawhttp
from backend import loopback_listener

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0


# The system call's number on x86_64 and arm64 alike; the C library has no wrapper for it.
PIDFD_GETFD = 438


def socket_option_of(pid, local_port, peer_port, level, option):
    """getsockopt(level, option) on the TCP socket of process `pid` that is bound to local_port
    (None: any port) and connected to peer_port, read through a duplicate of its descriptor
    (pidfd_getfd, Linux 5.6): what the process set on its own end, which the other end cannot
    see."""
    inode = None
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            next(f)
            for line in f:
                fields = line.split()
                local, remote = fields[1], fields[2]
                if (local_port in (None, int(local.rsplit(":", 1)[1], 16))
                        and int(remote.rsplit(":", 1)[1], 16) == peer_port):
                    inode = fields[9]
    assert inode is not None, f"no socket {local_port} <-> {peer_port} in process {pid}"
    target = next(int(fd) for fd in os.listdir(f"/proc/{pid}/fd")
                  if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]")
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        duplicate = libc.syscall(PIDFD_GETFD, pidfd, target, 0)
        if duplicate < 0:
            raise OSError(ctypes.get_errno(), "pidfd_getfd")
    finally:
        os.close(pidfd)
    with socket.socket(fileno=duplicate) as sock:
        return sock.getsockopt(level, option)


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


# How long a Forwarder's held connection may wait for release() before it is dropped.
FORWARDER_HOLD_LIMIT_S = 30.0


class Forwarder:
    """A TCP forwarder on 127.0.0.1 to `target_port` that the test can cut and restore.

    Every chunk passed on is recorded in `events` as (time.monotonic() when it arrived,
    connection number, "up" from the client or "down" from the target, its first bytes), so a
    test can tell when a client last spoke, and for plain HTTP (etcd's gateway) what it asked.
    cut() closes the listener and every forwarded connection at once, as a link going away
    would look to the client: its connections drop and new ones are refused. restore() listens
    again on the same port. With hold=True connections are accepted and left unanswered until
    release(), which forwards them and every later one; `accepted` has the time of each accept.
    It listens on `port`, or on a free port when none is given.
    """

    def __init__(self, target_port=None, hold=False, port=None):
        self.target_port = target_port
        self.port = port or free_port()
        self.events = []
        self.accepted = []
        self._lock = threading.Lock()
        self._sockets = set()
        self._released = threading.Event()
        if not hold:
            self._released.set()
        self._generation = 0
        self._listener = None
        self._thread = None

    def start(self):
        # accept() wakes up every 50 ms to see whether the listener was cut.
        listener = loopback_listener(self.port, backlog=64, accept_timeout=0.05)
        with self._lock:
            self._generation += 1
            self._listener = listener
            generation = self._generation
        self._thread = threading.Thread(target=self._accept, args=(listener, generation),
                                        daemon=True)
        self._thread.start()
        return self

    def restore(self):
        """Listens again on the same port, forwarding; returns the time.monotonic() it was done."""
        self._released.set()
        self.start()
        return time.monotonic()

    def go_silent(self):
        """After cut(): listens again on the same port but answers nothing, as a peer that hangs
        looks: connections are accepted and held until release() or restore()."""
        self._released.clear()
        self.start()
        return time.monotonic()

    def cut(self):
        """Closes the listener and every connection; returns the time.monotonic() it was done."""
        with self._lock:
            self._generation += 1
            listener, self._listener = self._listener, None
            sockets = list(self._sockets)
        if listener is not None:
            self._thread.join(timeout=2)
            listener.close()
        for sock in sockets:
            self._shut(sock)
        return time.monotonic()

    def release(self, target_port=None):
        """Forwards the held connections, and every later one, to `target_port` (or the one
        given at construction)."""
        if target_port is not None:
            self.target_port = target_port
        self._released.set()

    def close(self):
        self.cut()
        self._released.set()

    def up_times(self, longer_than=0):
        """When each chunk from the client longer than `longer_than` bytes arrived."""
        with self._lock:
            return [arrived for arrived, _, direction, head in self.events
                    if direction == "up" and len(head) > longer_than]

    def answered_requests(self, *paths):
        """When each HTTP request for one of `paths` arrived whose answer came back: the target
        had it by then. Each connection carries one request at a time (etcd's client waits for
        the answer before it sends the next request on a connection)."""
        with self._lock:
            events = sorted(self.events)
        pending, answered = {}, []
        for arrived, number, direction, head in events:
            if direction == "up" and any(b" " + path.encode() + b" " in head[:200]
                                         for path in paths):
                pending[number] = arrived
            elif direction == "down" and number in pending:
                answered.append(pending.pop(number))
        return answered

    def _current(self, generation):
        with self._lock:
            return self._generation == generation

    def _accept(self, listener, generation):
        while self._current(generation):
            try:
                client, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                if self._generation != generation:
                    client.close()
                    return
                self._sockets.add(client)
                self.accepted.append(time.monotonic())
                number = len(self.accepted)
            threading.Thread(target=self._serve, args=(client, number, generation),
                             daemon=True).start()

    def _serve(self, client, number, generation):
        upstream = None
        if self._released.wait(timeout=FORWARDER_HOLD_LIMIT_S) and self._current(generation):
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
                upstream.settimeout(None)
            except OSError:
                upstream = None
        if upstream is None:
            self._shut(client)
            client.close()
            return
        with self._lock:
            current = self._generation == generation
            if current:
                self._sockets.add(upstream)
        if not current:
            for sock in (client, upstream):
                self._shut(sock)
                sock.close()
            return
        threading.Thread(target=self._pump, args=(upstream, client, number, "down"),
                         daemon=True).start()
        self._pump(client, upstream, number, "up")

    def _pump(self, source, sink, number, direction):
        # Each socket is read by one pump, which alone closes it; the other side is only shut
        # down, which wakes its pump.
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                arrived = time.monotonic()
                with self._lock:
                    self.events.append((arrived, number, direction, data[:256]))
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._shut(sink)
            self._shut(source)
            source.close()

    def _shut(self, sock):
        with self._lock:
            self._sockets.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
