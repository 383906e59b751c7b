"""Constraining terms: stop the representation from collapsing.

See :mod:`glf_losses.align` for the conventions (validation, dtypes, 0-d results).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from glf_losses import _checks
from glf_losses._lib import (
    batch_average,
    l2_normalize,
    masked_logsumexp,
    not_self,
    off_diagonal,
    stacked_columns,
    stacked_rows,
    standardize,
)
from glf_losses.align import _pair

__all__ = ["redundancy_reduction", "sinkhorn", "uniformity"]


# --- Barlow Twins ---------------------------------------------------------------------


def _cross_correlation(be: ModuleType, zn_a: Any, zn_b: Any) -> Any:
    # Summed over workers like the official implementation's all-reduce of C.
    n_global = zn_a.shape[0] * be.shard(zn_a)[0]
    return be.all_reduce_sum(be.xp.matrix_transpose(zn_a) @ zn_b) / n_global


def _redundancy_reduction(be: ModuleType, c: Any, lambd: float) -> Any:
    xp = be.xp
    # Masking, not sum(C^2) - sum(diag^2): the difference cancels catastrophically in
    # float32 once the diagonal approaches 1 and the off-diagonal approaches 0.
    mask = off_diagonal(be, c.shape[0], c)
    return lambd * xp.sum(xp.where(mask, c * c, 0.0))


def redundancy_reduction(z_a: Any, z_b: Any, lambd: float = 0.0051, eps: float = 1e-5) -> Any:
    r"""Barlow Twins' redundancy-reduction term, the off-diagonal of the cross-correlation.

    .. math:: \lambda \sum_{i \ne j} C_{ij}^2, \qquad C = \tfrac{1}{N}\,\hat z^{a\top}
       \hat z^b

    with the same batch standardisation as :func:`glf_losses.align.invariance`.

    Args:
      z_a: (N, D) projections of view a, N >= 2.
      z_b: (N, D) projections of view b, the same shape as ``z_a``.
      lambd: weight of the off-diagonal terms (included in the result).
      eps: added to the batch variance.

    References:
      Zbontar et al., "Barlow Twins", ICML 2021.

    Example:
      >>> import numpy as np
      >>> from glf_losses import constrain
      >>> z = np.array([[1.0, 1.0], [-1.0, -1.0]])
      >>> round(float(constrain.redundancy_reduction(z, z, lambd=1.0, eps=0.0)), 9)
      2.0
    """
    be, z_a, z_b = _pair("z_a", z_a, "z_b", z_b, min_rows=2)
    lambd = _checks.check_nonnegative(lambd, "lambd")
    eps = _checks.check_nonnegative(eps, "eps")
    c = _cross_correlation(be, standardize(be, z_a, eps), standardize(be, z_b, eps))
    return _redundancy_reduction(be, c, lambd)


# --- SwAV -----------------------------------------------------------------------------


def _sinkhorn(be: ModuleType, scores: Any, epsilon: float, n_iters: int) -> Any:
    xp = be.xp
    s = be.stop_gradient(scores)
    n_local, k = s.shape
    n = n_local * be.shard(s)[0]
    # A per-prototype shift cancels in the first row normalisation, so it gives the same
    # codes as a global one; it also keeps every prototype's largest entry at exp(0) = 1.
    q = s - be.all_reduce_max(xp.max(s, axis=0, keepdims=True))
    # No gradient flows through the codes, so every rescaling below is in place: an
    # out-of-place (N, K) result is a fresh allocation, which in eager PyTorch costs
    # more than the division itself (page faults on new memory). ``q`` never aliases
    # ``scores``: the subtraction above made it. Frameworks with immutable arrays (JAX,
    # TensorFlow) rebind the name, which is the same computation.
    q /= epsilon
    q = xp.exp(q)
    q /= be.all_reduce_sum(xp.sum(q))
    # Prototype sums run over the global batch (the equipartition constraint is global);
    # each sample's own normalisation needs no communication.
    for _ in range(n_iters):
        q /= be.all_reduce_sum(xp.sum(q, axis=0, keepdims=True)) * k
        q /= xp.sum(q, axis=1, keepdims=True) * n
    q *= n
    return q


def sinkhorn(scores: Any, epsilon: float = 0.05, n_iters: int = 3) -> Any:
    r"""Sinkhorn-Knopp codes: soft assignments with equal prototype usage (SwAV).

    Works on ``stop_gradient(scores)``, in float32 at least (``exp(1/0.05)`` overflows
    float16). With :math:`Q = \exp(s / \epsilon)^\top` normalised to sum 1, each of
    ``n_iters`` iterations rescales the K prototype rows to sum ``1/K`` and then the N
    sample columns to sum ``1/N``; the result is ``(N Q)^T``, whose rows sum to 1 and whose
    columns tend to ``N/K`` (the equipartition constraint) as iterations grow.

    Args:
      scores: (N, K) prototype scores, typically cosine similarities in [-1, 1].
      epsilon: entropic regularisation; smaller is closer to a hard assignment.
      n_iters: a fixed number of iterations (a Python int, so it compiles unrolled).

    Returns:
      (N, K) codes, rows summing to 1, no gradient.

    References:
      Cuturi, "Sinkhorn Distances", NeurIPS 2013; Caron et al., "SwAV", NeurIPS 2020.

    Example:
      >>> import numpy as np
      >>> from glf_losses import constrain
      >>> codes = constrain.sinkhorn(np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]]))
      >>> np.allclose(codes.sum(axis=1), 1.0)
      True
    """
    be = _checks.backend_of(scores=scores)
    scores = _checks.float_matrix(be, scores, "scores")
    epsilon = _checks.check_positive(epsilon, "epsilon")
    n_iters = _checks.check_count(n_iters, "n_iters", minimum=1)
    return _sinkhorn(be, scores, epsilon, n_iters)


# --- SimCLR ---------------------------------------------------------------------------


def _uniformity(be: ModuleType, u_a: Any, u_b: Any, temperature: float) -> Any:
    # Local rows against the global batch as columns: every sample of every worker is a
    # negative, and each worker computes only its own rows' terms.
    xp = be.xp
    n_global, rows = stacked_rows(be, u_a.shape[0], u_a)
    columns = stacked_columns(be, u_a, u_b)
    logits = (xp.concat([u_a, u_b], axis=0) @ xp.matrix_transpose(columns)) / temperature
    lse = masked_logsumexp(be, logits, not_self(be, rows, 2 * n_global, u_a))
    return batch_average(be, lse)


def uniformity(z_a: Any, z_b: Any, temperature: float = 0.2) -> Any:
    r"""The constraining half of InfoNCE / NT-Xent: log-sum-exp over all other samples.

    .. math:: \frac{1}{2N}\sum_{k=1}^{2N} \log \sum_{l \ne k} \exp(u_k \cdot u_l / t)

    over the 2N normalised projections ``u = [n(z_a); n(z_b)]``; the positive partner is
    in the sum, as in NT-Xent. Shifted by a stop-gradient row max.

    Args:
      z_a: (N, D) projections of view a.
      z_b: (N, D) projections of view b, the same shape as ``z_a``.
      temperature: t > 0.

    References:
      Chen et al., "SimCLR", ICML 2020; Wang and Isola, "Understanding Contrastive
      Representation Learning through Alignment and Uniformity", ICML 2020.

    Example:
      >>> import numpy as np
      >>> from glf_losses import constrain
      >>> z = np.zeros((2, 3))  # zero rows normalise to zero: every similarity is 0
      >>> round(float(constrain.uniformity(z, z)), 6) == round(float(np.log(3)), 6)
      True
    """
    be, z_a, z_b = _pair("z_a", z_a, "z_b", z_b)
    temperature = _checks.check_positive(temperature, "temperature")
    xp = be.xp
    return _uniformity(be, l2_normalize(xp, z_a), l2_normalize(xp, z_b), temperature)
