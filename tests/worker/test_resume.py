"""A run stopped at a checkpoint and resumed from it ends exactly as the uninterrupted run."""

from __future__ import annotations

from typing import Any

import pytest

from service.spec import FitSpec, MinimizeSpec, job_spec_adapter
from worker.training.errors import Interrupted
from worker.training.fit import train
from worker.training.minimize import minimize
from worker.training.recorder import Chunk, MemoryRecorder
from worker.training.skeleton import RunOptions

#: flush (and checkpoint) after every step, so a stop can land anywhere
EVERY_STEP = RunOptions(flush_seconds=0.0, checkpoint_seconds=0.0)

SPECS: list[Any] = [
    pytest.param(
        {
            "model": {"type": "mlp", "hidden": [6], "activation": "tanh"},
            "data": {"type": "classification", "kind": "blobs", "n_classes": 3, "n_samples": 90},
            "optimizer": {"type": "adam", "lr": 0.01},
            "schedule": {"type": "step", "step_size": 2, "gamma": 0.5},
            "batch_size": 16,
            "epochs": 5,
        },
        id="mlp-adam-schedule-shuffled",
    ),
    pytest.param(
        {
            "model": {"type": "linear"},
            "data": {"type": "linear", "n_samples": 50, "n_features": 4},
            "optimizer": {"type": "admm", "rho": 2.0},
            "penalty": {"l1": 0.5},
            "batch_size": None,
            "epochs": 12,
        },
        id="admm",
    ),
    pytest.param(
        {
            "model": {"type": "linear"},
            "data": {"type": "linear", "n_samples": 50, "n_features": 4, "x_range": [-1, 1]},
            "optimizer": {"type": "fista", "lr": 0.05},
            "penalty": {"l1": 0.1},
            "batch_size": None,
            "epochs": 12,
        },
        id="fista",
    ),
    pytest.param(
        {
            "model": {"type": "logistic"},
            "data": {"type": "classification", "kind": "moons", "n_samples": 60},
            "optimizer": {"type": "momentum", "lr": 0.1},
            "gradients": "manual",
            "batch_size": 7,
            "epochs": 3,
        },
        id="manual-momentum-odd-batches",
    ),
    pytest.param(
        {
            "task": "minimize",
            "objective": {"type": "rosenbrock"},
            "x0": [-1.0, 1.5],
            "optimizer": {"type": "adam", "lr": 0.05},
            "steps": 30,
        },
        id="minimize-adam",
    ),
]


class StopAfter(MemoryRecorder):
    """Asks the run to stop once it has recorded `chunks` chunks."""

    def __init__(self, chunks: int) -> None:
        super().__init__()
        self.limit = chunks

    def should_stop(self) -> bool:
        return self.chunks >= self.limit


def _run(spec: FitSpec | MinimizeSpec, recorder: MemoryRecorder, **kw: Any) -> dict[str, Any]:
    if isinstance(spec, MinimizeSpec):
        return minimize(spec, recorder, options=EVERY_STEP, **kw).as_dict()
    return train(spec, recorder, options=EVERY_STEP, **kw).as_dict()


def _until(recorder: MemoryRecorder, step: int) -> dict[str, tuple[list[int], list[Any]]]:
    """The recorded points up to `step`, as a store that discarded the rest would keep."""
    out: dict[str, tuple[list[int], list[Any]]] = {}
    for name, (steps, values) in recorder.series.items():
        kept = [(s, v) for s, v in zip(steps, values, strict=True) if s <= step]
        out[name] = ([s for s, _ in kept], [v for _, v in kept])
    return out


@pytest.mark.parametrize("raw", SPECS)
@pytest.mark.parametrize("stop_after", [1, 4, 9])
def test_resumed_run_equals_uninterrupted(raw: dict[str, Any], stop_after: int) -> None:
    spec = job_spec_adapter.validate_python({**raw, "device": "cpu"})
    whole = MemoryRecorder()
    expected = _run(spec, whole)

    first = StopAfter(stop_after)
    with pytest.raises(Interrupted):
        _run(spec, first)
    step, checkpoint = first.checkpoints[-1]
    assert step == first.series["loss"][0][-1], "a stop checkpoints at the last step recorded"

    second = MemoryRecorder()
    result = _run(spec, second, resume=checkpoint)
    combined = _until(first, step)
    for name, (steps, values) in second.series.items():
        combined.setdefault(name, ([], []))
        combined[name][0].extend(steps)
        combined[name][1].extend(values)
    assert combined == whole.series  # every step exactly once, bit for bit
    assert second.parameters == whole.parameters
    trajectory = [p for p in first.trajectory if p[0] <= step] + second.trajectory
    assert trajectory == whole.trajectory
    for key in ("final_loss", "best_loss", "steps", "metrics", "gradient_check", "x"):
        assert result.get(key) == expected.get(key), key


def test_checkpoints_are_taken_on_time_not_every_step() -> None:
    spec = job_spec_adapter.validate_python({**SPECS[0].values[0], "device": "cpu"})
    recorder = MemoryRecorder()
    train(spec, recorder, options=RunOptions(flush_seconds=0.0, checkpoint_seconds=3600))
    assert len(recorder.checkpoints) == 0  # none due within the hour, and none at the end
    assert recorder.chunks > 10


def test_chunk_without_checkpoint_by_default() -> None:
    assert Chunk(step=1, epoch=0).checkpoint is None


def test_a_resumed_minimize_keeps_the_best_loss_of_the_flush_that_checkpointed() -> None:
    # heavy momentum: f swings, lowest at step 29, the last step of the 30th flush, which is
    # the one that checkpoints when the run is stopped after 30 flushes
    raw = {
        "task": "minimize",
        "objective": {"type": "rosenbrock"},
        "x0": [-1.0, 1.5],
        "optimizer": {"type": "sgd", "lr": 0.001, "momentum": 0.99},
        "steps": 60,
    }
    spec = job_spec_adapter.validate_python({**raw, "device": "cpu"})
    expected = _run(spec, MemoryRecorder())
    first = StopAfter(30)
    with pytest.raises(Interrupted):
        _run(spec, first)
    values = [v for v in first.series["loss"][1] if v is not None]
    assert min(values) == expected["best_loss"]  # the lowest is among the steps before the stop
    result = _run(spec, MemoryRecorder(), resume=first.checkpoints[-1][1])
    assert result["best_loss"] == expected["best_loss"]
