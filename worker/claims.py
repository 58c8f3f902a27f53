"""The worker's loop: claim a job, train it, record how it ended; again until told to stop.

A job is claimed (and its status changed) in service/store/job_queue.py; this decides what
to claim, runs it, and hands its outcome (outcomes.py) back to the store.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from contextlib import ExitStack, suppress
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from service.config import Settings
from service.db.engine import make_engine
from service.db.migrate import migrate
from service.errors import NotFound
from service.spec import FitSpec, MinimizeSpec, job_spec_adapter
from service.spec.limits import Limits
from service.spec.resolve import dataset_of, resolve
from service.store import datasets, job_queue, workers
from service.wakeup import Waiter
from worker import memory, outcomes
from worker.database_recorder import DatabaseRecorder
from worker.outcomes import Outcome, Succeeded
from worker.training.data import load as load_data
from worker.training.errors import InvalidJob
from worker.training.fit import train
from worker.training.group import group_key, train_many
from worker.training.minimize import minimize
from worker.training.skeleton import RunOptions, RunResult

log = logging.getLogger(__name__)

#: the longest an idle worker waits between sweeps for jobs whose worker died
REQUEUE_EVERY_SECONDS = 5.0
#: seconds a worker waits after the database failed before it tries again
DB_RETRY_SECONDS = 1.0


class Worker:
    """One worker process's loop. `stop` ends it; a running job is handed back first."""

    def __init__(self, settings: Settings, *, device: str = "auto") -> None:
        self.settings = settings
        self.device = device
        self.has_gpu = device != "cpu" and torch.cuda.is_available()
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.engine: Engine = make_engine(settings.database_url)
        self.stop = threading.Event()
        self.waiter = Waiter(
            settings.database_url,
            poll_seconds=settings.poll_seconds,
            fallback_seconds=settings.notify_fallback_seconds,
        )

    def run(self) -> None:
        migrate(self.engine)
        _warm_up()
        self._seen()  # before the log line: whoever reads "ready" finds it in /health
        log.info("worker %s ready (device %s)", self.id, self.device)
        next_requeue = 0.0
        while not self.stop.is_set():
            try:
                if time.monotonic() >= next_requeue:
                    self._seen()
                    if requeued := job_queue.requeue_expired(self.engine):
                        log.warning("requeued %d job(s) whose worker stopped answering", requeued)
                    # a third of a lease: a dead worker's job waits at most ~1.3 leases
                    every = min(REQUEUE_EVERY_SECONDS, self.settings.lease_seconds / 3)
                    next_requeue = time.monotonic() + every
                idle = not self.run_one()
            except DBAPIError as exc:  # a dropped connection, a database restarting
                first = str(exc).splitlines()[0]
                log.warning("database error (%s); trying again in %ss", first, DB_RETRY_SECONDS)
                self.stop.wait(DB_RETRY_SECONDS)
                continue
            if idle:
                self.waiter.wait(self.stop)
        self.waiter.close()
        with suppress(DBAPIError):  # a worker not seen within a lease stops counting anyway
            workers.gone(self.engine, worker_id=self.id)
        self.engine.dispose()
        log.info("worker %s stopped", self.id)

    def _seen(self) -> None:
        workers.seen(self.engine, worker_id=self.id, device=str(self.resolve_device("auto")))

    def run_one(self) -> bool:
        """Claim and run one job; False when the queue had nothing for this worker."""
        # a read first: an idle worker must not take the write lock 100 times a second
        if not job_queue.any_queued(self.engine, has_gpu=self.has_gpu):
            return False
        claimed = job_queue.claim_next(
            self.engine,
            worker_id=self.id,
            lease_seconds=self.settings.lease_seconds,
            has_gpu=self.has_gpu,
        )
        if claimed is None:
            return False
        log.info("job %s claimed", claimed.id)
        siblings = self._claim_siblings(claimed)
        if siblings:
            for sibling in siblings:
                log.info("job %s claimed", sibling.id)
            log.info("training %d runs of a sweep together", 1 + len(siblings))
            self._run_group([claimed, *siblings])
        else:
            self._run(claimed)
        return True

    def _claim_siblings(self, lead: job_queue.Claimed) -> list[job_queue.Claimed]:
        """Queued runs of `lead`'s sweep that can train together with it, claimed."""
        most = self.settings.group_runs - 1
        key = _group_key(lead.spec)
        if most < 1 or lead.checkpoint is not None or key is None:
            return []
        cost = memory.estimate(lead.spec)
        if cost is not None:  # the runs of a group are stacked: each adds its own peak
            most = min(most, int(self.settings.worker_memory) // max(cost.peak_bytes, 1) - 1)
            if most < 1:
                return []
        return job_queue.claim_siblings(
            self.engine,
            lead=lead,
            worker_id=self.id,
            lease_seconds=self.settings.lease_seconds,
            has_gpu=self.has_gpu,
            accept=lambda raw: _group_key(raw) == key,
            most=most,
        )

    def _run(self, claimed: job_queue.Claimed) -> None:
        recorder = self._recorder(claimed)
        try:
            spec, arrays = self._spec_and_data(claimed.spec)
            device = self.resolve_device(spec.device)
            if isinstance(spec, FitSpec):
                memory.check_device(spec, device)
            resume = claimed.checkpoint
            if resume is not None:
                log.info("job %s resumes from its checkpoint", claimed.id)
            with recorder:
                result = self._train(spec, arrays, recorder, device=device, resume=resume)
            outcome: Outcome = Succeeded(result)
        except Exception as exc:  # noqa: BLE001 - any failure ends the job, not the worker
            outcome = self._failure(claimed, exc, recorder)
        self._end(claimed, outcome)

    def _train(
        self,
        spec: FitSpec | MinimizeSpec,
        arrays: tuple[np.ndarray, np.ndarray] | None,
        recorder: DatabaseRecorder,
        *,
        device: torch.device,
        resume: bytes | None,
    ) -> RunResult:
        options = self._options()
        if isinstance(spec, MinimizeSpec):
            return minimize(spec, recorder, device=device, options=options, resume=resume)
        data = load_data(spec, arrays=arrays) if arrays is not None else None
        return train(spec, recorder, device=device, options=options, data=data, resume=resume)

    def _run_group(self, claims: list[job_queue.Claimed]) -> None:
        """Train runs of one sweep together; each job ends as soon as its run does."""
        recorders = [self._recorder(claimed) for claimed in claims]
        ended: set[int] = set()

        def done(i: int, run_end: RunResult | Exception) -> None:
            try:
                recorders[i].close()  # every point written before the job reads finished
            except Exception as exc:  # noqa: BLE001 - the run's own failure
                run_end = exc
            if isinstance(run_end, RunResult):
                outcome: Outcome = Succeeded(run_end)
            else:
                outcome = self._failure(claims[i], run_end, recorders[i])
            self._end(claims[i], outcome)
            ended.add(i)

        try:
            parsed = [self._spec_and_data(claimed.spec) for claimed in claims]
            fit_specs = [spec for spec, _ in parsed if isinstance(spec, FitSpec)]
            device = self.resolve_device(fit_specs[0].device)
            with ExitStack() as stack:
                for recorder in recorders:
                    stack.enter_context(recorder)
                train_many(
                    fit_specs,
                    recorders,
                    device=device,
                    options=self._options(),
                    arrays=parsed[0][1],
                    on_done=done,
                )
        except Exception as exc:  # noqa: BLE001 - no run's own: it ends every run left
            for i, claimed in enumerate(claims):
                if i not in ended:
                    self._end(claimed, self._failure(claimed, exc, recorders[i]))

    def _recorder(self, claimed: job_queue.Claimed) -> DatabaseRecorder:
        return DatabaseRecorder(
            self.engine,
            job_pk=claimed.pk,
            worker_id=self.id,
            lease_seconds=self.settings.lease_seconds,
            heartbeat_seconds=self.settings.heartbeat_seconds,
            shutdown=self.stop,
        )

    def _options(self) -> RunOptions:
        return RunOptions(
            flush_seconds=self.settings.flush_seconds,
            parameters_seconds=self.settings.parameters_seconds,
            time_limit=self.settings.max_job_seconds,
            checkpoint_seconds=self.settings.checkpoint_seconds,
            max_path_values=self.settings.max_values,
        )

    def _failure(
        self, claimed: job_queue.Claimed, exc: BaseException, recorder: DatabaseRecorder
    ) -> Outcome:
        """How a run that raised `exc` ends."""
        budget = int(self.settings.worker_memory)
        return outcomes.of_error(exc, claimed=claimed, stop_reason=recorder.reason, budget=budget)

    def _spec_and_data(
        self, raw: dict[str, Any]
    ) -> tuple[FitSpec | MinimizeSpec, tuple[np.ndarray, np.ndarray] | None]:
        """The stored spec, checked again here against this worker's limits; an uploaded
        dataset's arrays if it names one."""
        spec = job_spec_adapter.validate_python(raw)
        bounds = Limits.of(self.settings)
        if (dataset_id := dataset_of(spec)) is None:
            return resolve(spec, limits=bounds), None
        try:
            dataset, x, y = datasets.load(self.engine, dataset_id=dataset_id, owner=None)
        except NotFound as exc:
            raise InvalidJob(f"dataset {dataset_id} was deleted before the job ran") from exc
        known = {dataset.id: datasets.facts_of(dataset)}
        return resolve(spec, limits=bounds, datasets=known), (x, y)

    def _end(self, claimed: job_queue.Claimed, outcome: Outcome) -> None:
        outcomes.end(self.engine, claimed, outcome, worker_id=self.id)

    def resolve_device(self, wanted: str) -> torch.device:
        """The torch device for a job's `device`, or InvalidJob if this worker lacks it."""
        if wanted == "auto":
            if self.device != "auto":
                return torch.device(self.device)
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if wanted == "cpu":
            return torch.device("cpu")
        index = int(wanted.split(":")[1]) if ":" in wanted else 0
        if not self.has_gpu or index >= torch.cuda.device_count():
            raise InvalidJob(
                f"the job asks for device {wanted!r}, but no worker with that GPU took it "
                f"(worker {self.id} has {torch.cuda.device_count() if self.has_gpu else 0} GPUs); "
                "submit it with device 'auto' or 'cpu', or start a worker on a GPU machine"
            )
        return torch.device(wanted)


def _warm_up() -> None:
    """One tiny optimizer step, so the first job does not pay torch's lazy imports (~2 s)."""
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 1)).sum().backward()
    optimizer.step()


def _group_key(raw: dict[str, Any]) -> str | None:
    """The stored spec's `group_key`: None where it cannot train in a group."""
    try:
        return group_key(job_spec_adapter.validate_python(raw))
    except ValidationError:
        return None
