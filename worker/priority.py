"""A worker's share of the machine it runs on beside the API: torch's threads, CPU priority.

Torch's default is a thread per core, and its OpenMP threads spin while they wait; a worker on
a 2-core machine then takes both cores from the API that answers its job's watchers, and both
slow down. A worker leaves a core to the API and runs below it, so a poll waits for nothing.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from service.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Share:
    """What a worker process took: torch's threads and its niceness (higher runs later)."""

    threads: int
    nice: int


def cores() -> int:
    """The cores this process may run on (its affinity, which a container may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def torch_threads(setting: int, *, workers: int, cores: int) -> int:
    """`setting` when given; else the cores less one (the API's), shared among `workers`."""
    if setting > 0:
        return setting
    return max(1, (cores - 1) // max(1, workers))


def take_share(settings: Settings, *, workers: int = 1) -> Share:
    """Set this process's torch threads and lower its CPU priority; call once, at its start.

    `workers` is how many workers share the machine (what `descent up --workers` starts).
    """
    threads = torch_threads(settings.torch_threads, workers=workers, cores=cores())
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError as exc:  # torch allows it once, before any inter-op work has begun
        log.warning("torch's inter-op threads were already set (%s); left as they are", exc)
    return Share(threads=torch.get_num_threads(), nice=_lower_priority(settings.worker_nice))


def _lower_priority(by: int) -> int:
    """This process's niceness after raising it by `by` (what the API's would be plus `by`)."""
    try:
        return os.nice(by)
    except OSError as exc:  # a sandbox that forbids it: the worker still works, at par
        log.warning("could not lower the worker's CPU priority by %d: %s", by, exc)
        return os.nice(0)
