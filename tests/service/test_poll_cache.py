"""A cheap poll of a job's curves: one query for all its series, and `ETag` / `If-None-Match`
answered 304 while nothing new is recorded, never once something is.

The points are written by the store's own functions (`job_queue.claim_next`, `curves.record`,
`job_queue.finish`) into a real database file, as a worker writes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, update

from service.api import conditional, polls
from service.client import Client
from service.db.tables import JobRow
from service.schemas.jobs import JobStatus
from service.store import curves, job_queue
from tests.conftest import both_backends
from worker.training.recorder import Chunk

WORKER = "w1"


@pytest.fixture
def claimed(engine: Engine) -> job_queue.Claimed:
    """A job a worker (`w1`) holds, with no points yet."""
    job_queue.create(engine, spec={"device": "cpu"}, owner=None, total_steps=10, total_epochs=1)
    job = job_queue.claim_next(engine, worker_id=WORKER, lease_seconds=30, has_gpu=False)
    assert job is not None
    return job


def record(engine: Engine, job: job_queue.Claimed, steps: range, **extra: float) -> None:
    """The worker records `loss` at `steps` (and `extra` series at the last one)."""
    chunk = Chunk(step=steps[-1], epoch=0)
    for step in steps:
        chunk.add("loss", step, 1.0 / step)
    for name, value in extra.items():
        chunk.add(name, steps[-1], value)
    assert curves.record(engine, job_pk=job.pk, worker_id=WORKER, chunk=chunk, tails={})


def poll(client: TestClient, job: job_queue.Claimed, tag: str | None = None, **params: Any) -> Any:
    headers = {"If-None-Match": tag} if tag is not None else {}
    return client.get(f"/jobs/{job.id}/curves", params=params, headers=headers)


@both_backends
def test_304_while_nothing_is_new_then_200_with_the_new_points(
    client: TestClient, engine: Engine, claimed: job_queue.Claimed
) -> None:
    record(engine, claimed, range(1, 4))
    first = poll(client, claimed, after=1)
    assert first.status_code == 200
    assert first.json()["series"]["loss"]["steps"] == [2, 3]
    tag = first.headers["ETag"]
    assert tag.startswith('"') and tag.endswith('"')
    assert first.headers["Cache-Control"] == "private, no-cache"

    again = poll(client, claimed, tag, after=1)
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["ETag"] == tag

    record(engine, claimed, range(4, 6))
    moved = poll(client, claimed, tag, after=1)
    assert moved.status_code == 200
    assert moved.json()["series"]["loss"]["steps"] == [2, 3, 4, 5]
    assert moved.headers["ETag"] != tag
    assert poll(client, claimed, moved.headers["ETag"], after=1).status_code == 304


@both_backends
def test_a_new_series_at_a_step_already_seen_changes_the_tag(
    client: TestClient, engine: Engine, claimed: job_queue.Claimed
) -> None:
    record(engine, claimed, range(1, 4))
    tag = poll(client, claimed).headers["ETag"]
    chunk = Chunk(step=3, epoch=1)  # the epoch's metrics, at the step the loss already has
    chunk.add("val_loss", 3, 0.5)
    assert curves.record(engine, job_pk=claimed.pk, worker_id=WORKER, chunk=chunk, tails={})
    answer = poll(client, claimed, tag)
    assert answer.status_code == 200
    assert answer.json()["series"]["val_loss"] == {"steps": [3], "values": [0.5]}


@both_backends
def test_names_points_and_after_each_have_their_own_tag(
    client: TestClient, engine: Engine, claimed: job_queue.Claimed
) -> None:
    record(engine, claimed, range(1, 11), val_loss=0.5)
    variants: list[dict[str, Any]] = [
        {},
        {"names": "loss"},
        {"names": "val_loss"},
        {"points": 3},
        {"points": 4},
        {"after": 5},
        {"after": 6},
        {"names": "loss", "after": 5, "points": 3},
    ]
    tags = [poll(client, claimed, **params).headers["ETag"] for params in variants]
    assert len(set(tags)) == len(variants)
    # each tag is current for its own query only
    for params, tag in zip(variants, tags, strict=True):
        assert poll(client, claimed, tag, **params).status_code == 304
    mine = poll(client, claimed, tags[1], names="val_loss")
    assert mine.status_code == 200
    assert list(mine.json()["series"]) == ["val_loss"]


@both_backends
def test_a_status_change_with_no_new_points_changes_the_tag(
    client: TestClient, engine: Engine, claimed: job_queue.Claimed
) -> None:
    record(engine, claimed, range(1, 4))
    tag = poll(client, claimed).headers["ETag"]
    assert job_queue.finish(engine, job_pk=claimed.pk, worker_id=WORKER, status=JobStatus.succeeded)
    answer = poll(client, claimed, tag)
    assert answer.status_code == 200
    assert answer.json()["status"] == "succeeded"
    assert answer.json()["series"]["loss"]["steps"] == [1, 2, 3]
    assert answer.headers["ETag"] != tag


def test_a_job_run_again_from_the_start_never_matches_its_first_run(
    client: TestClient, engine: Engine, claimed: job_queue.Claimed
) -> None:
    record(engine, claimed, range(1, 4))
    tag = poll(client, claimed).headers["ETag"]
    with engine.begin() as conn:  # its worker died: the lease ran out
        conn.execute(update(JobRow).values(lease_expires_at=JobRow.created_at))
    assert job_queue.requeue_expired(engine) == 1
    queued = poll(client, claimed, tag)
    assert queued.status_code == 200
    assert queued.json() == {"job_id": claimed.id, "status": "queued", "series": {}}
    again = job_queue.claim_next(engine, worker_id=WORKER, lease_seconds=30, has_gpu=False)
    assert again is not None and again.attempts == 2
    chunk = Chunk(step=3, epoch=0)  # the same steps as the first run, other values
    for step in range(1, 4):
        chunk.add("loss", step, 2.0)
    assert curves.record(engine, job_pk=again.pk, worker_id=WORKER, chunk=chunk, tails={})
    rerun = poll(client, claimed, tag)
    assert rerun.status_code == 200
    assert rerun.json()["series"]["loss"]["values"] == [2.0, 2.0, 2.0]


def test_if_none_match_lists_weak_tags_and_star(
    client: TestClient, engine: Engine, claimed: job_queue.Claimed
) -> None:
    record(engine, claimed, range(1, 3))
    tag = poll(client, claimed).headers["ETag"]
    assert poll(client, claimed, f'"other", W/{tag}').status_code == 304
    assert poll(client, claimed, "*").status_code == 304
    assert poll(client, claimed, '"other"').status_code == 200
    assert poll(client, claimed, tag.strip('"')).status_code == 200  # unquoted: not a tag
    missing = client.get("/jobs/nope/curves", headers={"If-None-Match": "*"})
    assert missing.status_code == 404
    assert "no job 'nope'" in missing.json()["detail"]


@pytest.fixture
def selects(engine: Engine, client: TestClient) -> Iterator[list[str]]:
    """The SELECT statements the app's engine sends, from the moment of the call."""
    app_engine: Engine = client.app.state.engine  # type: ignore[attr-defined]
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append(statement)

    event.listen(app_engine, "before_cursor_execute", count)
    yield sent
    event.remove(app_engine, "before_cursor_execute", count)


@both_backends
def test_one_query_reads_every_series_and_a_304_reads_no_points(
    client: TestClient, engine: Engine, claimed: job_queue.Claimed, selects: list[str]
) -> None:
    record(engine, claimed, range(1, 6), val_loss=0.5, train_loss=0.4, lr=0.1, accuracy=0.9)
    answer = poll(client, claimed)
    assert set(answer.json()["series"]) == {"loss", "val_loss", "train_loss", "lr", "accuracy"}
    # the job, its series with their last steps, the points of all five
    assert len(selects) == 3, selects
    selects.clear()
    assert poll(client, claimed, answer.headers["ETag"]).status_code == 304
    assert len(selects) == 2, selects
    assert not any('curve_chunks."values"' in statement for statement in selects)


def test_the_whole_curve_read_in_one_query_matches_each_series_read_alone(
    engine: Engine, claimed: job_queue.Claimed
) -> None:
    for start in range(1, 300, 50):  # chunks of 50 steps, epoch metrics every 100
        chunk = Chunk(step=start + 49, epoch=0)
        for step in range(start, start + 50):
            chunk.add("loss", step, float(step))
            if step % 100 == 0:
                chunk.add("val_loss", step, -float(step))
        chunk.add("lr", start, None)  # a value that was not finite
        assert curves.record(engine, job_pk=claimed.pk, worker_id=WORKER, chunk=chunk, tails={})
    with engine.connect() as conn:
        for after in (None, 0, 99, 100, 250, 299, 300):
            together = curves.read(conn, job_pk=claimed.pk, names=None, after=after)
            alone = {
                name: curves.read(conn, job_pk=claimed.pk, names=[name], after=after)[name]
                for name in ("loss", "val_loss", "lr")
            }
            assert together == alone
            past = [s for s in range(1, 301) if after is None or s > after]
            assert together["loss"] == (past, [float(s) for s in past])
            assert together["val_loss"][0] == [s for s in (100, 200, 300) if s in past]
            lr_steps = [s for s in range(1, 300, 50) if s in past]
            assert together["lr"] == (lr_steps, [None] * len(lr_steps))


def test_the_client_polls_with_if_none_match(
    client: TestClient, engine: Engine, claimed: job_queue.Claimed
) -> None:
    api = Client("http://testserver")
    api.http.close()
    api.http = client  # the app in process: a TestClient is an httpx.Client
    statuses: list[int] = []
    client.event_hooks["response"] = [lambda response: statuses.append(response.status_code)]
    record(engine, claimed, range(1, 4))
    points, tag = api._new_loss_points(claimed.id, after=None, tag=None)
    assert points == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    points, tag = api._new_loss_points(claimed.id, after=3, tag=None)
    assert points == [] and tag is not None
    assert api._new_loss_points(claimed.id, after=3, tag=tag) == ([], tag)
    assert statuses == [200, 200, 304]
    record(engine, claimed, range(4, 5))
    points, newer = api._new_loss_points(claimed.id, after=3, tag=tag)
    assert points == [(4, 0.25)] and newer != tag
    assert statuses[-1] == 200


def _point_reads(statements: list[str]) -> int:
    return sum('curve_chunks."values"' in statement for statement in statements)


def test_the_same_question_asked_twice_reads_the_points_once(
    client: TestClient, engine: Engine, claimed: job_queue.Claimed, selects: list[str]
) -> None:
    record(engine, claimed, range(1, 51))
    first, second = poll(client, claimed, points=10), poll(client, claimed, points=10)
    assert first.content == second.content
    assert first.headers["ETag"] == second.headers["ETag"]
    assert _point_reads(selects) == 1
    record(engine, claimed, range(51, 53))
    third = poll(client, claimed, points=10)
    assert third.json()["series"]["loss"]["steps"][-1] == 52
    assert _point_reads(selects) == 2


def test_long_reads_on_sqlite_asked_together_are_read_once_in_a_thread(
    client: TestClient,
    engine: Engine,
    claimed: job_queue.Claimed,
    selects: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(polls, "INLINE_POINTS", 10)  # every read here is a long one
    read_series = curves.read_series

    def slow_read(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.3)  # in its thread: long enough for every poll to ask meanwhile
        return read_series(*args, **kwargs)

    monkeypatch.setattr(curves, "read_series", slow_read)
    record(engine, claimed, range(1, 101), val_loss=0.5)
    app = client.app

    async def together() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            url = f"/jobs/{claimed.id}/curves"
            return await asyncio.gather(*(http.get(url, params={"after": 40}) for _ in range(8)))

    answers = asyncio.run(together())
    assert [a.status_code for a in answers] == [200] * 8
    assert {a.content for a in answers} == {answers[0].content}
    assert answers[0].json()["series"]["loss"]["steps"] == list(range(41, 101))
    assert answers[0].json()["series"]["val_loss"] == {"steps": [100], "values": [0.5]}
    assert _point_reads(selects) == 1
    tag = answers[0].headers["ETag"]
    assert poll(client, claimed, tag, after=40).status_code == 304


def test_kept_answers_are_bounded_in_bytes_oldest_out_first() -> None:
    kept = conditional.Answers(max_bytes=10, max_body=6)
    kept.put('"a"', b"aaaa")
    kept.put('"b"', b"bbbb")
    assert kept.get('"a"') == b"aaaa"  # now the newest
    kept.put('"c"', b"cccc")  # 12 bytes: the oldest, b, goes
    assert (kept.get('"a"'), kept.get('"b"'), kept.get('"c"')) == (b"aaaa", None, b"cccc")
    kept.put('"d"', b"d" * 7)  # past max_body: not kept
    assert kept.get('"d"') is None
