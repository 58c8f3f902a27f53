"""The models of API.md 3.1; parameter names are those of their `state_dict`."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from service.spec import LinearModel, LogisticModel, MLPModel, SoftmaxModel

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
}


class MLP(nn.Module):
    """Linear -> activation -> ... -> Linear; the linear layers are `layers.0`, `layers.1`, ...

    The activation is a function, not a module, so it takes no slot in the numbering.
    """

    def __init__(
        self, n_in: int, hidden: list[int], n_out: int, *, activation: str, bias: bool
    ) -> None:
        super().__init__()
        widths = [n_in, *hidden, n_out]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in pairwise(widths))
        self.activation = ACTIVATIONS[activation]
        self.activation_name = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # no `self.layers[:-1]`: slicing builds a new ModuleList on every call
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == last else self.activation(layer(x))
        return x


def build(
    spec: LinearModel | LogisticModel | SoftmaxModel | MLPModel, *, n_in: int, n_out: int
) -> nn.Module:
    """A model for `n_in` features and `n_out` outputs (logits for the classifiers)."""
    model: nn.Module
    if isinstance(spec, MLPModel):
        model = MLP(n_in, spec.hidden, n_out, activation=spec.activation, bias=spec.bias)
    else:
        # linear, logistic and softmax are one affine map; they differ in the loss on top
        model = nn.Linear(n_in, n_out, bias=spec.bias)
    if spec.init == "zeros":
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
    return model
