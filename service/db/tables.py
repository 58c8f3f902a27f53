"""SQLAlchemy tables. Only `service.jobs`, `service.curves`, `service.datasets` and
`service.sweeps` write to them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC (SQLite has no time zones), read back as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    """One training job. `pk` orders jobs (newest first) and keys their data; `id` is public."""

    __tablename__ = "jobs"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: the device the spec asks for (`auto`, `cpu`, `cuda`, `cuda:N`), so claims can filter on it
    device: Mapped[str] = mapped_column(String(16), default="auto")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    total_epochs: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: the worker holding the job while it runs, and until when its lease lasts
    worker_id: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: the sweep that made the job, if one did. No ON DELETE action: a sweep is deleted after
    #: its jobs (`service.sweeps.delete_sweep`), and the database refuses it before
    sweep_pk: Mapped[int | None] = mapped_column(ForeignKey("sweeps.pk"), index=True)
    #: the job's place in its sweep's grid (0, 1, ...), and the grid values that made its spec
    sweep_index: Mapped[int | None] = mapped_column(Integer)
    overrides: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_jobs_status_pk", "status", "pk"),)


class SweepRow(Base):
    """A grid of jobs made from one base spec (`POST /sweeps`); its jobs point back to it."""

    __tablename__ = "sweeps"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: the base spec as it was sent, and the grid: `{dotted path: [values]}`
    base: Mapped[dict[str, Any]] = mapped_column(JSON)
    grid: Mapped[dict[str, Any]] = mapped_column(JSON)


class CurveSeriesRow(Base):
    """One named curve of a job (`loss`, `val_loss`, ...)."""

    __tablename__ = "curve_series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.pk", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("job_pk", "name", name="uq_curve_series_job_name"),)


class CurveChunkRow(Base):
    """A stretch of a series. At level 0 a chunk: up to `chunks.CHUNK_POINTS` consecutive points
    as packed arrays. At level k >= 1 a summary of `chunks.FANOUT ** k` consecutive chunks,
    written once they are all closed. Either way its first and last step, how many points it
    holds, and the value and step of its minimum and maximum, so a thinned read can stand a
    row in for every point it covers."""

    __tablename__ = "curve_chunks"

    series_id: Mapped[int] = mapped_column(
        ForeignKey("curve_series.id", ondelete="CASCADE"), primary_key=True
    )
    level: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: the chunk's place in its series (0, 1, ...); at level k, chunks seq * FANOUT**k onwards
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_step: Mapped[int] = mapped_column(Integer)
    last_step: Mapped[int] = mapped_column(Integer)
    points: Mapped[int] = mapped_column(Integer)
    #: the finite values among them and their sum (a 3-point thinning needs the mean)
    finite: Mapped[int] = mapped_column(Integer)
    total: Mapped[float] = mapped_column(Float)
    #: the smallest and largest finite value and the first step holding each; null if none
    min_value: Mapped[float | None] = mapped_column(Float)
    min_step: Mapped[int | None] = mapped_column(Integer)
    max_value: Mapped[float | None] = mapped_column(Float)
    max_step: Mapped[int | None] = mapped_column(Integer)
    #: level 0: the steps as little-endian int64, null when they run first_step..last_step
    steps: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: level k >= 1: the FANOUT summaries below it, packed (`summaries.PACKED`); a read opens
    #: a summary that a stretch's edge cuts by reading these
    parts: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: level 0: the values as little-endian float64, NaN where not finite
    values: Mapped[bytes | None] = mapped_column(LargeBinary)

    # not on (series_id, level, first_step): PostgreSQL, before it has statistics of a new
    # table, took that index for the primary key's lists of seqs, and scanned a series
    __table_args__ = (Index("ix_curve_chunks_first_step", "series_id", "first_step"),)


class ParametersRow(Base):
    """The latest saved parameters of a job: its tensors by `state_dict` name, as a safetensors
    file (binary, so a model of any allowed size fits where one JSON string would not)."""

    __tablename__ = "job_parameters"

    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.pk", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer)
    #: the scalars the tensors hold, so an answer too large for JSON is refused unread
    scalars: Mapped[int] = mapped_column(BigInteger)
    file: Mapped[bytes] = mapped_column(LargeBinary)


class TrajectoryRow(Base):
    """A point of a job's path: `x` of a minimize job, or a small model's parameters, flattened."""

    __tablename__ = "trajectory_points"

    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.pk", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: a JSON list of numbers
    point: Mapped[str] = mapped_column(Text)

    __table_args__ = ({"sqlite_with_rowid": False},)


class DatasetRow(Base):
    """An uploaded CSV, parsed once and stored whole, so any worker on any host can read it."""

    __tablename__ = "datasets"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    n_samples: Mapped[int] = mapped_column(Integer)
    n_features: Mapped[int] = mapped_column(Integer)
    #: every column's name, in the file's order
    columns: Mapped[list[str]] = mapped_column(JSON)
    target: Mapped[str] = mapped_column(String(200))
    #: whether every target is an integer, so the data can serve as class labels
    integer_target: Mapped[bool] = mapped_column(Boolean)
    #: the range of the targets, so a job's class labels are checked without reading the data
    target_min: Mapped[float] = mapped_column(Float)
    target_max: Mapped[float] = mapped_column(Float)
    #: numpy's compressed .npz of `x` (float64, rows x features) and `y` (float64)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class CheckpointRow(Base):
    """The latest checkpoint of a job: everything a worker needs to resume it at `step`.

    Written in the same transaction as the curve points up to `step`, so the points and the
    checkpoint always agree.
    """

    __tablename__ = "checkpoints"

    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.pk", ondelete="CASCADE"), primary_key=True)
    #: the last step recorded when the checkpoint was taken, and the epochs finished by then
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    #: `torch.save` of a plain dict: model, optimizer, schedule, RNG states, position
    state: Mapped[bytes] = mapped_column(LargeBinary)


class WorkerRow(Base):
    """A worker process, as it last said it was alive; `/health` counts the recent ones.

    A worker that stops cleanly deletes its row; one that dies leaves it, and a row not seen
    within a lease no longer counts.
    """

    __tablename__ = "workers"

    #: the worker's own id, `host:pid:random` (the `worker_id` of the jobs it holds)
    worker_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    #: the device it trains on by default (`cpu`, `cuda`, `cuda:N`); null until it says
    device: Mapped[str | None] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
