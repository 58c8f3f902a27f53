"""A run's parameters as a safetensors file, written straight from the device."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import orjson
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
