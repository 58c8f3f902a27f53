"""GET /jobs/{id}/events (API.md section 7) from a real `descent up`: every point once, in step
order, then the job's end; a reconnect with Last-Event-ID gets exactly what it missed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.main import create_app
from tests.conftest import Service, fit_spec, free_port, start_process, stop_process, wait_healthy

pytestmark = pytest.mark.e2e

#: a job of ~5000 one-sample steps, a second or two of training, written every 0.05 s: the
#: stream sees its points arrive over several polls
LONG_ENOUGH = {"batch_size": 1, "epochs": 100}
MINIMIZE = {
    "task": "minimize",
    "objective": {"type": "quadratic"},
    "x0": [10.0],
    "optimizer": {"type": "momentum", "lr": 0.1, "beta": 0.9},
    "steps": 20,
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One `descent up` with one worker for the whole module: starting one takes seconds."""
    folder = tmp_path_factory.mktemp("events")
    port, log = free_port(), folder / "up.log"
    db_url = f"sqlite:///{folder / 'descent.db'}"
    args = ["up", "--port", str(port), "--workers", "1", "--database-url", db_url]
    proc = start_process(args, log, {"DESCENT_FLUSH_SECONDS": "0.05"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        with httpx.Client(base_url=url, timeout=30) as http:
            yield Service(url, db_url, proc, http, log)
    finally:
        stop_process(proc)


@dataclass
class Event:
    id: str | None
    name: str | None
    data: Any


def _strict(constant: str) -> Any:
    raise AssertionError(f"bare {constant} in an event's data")


def parse(lines: Iterator[str]) -> Iterator[Event]:
    """Server-Sent Events: fields up to a blank line; lines starting with ':' are comments."""
    fields: dict[str, list[str]] = {}
    for line in lines:
        if not line:
            if fields:
                data = json.loads("\n".join(fields["data"]), parse_constant=_strict)
                yield Event(fields.get("id", [None])[-1], fields.get("event", [None])[-1], data)
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            fields.setdefault(key, []).append(value.removeprefix(" "))


def stream(
    service: Service,
    job_id: str,
    *,
    last_event_id: str | None = None,
    until: Callable[[list[Event]], bool] = lambda _: False,
) -> list[Event]:
    """The events of one connection, to its end or until `until(events)`, then it is closed."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    got: list[Event] = []
    with service.http.stream("GET", f"/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in parse(response.iter_lines()):
            got.append(event)
            if until(got):
                break
    return got


def check_ids(events: list[Event], *, start: int) -> dict[str, dict[str, list[Any]]]:
    """Ids never go back; a `points` event has only steps after the previous id, its id being
    its last step; every other event repeats the previous id. Returns the points, merged."""
    merged: dict[str, dict[str, list[Any]]] = {}
    previous = start
    for event in events:
        assert event.id is not None
        current = int(event.id)
        if event.name != "points":
            assert current == previous, event
            continue
        steps = [s for series in event.data["series"].values() for s in series["steps"]]
        assert min(steps) > previous and max(steps) == current, event
        for name, series in event.data["series"].items():
            into = merged.setdefault(name, {"steps": [], "values": []})
            into["steps"] += series["steps"]
            into["values"] += series["values"]
        previous = current
    return merged


def check_end(service: Service, job_id: str, events: list[Event], status: str) -> None:
    """The last event is `end`, carrying the job as GET /jobs/{id} answers it."""
    assert [e.name for e in events].count("end") == 1 and events[-1].name == "end"
    assert events[-1].data == service.http.get(f"/jobs/{job_id}").json()
    assert events[-1].data["status"] == status


def curves(service: Service, job_id: str) -> dict[str, Any]:
    return service.http.get(f"/jobs/{job_id}/curves").json()["series"]  # type: ignore[no-any-return]


def test_a_queued_job_streams_to_its_end(service: Service) -> None:
    # the one worker is busy with a job that runs until cancelled, so the next one waits
    blocker = service.submit(fit_spec(batch_size=1, epochs=10_000))
    service.wait(blocker["id"], {"running"})
    job = service.submit(fit_spec(**LONG_ENOUGH))

    def queued_seen(events: list[Event]) -> bool:
        if len(events) == 1:
            service.http.post(f"/jobs/{blocker['id']}/cancel")
        return False

    events = stream(service, job["id"], until=queued_seen)

    first = events[0]
    assert (first.name, first.id, first.data["status"]) == ("progress", "-1", "queued")
    assert {"running", "succeeded"} <= {e.data["status"] for e in events if e.name == "progress"}
    points = check_ids(events, start=-1)
    assert sum(e.name == "points" for e in events) >= 2  # recorded while the stream was open
    assert points["loss"]["steps"] == list(range(1, job["progress"]["total_steps"] + 1))
    assert points == curves(service, job["id"])
    check_end(service, job["id"], events, "succeeded")


def test_a_reconnect_gets_exactly_what_it_missed(service: Service) -> None:
    job = service.submit(fit_spec(**LONG_ENOUGH))
    before = stream(service, job["id"], until=lambda got: got[-1].name == "points")
    last_id = before[-1].id
    assert last_id is not None and int(last_id) >= 1
    after = stream(service, job["id"], last_event_id=last_id)

    check_ids(after, start=int(last_id))  # the new stream starts after the last id received
    points = check_ids(before + after, start=-1)
    assert points == curves(service, job["id"])  # every point, none twice
    check_end(service, job["id"], after, "succeeded")


def test_a_finished_job_gives_everything_at_once(service: Service) -> None:
    job = service.submit(MINIMIZE)
    service.wait(job["id"])
    events = stream(service, job["id"])

    assert [e.name for e in events] == ["points", "progress", "end"]
    points = check_ids(events, start=-1)
    assert points["loss"]["steps"] == list(range(21))  # step 0 holds f(x0)
    assert points == curves(service, job["id"])
    check_end(service, job["id"], events, "succeeded")
    # resuming a finished stream from its middle gives the rest
    rest = stream(service, job["id"], last_event_id="9")
    assert check_ids(rest, start=9)["loss"]["steps"] == list(range(10, 21))
    # and resuming from its end, only the end
    assert [e.name for e in stream(service, job["id"], last_event_id="20")] == ["progress", "end"]


def test_a_diverging_job_sends_no_nan(service: Service) -> None:
    job = service.submit(fit_spec(optimizer={"type": "sgd", "lr": 50.0}))
    events = stream(service, job["id"])  # parse() fails on a bare NaN or Infinity

    check_ids(events, start=-1)
    check_end(service, job["id"], events, "failed")
    assert events[-1].data["error"]["type"] == "diverged"


def test_a_job_deleted_while_watched_ends_its_stream(service: Service) -> None:
    job = service.submit(fit_spec(**LONG_ENOUGH))

    def delete_at_first_points(events: list[Event]) -> bool:
        if events[-1].name == "points" and sum(e.name == "points" for e in events) == 1:
            assert service.http.delete(f"/jobs/{job['id']}").status_code == 204
        return False

    events = stream(service, job["id"], until=delete_at_first_points)
    assert events[-1].name == "gone" and job["id"] in events[-1].data["detail"]
    check_ids(events, start=-1)


def test_unknown_or_malformed(service: Service) -> None:
    response = service.http.get("/jobs/nosuchjob/events")
    assert response.status_code == 404 and "nosuchjob" in response.json()["detail"]
    job = service.submit(MINIMIZE)
    malformed = service.http.get(f"/jobs/{job['id']}/events", headers={"Last-Event-ID": "x"})
    assert malformed.status_code == 422


def test_another_tokens_job_is_not_found(db_url: str) -> None:
    settings = Settings(database_url=db_url, api_tokens="alpha,beta")
    with TestClient(create_app(settings)) as client:
        job = client.post(
            "/jobs", json=fit_spec(), headers={"Authorization": "Bearer alpha"}
        ).json()
        url = f"/jobs/{job['id']}/events"
        assert client.get(url).status_code == 401
        assert client.get(url, headers={"Authorization": "Bearer beta"}).status_code == 404
