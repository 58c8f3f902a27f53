"""Prometheus metrics: job counts read from the database at scrape time, request latencies.

Each app has its own registry (on `app.state.metrics`), so many apps in one process, as in
the tests, do not clash in prometheus_client's global one. The job figures are read for
each scrape, of every job or of one owner's, so a token's scrape shows no other token's jobs.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from service.schemas.jobs import JobStatus
from service.store import job_queue


class JobsCollector(Collector):
    """Counts of the jobs table, read when Prometheus scrapes, so every API process agrees.

    `owner` None counts every job; else only that owner's.
    """

    def __init__(self, engine: Engine, owner: str | None = None) -> None:
        self.engine = engine
        self.owner = owner

    def collect(self) -> Iterator[Metric]:
        by_status, steps = job_queue.tally(self.engine, owner=self.owner)
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


class Metrics:
    """An app's registry and the instruments the API itself updates."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: the API's own instruments: aggregate, by route template, so anyone may see them
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "descent_http_request_duration_seconds",
            "Seconds from a request's arrival to the end of its answer (of the stream, for"
            " events).",
            ["method", "route", "status"],
            registry=self.registry,
        )

    def exposition(self, owner: str | None) -> bytes:
        """The text Prometheus reads: the jobs of `owner` (None: every job), then the API's."""
        jobs = CollectorRegistry()
        jobs.register(JobsCollector(self.engine, owner))
        return generate_latest(jobs) + generate_latest(self.registry)
