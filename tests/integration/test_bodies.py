"""Large bodies stream through gatehouse in both directions with bounded memory.

Each transfer is 1 GiB; gatehouse's peak resident memory (VmHWM) may grow by less than 16 MiB
over its value just before the transfer, which is only possible if it never holds a whole body.
"""

import functools
import hashlib
import os
import time

import pytest

import rawhttp
from harness import route

GIB = 1024 * 1024 * 1024
BLOCK = 1024 * 1024
MAX_GROWTH_KIB = 16 * 1024
TRANSFER_TIMEOUT_S = 120


@functools.lru_cache(maxsize=None)
def zeros_sha256(count):
    digest = hashlib.sha256()
    zeros = bytes(BLOCK)
    for _ in range(count // BLOCK):
        digest.update(zeros)
    return digest.hexdigest()


@pytest.fixture
def upload_block():
    """One random MiB; uploads repeat it, so the body is not trivially compressible."""
    return os.urandom(BLOCK)


def warmed_up_hwm(gatehouse):
    """VmHWM after one small request, so start-up allocations are not counted as growth."""
    rawhttp.get(gatehouse.http_port, "/")
    return gatehouse.vm_hwm_kib()


def assert_memory_bounded(gatehouse, before_kib):
    growth = gatehouse.vm_hwm_kib() - before_kib
    assert growth < MAX_GROWTH_KIB, f"VmHWM grew by {growth} KiB during the transfer"


def test_a_1gib_download_streams_through_with_bounded_memory(
        start_gatehouse, nginx_factory, tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    with open(files / "big.bin", "wb") as sparse:
        sparse.truncate(GIB)
    nginx = nginx_factory("files", f"location / {{ root {files}; }}")
    gatehouse = start_gatehouse([route("app.test", nginx)])
    before = warmed_up_hwm(gatehouse)

    digest = hashlib.sha256()
    started = time.monotonic()
    # A sink hashes the body as it arrives, so the test itself never holds 1 GiB.
    with rawhttp.Client(gatehouse.http_port) as client:
        client.send(rawhttp.build_request("GET", "/big.bin"))
        response = client.read_response(sink=digest.update)
    elapsed = time.monotonic() - started

    assert response.status == 200
    assert response.body_length == GIB
    assert digest.hexdigest() == zeros_sha256(GIB)
    assert elapsed < TRANSFER_TIMEOUT_S
    assert_memory_bounded(gatehouse, before)


def send_upload(client, head, blocks):
    """Sends `head`, then every block; returns the sha256 of the body bytes sent."""
    digest = hashlib.sha256()
    client.send(head)
    for block in blocks:
        digest.update(block)
        client.send(block)
    return digest.hexdigest()


def test_a_1gib_upload_with_content_length_streams_through_with_bounded_memory(
        gatehouse, backend, upload_block):
    before = warmed_up_hwm(gatehouse)
    head = rawhttp.build_request("POST", "/upload", headers=[("Content-Length", str(GIB))])

    started = time.monotonic()
    with rawhttp.Client(gatehouse.http_port) as client:
        sent_sha = send_upload(client, head, (upload_block for _ in range(GIB // BLOCK)))
        response = client.read_response()
    elapsed = time.monotonic() - started

    assert response.status == 200, response
    assert response.json()["body_length"] == GIB
    assert response.json()["body_sha256"] == sent_sha
    assert elapsed < TRANSFER_TIMEOUT_S
    assert_memory_bounded(gatehouse, before)


def test_a_1gib_chunked_upload_streams_through_with_bounded_memory(gatehouse, backend, upload_block):
    before = warmed_up_hwm(gatehouse)
    head = rawhttp.build_request("POST", "/upload", headers=[("Transfer-Encoding", "chunked")])
    chunk_head = f"{BLOCK:x}\r\n".encode()

    def chunks():
        for _ in range(GIB // BLOCK):
            yield upload_block

    started = time.monotonic()
    digest = hashlib.sha256()
    with rawhttp.Client(gatehouse.http_port) as client:
        client.send(head)
        for block in chunks():
            digest.update(block)
            client.send(chunk_head + block + b"\r\n")
        client.send(b"0\r\n\r\n")
        response = client.read_response()
    elapsed = time.monotonic() - started

    assert response.status == 200, response
    assert response.json()["body_length"] == GIB
    assert response.json()["body_sha256"] == digest.hexdigest()
    assert elapsed < TRANSFER_TIMEOUT_S
    assert_memory_bounded(gatehouse, before)
