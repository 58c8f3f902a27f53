"""Settings shared by the API and the worker, read from flags and DESCENT_* variables."""

from __future__ import annotations

import os

from pydantic import ByteSize, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./descent.db"
#: the share of the machine's memory a worker may use when DESCENT_WORKER_MEMORY is unset
WORKER_MEMORY_SHARE = 0.5


def machine_memory() -> int:
    """Bytes of physical memory on this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_worker_memory() -> ByteSize:
    return ByteSize(int(machine_memory() * WORKER_MEMORY_SHARE))


class Settings(BaseSettings):
    """Every tunable of the service; a flag given on the command line overrides its variable."""

    model_config = SettingsConfigDict(env_prefix="DESCENT_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    #: comma-separated bearer tokens; empty means the service is open
    api_tokens: str = ""
    #: seconds a running job's lease lasts without a heartbeat
    lease_seconds: float = Field(default=30.0, gt=0)
    #: seconds between heartbeats of a running job (also how often cancellation is noticed)
    heartbeat_seconds: float = Field(default=0.25, gt=0)
    #: seconds an idle worker waits between looks at the queue
    poll_seconds: float = Field(default=0.01, gt=0)
    #: seconds an idle worker on PostgreSQL waits for a notification before it looks anyway
    notify_fallback_seconds: float = Field(default=1.0, gt=0)
    #: seconds between writes of curve points while a job runs
    flush_seconds: float = Field(default=0.2, gt=0)
    #: seconds between saves of a running job's parameters
    parameters_seconds: float = Field(default=2.0, gt=0)
    #: runs of one sweep a worker trains together as one batched computation (1: one at a time)
    group_runs: int = Field(default=64, ge=1)
    #: seconds between checkpoints of a running job (what a worker's death can cost)
    checkpoint_seconds: float = Field(default=5.0, ge=0)

    max_steps: int = Field(default=10_000_000, ge=1)
    max_rows: int = Field(default=1_000_000, ge=1)
    max_upload_bytes: int = Field(default=50_000_000, ge=1)
    max_hidden_layers: int = Field(default=16, ge=1)
    max_hidden_units: int = Field(default=8192, ge=1)
    #: wall-clock seconds a job may train before it ends failed (timeout)
    max_job_seconds: float = Field(default=6 * 3600, gt=0)
    #: jobs one sweep may create: its grid's points
    max_sweep_jobs: int = Field(default=256, ge=1)
    #: scalar parameters of a job's model (of one run: a sweep checks each of its points)
    max_parameters: int = Field(default=50_000_000, ge=1)
    #: classes of a classifier: labels are integers from 0 to max_classes - 1
    max_classes: int = Field(default=10_000, ge=2)
    #: rows times features of a job's data, generated or uploaded
    max_values: int = Field(default=100_000_000, ge=1)
    #: columns of an uploaded CSV
    max_columns: int = Field(default=10_000, ge=2)
    #: bytes of memory one worker may use for a job (its peak estimated at submission, enforced
    #: in the worker); "8GiB" and the like are understood. Default: half the machine's memory
    worker_memory: ByteSize = Field(default_factory=default_worker_memory, ge=1 << 26)
    #: scalar parameters `GET /jobs/{id}/parameters` serves as JSON; larger models are a
    #: `?format=safetensors` download
    max_parameters_json: int = Field(default=1_000_000, ge=1)
    #: a bearer token for /metrics alone (an operator's scraper); with DESCENT_API_TOKENS set,
    #: /metrics needs this token or one of those
    metrics_token: str = ""
    #: torch's threads in each worker; 0: the cores less one (for the API), shared among the
    #: workers `descent up` starts, at least 1
    torch_threads: int = Field(default=0, ge=0)
    #: how much lower than the API's a worker's CPU priority is (os.nice); 0 leaves it equal
    worker_nice: int = Field(default=10, ge=0, le=19)

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, url: str) -> str:
        if not url.startswith(("sqlite://", "postgresql")):
            raise ValueError(
                f"database_url {url!r} is neither sqlite:///PATH nor postgresql+psycopg://..."
            )
        return url

    @property
    def tokens(self) -> list[str]:
        return [t.strip() for t in self.api_tokens.split(",") if t.strip()]
