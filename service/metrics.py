"""Prometheus metrics: job counts read from the database at scrape time, request latencies.

Each app has its own registry (on `app.state.metrics`), so many apps in one process, as in
the tests, do not clash in prometheus_client's global one.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from service.db.engine import reading
from service.db.models import JobRow
from service.schemas.jobs import JobStatus


class JobsCollector(Collector):
    """Counts of the jobs table, read when Prometheus scrapes, so every API process agrees."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        by_status, steps = _read(self.engine)
        jobs = GaugeMetricFamily("descent_jobs", "Jobs by status.", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([status.value], by_status.get(status.value, 0))
        yield jobs
        yield GaugeMetricFamily(
            "descent_queue_depth",
            "Jobs waiting for a worker.",
            value=by_status.get(JobStatus.queued.value, 0),
        )
        # a gauge, not a counter: deleting a job, or rewinding one to its checkpoint, lowers it
        yield GaugeMetricFamily(
            "descent_steps_recorded",
            "Optimizer steps recorded, summed over the jobs stored (deleted jobs drop out).",
            value=steps,
        )


def _read(engine: Engine) -> tuple[dict[str, int], int]:
    with reading(engine) as conn:
        rows = conn.execute(select(JobRow.status, func.count()).group_by(JobRow.status)).all()
        steps = conn.execute(select(func.coalesce(func.sum(JobRow.step), 0))).scalar_one()
    return {status: count for status, count in rows}, int(steps)


class Metrics:
    """An app's registry and the instruments the API itself updates."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(JobsCollector(engine))
        self.request_seconds = Histogram(
            "descent_http_request_duration_seconds",
            "Seconds from a request's arrival to the end of its answer (of the stream, for"
            " events).",
            ["method", "route", "status"],
            registry=self.registry,
        )
