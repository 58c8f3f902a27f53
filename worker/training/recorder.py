"""What the training loop reports to, and an in-memory recorder for tests and scripts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import safetensors.torch


@dataclass
class Chunk:
    """Whole steps of a run's curves: every point of a step is in the same chunk."""

    #: the last step taken and the number of epochs finished
    step: int
    epoch: int
    #: name -> (steps, values); a value is None where it was not finite
    series: dict[str, tuple[list[int], list[float | None]]] = field(default_factory=dict)
    #: the parameters at `step` as a safetensors file (parameters_file.py), when saved
    parameters: bytes | bytearray | None = None
    #: (step, point) pairs of the run's path: `x` of a minimize job, or a small model's
    #: parameters flattened in `state_dict` order
    trajectory: list[tuple[int, list[float]]] = field(default_factory=list)
    #: `torch.save`d state to resume the run right after `step`, when one was taken
    checkpoint: bytes | None = None

    def add(self, name: str, step: int, value: float | None) -> None:
        steps, values = self.series.setdefault(name, ([], []))
        steps.append(step)
        values.append(value)


class Recorder(Protocol):
    """Where a run's curves go. `record` must not block on I/O for long: it runs in the loop."""

    def record(self, chunk: Chunk) -> None: ...

    def should_stop(self) -> bool: ...


class MemoryRecorder:
    """Keeps every point in memory: `series[name] == (steps, values)`."""

    def __init__(self) -> None:
        self.series: dict[str, tuple[list[int], list[float | None]]] = {}
        #: the latest parameters saved, as the safetensors file the run handed over
        self.parameters_file: bytes | None = None
        self.trajectory: list[tuple[int, list[float]]] = []
        self.checkpoints: list[tuple[int, bytes]] = []
        self.chunks = 0
        self.stop = False

    def record(self, chunk: Chunk) -> None:
        self.chunks += 1
        for name, (steps, values) in chunk.series.items():
            old_steps, old_values = self.series.setdefault(name, ([], []))
            old_steps.extend(steps)
            old_values.extend(values)
        if chunk.parameters is not None:
            self.parameters_file = bytes(chunk.parameters)
        self.trajectory.extend(chunk.trajectory)
        if chunk.checkpoint is not None:
            self.checkpoints.append((chunk.step, chunk.checkpoint))

    def should_stop(self) -> bool:
        return self.stop

    @property
    def parameters(self) -> dict[str, Any] | None:
        """The latest parameters saved, by `state_dict` name, as nested lists."""
        if self.parameters_file is None:
            return None
        return {k: v.tolist() for k, v in safetensors.torch.load(self.parameters_file).items()}
