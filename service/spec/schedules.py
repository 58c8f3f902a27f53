"""Learning-rate schedules (API.md 3.5), stepped once per epoch."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
)

from service.spec.base import INT64_MAX, NonNegative, Positive, SpecModel, _example

# --- schedules (3.5), stepped once per epoch -------------------------------------------------


class StepSchedule(SpecModel):
    """torch.optim.lr_scheduler.StepLR."""

    model_config = _example({"type": "step", "step_size": 10, "gamma": 0.5})

    type: Literal["step"] = "step"
    step_size: int = Field(ge=1, le=INT64_MAX)
    gamma: Positive = 0.1


class ExponentialSchedule(SpecModel):
    """torch.optim.lr_scheduler.ExponentialLR."""

    model_config = _example({"type": "exponential", "gamma": 0.95})

    type: Literal["exponential"] = "exponential"
    gamma: Positive


class CosineSchedule(SpecModel):
    """torch.optim.lr_scheduler.CosineAnnealingLR; `t_max` defaults to the job's epochs."""

    model_config = _example({"type": "cosine", "eta_min": 0.0001})

    type: Literal["cosine"] = "cosine"
    t_max: int | None = Field(None, ge=1, le=INT64_MAX)
    eta_min: NonNegative = 0.0


ScheduleSpec = Annotated[
    StepSchedule | ExponentialSchedule | CosineSchedule, Field(discriminator="type")
]
