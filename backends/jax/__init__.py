"""JAX backend: ``grad``, ``jit`` and ``vmap`` through ``jax.numpy``.

The same modules as every framework backend: `.namespace` (the array namespace and
the operations the standard lacks), `.collectives` (named-axis collectives under
``shard_map``) and `.frontends` (plain jitted functions, one per registered method:
``byol_loss``, ``barlow_twins_loss``, ``simclr_loss``, ``swav_loss``, ..., and
``adc_loss``, and ``update_state`` for the methods that carry state), which can be
called eagerly or inside a user's own ``jax.jit``.
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
from .frontends import adc_loss, front_end, update_state
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
    "adc_loss", "front_end", "update_state", *(f"{m}_loss" for m in registry.names()),
]

# barlow_twins_loss, swav_loss, ...: made from the registry on first use.
__getattr__ = frontends.__getattr__
