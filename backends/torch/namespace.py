"""PyTorch's array namespace and the operations the array API lacks.

Autograd, ``torch.compile``, and tensors stay on their device.
"""

from __future__ import annotations

from typing import Any

import array_api_compat.torch as xp
import numpy as np
import torch

from glf_losses._lib import plain_square, python_loop, unfused

__all__ = [
    "batch_standardize",
    "device",
    "fill_per_row",
    "fori_loop",
    "fuse",
    "log_softmax",
    "logsumexp",
    "lower_triangular_inverse",
    "matmul",
    "name",
    "rsqrt",
    "select_kth",
    "square",
    "stop_gradient",
    "to_numpy",
    "xp",
]

name = "torch"


def device(x: Any) -> Any:
    return x.device


def stop_gradient(x: Any) -> Any:
    return x.detach()


def logsumexp(x: Any, axis: int, keepdims: bool = False) -> Any:
    return torch.logsumexp(x, dim=axis, keepdim=keepdims)


def fill_per_row(x: Any, columns: Any, value: float) -> Any:
    # In place on a tensor without gradient, as DINOv2's KoLeo fills its diagonal; a
    # tensor that requires grad gets an out-of-place copy, autograd forbids the rest.
    index = columns[:, None].to(torch.int64)
    if x.requires_grad:
        return x.scatter(1, index, value)
    return x.scatter_(1, index, value)


def rsqrt(x: Any) -> Any:
    # One kernel each way, where 1 / sqrt(x) is two forward and three backward.
    return torch.rsqrt(x)


def log_softmax(x: Any, axis: int) -> Any:
    # One fused kernel forward and one backward, where x - logsumexp(x) allocates and
    # traverses several (rows, columns) temporaries in eager mode.
    return torch.log_softmax(x, dim=axis)


def batch_standardize(x: Any, eps: float) -> Any:
    # One kernel forward and one backward; the running statistics are not kept.
    return torch.nn.functional.batch_norm(x, None, None, training=True, eps=eps)


def matmul(x1: Any, x2: Any) -> Any:
    """``x1 @ x2`` in the operands' own dtype, also inside ``torch.autocast``.

    Autocast runs every product in float16 or bfloat16, float32 operands included: an
    ADC prior's squared distances overflow float16 (a NaN loss) and SimCLR's logits lose
    three digits in bfloat16. Only the products need shielding: autocast leaves the
    other ops of the losses in their inputs' dtype.
    """
    device_type = x1.device.type
    # Devices without autocast ("meta") cannot be in it, and asking them would raise.
    if not torch.amp.is_autocast_available(device_type) or not torch.is_autocast_enabled(
        device_type
    ):
        return x1 @ x2
    with torch.autocast(device_type, enabled=False):
        return x1 @ x2


def lower_triangular_inverse(x: Any) -> Any:
    """``L^{-1}`` by one triangular solve of ``L X = I``, where ``inv`` would factorise
    ``L`` again (LU) and make two solves; its backward is lighter too."""
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device).expand_as(x)
    return torch.linalg.solve_triangular(x, eye, upper=False)


def select_kth(x: Any, ks: tuple[int, ...]) -> Any:
    """Order statistics by ``torch.kthvalue`` (selection) on CPU, a sort on accelerators.

    ``kthvalue`` has no CUDA kernel faster than sorting for the sizes used here.
    """
    if x.device.type == "cpu":
        return torch.stack([torch.kthvalue(x, k + 1).values for k in ks])
    ordered = torch.sort(x).values
    return ordered[list(ks)]


def to_numpy(x: Any) -> np.ndarray:
    x = x.detach().cpu()
    if x.dtype == torch.bfloat16:
        x = x.float()
    return x.numpy()


# A fixed-count loop is unrolled: eagerly it is a Python loop, and torch.compile traces
# through it.
fori_loop = python_loop
fuse = unfused

# x * x: torch.square is a pow, whose backward makes copies (slower in eager mode);
# Inductor compiles both to the same kernel.
square = plain_square
