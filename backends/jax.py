"""JAX backend: ``grad``, ``jit`` and ``vmap`` through ``jax.numpy``.

The front-ends are plain functions, jitted with their hyperparameters static, so they
can be called eagerly or inside a user's own ``jax.jit``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as xp
import numpy as np

from glf_losses import methods
from glf_losses._lib import GLFParts, l2_normalize

__all__ = [
    "barlow_twins_loss",
    "byol_loss",
    "device",
    "logsumexp",
    "name",
    "select_kth",
    "simclr_loss",
    "stop_gradient",
    "swav_loss",
    "swav_scores",
    "to_numpy",
    "xp",
]

name = "jax"


def device(x: Any) -> Any:
    # Placement follows the computation (and its sharding) under jit; None means default.
    return None


def stop_gradient(x: Any) -> Any:
    return jax.lax.stop_gradient(x)


def logsumexp(x: Any, axis: int, keepdims: bool = False) -> Any:
    return jax.nn.logsumexp(x, axis=axis, keepdims=keepdims)


def select_kth(x: Any, ks: tuple[int, ...]) -> Any:
    # XLA has no selection primitive; its sort is the fast path on every device.
    ordered = xp.sort(x)
    return ordered[np.asarray(ks)]


def to_numpy(x: Any) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.float32) if x.dtype.name == "bfloat16" else x


# --- jitted front-ends ------------------------------------------------------------------

byol_loss = jax.jit(methods.byol_loss)
barlow_twins_loss = jax.jit(methods.barlow_twins_loss, static_argnames=("lambd", "eps", "scale"))
simclr_loss = jax.jit(methods.simclr_loss, static_argnames=("temperature",))


def swav_scores(z: Any, prototypes: Any) -> Any:
    """``n(z) n(W)^T``: scores of projections (N, D) against prototypes (K, D)."""
    return l2_normalize(xp, z) @ l2_normalize(xp, prototypes).T


@partial(jax.jit, static_argnames=("temperature", "epsilon", "sinkhorn_iters", "parts"))
def swav_loss(
    z_a: Any,
    z_b: Any,
    prototypes: Any,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    sinkhorn_iters: int = 3,
    parts: bool = False,
) -> Any:
    """SwAV from projections and a (K, D) prototype matrix (normalised here).

    ``parts=True`` returns ``GLFParts`` instead of the total.
    """
    out: GLFParts = methods.swav_parts(
        swav_scores(z_a, prototypes),
        swav_scores(z_b, prototypes),
        temperature,
        epsilon,
        sinkhorn_iters,
    )
    return out if parts else out.total
