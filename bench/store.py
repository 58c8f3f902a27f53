"""The metric store: points a worker writes per second, reading long curves back (thinned,
whole, a zoom window), and the bytes a stored point costs; on SQLite and on PostgreSQL.

Writes go through the worker's real path (DatabaseRecorder's thread -> curves.record), in
chunks of whole steps as the training loop hands them over. Reads are timed in process
(curves.read inside one read transaction, as the API makes it) and over HTTP from
`descent api` on the same SQLite file, the client's reading and parsing of the body included.
Every HTTP read asks for something no earlier one asked (one point more, another window), so
that no answer comes from those the API keeps by ETag for pollers that ask the same.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import Engine

from bench import mlflow_store, store_size
from bench.postgres import postgres_database, postgres_down
from bench.report import Row, not_measured
from bench.service import running_service
from service.db.engine import make_engine, reading
from service.db.migrate import migrate
from service.store import curves, job_queue
from worker.database_recorder import DatabaseRecorder
from worker.training.recorder import Chunk

#: steps per chunk: what a loop at 5,000 steps/s hands over at each 0.2 s flush, and the
#: size of MLflow's batches in the comparison
CHUNK_STEPS = mlflow_store.BATCH
#: a thinned read's points: a chart's width
THIN_POINTS = 1000
#: a zoom: a window of ZOOM_STEPS steps in the long curve, thinned to ZOOM_POINTS
ZOOM_STEPS, ZOOM_POINTS = 600, 50
#: the targets (issue 11): points/s written; seconds of a thinned read in process and over
#: HTTP; the long curve's thinned read against the short one's; seconds of the whole long
#: curve over HTTP; seconds of a zoom; bytes a stored point
WRITE_RATE, THIN_LOCAL_S, THIN_HTTP_S, LENGTH_RATIO = 3_000_000, 0.010, 0.020, 2.0
WHOLE_HTTP_S, ZOOM_S, BYTES_PER_POINT = 0.300, 0.010, 12.0

#: one series' steps and values
Loss = tuple[list[int], list[float | None]]


@dataclass(frozen=True)
class Sizes:
    #: steps of the long curve (written and read) and of the short one (read)
    long: int
    short: int
    #: steps of MLflow's curve: 10^6 would take it minutes to write
    mlflow: int
    #: timed runs of each write, of each short read and of each whole read
    writes: int
    reads: int
    whole_reads: int


FULL = Sizes(long=1_000_000, short=10_000, mlflow=100_000, writes=5, reads=21, whole_reads=5)
QUICK = Sizes(long=20_000, short=2_000, mlflow=5_000, writes=1, reads=3, whole_reads=1)


@dataclass(frozen=True)
class Curve:
    """A job's stored curve: its primary key and id, and the steps of its `loss` (1..steps)."""

    pk: int
    id: str
    steps: int


def chunks(steps: int, epoch_steps: int) -> list[Chunk]:
    """A run's chunks: a loss per step, and the per-epoch metrics at the end of each epoch."""
    out = []
    for start in range(1, steps + 1, CHUNK_STEPS):
        chunk = Chunk(step=min(start + CHUNK_STEPS, steps + 1) - 1, epoch=0)
        for step in range(start, chunk.step + 1):
            chunk.add("loss", step, 1.0 / step + 0.01 * math.sin(step))
            if step % epoch_steps == 0:
                for name in ("train_loss", "val_loss", "lr"):
                    chunk.add(name, step, 1.0 / step)
                chunk.epoch = step // epoch_steps
        out.append(chunk)
    return out


def points_in(run: list[Chunk]) -> int:
    return sum(len(steps) for chunk in run for steps, _ in chunk.series.values())


def old_rows(run: list[Chunk]) -> Iterator[store_size.Point]:
    """The run's points as the old design's rows, a series id per name."""
    ids: dict[str, int] = {}
    for chunk in run:
        for name, (steps, values) in chunk.series.items():
            sid = ids.setdefault(name, len(ids) + 1)
            yield from ((sid, s, v) for s, v in zip(steps, values, strict=True))


def _job(engine: Engine) -> tuple[int, str]:
    """A new job, claimed by the benchmark's worker: its primary key and id."""
    job = job_queue.create(engine, spec={}, owner=None, total_steps=1, total_epochs=1)
    claimed = job_queue.claim_next(engine, worker_id="bench", lease_seconds=600, has_gpu=False)
    assert claimed is not None and claimed.id == job.id
    return claimed.pk, job.id


def write(engine: Engine, run: list[Chunk]) -> tuple[float, Curve]:
    """Seconds from the first chunk handed over to the last one stored, and the curve."""
    job_pk, job_id = _job(engine)
    recorder = DatabaseRecorder(
        engine,
        job_pk=job_pk,
        worker_id="bench",
        lease_seconds=600,
        heartbeat_seconds=0.25,
        shutdown=threading.Event(),
    )
    started = time.perf_counter()
    with recorder:
        for chunk in run:
            recorder.record(chunk)
    return time.perf_counter() - started, Curve(job_pk, job_id, run[-1].step)


def write_rate(engine: Engine, run: list[Chunk], runs: int) -> tuple[float, Curve]:
    """Points written per second (the median of `runs` curves), and the last curve."""
    written = [write(engine, run) for _ in range(runs)]
    return points_in(run) / statistics.median(s for s, _ in written), written[-1][1]


def median_seconds(fn: Callable[[int], Any], runs: int) -> float:
    """The median seconds of fn(0), ..., fn(runs - 1)."""
    times = []
    for i in range(runs):
        started = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def local_reader(engine: Engine) -> Callable[..., Loss]:
    """Reads a curve's `loss` in process: curves.read in a read transaction of its own."""

    def read(curve: Curve, **window: int) -> Loss:
        with reading(engine) as conn:
            return curves.read(conn, job_pk=curve.pk, names=["loss"], **window)["loss"]

    return read


def http_reader(client: httpx.Client) -> Callable[..., Loss]:
    """Reads a curve's `loss` over HTTP, the body read and parsed."""

    def read(curve: Curve, **window: int) -> Loss:
        response = client.get(f"/jobs/{curve.id}/curves", params={"names": "loss", **window})
        response.raise_for_status()
        loss = orjson.loads(response.content)["series"]["loss"]
        return loss["steps"], loss["values"]

    return read


def zoom_start(curve: Curve, i: int, runs: int) -> int:
    """The first step of the i-th zoom window: windows spread over the curve, none the same."""
    return 1 + (curve.steps - ZOOM_STEPS) * (i + 1) // (runs + 2)


def check(loss: Loss, first: int, last: int, points: int | None) -> None:
    """A read that answered wrong would make its time mean nothing."""
    steps = loss[0]
    right = bool(steps) and steps[0] == first and steps[-1] == last
    if points is None:
        right = right and len(steps) == last - first + 1
    else:
        right = right and points // 2 <= len(steps) <= points
    if not right:
        raise RuntimeError(f"a read of steps {first}..{last} at {points} points answered wrong")


def thinned_seconds(read: Callable[..., Loss], curve: Curve, runs: int) -> float:
    """A curve thinned to THIN_POINTS (+ i, so that each HTTP read is new)."""
    check(read(curve, points=THIN_POINTS), 1, curve.steps, THIN_POINTS)
    return median_seconds(lambda i: read(curve, points=THIN_POINTS + 1 + i), runs)


def whole_seconds(read: Callable[..., Loss], curve: Curve, runs: int) -> float:
    """The whole curve (to an `end` past its last step, another each time: the same points)."""
    check(read(curve), 1, curve.steps, None)
    return median_seconds(lambda i: read(curve, end=curve.steps + 1 + i), runs)


def zoom_seconds(read: Callable[..., Loss], curve: Curve, runs: int) -> float:
    """A window of ZOOM_STEPS thinned to ZOOM_POINTS, a different window each time."""

    def zoom(i: int) -> Loss:
        start = zoom_start(curve, i, runs + 1)
        return read(curve, start=start, end=start + ZOOM_STEPS - 1, points=ZOOM_POINTS)

    start = zoom_start(curve, runs, runs + 1)
    check(zoom(runs), start, start + ZOOM_STEPS - 1, ZOOM_POINTS)
    return median_seconds(zoom, runs)


def read_figures(
    read: Callable[..., Loss], long: Curve, short: Curve, sizes: Sizes
) -> dict[str, float]:
    """Median seconds of each read: thinned (long, short), whole (long), zoom (long)."""
    return {
        "thin_long": thinned_seconds(read, long, sizes.reads),
        "thin_short": thinned_seconds(read, short, sizes.reads),
        "whole": whole_seconds(read, long, sizes.whole_reads),
        "zoom": zoom_seconds(read, long, sizes.reads),
    }


def measure_sqlite(folder: Path, run: list[Chunk], sizes: Sizes) -> dict[str, Any]:
    """Writes, reads in process and over HTTP, and bytes a point, on a SQLite file."""
    url = f"sqlite:///{folder / 'store.db'}"
    engine = make_engine(url)
    migrate(engine)
    rate, long = write_rate(engine, run, sizes.writes)
    short_run = chunks(sizes.short, epoch_steps=max(1, sizes.short // 10))
    _, short = write(engine, short_run)
    stored = points_in(run) * sizes.writes + points_in(short_run)
    out: dict[str, Any] = {
        "points_per_s": rate,
        "local": read_figures(local_reader(engine), long, short, sizes),
        "bytes_per_point": store_size.sqlite_curve_bytes(engine) / stored,
        "old_bytes_per_point": store_size.sqlite_old_bytes(folder, old_rows(run)) / points_in(run),
    }
    engine.dispose()
    # each read's first, untimed, checks it and pays for the API's lazy imports and pool
    with running_service(workers=0, database_url=url) as client:
        out["http"] = read_figures(http_reader(client), long, short, sizes)
    return out


def measure_postgres(run: list[Chunk], sizes: Sizes) -> dict[str, Any]:
    """Writes, the long curve thinned in process, and bytes a point, on PostgreSQL."""
    points = points_in(run)
    with postgres_database() as url:
        engine = make_engine(url)
        try:
            migrate(engine)
            rate, long = write_rate(engine, run, sizes.writes)
            # what autovacuum does within a minute of a table's first rows: without statistics
            # of the new table the planner guesses that a series has two chunks, and scans
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    "ANALYZE curve_chunks"
                )
            thin = thinned_seconds(local_reader(engine), long, sizes.reads)
            stored_bytes = store_size.postgres_curve_bytes(engine)
        finally:
            engine.dispose()
        old_bytes = store_size.postgres_old_bytes(url, old_rows(run))
    return {
        "points_per_s": rate,
        "thin_long": thin,
        "bytes_per_point": stored_bytes / (points * sizes.writes),
        "old_bytes_per_point": old_bytes / points,
    }


def _mlflow(folder: Path, sizes: Sizes) -> tuple[dict[str, float], str]:
    """MLflow's figures, or none and why."""
    try:
        window = (ZOOM_STEPS, ZOOM_POINTS)
        runs = min(sizes.reads, 3)
        return mlflow_store.measure(folder, sizes.mlflow, runs, THIN_POINTS, window), ""
    except mlflow_store.Unavailable as exc:
        return {}, f"MLflow not measured: {exc}"


def rows(quick: bool) -> Iterator[Row]:
    sizes = QUICK if quick else FULL
    run = chunks(sizes.long, epoch_steps=max(1, sizes.long // 10))
    with tempfile.TemporaryDirectory() as tmp:
        ours = measure_sqlite(Path(tmp), run, sizes)
        theirs, why = _mlflow(Path(tmp), sizes)
    down = postgres_down()
    pg = measure_postgres(run, sizes) if down is None else None
    table = Table(sizes, ours, theirs, why, pg, f"no server: {down}")
    yield from table.rows()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


@dataclass(frozen=True)
class Table:
    """The rows, from the figures."""

    sizes: Sizes
    ours: dict[str, Any]
    theirs: dict[str, float]
    why_no_mlflow: str
    #: PostgreSQL's figures, None when no server answers (and why not)
    pg: dict[str, Any] | None
    why_no_pg: str

    def rows(self) -> Iterator[Row]:
        yield self.write_row("SQLite", self.ours)
        yield self.write_row("PostgreSQL", self.pg)
        yield self.thin_row()
        yield self.length_row()
        yield self.whole_row()
        yield self.zoom_row()
        yield self.pg_thin_row()
        yield self.size_row("SQLite", "dbstat of the curve tables", self.ours)
        yield self.size_row("PostgreSQL", "pg_total_relation_size of the curve tables", self.pg)

    def mlflow(self, key: str, what: str) -> tuple[str, float | None]:
        """MLflow's reference cell for `key`, and its figure."""
        figure = self.theirs.get(key)
        if figure is None:
            return self.why_no_mlflow, None
        curve = f"a {self.sizes.mlflow:,}-step curve"
        cell = f"{figure:,.0f} points/s" if key == "points_per_s" else ms(figure)
        return f"{cell} (MLflow, {what}; {curve})", figure

    def write_row(self, database: str, ours: dict[str, Any] | None) -> Row:
        name = (
            f"3a. metric store, writes: points per second a worker stores into {database}, "
            f"a {self.sizes.long:,}-step curve"
        )
        if ours is None:
            return not_measured(name, self.why_no_pg)
        rate = ours["points_per_s"]
        reference, mlflow = self.mlflow("points_per_s", f"runs/log-batch of {CHUNK_STEPS:,}")
        return Row(
            name,
            f"{rate:,.0f} points/s (recorder thread -> curves.record, {CHUNK_STEPS:,}-step chunks)",
            reference,
            f"{rate / mlflow:,.0f}" if mlflow else "-",
            f">= {WRITE_RATE:,} points/s",
            rate >= WRITE_RATE,
        )

    def thin_row(self) -> Row:
        http, local = self.ours["http"]["thin_long"], self.ours["local"]["thin_long"]
        reference, mlflow = self.mlflow("thin_s", "get-history-bulk-interval")
        return Row(
            f"3b. metric store, reads: a {self.sizes.long:,}-step curve thinned to "
            f"{THIN_POINTS:,} points, SQLite",
            f"{ms(http)} over HTTP ({ms(local)} in process)",
            reference,
            f"{http / mlflow:.3f} ({mlflow / http:,.0f}x faster)" if mlflow else "-",
            f"< {ms(THIN_HTTP_S)} over HTTP, < {ms(THIN_LOCAL_S)} in process",
            http < THIN_HTTP_S and local < THIN_LOCAL_S,
        )

    def length_row(self) -> Row:
        http, local = self.ours["http"], self.ours["local"]
        by_http = http["thin_long"] / http["thin_short"]
        by_local = local["thin_long"] / local["thin_short"]
        return Row(
            f"3b. metric store, reads: a {self.sizes.short:,}-step curve thinned to "
            f"{THIN_POINTS:,} points, SQLite (does length matter?)",
            f"{ms(http['thin_short'])} over HTTP ({ms(local['thin_short'])} in process)",
            f"{ms(http['thin_long'])} over HTTP ({ms(local['thin_long'])} in process) for "
            f"{self.sizes.long:,} steps",
            f"{by_http:.2f} over HTTP, {by_local:.2f} in process ({self.sizes.long:,} / "
            f"{self.sizes.short:,})",
            f"<= {LENGTH_RATIO:g}",
            by_http <= LENGTH_RATIO and by_local <= LENGTH_RATIO,
        )

    def whole_row(self) -> Row:
        http, local = self.ours["http"]["whole"], self.ours["local"]["whole"]
        reference, mlflow = self.mlflow("read_s", "metrics/get-history")
        return Row(
            f"3b. metric store, reads: a {self.sizes.long:,}-step curve whole, SQLite",
            f"{ms(http)} over HTTP, the body read and parsed by the client ({ms(local)} in "
            "process)",
            reference,
            f"{http / mlflow:.3f} ({mlflow / http:,.0f}x faster)" if mlflow else "-",
            f"< {ms(WHOLE_HTTP_S)} over HTTP",
            http < WHOLE_HTTP_S,
        )

    def zoom_row(self) -> Row:
        http, local = self.ours["http"]["zoom"], self.ours["local"]["zoom"]
        reference, mlflow = self.mlflow("zoom_s", "get-history-bulk-interval with steps")
        return Row(
            f"3b. metric store, reads: a zoom, {ZOOM_STEPS} steps of a {self.sizes.long:,}-step "
            f"curve thinned to {ZOOM_POINTS}, SQLite",
            f"{ms(http)} over HTTP ({ms(local)} in process)",
            reference,
            f"{http / mlflow:.3f} ({mlflow / http:,.0f}x faster)" if mlflow else "-",
            f"< {ms(ZOOM_S)} over HTTP and in process",
            http < ZOOM_S and local < ZOOM_S,
        )

    def pg_thin_row(self) -> Row:
        name = (
            f"3b. metric store, reads: a {self.sizes.long:,}-step curve thinned to "
            f"{THIN_POINTS:,} points, PostgreSQL, in process"
        )
        if self.pg is None:
            return not_measured(name, self.why_no_pg)
        figure, sqlite = self.pg["thin_long"], self.ours["local"]["thin_long"]
        return Row(
            name,
            ms(figure),
            f"{ms(sqlite)} (SQLite, in process)",
            f"{figure / sqlite:.2f}",
            f"< {ms(THIN_LOCAL_S)}",
            figure < THIN_LOCAL_S,
        )

    def size_row(self, database: str, how: str, figures: dict[str, Any] | None) -> Row:
        name = f"3c. metric store, size: database bytes per stored point, {database}"
        if figures is None:
            return not_measured(name, self.why_no_pg)
        ours, old = figures["bytes_per_point"], figures["old_bytes_per_point"]
        return Row(
            name,
            f"{ours:.1f} bytes/point ({how}, over the points they hold)",
            f"{old:.1f} bytes/point (the old design, one row per point: curve_points"
            f"(series_id, step, value), the same {self.sizes.long:,}-step curve)",
            f"{ours / old:.2f}",
            f"<= {BYTES_PER_POINT:g} bytes/point",
            ours <= BYTES_PER_POINT,
        )
