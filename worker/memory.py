"""A worker's memory: capped at its budget, and a job that passes it ends `resources`.

The API refuses a job whose estimated peak (service/spec/costs.py) passes DESCENT_WORKER_MEMORY;
this is the worker's side of the same bound. Its address space is capped at what it holds
once started plus the budget, so an allocation past it fails inside the job (a MemoryError,
or torch's "can't allocate memory") instead of waking the kernel's OOM killer, which would
take the worker, and every job it held, down.
"""

from __future__ import annotations

import logging
import re
import resource
from typing import Any

import torch
from pydantic import ValidationError

from service.spec import FitSpec, costs, job_spec_adapter
from worker.training.errors import OutOfMemory

log = logging.getLogger(__name__)

#: bytes of address space a worker may map beyond its budget: thread stacks, malloc arenas,
#: the database driver's buffers (reserved, mostly never touched)
HEADROOM_BYTES = 512 << 20
#: how torch's CPU allocator words a failed allocation
_TORCH_NO_MEMORY = re.compile(r"can't allocate memory: you tried to allocate (\d+) bytes")


def cap_address_space(budget: int) -> int:
    """Cap this process's address space at its current size plus `budget`; the cap, in bytes.

    Not on a GPU worker: CUDA reserves address space far beyond the memory it uses.
    """
    cap = _mapped_bytes() + budget + HEADROOM_BYTES
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    log.info("address space capped at %.2f GiB (DESCENT_WORKER_MEMORY: %d)", cap / 2**30, budget)
    return cap


def _mapped_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0  # pragma: no cover - every Linux has VmSize


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an allocation that failed (host memory, or a GPU's)."""
    if isinstance(exc, MemoryError | OutOfMemory | torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and _TORCH_NO_MEMORY.search(str(exc)) is not None


def out_of_memory_message(exc: BaseException, raw_spec: dict[str, Any], budget: int) -> str:
    """What was too large, in words a person can act on."""
    if isinstance(exc, OutOfMemory):
        return str(exc)
    asked = _asked_bytes(exc)
    what = f"an allocation of {asked / 2**30:.2f} GiB failed" if asked else "memory ran out"
    where = (
        "on the GPU"
        if isinstance(exc, torch.OutOfMemoryError)
        else f"in a worker that may use {budget / 2**30:.2f} GiB (DESCENT_WORKER_MEMORY)"
    )
    cost = estimate(raw_spec)
    size = f"; the job's estimated peak is {cost.describe()}" if cost is not None else ""
    return (
        f"the job needed more memory than its worker has: {what} {where}{size}. Make the model,"
        " the data or the batch smaller"
    )


def _asked_bytes(exc: BaseException) -> int | None:
    found = _TORCH_NO_MEMORY.search(str(exc))
    return int(found.group(1)) if found else None


def estimate(raw_spec: dict[str, Any]) -> costs.Cost | None:
    """The cost of a stored fit spec, where it can be had without the database."""
    try:
        spec = job_spec_adapter.validate_python(raw_spec)
    except ValidationError:
        return None  # a dataset job's spec needs its dataset to validate; no estimate then
    if not isinstance(spec, FitSpec) or spec.loss is None:
        return None  # a dataset's job is resolved only with its dataset at hand
    return costs.fit_cost(spec)


def check_device(spec: FitSpec, device: torch.device) -> None:
    """Refuse a job that the GPU it would run on cannot hold (OutOfMemory, type `resources`)."""
    if device.type != "cuda":
        return
    free, total = torch.cuda.mem_get_info(device)
    needed = costs.fit_cost(spec).peak_bytes
    if needed > free:
        raise OutOfMemory(
            f"the job needs about {needed / 2**30:.2f} GiB, but {device} has "
            f"{free / 2**30:.2f} GiB free of {total / 2**30:.2f} GiB: make the model, the data "
            "or the batch smaller, or run it with device 'cpu'"
        )
