"""PyTorch backend: autograd, ``torch.compile``, tensors stay on their device.

The same modules as every framework backend: `.namespace` (the array namespace and
the operations the standard lacks), `.collectives` (data parallelism over
``torch.distributed``) and `.frontends` (``torch.nn.Module`` losses, one per
registered method: ``BYOLLoss``, ``BarlowTwinsLoss``, ``SimCLRLoss``, ``SwAVLoss``, ...,
and ``ADCLoss``).
"""

from __future__ import annotations

from glf_losses import registry

from . import frontends
from .collectives import (
    all_gather,
    all_reduce_max,
    all_reduce_sum,
    shard,
    to_local,
)
from .frontends import ADCLoss, MethodLoss, front_end
from .namespace import (
    batch_standardize,
    device,
    fill_per_row,
    fori_loop,
    fuse,
    log_softmax,
    logsumexp,
    lower_triangular_inverse,
    matmul,
    name,
    rsqrt,
    select_kth,
    square,
    stop_gradient,
    to_numpy,
    xp,
)

__all__ = [
    "batch_standardize", "name", "xp", "device", "stop_gradient", "log_softmax", "logsumexp",
    "matmul",
    "lower_triangular_inverse",
    "select_kth", "square", "rsqrt", "fill_per_row", "fori_loop", "fuse",
    "to_numpy", "shard", "all_gather", "all_reduce_sum", "all_reduce_max", "to_local",
    "ADCLoss", "MethodLoss", "front_end",
    *(registry.get(m).class_name for m in registry.names()),
]

# BarlowTwinsLoss, SwAVLoss, ...: made from the registry on first use.
__getattr__ = frontends.__getattr__
