"""A controllable HTTP/1.1 origin server for the integration tests.

It runs on raw sockets, one thread per connection, so a test decides exactly how the upstream
behaves and can inspect everything gatehouse sent it. The behaviour is chosen by the path:

    /echo...              200, JSON describing the request (the default for unknown paths)
    /bytes/N              N pattern bytes with Content-Length
    /chunked/N            N pattern bytes with chunked transfer coding
    /close-delimited/N    N pattern bytes ended by closing the connection, no length
    /status/CODE          an empty response with that status (204 and 304 carry no body)
    /slow/SECONDS         sleeps, then answers like /echo
    /upload               reads the body as a stream; JSON with its length and sha256
    /hop-headers          200 carrying every hop-by-hop header a proxy must remove
    /ws                   WebSocket handshake (RFC 6455), a greeting frame, then echoes frames
    /reset                reads the request head and resets the connection, answering nothing

Every request is recorded as it arrives, before its body, so a test can assert that a request
was never forwarded, or that a body was cut short. Every accepted TCP connection is recorded
too. Keep-alive follows RFC 9112 section 9.3. Pattern bytes are byte i = i % 251, so any
reordering, loss or duplication in a body changes its content.
"""

import base64
import hashlib
import json
import socket
import struct
import threading
import time

RECV_TIMEOUT_S = 60.0
PATTERN_BLOCK = bytes(range(251)) * 261  # 65511 bytes, a whole number of periods
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC11B65"


def loopback_listener(port, backlog, accept_timeout):
    """A listening TCP socket on 127.0.0.1:`port` (0 for any free port). Its accept() gives up
    after `accept_timeout` seconds, so an accept loop can notice that it should stop."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(backlog)
    listener.settimeout(accept_timeout)
    return listener


def shut_down_all(sockets):
    """Shuts both directions of each socket, waking any thread blocked reading it; sockets
    already closed are skipped."""
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def pattern_bytes(count):
    """The first `count` bytes of the pattern every sized response is made of."""
    repeats = count // len(PATTERN_BLOCK) + 1
    return (PATTERN_BLOCK * repeats)[:count]


def iter_pattern(count):
    """The pattern in blocks, without holding `count` bytes in memory."""
    remaining = count
    while remaining > 0:
        piece = PATTERN_BLOCK if remaining >= len(PATTERN_BLOCK) else PATTERN_BLOCK[:remaining]
        remaining -= len(piece)
        yield piece


def websocket_accept(key):
    """The Sec-WebSocket-Accept value for a Sec-WebSocket-Key (RFC 6455 section 4.2.2)."""
    digest = hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()
    return base64.b64encode(digest).decode()


def encode_ws_frame(opcode, payload, mask=None):
    """One final WebSocket frame; `mask` is the 4-byte key a client must use."""
    header = bytearray([0x80 | opcode])
    mask_bit = 0x80 if mask is not None else 0
    if len(payload) < 126:
        header.append(mask_bit | len(payload))
    elif len(payload) < 65536:
        header.append(mask_bit | 126)
        header += struct.pack("!H", len(payload))
    else:
        header.append(mask_bit | 127)
        header += struct.pack("!Q", len(payload))
    if mask is None:
        return bytes(header) + payload
    return bytes(header) + mask + apply_ws_mask(payload, mask)


def apply_ws_mask(payload, mask):
    repeated = (mask * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big") \
        if payload else b""


def read_ws_frame(read_exact):
    """Reads one frame with `read_exact(n)`; returns (opcode, unmasked payload)."""
    first, second = read_exact(2)
    opcode = first & 0x0F
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", read_exact(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", read_exact(8))
    mask = read_exact(4) if second & 0x80 else None
    payload = read_exact(length) if length else b""
    if mask is not None:
        payload = apply_ws_mask(payload, mask)
    return opcode, payload


class PeerClosed(Exception):
    pass


class RecordedRequest:
    """What the backend saw of one request. Body fields grow while the body streams in."""

    def __init__(self, connection_id, client_port):
        self.connection_id = connection_id
        self.client_port = client_port
        self.received_at = time.monotonic()
        self.raw_head = b""
        self.method = None
        self.target = None
        self.version = None
        self.headers = []
        self.body_length = 0
        self.body_complete = False
        self.body_sha256 = None

    def header(self, name):
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return f"<RecordedRequest {self.method} {self.target} conn={self.connection_id} body={self.body_length}>"


class _Connection:
    def __init__(self, sock):
        self.sock = sock
        self.buffer = bytearray()

    def fill(self):
        data = self.sock.recv(256 * 1024)
        if not data:
            raise PeerClosed()
        self.buffer += data

    def read_head(self, limit=1024 * 1024):
        while True:
            index = self.buffer.find(b"\r\n\r\n")
            if index >= 0:
                head = bytes(self.buffer[:index + 4])
                del self.buffer[:index + 4]
                return head
            if len(self.buffer) > limit:
                raise PeerClosed()
            self.fill()

    def read_line(self):
        while True:
            index = self.buffer.find(b"\r\n")
            if index >= 0:
                line = bytes(self.buffer[:index])
                del self.buffer[:index + 2]
                return line
            self.fill()

    def read_some(self, limit):
        if not self.buffer:
            self.fill()
        piece = bytes(self.buffer[:limit])
        del self.buffer[:limit]
        return piece

    def read_exact(self, count):
        while len(self.buffer) < count:
            self.fill()
        piece = bytes(self.buffer[:count])
        del self.buffer[:count]
        return piece


class Backend:
    """The origin server. Start with start(); stop() closes every connection."""

    def __init__(self, name, port=0):
        self.name = name
        self.requested_port = port
        self.port = None
        self._lock = threading.Lock()
        self._requests = []
        self._connections = []
        self._open_sockets = set()
        self._listener = None
        self._stopping = threading.Event()
        self._threads = []

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self):
        listener = loopback_listener(self.requested_port, backlog=128, accept_timeout=0.1)
        self._listener = listener
        self.port = listener.getsockname()[1]
        thread = threading.Thread(target=self._accept_loop, name=f"backend-{self.name}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self):
        self._stopping.set()
        with self._lock:
            sockets = list(self._open_sockets)
        shut_down_all(sockets)
        for thread in self._threads:
            thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    # ---- what tests inspect ----------------------------------------------------------------

    @property
    def requests(self):
        with self._lock:
            return list(self._requests)

    @property
    def connections(self):
        """(connection_id, client_port) for every accepted TCP connection, in order."""
        with self._lock:
            return list(self._connections)

    def requests_for(self, path_prefix):
        return [r for r in self.requests if r.target and r.target.startswith(path_prefix)]

    def wait_for_requests(self, count, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.requests) >= count:
                return self.requests
            time.sleep(0.02)
        return self.requests

    # ---- serving ---------------------------------------------------------------------------

    def _accept_loop(self):
        next_id = 1
        while not self._stopping.is_set():
            try:
                sock, peer = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(RECV_TIMEOUT_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection_id = next_id
            next_id += 1
            with self._lock:
                self._connections.append((connection_id, peer[1]))
                self._open_sockets.add(sock)
            thread = threading.Thread(target=self._serve, args=(sock, connection_id, peer[1]), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, sock, connection_id, client_port):
        connection = _Connection(sock)
        try:
            while not self._stopping.is_set():
                if not self._serve_one(connection, connection_id, client_port):
                    break
        except (PeerClosed, OSError, ValueError):
            # The peer went away or sent something unparsable; the record already says so.
            pass
        finally:
            with self._lock:
                self._open_sockets.discard(sock)
            try:
                sock.close()
            except OSError:
                pass

    def _serve_one(self, connection, connection_id, client_port):
        """Serves one request; returns whether the connection stays open."""
        try:
            head = connection.read_head()
        except PeerClosed:
            if connection.buffer:
                self._record_unparsed(connection_id, client_port, bytes(connection.buffer))
            raise
        record = RecordedRequest(connection_id, client_port)
        record.raw_head = head
        parsed = _parse_head(head, record)
        with self._lock:
            self._requests.append(record)
        if not parsed:
            connection.sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return False

        path = record.target.split("?", 1)[0]
        if path == "/reset":
            _reset(connection.sock)
            return False
        if (record.header("Expect") or "").lower() == "100-continue":
            connection.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        _consume_body(connection, record)
        keep_alive = _wants_keep_alive(record)
        if path == "/ws":
            self._websocket(connection, record)
            return False
        return self._respond(connection.sock, record, path, keep_alive)

    def _record_unparsed(self, connection_id, client_port, data):
        record = RecordedRequest(connection_id, client_port)
        record.raw_head = data
        with self._lock:
            self._requests.append(record)

    # ---- responses -------------------------------------------------------------------------

    def _respond(self, sock, record, path, keep_alive):
        parts = path.strip("/").split("/")
        kind = parts[0]
        argument = parts[1] if len(parts) > 1 else ""
        connection_header = b"keep-alive" if keep_alive else b"close"

        if kind == "bytes" and argument.isdigit():
            count = int(argument)
            self._send_head(sock, 200, [("Content-Type", "application/octet-stream"),
                                        ("Content-Length", str(count))], connection_header)
            if record.method != "HEAD":
                for piece in iter_pattern(count):
                    sock.sendall(piece)
            return keep_alive
        if kind == "chunked" and argument.isdigit():
            self._send_head(sock, 200, [("Content-Type", "application/octet-stream"),
                                        ("Transfer-Encoding", "chunked")], connection_header)
            if record.method != "HEAD":
                _send_chunked(sock, int(argument))
            return keep_alive
        if kind == "close-delimited" and argument.isdigit():
            # An HTTP/1.0-style body: no length, the end of the connection ends it.
            self._send_head(sock, 200, [("Content-Type", "application/octet-stream")], b"close")
            if record.method != "HEAD":
                for piece in iter_pattern(int(argument)):
                    sock.sendall(piece)
            sock.shutdown(socket.SHUT_WR)
            return False
        if kind == "status" and argument.isdigit():
            return self._send_status(sock, int(argument), connection_header, keep_alive)
        if kind == "slow":
            # Interruptible, so stopping the backend never waits out a long sleep.
            self._stopping.wait(float(argument or "1"))
        if kind == "hop-headers":
            body = b"hop-by-hop headers test\n"
            self._send_head(sock, 200, [
                ("Connection", "X-Private"),
                ("X-Private", "secret"),
                ("Keep-Alive", "timeout=5, max=100"),
                ("Proxy-Connection", "keep-alive"),
                ("TE", "trailers"),
                ("Trailer", "X-Checksum"),
                ("Upgrade", "h2c"),
                ("X-End-To-End", "kept"),
                ("Content-Length", str(len(body))),
            ], None)
            sock.sendall(body)
            return keep_alive

        # /echo, /slow, /upload and anything else: describe the request.
        body = json.dumps(self.describe(record)).encode()
        self._send_head(sock, 200, [("Content-Type", "application/json"),
                                    ("Content-Length", str(len(body)))], connection_header)
        if record.method != "HEAD":
            sock.sendall(body)
        return keep_alive

    def describe(self, record):
        return {
            "backend": self.name,
            "method": record.method,
            "target": record.target,
            "version": record.version,
            "headers": [[k, v] for k, v in record.headers],
            "body_length": record.body_length,
            "body_sha256": record.body_sha256,
            "client_port": record.client_port,
            "connection_id": record.connection_id,
        }

    def _send_status(self, sock, status, connection_header, keep_alive):
        if status in (204, 304):
            extra = [("ETag", '"v1"')] if status == 304 else []
            self._send_head(sock, status, extra, connection_header)
            return keep_alive
        body = f"status {status}\n".encode()
        self._send_head(sock, status, [("Content-Type", "text/plain"),
                                       ("Content-Length", str(len(body)))], connection_header)
        sock.sendall(body)
        return keep_alive

    def _send_head(self, sock, status, headers, connection_header):
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}", f"X-Backend: {self.name}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if connection_header is not None:
            lines.append(f"Connection: {connection_header.decode()}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    # ---- WebSocket -------------------------------------------------------------------------

    def _websocket(self, connection, record):
        key = record.header("Sec-WebSocket-Key")
        upgrade = (record.header("Upgrade") or "").lower()
        if upgrade != "websocket" or not key:
            self._send_head(connection.sock, 400, [("Content-Length", "0")], b"close")
            return
        connection.sock.sendall((
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {websocket_accept(key)}\r\n"
            f"X-Backend: {self.name}\r\n\r\n").encode())
        connection.sock.sendall(encode_ws_frame(0x1, f"hello from {self.name}".encode()))
        while True:
            opcode, payload = read_ws_frame(connection.read_exact)
            if opcode == 0x8:
                connection.sock.sendall(encode_ws_frame(0x8, payload[:2]))
                return
            if opcode == 0x9:
                connection.sock.sendall(encode_ws_frame(0xA, payload))
                continue
            connection.sock.sendall(encode_ws_frame(opcode, payload))


REASONS = {100: "Continue", 101: "Switching Protocols", 200: "OK", 204: "No Content",
           304: "Not Modified", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
           503: "Service Unavailable"}


def _parse_head(head, record):
    """Fills `record` from a request head; False when it is not a request we can answer."""
    text = head[:-4].decode("latin-1")
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return False
    record.method, record.target, record.version = parts
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            return False
        record.headers.append((name, value.strip(" \t")))
    return True


def _wants_keep_alive(record):
    tokens = {t.strip().lower() for v in record.header_values("Connection") for t in v.split(",")}
    if record.version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def _consume_body(connection, record):
    """Reads the request body as a stream, hashing it without keeping it."""
    digest = hashlib.sha256()
    transfer_encoding = (record.header("Transfer-Encoding") or "").strip().lower()
    if transfer_encoding == "chunked":
        while True:
            size = int(connection.read_line().split(b";", 1)[0].strip(), 16)
            if size == 0:
                while connection.read_line() != b"":
                    pass
                break
            remaining = size
            while remaining:
                piece = connection.read_some(min(remaining, 256 * 1024))
                digest.update(piece)
                remaining -= len(piece)
                record.body_length += len(piece)
            if connection.read_line() != b"":
                raise PeerClosed()
    else:
        remaining = int(record.header("Content-Length") or "0")
        while remaining:
            piece = connection.read_some(min(remaining, 256 * 1024))
            digest.update(piece)
            remaining -= len(piece)
            record.body_length += len(piece)
    record.body_sha256 = digest.hexdigest()
    record.body_complete = True


def _send_chunked(sock, count):
    # Varied chunk sizes, upper- and lower-case hex and one chunk extension, so a proxy that
    # forwards the body must really parse the coding.
    sizes = [1, 10, 255, 4096, 65511, 3000]
    data = pattern_bytes(count) if count <= 8 * 1024 * 1024 else None
    offset = 0
    index = 0
    pieces = iter_pattern(count) if data is None else None
    while offset < count:
        if data is not None:
            size = min(sizes[index % len(sizes)], count - offset)
            piece = data[offset:offset + size]
        else:
            piece = next(pieces)
            size = len(piece)
        size_text = f"{size:X}" if index % 2 else f"{size:x}"
        extension = ";note=first" if index == 0 else ""
        sock.sendall(f"{size_text}{extension}\r\n".encode() + piece + b"\r\n")
        offset += size
        index += 1
    sock.sendall(b"0\r\n\r\n")


def _reset(sock):
    # SO_LINGER with a zero timeout turns close() into a TCP reset.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
