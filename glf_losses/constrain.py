"""Constraining terms: stop the representation from collapsing.

See [`glf_losses.align`][glf_losses.align] for the conventions (validation, dtypes, 0-d results).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

from glf_losses import _checks
from glf_losses._lib import (
    as_divisor,
    batch_average,
    column_mean,
    dim,
    global_rows,
    masked_logsumexp,
    matmul,
    not_self,
    off_diagonal,
    rows,
    similarity_logits,
    stacked_columns,
    stacked_rows,
    standardize,
    unit_rows,
)
from glf_losses.align import _pair
from glf_losses.typing import Array

__all__ = [
    "covariance",
    "gaussian_uniformity",
    "koleo",
    "redundancy_reduction",
    "sinkhorn",
    "uniformity",
    "variance",
]


# --- Barlow Twins ---------------------------------------------------------------------


def _cross_correlation(be: ModuleType, zn_a: Any, zn_b: Any) -> Any:
    # Summed over workers like the official implementation's all-reduce of C.
    n_global = rows(be, zn_a) * be.shard(zn_a)[0]
    c = matmul(be, be.xp.matrix_transpose(zn_a), zn_b)
    return be.all_reduce_sum(c) / as_divisor(be, n_global, c)


def _redundancy_reduction(be: ModuleType, c: Any, lambd: float) -> Any:
    xp = be.xp
    # Masking, not sum(C^2) - sum(diag^2): the difference cancels catastrophically in
    # float32 once the diagonal approaches 1 and the off-diagonal approaches 0.
    mask = off_diagonal(be, rows(be, c), c)
    return lambd * xp.sum(xp.where(mask, be.square(c), 0.0))


def redundancy_reduction(z_a: Array, z_b: Array, lambd: float = 0.0051, eps: float = 1e-5) -> Array:
    r"""Barlow Twins' redundancy-reduction term, the off-diagonal of the cross-correlation.

    $$
    \lambda \sum_{i \ne j} C_{ij}^2, \qquad C = \tfrac{1}{N}\,\hat z^{a\top}
    \hat z^b
    $$

    with the same batch standardisation as
    [`glf_losses.align.invariance`][glf_losses.align.invariance].

    Args:
      z_a: (N, D) projections of view a, N >= 2.
      z_b: (N, D) projections of view b, the same shape as ``z_a``.
      lambd: weight of the off-diagonal terms (included in the result).
      eps: added to the batch variance.

    References:
      Zbontar et al., "Barlow Twins", ICML 2021.

    Examples:
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
    k = as_divisor(be, dim(be, s, 1), s)
    n = as_divisor(be, rows(be, s) * be.shard(s)[0], s)
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


def sinkhorn(scores: Array, epsilon: float = 0.05, n_iters: int = 3) -> Array:
    r"""Sinkhorn-Knopp codes: soft assignments with equal prototype usage (SwAV).

    Works on ``stop_gradient(scores)``, in float32 at least (``exp(1/0.05)`` overflows
    float16). With $Q = \exp(s / \epsilon)^\top$ normalised to sum 1, each of
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

    Examples:
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
    n_global, anchors = stacked_rows(be, rows(be, u_a), u_a)
    local = xp.concat([u_a, u_b], axis=0)
    columns = stacked_columns(be, u_a, u_b, local)
    logits = similarity_logits(be, local, columns, temperature)
    lse = masked_logsumexp(be, logits, not_self(be, anchors, 2 * n_global, u_a))
    return batch_average(be, lse)


def uniformity(z_a: Array, z_b: Array, temperature: float = 0.2) -> Array:
    r"""The constraining half of InfoNCE / NT-Xent: log-sum-exp over all other samples.

    $$
    \frac{1}{2N}\sum_{k=1}^{2N} \log \sum_{l \ne k} \exp(u_k \cdot u_l / t)
    $$

    over the 2N normalised projections ``u = [n(z_a); n(z_b)]``; the positive partner is
    in the sum, as in NT-Xent. Shifted by a stop-gradient row max.

    Args:
      z_a: (N, D) projections of view a.
      z_b: (N, D) projections of view b, the same shape as ``z_a``.
      temperature: t > 0.

    References:
      Chen et al., "SimCLR", ICML 2020; Wang and Isola, "Understanding Contrastive
      Representation Learning through Alignment and Uniformity", ICML 2020.

    Examples:
      >>> import numpy as np
      >>> from glf_losses import constrain
      >>> z = np.zeros((2, 3))  # zero rows normalise to zero: every similarity is 0
      >>> round(float(constrain.uniformity(z, z)), 6) == round(float(np.log(3)), 6)
      True
    """
    be, z_a, z_b = _pair("z_a", z_a, "z_b", z_b)
    temperature = _checks.check_positive(temperature, "temperature")
    return _uniformity(be, unit_rows(be, z_a), unit_rows(be, z_b), temperature)


# --- VICReg ---------------------------------------------------------------------------


def _centred(be: ModuleType, z: Any) -> Any:
    return z - be.to_local(column_mean(be, z))


def _std_hinge(be: ModuleType, centred: Any, eps: float) -> Any:
    xp = be.xp
    n_global = centred.shape[0] * be.shard(centred)[0]
    # Unbiased, as torch.var in the official code.
    var = be.all_reduce_sum(xp.sum(be.square(centred), axis=0)) / (n_global - 1)
    return xp.mean(xp.clip(1.0 - xp.sqrt(var + eps), min=0.0))


def _off_diagonal_covariance(be: ModuleType, centred: Any) -> Any:
    xp = be.xp
    n_global, d = centred.shape[0] * be.shard(centred)[0], centred.shape[1]
    cov = be.all_reduce_sum(matmul(be, xp.matrix_transpose(centred), centred)) / (n_global - 1)
    mask = off_diagonal(be, d, cov)
    return xp.sum(xp.where(mask, be.square(cov), 0.0)) / d


def variance(z_a: Any, z_b: Any, eps: float = 1e-4) -> Any:
    r"""VICReg's variance term: a hinge keeping every dimension's batch std above 1.

    $$
    \frac{1}{2D}\sum_d \max\bigl(0, 1 - \sqrt{\mathrm{Var}(z^a_{:,d}) +
    \epsilon}\bigr) + \frac{1}{2D}\sum_d \max\bigl(0, 1 - \sqrt{\mathrm{Var}(z^b_{:,d})
    + \epsilon}\bigr)
    $$

    with the unbiased batch variance (``torch.var``), over the global batch, as
    ``std_loss`` in ``facebookresearch/vicreg: main_vicreg.py``.

    Args:
      z_a: (N, D) embeddings of view a, N >= 2.
      z_b: (N, D) embeddings of view b, the same shape as ``z_a``.
      eps: added to the variance under the square root (1e-4).

    References:
      Bardes, Ponce and LeCun, "VICReg", ICLR 2022.

    Examples:
      >>> import numpy as np
      >>> from glf_losses import constrain
      >>> float(constrain.variance(np.zeros((4, 3)), np.zeros((4, 3)), eps=0.0))
      1.0
    """
    be, z_a, z_b = _pair("z_a", z_a, "z_b", z_b, min_rows=2)
    eps = _checks.check_nonnegative(eps, "eps")
    return 0.5 * (_std_hinge(be, _centred(be, z_a), eps) + _std_hinge(be, _centred(be, z_b), eps))


def covariance(z_a: Any, z_b: Any) -> Any:
    r"""VICReg's covariance term: squared off-diagonal covariances, divided by D.

    $$
    \frac{1}{D}\sum_{i \ne j} C(z^a)_{ij}^2 + \frac{1}{D}\sum_{i \ne j}
    C(z^b)_{ij}^2, \qquad C(z) = \tfrac{1}{N - 1}\,\bar z^\top \bar z
    $$

    with $\bar z$ centred over the global batch, as ``cov_loss`` in
    ``facebookresearch/vicreg: main_vicreg.py`` (the two views are summed, not averaged).

    Args:
      z_a: (N, D) embeddings of view a, N >= 2.
      z_b: (N, D) embeddings of view b, the same shape as ``z_a``.

    References:
      Bardes, Ponce and LeCun, "VICReg", ICLR 2022.

    Examples:
      >>> import numpy as np
      >>> from glf_losses import constrain
      >>> z = np.array([[1.0, 1.0], [-1.0, -1.0]])  # both columns equal: cov 2 off-diagonal
      >>> float(constrain.covariance(z, z))
      8.0
    """
    be, z_a, z_b = _pair("z_a", z_a, "z_b", z_b, min_rows=2)
    return _off_diagonal_covariance(be, _centred(be, z_a)) + _off_diagonal_covariance(
        be, _centred(be, z_b)
    )


# --- Alignment and uniformity (Wang and Isola) ----------------------------------------


def _log_gaussian_potential(be: ModuleType, u: Any, t: float) -> Any:
    """log of the mean of exp(-t |u_i - u_j|^2) over the ordered pairs i != j (global)."""
    xp = be.xp
    n_global, rows = global_rows(be, u.shape[0], u)
    # The loss is a log-sum-exp over every ordered pair of a symmetric matrix, so its
    # gradient with respect to that matrix is symmetric too: the path through a sample's
    # column equals the path through its row. The columns are held fixed and the rows carry
    # twice the gradient (2u - sg(u) is u exactly, its cotangent doubled): half the matrix
    # products backward, and no gradient through the gather under data parallelism.
    held = be.stop_gradient(u)
    columns = be.to_local(be.all_gather(held))
    u = 2.0 * u - held
    # -t |u_i - c_j|^2 = 2t u_i.c_j - t |c_j|^2 - t |u_i|^2: the first two terms are one
    # product of [2t u, 1] and [c, -t |c|^2] (no (N, N) passes to form distances, clamp
    # and scale them, and none back); the row's own term leaves the log-sum-exp.
    sq_r = xp.sum(be.square(u), axis=1)
    sq_c = xp.sum(be.square(columns), axis=1)
    anchors = xp.concat([(2.0 * t) * u, xp.ones_like(sq_r)[:, None]], axis=1)
    targets = xp.concat([columns, (-t * sq_c)[:, None]], axis=1)
    logits = matmul(be, anchors, xp.matrix_transpose(targets))
    mask = not_self(be, rows, n_global, u)
    per_row = masked_logsumexp(be, logits, mask) - t * sq_r
    # A log-sum-exp over the rows of every worker, shifted by the global row maximum.
    m = be.stop_gradient(be.all_reduce_max(xp.max(per_row, keepdims=True)))
    total = be.all_reduce_sum(xp.sum(xp.exp(per_row - m), keepdims=True))
    return xp.squeeze(xp.log(total) + m, axis=0) - math.log(n_global * (n_global - 1))


def gaussian_uniformity(z_a: Any, z_b: Any, t: float = 2.0) -> Any:
    r"""Wang and Isola's uniformity: log of the mean Gaussian potential, both views averaged.

    $$
    \frac{1}{2}\sum_{v \in \{a, b\}} \log \frac{1}{N(N-1)}\sum_{i \ne j}
    e^{-t \lVert u^v_i - u^v_j\rVert^2}, \qquad u^v = n(z^v)
    $$

    as ``(uniform_loss(x) + uniform_loss(y)) / 2`` in ``SsnL/align_uniform: main.py``
    (``torch.pdist`` lists each unordered pair once; the mean is the same over ordered
    pairs). Over the global batch under ``glf_losses.data_parallel``. Not to be
    confused with ``uniformity``, SimCLR's log-sum-exp.

    Args:
      z_a: (N, D) features of view a, N >= 2.
      z_b: (N, D) features of view b, the same shape as ``z_a``.
      t: the potential's scale (2).

    References:
      Wang and Isola, "Understanding Contrastive Representation Learning through
      Alignment and Uniformity on the Hypersphere", ICML 2020.

    Examples:
      >>> import numpy as np
      >>> from glf_losses import constrain
      >>> z = np.array([[1.0, 0.0], [-1.0, 0.0]])  # antipodal: |u_i - u_j|^2 = 4
      >>> float(constrain.gaussian_uniformity(z, z, t=0.5))
      -2.0
    """
    be, z_a, z_b = _pair("z_a", z_a, "z_b", z_b, min_rows=2)
    t = _checks.check_positive(t, "t")
    return 0.5 * (
        _log_gaussian_potential(be, unit_rows(be, z_a), t)
        + _log_gaussian_potential(be, unit_rows(be, z_b), t)
    )


# --- KoLeo (DINOv2) -------------------------------------------------------------------


def koleo(z: Any, eps: float = 1e-8) -> Any:
    r"""The KoLeo regulariser: minus the mean log distance to the nearest neighbour.

    $$
    -\frac{1}{N}\sum_i \log\bigl(\lVert u_i - u_{\nu(i)} + \epsilon\rVert_2
    + \epsilon\bigr), \qquad \nu(i) = \arg\max_{j \ne i} u_i\cdot u_j,\ u = n(z)
    $$

    the Kozachenko-Leonenko differential-entropy estimator, as ``KoLeoLoss`` in
    ``facebookresearch/dinov2: dinov2/loss/koleo_loss.py`` (``nn.PairwiseDistance``
    adds ``eps`` to the difference, and the log to the distance; gradients flow into both
    the sample and its neighbour; the neighbour's index does not move). DINOv2 weights it
    0.1 and applies it to each GPU's batch; here, under
    ``glf_losses.data_parallel``, neighbours are searched in the global batch. Rows
    are normalised with a squared-norm floor of 1e-12 (DINOv2: a norm floor of
    ``eps``), the same for any row of norm above 1e-6.

    Args:
      z: (N, D) features, N >= 2 (a constraining term to add to any method).
      eps: the distance's offset (1e-8).

    References:
      Sablayrolles et al., "Spreading vectors for similarity search", ICLR 2019;
      Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision",
      TMLR 2024.

    Examples:
      >>> import numpy as np
      >>> from glf_losses import constrain
      >>> z = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
      >>> bool(np.isclose(float(constrain.koleo(z, eps=0.0)), -np.log(np.sqrt(2))))
      True
    """
    be = _checks.backend_of(z=z)
    z = _checks.float_matrix(be, z, "z", min_rows=2)
    eps = _checks.check_nonnegative(eps, "eps")
    xp = be.xp
    u = unit_rows(be, z)
    _, rows = global_rows(be, u.shape[0], u)
    columns = be.to_local(be.all_gather(u))
    # Cosines lie in [-1, 1]: -2 keeps each sample from being its own neighbour. Written
    # into the product in place where the framework can (DINOv2 fills the diagonal), as a
    # mask and a where over the (N, N) grid cost as much as the product at N = 4096.
    dots = be.stop_gradient(matmul(be, u, xp.matrix_transpose(columns)))
    dots = be.fill_per_row(dots, rows, -2.0)
    neighbour = xp.take(columns, xp.argmax(dots, axis=1), axis=0)
    diff = u - neighbour + eps
    distance = xp.sqrt(xp.sum(be.square(diff), axis=1))
    return -batch_average(be, xp.log(distance + eps))
