"""An upload whose client goes away before the answer is not stored: a real `descent api`
process, and a raw socket that closes while the service parses the file."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, start_process, stop_process, wait_healthy

pytestmark = pytest.mark.e2e

#: 4 MB that take seconds to parse (two million blank rows), then one row: a valid file
SLOW_CSV = b"x,y\n" + b",\n" * 2_000_000 + b"1,2\n"
#: seconds the client waits, once it has sent the file, before it closes the connection
PATIENCE = 0.5


@pytest.fixture
def api(tmp_path: Path) -> Iterator[str]:
    """The URL of `descent api` over a fresh SQLite file."""
    port = free_port()
    log = tmp_path / "api.log"
    db_url = f"sqlite:///{tmp_path / 'api.db'}"
    proc = start_process(["api", "--port", str(port), "--database-url", db_url], log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield url
    finally:
        stop_process(proc)


def upload_request(url: str) -> bytes:
    """The raw bytes of `POST /datasets` with SLOW_CSV as its file."""
    files = {"file": ("slow.csv", SLOW_CSV, "text/csv")}
    request = httpx.Request("POST", f"{url}/datasets", files=files)
    body = request.read()
    head = (
        f"POST /datasets HTTP/1.1\r\nHost: {request.url.netloc.decode()}\r\n"
        f"Content-Type: {request.headers['content-type']}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def uploads_answered(url: str) -> dict[str, float]:
    """How many `POST /datasets` the service has finished, by the status it ended with."""
    text = httpx.get(f"{url}/metrics").text
    return {
        sample.labels["status"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "descent_http_request_duration_seconds_count"
        and sample.labels["route"] == "/datasets"
        and sample.labels["method"] == "POST"
    }


def test_an_upload_whose_client_left_is_not_stored(api: str) -> None:
    port = int(api.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(upload_request(api))
        time.sleep(PATIENCE)
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):  # no answer yet: the file is being parsed
            sock.recv(1)
    # the parse holds up no other request: these are answered while it goes on
    assert httpx.get(f"{api}/health", timeout=30).status_code == 200
    assert uploads_answered(api) == {}
    deadline = time.monotonic() + 60
    while not uploads_answered(api):
        assert time.monotonic() < deadline, "the upload never finished"
        time.sleep(0.1)
    # 499: the route saw its client gone, and stored nothing
    assert uploads_answered(api) == {"499": 1.0}
    assert httpx.get(f"{api}/datasets").json()["items"] == []

    # the same file, its answer waited for, is stored: it was a valid upload
    files = {"file": ("slow.csv", SLOW_CSV, "text/csv")}
    kept = httpx.post(f"{api}/datasets", files=files, timeout=60)
    assert kept.status_code == 201, kept.text
    listed = httpx.get(f"{api}/datasets").json()["items"]
    assert [d["id"] for d in listed] == [kept.json()["id"]]
