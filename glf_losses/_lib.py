"""Generic building blocks over an array namespace, shared by every term.

Private: the public terms in :mod:`glf_losses.align`, :mod:`glf_losses.constrain` and
:mod:`glf_losses.adc` are the API. Everything here takes the backend module ``be``
(see :mod:`glf_losses._namespace`) and uses only ``be.xp`` plus ``be``'s few extra
operations, so it runs unchanged on every backend, under every compiler.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any, NamedTuple

__all__ = [
    "NORM_FLOOR",
    "GLFParts",
    "entropy",
    "generic_logsumexp",
    "generic_select_kth",
    "kl_divergence",
    "l2_normalize",
    "masked_log_softmax",
    "masked_logsumexp",
    "off_diagonal",
    "pairwise_sq_distances",
    "standardize",
]

# Squared-norm floor of every L2 normalisation: v * rsqrt(max(|v|^2, 1e-12)), so that a
# zero vector maps to zero with a finite gradient instead of 0/0.
NORM_FLOOR = 1e-12


class GLFParts(NamedTuple):
    """The two parts of a GLF objective; the method's loss is ``align + constrain``.

    A NamedTuple so that it is a pytree in JAX and a nest in TensorFlow, and so can be
    returned from ``jax.jit``, ``tf.function`` and ``torch.compile`` functions.
    """

    align: Any
    constrain: Any

    @property
    def total(self) -> Any:
        return self.align + self.constrain


def l2_normalize(xp: Any, v: Any) -> Any:
    """Row-wise ``v * rsqrt(max(sum v^2, 1e-12))``."""
    sq = xp.sum(v * v, axis=-1, keepdims=True)
    return v / xp.sqrt(xp.clip(sq, min=NORM_FLOOR))


def standardize(xp: Any, z: Any, eps: float) -> Any:
    """Standardise columns over the batch like BatchNorm1d(affine=False) in training mode.

    Biased variance, ``eps`` added to the variance: ``(z - mean) / sqrt(var + eps)``.
    """
    centred = z - xp.mean(z, axis=0, keepdims=True)
    var = xp.mean(centred * centred, axis=0, keepdims=True)
    return centred / xp.sqrt(var + eps)


def off_diagonal(be: ModuleType, m: int, like: Any) -> Any:
    """Boolean (m, m) mask, True off the diagonal, on the device of ``like``.

    Static: built from the shape alone, so compilers fold it to a constant.
    """
    idx = be.xp.arange(m, device=be.device(like))
    return idx[:, None] != idx[None, :]


def pairwise_sq_distances(xp: Any, x: Any, off_diag: Any) -> Any:
    """Squared Euclidean distances in Gram form, clamped at 0, with an exact-zero diagonal.

    ``|a|^2 + |b|^2 - 2 a.b`` needs one matrix product instead of an (M, M, D) tensor;
    rounding can make it slightly negative, hence the clamp.
    """
    sq = xp.sum(x * x, axis=1)
    gram = x @ xp.matrix_transpose(x)
    d = xp.clip(sq[:, None] + sq[None, :] - 2.0 * gram, min=0.0)
    return xp.where(off_diag, d, 0.0)


def generic_logsumexp(be: ModuleType, x: Any, axis: int, keepdims: bool = False) -> Any:
    """log(sum(exp(x))) along ``axis``, shifted by a stop-gradient max."""
    xp = be.xp
    m = be.stop_gradient(xp.max(x, axis=axis, keepdims=True))
    out = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else xp.squeeze(out, axis=axis)


def generic_select_kth(xp: Any, x: Any, ks: tuple[int, ...]) -> Any:
    """Values at 0-based positions ``ks`` of ``sort(x)`` for a 1-D ``x``, by sorting."""
    ordered = xp.sort(x)
    return xp.stack([ordered[k] for k in ks])


def masked_logsumexp(be: ModuleType, x: Any, mask: Any) -> Any:
    """logsumexp of each row of ``x`` over the entries where ``mask`` is True.

    Masked entries never pass through ``exp`` (they are replaced by the row max), so no
    ``inf`` or ``0 * inf`` appears in the forward or backward pass.
    """
    xp = be.xp
    m = be.stop_gradient(xp.max(xp.where(mask, x, -math.inf), axis=-1, keepdims=True))
    safe = xp.where(mask, x, m)
    e = xp.where(mask, xp.exp(safe - m), 0.0)
    return xp.squeeze(xp.log(xp.sum(e, axis=-1, keepdims=True)) + m, axis=-1)


def masked_log_softmax(be: ModuleType, logits: Any, mask: Any) -> tuple[Any, Any]:
    """Row-wise softmax over the entries where ``mask`` is True.

    Returns ``(log_p, p)``: ``p`` is exactly 0 on masked entries; ``log_p`` is finite
    everywhere (its masked entries are meaningless and must be masked by the caller).
    """
    xp = be.xp
    m = be.stop_gradient(xp.max(xp.where(mask, logits, -math.inf), axis=-1, keepdims=True))
    safe = xp.where(mask, logits, m)
    e = xp.where(mask, xp.exp(safe - m), 0.0)
    s = xp.sum(e, axis=-1, keepdims=True)
    return safe - m - xp.log(s), e / s


def entropy(xp: Any, p: Any, log_p: Any, mask: Any) -> Any:
    """Row entropies ``-sum_j p_j log p_j`` over masked-in entries (0 log 0 = 0)."""
    return -xp.sum(xp.where(mask, p * log_p, 0.0), axis=-1)


def kl_divergence(xp: Any, p: Any, log_p: Any, log_q: Any, mask: Any) -> Any:
    """Row-wise ``KL(p || q) = sum_j p_j (log p_j - log q_j)`` over masked-in entries."""
    return xp.sum(xp.where(mask, p * (log_p - log_q), 0.0), axis=-1)
