"""JAX backend: ``grad``, ``jit`` and ``vmap`` through ``jax.numpy``.

The front-ends are plain functions, jitted with their hyperparameters static, so they
can be called eagerly or inside a user's own ``jax.jit``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as xp
import numpy as np

from glf_losses import adc as adc_module
from glf_losses import methods
from glf_losses._lib import GLFParts, l2_normalize
from glf_losses.adc import ADC
from glf_losses.distributed import active

__all__ = [
    "adc_loss",
    "all_gather",
    "all_reduce_max",
    "all_reduce_sum",
    "barlow_twins_loss",
    "byol_loss",
    "device",
    "fori_loop",
    "log_softmax",
    "logsumexp",
    "name",
    "select_kth",
    "shard",
    "simclr_loss",
    "stop_gradient",
    "swav_loss",
    "swav_scores",
    "to_local",
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


def log_softmax(x: Any, axis: int) -> Any:
    return jax.nn.log_softmax(x, axis=axis)


def select_kth(x: Any, ks: tuple[int, ...]) -> Any:
    # XLA has no selection primitive; its sort is the fast path on every device.
    ordered = xp.sort(x)
    return ordered[np.asarray(ks)]


# --- data-parallel collectives (see glf_losses.distributed) -----------------------------
#
# Under shard_map (with its default varying-axes checks) JAX tracks which values are the
# same on every device and inserts the summing transposes itself, so ``to_local`` is the
# identity here and no custom rule is written.


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


def fori_loop(n: int, body: Callable[[Any], Any], carry: Any) -> Any:
    """A fixed-count loop as one XLA while loop: compile time does not grow with ``n``."""
    return jax.lax.fori_loop(0, n, lambda _, c: body(c), carry)


def to_numpy(x: Any) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.float32) if x.dtype.name == "bfloat16" else x


# --- jitted front-ends ------------------------------------------------------------------
#
# Hyperparameters (and ``adc``, a frozen dataclass) are static; ``parts=True`` returns
# ``GLFParts`` instead of the total. With ``adc`` set, pass ``prior``.

_STATIC = ("adc", "parts")


def _finish(out: GLFParts, adc: ADC | None, z_a: Any, z_b: Any, prior: Any, parts: bool) -> Any:
    out = methods.with_adc(out, adc, z_a, z_b, prior)
    return out if parts else out.total


@partial(jax.jit, static_argnames=_STATIC)
def byol_loss(
    p_a: Any,
    p_b: Any,
    z_a: Any,
    z_b: Any,
    prior: Any = None,
    *,
    adc: ADC | None = None,
    parts: bool = False,
) -> Any:
    """:func:`glf_losses.byol_loss`, jitted; ADC acts on the predictions ``(p_a, p_b)``."""
    return _finish(methods.byol_parts(p_a, p_b, z_a, z_b), adc, p_a, p_b, prior, parts)


@partial(jax.jit, static_argnames=("lambd", "eps", "scale", *_STATIC))
def barlow_twins_loss(
    z_a: Any,
    z_b: Any,
    prior: Any = None,
    *,
    lambd: float = 0.0051,
    eps: float = 1e-5,
    scale: float = 1.0,
    adc: ADC | None = None,
    parts: bool = False,
) -> Any:
    """:func:`glf_losses.barlow_twins_loss`, jitted, with optional ADC.

    Example:
      >>> import jax.numpy as jnp
      >>> from glf_losses import ADC
      >>> from glf_losses.backends.jax import barlow_twins_loss
      >>> z = jnp.arange(32.0).reshape(8, 4) ** 0.5
      >>> bool(jnp.isfinite(barlow_twins_loss(z, z[::-1], z, adc=ADC(perplexity=5.0))))
      True
    """
    out = methods.barlow_twins_parts(z_a, z_b, lambd, eps, scale)
    return _finish(out, adc, z_a, z_b, prior, parts)


@partial(jax.jit, static_argnames=("temperature", *_STATIC))
def simclr_loss(
    z_a: Any,
    z_b: Any,
    prior: Any = None,
    *,
    temperature: float = 0.2,
    adc: ADC | None = None,
    parts: bool = False,
) -> Any:
    """:func:`glf_losses.simclr_loss`, jitted, with optional ADC."""
    return _finish(methods.simclr_parts(z_a, z_b, temperature), adc, z_a, z_b, prior, parts)


def swav_scores(z: Any, prototypes: Any) -> Any:
    """``n(z) n(W)^T``: scores of projections (N, D) against prototypes (K, D)."""
    return l2_normalize(xp, z) @ l2_normalize(xp, prototypes).T


@partial(jax.jit, static_argnames=("temperature", "epsilon", "sinkhorn_iters", *_STATIC))
def swav_loss(
    z_a: Any,
    z_b: Any,
    prototypes: Any,
    prior: Any = None,
    *,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    sinkhorn_iters: int = 3,
    adc: ADC | None = None,
    parts: bool = False,
) -> Any:
    """SwAV from projections and a (K, D) prototype matrix (normalised here)."""
    out = methods.swav_parts(
        swav_scores(z_a, prototypes),
        swav_scores(z_b, prototypes),
        temperature,
        epsilon,
        sinkhorn_iters,
    )
    return _finish(out, adc, z_a, z_b, prior, parts)


adc_loss = jax.jit(
    adc_module.adc_loss,
    static_argnames=(
        "nu",
        "upsilon",
        "rho",
        "bandwidth",
        "prior_bandwidth",
        "perplexity",
        "prior_perplexity",
        "perplexity_steps",
        "normalize",
    ),
)
"""``glf_losses.adc_loss``, jitted with its hyperparameters static."""
