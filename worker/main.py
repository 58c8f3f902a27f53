"""The worker: claim a job, train it, record how it ended; again until told to stop."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from service import datasets, jobs, specs
from service.config import Settings
from service.db.engine import make_engine
from service.db.migrate import migrate
from service.errors import NotFound
from service.schemas.jobs import JobStatus
from service.schemas.spec import DatasetData, FitSpec, MinimizeSpec, job_spec_adapter
from service.wakeup import Waiter
from worker.recorder import DatabaseRecorder
from worker.training.data import load as load_data
from worker.training.errors import Diverged, Interrupted, InvalidJob, TimedOut
from worker.training.loop import RunOptions, train
from worker.training.minimize import minimize

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
        log.info("worker %s ready (device %s)", self.id, self.device)
        next_requeue = 0.0
        while not self.stop.is_set():
            try:
                if time.monotonic() >= next_requeue:
                    if requeued := jobs.requeue_expired(self.engine):
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
        self.engine.dispose()
        log.info("worker %s stopped", self.id)

    def run_one(self) -> bool:
        """Claim and run one job; False when the queue had nothing for this worker."""
        # a read first: an idle worker must not take the write lock 100 times a second
        if not jobs.any_queued(self.engine, has_gpu=self.has_gpu):
            return False
        claimed = jobs.claim_next(
            self.engine,
            worker_id=self.id,
            lease_seconds=self.settings.lease_seconds,
            has_gpu=self.has_gpu,
        )
        if claimed is None:
            return False
        log.info("job %s claimed", claimed.id)
        self._run(claimed)
        return True

    def _run(self, claimed: jobs.Claimed) -> None:
        end: dict[str, object]
        recorder = DatabaseRecorder(
            self.engine,
            job_pk=claimed.pk,
            worker_id=self.id,
            lease_seconds=self.settings.lease_seconds,
            heartbeat_seconds=self.settings.heartbeat_seconds,
            shutdown=self.stop,
        )
        try:
            spec, arrays = self._spec_and_data(claimed.spec)
            device = self.resolve_device(spec.device)
            options = RunOptions(
                flush_seconds=self.settings.flush_seconds,
                parameters_seconds=self.settings.parameters_seconds,
                time_limit=self.settings.max_job_seconds,
                checkpoint_seconds=self.settings.checkpoint_seconds,
            )
            resume = claimed.checkpoint
            if resume is not None:
                log.info("job %s resumes from its checkpoint", claimed.id)
            with recorder:
                if isinstance(spec, MinimizeSpec):
                    result = minimize(spec, recorder, device=device, options=options, resume=resume)
                else:
                    data = load_data(spec, arrays=arrays) if arrays is not None else None
                    result = train(
                        spec, recorder, device=device, options=options, data=data, resume=resume
                    )
            end = {"status": JobStatus.succeeded, "result": result}
        except Interrupted:
            end = self._interrupted(recorder.reason)
        except Diverged as exc:
            end = _failed("diverged", str(exc))
        except TimedOut as exc:
            end = _failed("timeout", str(exc))
        except (InvalidJob, ValidationError) as exc:
            end = _failed("invalid", str(exc))
        except Exception as exc:  # noqa: BLE001 - any other failure ends the job, not the worker
            log.exception("job %s failed", claimed.id)
            end = _failed("internal", f"{type(exc).__name__}: {exc}")
        self._end(claimed, end)

    def _spec_and_data(
        self, raw: dict[str, Any]
    ) -> tuple[FitSpec | MinimizeSpec, tuple[np.ndarray, np.ndarray] | None]:
        """The stored spec, validated again here; an uploaded dataset's arrays if it names one."""
        spec = job_spec_adapter.validate_python(raw)
        if not isinstance(spec, FitSpec) or not isinstance(spec.data, DatasetData):
            return spec, None
        try:
            dataset, x, y = datasets.load(self.engine, dataset_id=spec.data.id, owner=None)
        except NotFound as exc:
            raise InvalidJob(f"dataset {spec.data.id} was deleted before the job ran") from exc
        context = {"datasets": {dataset.id: specs.facts(dataset)}}
        return job_spec_adapter.validate_python(raw, context=context), (x, y)

    def _interrupted(self, reason: str | None) -> dict[str, object]:
        if reason == "cancel":
            return {
                "status": JobStatus.cancelled,
                "error": {"type": "cancelled", "message": "cancelled at the user's request"},
            }
        return {"status": None, "reason": reason}

    def _end(self, claimed: jobs.Claimed, end: dict[str, object]) -> None:
        status = end.pop("status")
        if status is None:  # not ours to end: handed back (shutdown) or gone (lost)
            if end.get("reason") == "shutdown":
                jobs.release(self.engine, job_pk=claimed.pk, worker_id=self.id)
                log.info("job %s handed back to the queue", claimed.id)
            return
        assert isinstance(status, JobStatus)
        if jobs.finish(self.engine, job_pk=claimed.pk, worker_id=self.id, status=status, **end):  # type: ignore[arg-type]
            log.info("job %s %s", claimed.id, status.value)
        else:
            log.warning("job %s was no longer this worker's when it ended", claimed.id)

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


def _failed(kind: str, message: str) -> dict[str, object]:
    return {"status": JobStatus.failed, "error": {"type": kind, "message": message}}
