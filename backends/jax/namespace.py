"""JAX's array namespace and the operations the array API lacks.

``grad``, ``jit`` and ``vmap`` work through ``jax.numpy``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as xp
import numpy as np

from glf_losses._lib import plain_matmul

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

name = "jax"


# The spec standardises with its own form, which XLA fuses under jit.
batch_standardize = None


def device(x: Any) -> Any:
    # Placement follows the computation (and its sharding) under jit; None means default.
    return None


def stop_gradient(x: Any) -> Any:
    return jax.lax.stop_gradient(x)


# Compiled as one piece: jax.nn.logsumexp is some twenty primitives, each a separate
# dispatch (and linearisation) in an eager value_and_grad; under an outer jit it inlines.
_logsumexp = jax.jit(jax.nn.logsumexp, static_argnames=("axis", "keepdims"))


def logsumexp(x: Any, axis: int, keepdims: bool = False) -> Any:
    return _logsumexp(x, axis=axis, keepdims=keepdims)


def fill_per_row(x: Any, columns: Any, value: float) -> Any:
    # One scatter of a row's worth of entries; in place under jit (XLA reuses the buffer).
    return x.at[xp.arange(x.shape[0]), columns].set(value)


def rsqrt(x: Any) -> Any:
    return jax.lax.rsqrt(x)


def log_softmax(x: Any, axis: int) -> Any:
    return jax.nn.log_softmax(x, axis=axis)


# XLA computes a product in its operands' dtype (at the default matmul precision).
matmul = plain_matmul


def lower_triangular_inverse(x: Any) -> Any:
    """``L^{-1}`` by one triangular solve of ``L X = I``, where ``inv`` would factorise
    ``L`` again (LU) and make two solves; its backward is lighter too."""
    eye = xp.broadcast_to(xp.eye(x.shape[-1], dtype=x.dtype), x.shape)
    return jax.scipy.linalg.solve_triangular(x, eye, lower=True)


def square(x: Any) -> Any:
    """``jnp.square``: its gradient is one product (2 x g) where a self-product's is two
    and their sum, which XLA kept as (N, D) temporaries under ``jit`` (BYOL: 10 MiB against
    6 at N = 256, D = 2048)."""
    return xp.square(x)


def select_kth(x: Any, ks: tuple[int, ...]) -> Any:
    # XLA has no selection primitive; its sort is the fast path on every device.
    ordered = xp.sort(x)
    return ordered[np.asarray(ks)]


@functools.cache
def fuse(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn(be, *arrays, **flags)`` as one ``jax.jit`` piece, ``be`` and the keyword-only
    flags static: one dispatch each way in an eager ``value_and_grad`` instead of one per
    primitive; inlined under an outer ``jit``."""
    params = inspect.signature(fn).parameters.values()
    flags = tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)
    return jax.jit(fn, static_argnums=0, static_argnames=flags)


def fori_loop(n: int, body: Callable[[Any], Any], carry: Any) -> Any:
    """A fixed-count loop as one XLA while loop: compile time does not grow with ``n``."""
    return jax.lax.fori_loop(0, n, lambda _, c: body(c), carry)


def to_numpy(x: Any) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.float32) if x.dtype.name == "bfloat16" else x
