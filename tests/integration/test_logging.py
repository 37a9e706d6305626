"""The access log: one line per request, in text or JSON."""

import json
import time

import rawhttp
from harness import route

JSON_ACCESS_KEYS = {"method", "host", "path", "status", "bytes_in", "bytes_out", "duration_ms",
                    "upstream", "client"}


def lines_mentioning(gatehouse, text, expected=1, timeout=3.0):
    """Log lines containing `text`, waiting up to `timeout` for `expected` of them."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in gatehouse.log_lines() if text in line]
        if len(found) >= expected or time.monotonic() > deadline:
            return found


def test_each_request_writes_one_access_line_with_method_host_path_status_and_upstream(
        gatehouse, backend):
    for n in range(3):
        assert rawhttp.get(gatehouse.http_port, f"/echo/logged-{n}").status == 200
    time.sleep(0.3)
    for n in range(3):
        lines = lines_mentioning(gatehouse, f"/echo/logged-{n}")
        assert len(lines) == 1, lines
        line = lines[0]
        for part in ("GET", "app.test", "200", f"127.0.0.1:{backend.port}"):
            assert part in line, f"{part!r} missing from access line {line!r}"


def test_a_request_refused_without_an_upstream_is_logged_with_its_status(gatehouse):
    assert rawhttp.get(gatehouse.http_port, "/not-routed-path", host="nobody.test").status == 404
    lines = lines_mentioning(gatehouse, "/not-routed-path")
    assert len(lines) == 1, lines
    assert "404" in lines[0] and "nobody.test" in lines[0]


def test_no_access_line_is_written_when_access_logging_is_off(start_gatehouse, backend):
    gatehouse = start_gatehouse([route("app.test", backend)],
                                log={"format": "text", "level": "info", "access": False})
    assert rawhttp.get(gatehouse.http_port, "/echo/unlogged").status == 200
    time.sleep(0.5)
    assert lines_mentioning(gatehouse, "/echo/unlogged", timeout=0) == []


def json_gatehouse(start_gatehouse, backend):
    return start_gatehouse([route("app.test", backend)],
                           log={"format": "json", "level": "info", "access": True})


def json_access_entries(gatehouse, path, expected=1):
    entries = []
    for line in lines_mentioning(gatehouse, path, expected):
        entry = json.loads(line)
        if entry.get("path") == path:
            entries.append(entry)
    return entries


def test_a_json_access_line_is_an_object_with_every_access_field(start_gatehouse, backend):
    gatehouse = json_gatehouse(start_gatehouse, backend)
    body = b"x" * 100
    response = rawhttp.request(gatehouse.http_port, "POST", "/echo/json-logged", body=body)
    assert response.status == 200

    entries = json_access_entries(gatehouse, "/echo/json-logged")
    assert len(entries) == 1, entries
    entry = entries[0]
    assert JSON_ACCESS_KEYS <= set(entry), f"missing {JSON_ACCESS_KEYS - set(entry)}"
    assert entry["method"] == "POST"
    assert entry["host"] == "app.test"
    assert str(entry["status"]) == "200"
    assert f"127.0.0.1:{backend.port}" in str(entry["upstream"])
    assert "127.0.0.1" in str(entry["client"])
    assert int(entry["bytes_in"]) >= len(body)
    assert int(entry["bytes_out"]) >= len(response.body)


def test_every_line_written_in_json_format_is_a_json_object(start_gatehouse, backend):
    gatehouse = json_gatehouse(start_gatehouse, backend)
    assert rawhttp.get(gatehouse.http_port, "/echo/json-only").status == 200
    lines_mentioning(gatehouse, "/echo/json-only")
    for line in gatehouse.log_lines():
        if line.strip():
            assert isinstance(json.loads(line), dict), line
