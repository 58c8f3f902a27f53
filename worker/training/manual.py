"""Hand-derived backpropagation (`gradients: manual`, API.md 3): the chain rule, layer by layer.

Nothing in `backward` touches autograd: the forward pass, the loss, its value and every
gradient are plain tensor arithmetic under `torch.no_grad()`, written as SEEDS.md derives them.
For a batch of B rows:

- MSE `mean((yhat - y)^2)` over B*k elements: `dL/dyhat = 2*(yhat - y)/(B*k)`.
- BCE on the sigmoid of a logit z: `dL/dz = (sigmoid(z) - y)/B`.
- Softmax with cross-entropy: `dL/dz = (softmax(z) - onehot(y))/B`.
- Linear `y = x W^T + b` with upstream g: `dW = g^T x`, `db = sum of g over the batch`, `dx = g W`.
- ReLU passes g where its input was positive; sigmoid a: `g*a*(1-a)`; tanh a: `g*(1-a^2)`.
- The penalty `l1*sum|W| + l2*sum(W^2)` over the weights adds `l1*sign(W) + 2*l2*W`.

`gradient_check` compares these against autograd, which is the reference and used nowhere else.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worker.training.models import MLP


def backward(
    model: nn.Module,
    *,
    loss: str,
    l1: float,
    l2: float,
    x: Tensor,
    y: Tensor,
    l1_in_gradient: bool = True,
) -> Tensor:
    """Write the objective's gradient into each parameter's `.grad`; return the objective.

    The objective is the data loss plus `l1*sum|W| + l2*sum(W^2)` over the weights (biases are
    not penalised). With `l1_in_gradient=False` the l1 term stays out of the gradient (proximal
    optimizers apply it themselves) but is still in the value returned.
    """
    layers, activation = _layers(model)
    with torch.no_grad():
        inputs, pre = _forward(layers, activation, x)
        value, g = _loss_and_gradient(loss, inputs[-1], y)
        for i in reversed(range(len(layers))):
            g = _linear_backward(layers[i], inputs[i], g)
            if i > 0:
                g = _activation_backward(activation, g, pre[i - 1], inputs[i])
        value = value + _penalty(model, l1=l1, l2=l2, l1_in_gradient=l1_in_gradient)
    return value


def gradient_check(
    model: nn.Module,
    *,
    loss: str,
    l1: float,
    l2: float,
    x: Tensor,
    y: Tensor,
    l1_in_gradient: bool = True,
) -> float:
    """The largest relative difference between `backward`'s gradients and autograd's.

    For each parameter p, with `m` the manual gradient and `a` autograd's (Frobenius norms):
    `||m - a|| / max(||a||, tiny)`, `tiny` being `torch.finfo(p.dtype).tiny`; the result is the
    maximum over parameters (0.0 for a model without any). The parameters are left as they were
    and every `.grad` is None afterwards.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        backward(model, loss=loss, l1=l1, l2=l2, x=x, y=y, l1_in_gradient=l1_in_gradient)
        manual = [p.grad for p in params]
        with torch.enable_grad():
            value = _reference_objective(model, loss, l1, l2, x, y, l1_in_gradient)
            reference = torch.autograd.grad(value, params, allow_unused=True)
    finally:
        for p in params:
            p.grad = None
    worst = 0.0
    for p, m, a in zip(params, manual, reference, strict=True):
        m = torch.zeros_like(p) if m is None else m
        a = torch.zeros_like(p) if a is None else a
        scale = max(float(torch.linalg.vector_norm(a)), torch.finfo(p.dtype).tiny)
        worst = max(worst, float(torch.linalg.vector_norm(m - a)) / scale)
    return worst


# --- the model as a list of affine maps ---------------------------------------------------


def _layers(model: nn.Module) -> tuple[list[nn.Linear], str | None]:
    """The model's linear layers in order, and the activation between them (None for one)."""
    if isinstance(model, nn.Linear):
        return [model], None
    if isinstance(model, MLP):
        layers = [layer for layer in model.layers if isinstance(layer, nn.Linear)]
        return layers, model.activation_name
    raise TypeError(f"manual gradients know nn.Linear and MLP models, not {type(model).__name__}")


def _forward(
    layers: list[nn.Linear], activation: str | None, x: Tensor
) -> tuple[list[Tensor], list[Tensor]]:
    """Every layer's input (the last entry is the output) and every pre-activation."""
    inputs, pre = [x], []
    for i, layer in enumerate(layers):
        z = inputs[-1] @ layer.weight.T
        if layer.bias is not None:
            z = z + layer.bias
        if i < len(layers) - 1:
            pre.append(z)
            z = _activate(activation, z)
        inputs.append(z)
    return inputs, pre


def _linear_backward(layer: nn.Linear, x: Tensor, g: Tensor) -> Tensor:
    """Store `dW = g^T x` and `db = sum_batch g` as the layer's grads; return `dx = g W`."""
    layer.weight.grad = g.T @ x
    if layer.bias is not None:
        layer.bias.grad = g.sum(0)
    return g @ layer.weight


# --- activations ----------------------------------------------------------------------------


def _activate(name: str | None, z: Tensor) -> Tensor:
    if name == "relu":
        return z.clamp(min=0)
    if name == "sigmoid":
        return torch.sigmoid(z)
    if name == "tanh":
        return torch.tanh(z)
    raise ValueError(f"no manual gradient for the activation {name!r}")


def _activation_backward(name: str | None, g: Tensor, z: Tensor, a: Tensor) -> Tensor:
    """The upstream gradient `g` through `a = activation(z)`."""
    if name == "relu":
        # zero where z <= 0, as autograd's relu does at the kink
        return g * (z > 0)
    if name == "sigmoid":
        return _sigmoid_backward(g, a)
    return _tanh_backward(g, a)


def _sigmoid_backward(g: Tensor, a: Tensor) -> Tensor:
    return g * a * (1 - a)


def _tanh_backward(g: Tensor, a: Tensor) -> Tensor:
    return g * (1 - a * a)


# --- losses ---------------------------------------------------------------------------------


def _loss_and_gradient(loss: str, out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The data loss's value and its gradient with respect to the model's output `out`."""
    if loss == "mse":
        if out.shape != y.shape:
            raise ValueError(f"mse needs targets shaped as the outputs {out.shape}, not {y.shape}")
        diff = out - y
        return diff.square().mean(), 2 * diff / diff.numel()
    if loss == "bce":
        value, dz = _bce_with_logits(out.squeeze(-1), y)
        return value, dz.reshape(out.shape)
    if loss == "cross_entropy":
        return _cross_entropy(out, y)
    raise ValueError(f"no manual gradient for the loss {loss!r}")


def _bce_with_logits(z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Binary cross-entropy on `sigmoid(z)`; the sigmoid and the loss fold into `(a - y)/B`."""
    # softplus(z) - z*y in the form that neither overflows nor loses log(1 + tiny)
    value = (z.clamp(min=0) - z * y + torch.log1p(torch.exp(-z.abs()))).mean()
    return value, (torch.sigmoid(z) - y) / z.numel()


def _cross_entropy(z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax then the mean negative log-likelihood of the labels; folds into `(p - onehot)/B`."""
    shifted = z - z.max(dim=1, keepdim=True).values  # log-sum-exp without overflow
    log_p = shifted - torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))
    labels = y.long().unsqueeze(1)
    value = -log_p.gather(1, labels).mean()
    onehot = torch.zeros_like(z).scatter_(1, labels, 1.0)
    return value, (torch.exp(log_p) - onehot) / len(z)


# --- the penalty --------------------------------------------------------------------------


def _weights(model: nn.Module) -> list[nn.Parameter]:
    """The penalised parameters: those whose state_dict name ends with `weight`."""
    return [p for name, p in model.named_parameters() if name.endswith("weight")]


def _penalty(model: nn.Module, *, l1: float, l2: float, l1_in_gradient: bool) -> Tensor | float:
    """`l1*sum|W| + l2*sum(W^2)`, its gradient added into the weights' `.grad`."""
    total: Tensor | float = 0.0
    for w in _weights(model):
        grad = w.grad if w.grad is not None else torch.zeros_like(w)
        if l1:
            total = total + l1 * w.abs().sum()
            if l1_in_gradient:
                grad = grad + l1 * torch.sign(w)  # sign(0) = 0, as autograd's abs
        if l2:
            total = total + l2 * w.square().sum()
            grad = grad + 2 * l2 * w
        w.grad = grad
    return total


# --- the autograd reference -----------------------------------------------------------------


def _reference_objective(
    model: nn.Module, loss: str, l1: float, l2: float, x: Tensor, y: Tensor, l1_in_gradient: bool
) -> Tensor:
    """The objective as torch.nn.functional computes it, for autograd to differentiate."""
    out = model(x)
    if loss == "mse":
        value = F.mse_loss(out, y)
    elif loss == "bce":
        value = F.binary_cross_entropy_with_logits(out.squeeze(-1), y)
    else:
        value = F.cross_entropy(out, y)
    for w in _weights(model):
        if l1 and l1_in_gradient:
            value = value + l1 * w.abs().sum()
        if l2:
            value = value + l2 * w.square().sum()
    return value
