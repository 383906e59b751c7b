"""JAX's data-parallel collectives (see [`glf_losses.distributed`][glf_losses.distributed]).

Named-axis collectives under ``shard_map``/``pmap`` inside
``glf_losses.data_parallel(axis_name=...)``; identities outside it. Under ``shard_map``
(with its default varying-axes checks) JAX tracks which values are the same on every
device and inserts the summing transposes itself, so ``to_local`` is the identity here and
no custom rule is written.
"""

from __future__ import annotations

from typing import Any

import jax

from glf_losses.distributed import active

__all__ = ["all_gather", "all_reduce_max", "all_reduce_sum", "shard", "to_local"]


def _axis() -> Any:
    ctx = active()
    return None if ctx is None else ctx.axis_name


def shard(like: Any) -> tuple[int, Any]:
    """``(world_size, rank)`` over the active axis name, else ``(1, 0)``."""
    axis = _axis()
    if axis is None:
        return 1, 0
    return jax.lax.axis_size(axis), jax.lax.axis_index(axis)


def all_gather(x: Any) -> Any:
    axis = _axis()
    return x if axis is None else jax.lax.all_gather(x, axis, axis=0, tiled=True)


def all_reduce_sum(x: Any) -> Any:
    axis = _axis()
    return x if axis is None else jax.lax.psum(x, axis)


def to_local(x: Any) -> Any:
    return x


def all_reduce_max(x: Any) -> Any:
    axis = _axis()
    return x if axis is None else jax.lax.pmax(jax.lax.stop_gradient(x), axis)
