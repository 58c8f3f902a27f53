"""The training loop does not wait on the device each step: losses leave it in batches."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import torch

from service.spec import FitSpec
from worker.training.fit import train
from worker.training.recorder import MemoryRecorder
from worker.training.skeleton import RunOptions

#: the Tensor methods that copy a value to the host, making the host wait for the device
SYNCING = ("item", "tolist", "cpu", "numpy", "__float__", "__bool__", "__int__")


def test_losses_are_fetched_per_flush_not_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: Counter[str] = Counter()
    for name in SYNCING:
        original = getattr(torch.Tensor, name)

        def counted(self: torch.Tensor, *args: Any, _name: str = name, _f: Any = original) -> Any:
            calls[_name] += 1
            return _f(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    spec = FitSpec.model_validate(
        {
            "model": {"type": "linear"},
            "data": {"type": "linear", "n_samples": 2500, "n_features": 3},
            "optimizer": {"type": "sgd", "lr": 0.001},
            "batch_size": 1,
            "epochs": 1,
            "device": "cpu",
        }
    )
    recorder = MemoryRecorder()
    result = train(spec, recorder, options=RunOptions(flush_seconds=3600)).as_dict()
    assert result["steps"] == 2000
    assert len(recorder.series["loss"][0]) == 2000
    # one flush at the end: a handful of transfers for 2000 steps, not one a step
    assert sum(calls.values()) < 50, calls
