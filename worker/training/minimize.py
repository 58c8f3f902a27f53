"""`minimize` jobs: an optimizer's path over a test function, in float64.

Step k of the `loss` curve holds f(x_k), x_k the point after k updates, step 0 holding
f(x0); the trajectory holds x_k at every step. The forward pass that computes the gradient
at x_k also gives f(x_k), so the curve costs no extra evaluation but the last.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from service.schemas.spec import MinimizeSpec
from worker.training import objectives, optimizers
from worker.training.errors import Diverged
from worker.training.loop import RunOptions, check_stop, device_name
from worker.training.pending import Pending
from worker.training.recorder import Recorder


def minimize(
    spec: MinimizeSpec,
    recorder: Recorder,
    *,
    device: torch.device | str = "cpu",
    options: RunOptions | None = None,
) -> dict[str, Any]:
    """Follow the spec's optimizer from x0 for `steps` updates; the job's result."""
    options = options or RunOptions()
    device = torch.device(device)
    started = time.monotonic()
    deadline = started + options.time_limit if options.time_limit else None
    f = objectives.build(spec.objective, device=device)
    x = torch.nn.Parameter(torch.tensor(spec.x0, dtype=torch.float64, device=device))
    optimizer = optimizers.build(spec.optimizer, [x])
    pending = Pending(first_step=0)
    pending.points.append((0, x.detach().clone()))
    next_flush = started + options.flush_seconds
    for step in range(1, spec.steps + 1):
        optimizer.zero_grad(set_to_none=True)
        value = f(x)  # f(x_{step-1}): the curve's point for the step before this one
        value.backward()
        optimizer.step()
        pending.losses.append(value.detach())
        pending.points.append((step, x.detach().clone()))
        if time.monotonic() >= next_flush:
            _flush(pending, recorder, x)
            check_stop(recorder, deadline, options, step)
            next_flush = time.monotonic() + options.flush_seconds
    with torch.no_grad():
        pending.losses.append(f(x))  # f(x_steps)
    _flush(pending, recorder, x, final=True)
    return {
        "final_loss": pending.last,
        "best_loss": pending.best,
        "steps": spec.steps,
        "duration_s": time.monotonic() - started,
        "device": device_name(device),
        "metrics": {},
        "x": x.detach().cpu().tolist(),
    }


def _flush(pending: Pending, recorder: Recorder, x: torch.Tensor, *, final: bool = False) -> None:
    chunk, diverged_at = pending.drain()
    if final or diverged_at is not None:
        chunk.parameters = {"x": x.detach().cpu().tolist()}
    recorder.record(chunk)
    if diverged_at is not None:
        raise Diverged(
            f"f(x) became non-finite at step {diverged_at}; try a smaller learning rate",
            step=diverged_at,
        )
