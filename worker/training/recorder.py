"""What the training loop reports to, and an in-memory recorder for tests and scripts."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import safetensors.torch
import torch

#: the safetensors name of each dtype a model's state may hold
SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


@dataclass
class Chunk:
    """Whole steps of a run's curves: every point of a step is in the same chunk."""

    #: the last step taken and the number of epochs finished
    step: int
    epoch: int
    #: name -> (steps, values); a value is None where it was not finite
    series: dict[str, tuple[list[int], list[float | None]]] = field(default_factory=dict)
    #: the parameters at `step` as a safetensors file (`encode_parameters`), when saved
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


def encode_parameters(tensors: Mapping[str, torch.Tensor]) -> bytearray:
    """The tensors as a safetensors file, each copied once, straight from its device.

    Written here rather than by `safetensors.torch.save`, which stages a CUDA tensor on the
    host before copying it into its output (two copies of the model at once) and refuses views
    of one storage (a grouped run's row of `StackedModel.flat`). The format is the documented
    one: a little-endian u64 header length, the JSON header, the data; `safetensors` reads it
    back (the tests check that). The data is in the host's byte order: little-endian, as the
    format's, on every platform torch ships for.
    """
    # the widest elements first, as safetensors orders them, so each tensor starts aligned;
    # a stable sort, so tensors of one dtype keep their state_dict order
    names = sorted(tensors, key=lambda name: -tensors[name].element_size())
    header: dict[str, dict[str, Any]] = {}
    end = 0
    for name in names:
        tensor = tensors[name]
        start, end = end, end + tensor.numel() * tensor.element_size()
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [start, end],
        }
    head = orjson.dumps(header)
    head += b" " * (-len(head) % 8)  # the data starts 8-byte aligned
    data_start = 8 + len(head)
    file = bytearray(data_start + end)
    file[:data_start] = struct.pack("<Q", len(head)) + head
    with torch.no_grad():
        for name in names:
            tensor = tensors[name]
            if tensor.numel():
                offset = data_start + header[name]["data_offsets"][0]
                window = torch.frombuffer(
                    file, dtype=tensor.dtype, count=tensor.numel(), offset=offset
                )
                window.view(tensor.shape).copy_(tensor)
    return file
