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
from worker.training.errors import non_finite
from worker.training.loop import (
    RunOptions,
    check_stop,
    device_name,
    load_checkpoint,
    save_checkpoint,
)
from worker.training.pending import Pending
from worker.training.recorder import Recorder, encode_parameters


def minimize(
    spec: MinimizeSpec,
    recorder: Recorder,
    *,
    device: torch.device | str = "cpu",
    options: RunOptions | None = None,
    resume: bytes | None = None,
) -> dict[str, Any]:
    """Follow the spec's optimizer from x0 for `steps` updates; the job's result."""
    options = options or RunOptions()
    device = torch.device(device)
    f = objectives.build(spec.objective, device=device)
    x = torch.nn.Parameter(torch.tensor(spec.x0, dtype=torch.float64, device=device))
    optimizer = optimizers.build(spec.optimizer, [x])
    done, elapsed_before = 0, 0.0  # updates made, and seconds spent, before this run
    pending = Pending(first_step=0)
    if resume is not None:
        state = load_checkpoint(resume, device)
        with torch.no_grad():
            x.copy_(state["x"])
        optimizer.load_state_dict(state["optimizer"])
        done, elapsed_before = state["done"], state["elapsed"]
        pending = Pending(first_step=done)
        pending.restore(state["pending"])
    pending.points.append((done, x.detach().clone()))
    started = time.monotonic()
    deadline = started + options.time_limit - elapsed_before if options.time_limit else None
    next_flush = started + options.flush_seconds
    next_checkpoint = started + options.checkpoint_seconds

    def checkpoint(done: int) -> bytes:
        return save_checkpoint(
            {
                "x": x.detach(),
                "optimizer": optimizer.state_dict(),
                "done": done,
                "pending": pending.snapshot(),
                "elapsed": elapsed_before + time.monotonic() - started,
            }
        )

    for step in range(done + 1, spec.steps + 1):
        optimizer.zero_grad(set_to_none=True)
        value = f(x)  # f(x_{step-1}): the curve's point for the step before this one
        value.backward()
        optimizer.step()
        pending.losses.append(value.detach())
        pending.points.append((step, x.detach().clone()))
        if (now := time.monotonic()) >= next_flush:
            stopping = recorder.should_stop()
            # x is x_step now, and the curve runs to step - 1: resume computes f(x_step)
            save = stopping or now >= next_checkpoint
            _flush(pending, recorder, x, checkpoint=checkpoint(step) if save else None)
            next_checkpoint = now + options.checkpoint_seconds if save else next_checkpoint
            check_stop(recorder, deadline, options, step)
            next_flush = time.monotonic() + options.flush_seconds
    with torch.no_grad():
        pending.losses.append(f(x))  # f(x_steps)
    _flush(pending, recorder, x, final=True)
    return {
        "final_loss": pending.last,
        "best_loss": pending.best,
        "steps": spec.steps,
        "duration_s": elapsed_before + time.monotonic() - started,
        "device": device_name(device),
        "metrics": {},
        "x": x.detach().cpu().tolist(),
    }


def _flush(
    pending: Pending,
    recorder: Recorder,
    x: torch.Tensor,
    *,
    final: bool = False,
    checkpoint: bytes | None = None,
) -> None:
    chunk, diverged_at = pending.drain()
    if final or diverged_at is not None:
        chunk.parameters = encode_parameters({"x": x})
    if diverged_at is None:
        chunk.checkpoint = checkpoint
    recorder.record(chunk)
    if diverged_at is not None:
        raise non_finite(diverged_at, first_step=0, what="f(x)", dtype="float64")
