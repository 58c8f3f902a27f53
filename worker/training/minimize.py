"""`minimize` jobs: an optimizer's path over a test function, in float64.

Step k of the `loss` curve holds f(x_k), x_k the point after k updates, step 0 holding
f(x0); the trajectory holds x_k at every step. The forward pass that computes the gradient
at x_k also gives f(x_k), so the curve costs no extra evaluation but the last.
"""

from __future__ import annotations

from typing import Any

import torch

from service.spec import MinimizeSpec
from worker.training import objectives, optimizers
from worker.training.errors import non_finite
from worker.training.parameters_file import encode_parameters
from worker.training.pending import Pending
from worker.training.recorder import Recorder
from worker.training.skeleton import (
    Cadence,
    RunOptions,
    RunResult,
    SingleRun,
    load_checkpoint,
    save_checkpoint,
)


def minimize(
    spec: MinimizeSpec,
    recorder: Recorder,
    *,
    device: torch.device | str = "cpu",
    options: RunOptions | None = None,
    resume: bytes | None = None,
) -> RunResult:
    """Follow the spec's optimizer from x0 for `steps` updates; the job's result."""
    run = _Minimize(spec, recorder, torch.device(device), options or RunOptions())
    if resume is not None:
        run.restore(load_checkpoint(resume, run.device))
    return run.follow()


class _Minimize(SingleRun):
    def __init__(
        self, spec: MinimizeSpec, recorder: Recorder, device: torch.device, options: RunOptions
    ) -> None:
        self.spec, self.recorder, self.device = spec, recorder, device
        # x at every step is in the trajectory: the parameters are saved where the run ends
        self.cadence = Cadence(options, parameters="at_end")
        self.f = objectives.build(spec.objective, device=device)
        self.x = torch.nn.Parameter(torch.tensor(spec.x0, dtype=torch.float64, device=device))
        self.optimizer = optimizers.build(spec.optimizer, [self.x])
        #: updates made so far (before this run too, when it resumed)
        self.step = 0
        self.pending = Pending(first_step=0)

    def follow(self) -> RunResult:
        self.pending.points.append((self.step, self.x.detach().clone()))
        self.cadence.start()
        for step in range(self.step + 1, self.spec.steps + 1):
            self.optimizer.zero_grad(set_to_none=True)
            value = self.f(self.x)  # f(x_{step-1}): the curve's point for the step before this one
            value.backward()
            self.optimizer.step()
            self.step = step
            self.pending.losses.append(value.detach())
            self.pending.points.append((step, self.x.detach().clone()))
            if self.cadence.flush_due():
                # x is x_step now, and the curve runs to step - 1: resume computes f(x_step)
                self.flush()
        with torch.no_grad():
            self.pending.losses.append(self.f(self.x))  # f(x_steps)
        self.flush(final=True)
        x = self.x.detach().cpu().tolist()
        return RunResult.of(
            self.pending, steps=self.spec.steps, cadence=self.cadence, device=self.device, x=x
        )

    # --- what the skeleton saves --------------------------------------------------------

    def parameters(self) -> bytearray:
        return encode_parameters({"x": self.x})

    def checkpoint(self) -> bytes:
        return save_checkpoint(
            {
                "x": self.x.detach(),
                "optimizer": self.optimizer.state_dict(),
                "done": self.step,
                "pending": self.pending.snapshot(),
                "elapsed": self.cadence.elapsed(),
            }
        )

    def restore(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.x.copy_(state["x"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["done"]
        self.cadence.elapsed_before = state["elapsed"]
        self.pending = Pending(first_step=self.step)
        self.pending.restore(state["pending"])

    def diverged(self, step: int) -> Exception:
        return non_finite(step, first_step=0, what="f(x)", dtype="float64")
