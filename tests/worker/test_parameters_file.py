"""`encode_parameters`: a model's state as a safetensors file that safetensors itself reads."""

from __future__ import annotations

import math
import struct

import orjson
import safetensors.numpy
import safetensors.torch
import torch

from worker.training.parameters_file import encode_parameters
from worker.training.recorder import Chunk, MemoryRecorder


def _header(file: bytes) -> dict[str, dict[str, object]]:
    (length,) = struct.unpack_from("<Q", file)
    assert (8 + length) % 8 == 0  # the data starts aligned
    return orjson.loads(file[8 : 8 + length])  # type: ignore[no-any-return]


def test_every_tensor_comes_back_exactly_as_it_was() -> None:
    tensors = {
        "weight": torch.tensor([[1.5, math.nan], [math.inf, -0.0]]),
        "bias": torch.randn(3, dtype=torch.float64),
        "half": torch.randn(5).half(),
        "count": torch.tensor(7),  # 0-d, as a buffer such as num_batches_tracked
        "empty": torch.zeros(0, 4),
        "mask": torch.tensor([True, False, True]),
    }
    file = bytes(encode_parameters(tensors))
    back = safetensors.torch.load(file)
    assert set(back) == set(tensors)
    for name, tensor in tensors.items():
        assert back[name].dtype == tensor.dtype and back[name].shape == tensor.shape, name
        assert torch.equal(back[name].nan_to_num(0.0), tensor.nan_to_num(0.0)), name
    assert math.isnan(back["weight"][0, 1]) and math.copysign(1, back["weight"][1, 1]) < 0
    assert set(safetensors.numpy.load(file)) == set(tensors)  # as the API reads it


def test_tensors_of_one_dtype_keep_their_order_and_views_of_one_storage_are_copied() -> None:
    row = torch.arange(10, dtype=torch.float32)  # as a grouped run's row: views of one storage
    tensors = {"layers.0.weight": row[:6].view(2, 3), "layers.0.bias": row[6:8], "w": row[8:]}
    file = bytes(encode_parameters(tensors))
    assert list(_header(file)) == list(tensors)
    back = safetensors.torch.load(file)
    assert all(torch.equal(back[name], tensor) for name, tensor in tensors.items())
    row.zero_()  # the file is a copy taken at the call
    assert back["layers.0.weight"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]


def test_a_tensor_that_needs_grad_and_no_tensors_at_all() -> None:
    weight = torch.randn(4, 2, requires_grad=True)
    back = safetensors.torch.load(bytes(encode_parameters({"weight": weight})))
    assert torch.equal(back["weight"], weight.detach())
    assert bytes(encode_parameters({})) == safetensors.torch.save({})


def test_the_memory_recorder_reads_the_file_back_as_lists() -> None:
    recorder = MemoryRecorder()
    assert recorder.parameters is None
    weight = torch.tensor([[0.1, 0.2]])
    recorder.record(Chunk(step=1, epoch=0, parameters=encode_parameters({"weight": weight})))
    assert recorder.parameters == {"weight": weight.tolist()}
