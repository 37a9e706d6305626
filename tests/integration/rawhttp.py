"""A small HTTP/1.1 client on raw sockets, for talking to gatehouse byte by byte.

The integration tests need to send requests no ordinary client library would send (smuggling
attempts, obs-folded headers, pipelined batches) and to see exactly how the proxy framed each
response. Everything here works on a plain socket with a timeout on every read, so a test that
waits for something that never comes fails after a bounded time instead of hanging.

The response parser follows RFC 9112 section 6.3: HEAD, 1xx, 204 and 304 have no body; then
Transfer-Encoding: chunked; then Content-Length; otherwise the body runs to the end of the
connection. A response that carries both Transfer-Encoding and Content-Length is reported as a
protocol error, because a proxy must never emit one.
"""

import json
import socket
import time

DEFAULT_TIMEOUT_S = 10.0
READ_SIZE = 256 * 1024


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid HTTP/1.1 response."""


class ConnectionClosed(Exception):
    """The peer closed the connection before a complete response arrived."""


def connect(port, timeout=DEFAULT_TIMEOUT_S, host="127.0.0.1"):
    """Opens a TCP connection to host:port with `timeout` on every later operation."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def build_request(method, target, host="app.test", headers=(), body=None, version="HTTP/1.1"):
    """Serialises a request; Content-Length is added for a bytes body unless given in headers.

    `host=None` leaves the Host header out. Header values are written exactly as given, so a test
    can put any bytes it likes on the wire.
    """
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    names = {name.lower() for name, _ in headers}
    for name, value in headers:
        lines.append(f"{name}: {value}")
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body or b"")


def chunked(body, chunk_size=1000):
    """Encodes `body` with chunked transfer coding, ending with the zero-size chunk."""
    out = bytearray()
    for start in range(0, len(body), chunk_size):
        piece = body[start:start + chunk_size]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    out += b"0\r\n\r\n"
    return bytes(out)


class Response:
    """One parsed response. `headers` keeps order, case and repeats as received."""

    def __init__(self, version, status, reason, headers):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = b""
        self.body_length = 0
        # How the body was delimited: "none", "length", "chunked" or "close".
        self.framing = "none"
        self.trailers = []
        # Interim (1xx) responses received before this one, oldest first.
        self.interim = []

    def header(self, name):
        """The first value of header `name` (case-insensitive), or None."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name):
        lowered = name.lower()
        return [value for key, value in self.headers if key.lower() == lowered]

    def has_header(self, name):
        return bool(self.header_values(name))

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return f"<Response {self.status} {self.reason!r} framing={self.framing} len={self.body_length}>"


class Reader:
    """Buffered reads from a socket; bytes past one response stay for the next one."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = bytearray()
        self.eof = False

    def _fill(self):
        if self.eof:
            return False
        data = self.sock.recv(READ_SIZE)
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def read_line(self, limit=65536):
        """One line without its CRLF. Raises ConnectionClosed at EOF."""
        while True:
            index = self.buffer.find(b"\n")
            if index >= 0:
                line = bytes(self.buffer[:index])
                del self.buffer[:index + 1]
                if not line.endswith(b"\r"):
                    raise ProtocolError(f"line not ended by CRLF: {line[:200]!r}")
                return line[:-1]
            if len(self.buffer) > limit:
                raise ProtocolError("line too long")
            if not self._fill():
                raise ConnectionClosed(f"connection closed mid-line: {bytes(self.buffer[:200])!r}")

    def read_exact(self, count, sink=None):
        """Reads exactly `count` bytes; to `sink(chunk)` if given, otherwise returned."""
        out = bytearray() if sink is None else None
        remaining = count
        while remaining > 0:
            if not self.buffer and not self._fill():
                raise ConnectionClosed(f"connection closed with {remaining} of {count} body bytes missing")
            take = min(remaining, len(self.buffer))
            piece = bytes(self.buffer[:take])
            del self.buffer[:take]
            remaining -= take
            if sink is None:
                out += piece
            else:
                sink(piece)
        return b"" if out is None else bytes(out)

    def read_to_close(self, sink=None):
        """Reads until the peer closes; returns the bytes (or their count when sinking)."""
        out = bytearray()
        total = 0
        while True:
            if self.buffer:
                piece = bytes(self.buffer)
                self.buffer.clear()
                total += len(piece)
                if sink is None:
                    out += piece
                else:
                    sink(piece)
            if not self._fill():
                break
        return bytes(out) if sink is None else total


def _parse_header_block(reader):
    headers = []
    while True:
        line = reader.read_line()
        if line == b"":
            return headers
        if line[:1] in (b" ", b"\t"):
            raise ProtocolError(f"obs-fold in response: {line!r}")
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"malformed header line: {line!r}")
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))


def read_status_and_headers(reader):
    """Reads one status line and header block, interim or final, and no body."""
    line = reader.read_line()
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ProtocolError(f"malformed status line: {line!r}")
    version = parts[0].decode()
    status = int(parts[1])
    reason = parts[2].decode("latin-1") if len(parts) == 3 else ""
    headers = _parse_header_block(reader)
    return Response(version, status, reason, headers)


def _read_chunked(reader, response, sink):
    body = bytearray()

    def collect(piece):
        response.body_length += len(piece)
        if sink is None:
            body.extend(piece)
        else:
            sink(piece)

    while True:
        size_line = reader.read_line()
        size_text = size_line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size line: {size_line!r}") from None
        if size == 0:
            break
        reader.read_exact(size, collect)
        if reader.read_line() != b"":
            raise ProtocolError("chunk data not followed by CRLF")
    response.trailers = _parse_header_block(reader)
    response.body = bytes(body)


def read_response(reader, method="GET", sink=None):
    """Reads one final response (collecting any 1xx before it) from `reader`.

    `method` matters because a response to HEAD has no body whatever its headers say. With
    `sink`, body bytes are passed to sink(chunk) instead of being kept, for large transfers.
    A 101 Switching Protocols is final: the bytes after it belong to the new protocol.
    """
    interim = []
    while True:
        response = read_status_and_headers(reader)
        if 100 <= response.status < 200 and response.status != 101:
            interim.append(response)
            continue
        break
    response.interim = interim

    transfer_encoding = response.header_values("Transfer-Encoding")
    content_length = response.header_values("Content-Length")
    no_body = method == "HEAD" or response.status in (101, 204, 304)
    if no_body:
        return response
    if transfer_encoding and content_length:
        raise ProtocolError("response has both Transfer-Encoding and Content-Length")
    if transfer_encoding:
        if [v.strip().lower() for v in transfer_encoding] != ["chunked"]:
            raise ProtocolError(f"unexpected Transfer-Encoding {transfer_encoding!r}")
        response.framing = "chunked"
        _read_chunked(reader, response, sink)
        return response
    if content_length:
        if len(set(content_length)) != 1 or not content_length[0].isdigit():
            raise ProtocolError(f"bad Content-Length {content_length!r}")
        length = int(content_length[0])
        response.framing = "length"
        response.body_length = length
        response.body = reader.read_exact(length, sink)
        return response
    response.framing = "close"
    if sink is None:
        response.body = reader.read_to_close()
        response.body_length = len(response.body)
    else:
        response.body_length = reader.read_to_close(sink)
    return response


class Client:
    """One client connection to gatehouse, keeping the read buffer between responses."""

    def __init__(self, port, timeout=DEFAULT_TIMEOUT_S):
        self.port = port
        self.sock = connect(port, timeout)
        self.reader = Reader(self.sock)

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method, target, host="app.test", headers=(), body=None, version="HTTP/1.1"):
        """Sends one request and returns its response."""
        self.send(build_request(method, target, host, headers, body, version))
        return self.read_response(method)

    def get(self, target, host="app.test", headers=()):
        return self.request("GET", target, host, headers)

    def read_response(self, method="GET", sink=None):
        return read_response(self.reader, method, sink)

    def is_closed_by_peer(self, timeout=3.0):
        """True once the peer closes (EOF or reset) within `timeout`; False if it stays open.

        Bytes that arrive first are kept in the read buffer, see `pending_bytes`.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.reader.eof:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                if not self.reader._fill():
                    return True
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                self.reader.eof = True
                return True
            finally:
                self.sock.settimeout(DEFAULT_TIMEOUT_S)

    @property
    def pending_bytes(self):
        return bytes(self.reader.buffer)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def get(port, target, host="app.test", headers=(), timeout=DEFAULT_TIMEOUT_S):
    """One GET on a fresh connection."""
    with Client(port, timeout) as client:
        return client.get(target, host, headers)


def request(port, method, target, host="app.test", headers=(), body=None, timeout=DEFAULT_TIMEOUT_S):
    """One request on a fresh connection."""
    with Client(port, timeout) as client:
        return client.request(method, target, host, headers, body)


def send_raw(port, data, timeout=DEFAULT_TIMEOUT_S):
    """Sends `data` on a fresh connection and returns (response or None, closed_afterwards).

    The response is None when the connection closed without one. `closed_afterwards` says
    whether the peer closed the connection within 3 s of the response.
    """
    with Client(port, timeout) as client:
        try:
            client.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            response = client.read_response()
        except (ConnectionClosed, ConnectionResetError):
            return None, True
        return response, client.is_closed_by_peer(3.0)
