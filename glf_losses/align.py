"""Aligning terms: pull the two views of one input together.

Each function validates its inputs, computes in float32 at least (float16 and bfloat16
are promoted) and returns a 0-d array of the inputs' framework. Methods in
[`glf_losses.methods`][glf_losses.methods] compose these with the constraining terms of
[`glf_losses.constrain`][glf_losses.constrain]; every formula is also on the GLF math page
(``docs/glf.md``).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from glf_losses import _checks
from glf_losses._lib import batch_average, column_mean, standardize, unit_rows
from glf_losses.typing import Array

__all__ = [
    "alignment",
    "infonce_alignment",
    "invariance",
    "mean_squared_error",
    "negative_cosine",
    "normalized_mse",
    "swapped_prediction",
]


def _pair(
    name_a: str, a: Any, name_b: str, b: Any, *, min_rows: int = 1
) -> tuple[ModuleType, Any, Any]:
    be = _checks.backend_of(**{name_a: a, name_b: b})
    _checks.same_shape(a, b, name_a, name_b)
    a, b = _checks.float_matrices(be, min_rows=min_rows, **{name_a: a, name_b: b})
    return be, a, b


# --- BYOL -----------------------------------------------------------------------------


def _normalized_mse(be: ModuleType, p: Any, z: Any) -> Any:
    xp = be.xp
    diff = unit_rows(be, p) - unit_rows(be, z)
    # The backend's square, not diff * diff: the same values, but where the framework
    # has a cheaper square (JAX, TensorFlow) its gradient is one product, where a
    # self-product's is two and their sum (under jax.jit: 10 MiB of temporaries and
    # outputs at N = 256, D = 2048 with diff * diff, 6 with square, native 4).
    return batch_average(be, xp.sum(be.square(diff), axis=1))


def normalized_mse(p: Array, z: Array) -> Array:
    r"""Mean squared distance between L2-normalised rows (BYOL's regression loss).

    $$
    \frac{1}{N}\sum_i \lVert n(p_i) - n(z_i) \rVert^2 = \frac{1}{N}\sum_i
    \bigl(2 - 2\cos(p_i, z_i)\bigr)
    $$

    with $n(v) = v\,\mathrm{rsqrt}(\max(\lVert v\rVert^2, 10^{-12}))$, so a zero row
    has a finite gradient. No stop-gradient is applied here:
    [`glf_losses.byol_loss`][glf_losses.byol_loss]
    stops the gradient of its targets.

    Args:
      p: (N, D) predictions.
      z: (N, D) targets.

    Returns:
      A 0-d array in ``[0, 4]``.

    References:
      Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020.

    Examples:
      >>> import numpy as np
      >>> from glf_losses import align
      >>> p = np.array([[1.0, 0.0], [0.0, 2.0]])
      >>> float(align.normalized_mse(p, -p))
      4.0
    """
    be, p, z = _pair("p", p, "z", z)
    return _normalized_mse(be, p, z)


# --- Barlow Twins ---------------------------------------------------------------------


def _invariance(be: ModuleType, zn_a: Any, zn_b: Any) -> Any:
    # diag(C) as a column mean: O(N D) instead of slicing the (D, D) product.
    c_diag = column_mean(be, zn_a * zn_b)
    return be.xp.sum((1.0 - c_diag) ** 2)


def invariance(z_a: Array, z_b: Array, eps: float = 1e-5) -> Array:
    r"""Barlow Twins' invariance term, the diagonal of the cross-correlation.

    $$
    \sum_i (1 - C_{ii})^2, \qquad C = \tfrac{1}{N}\,\hat z^{a\top} \hat z^b
    $$

    where $\hat z$ standardises each column over the batch like
    ``BatchNorm1d(affine=False)`` in training mode (biased variance, ``eps`` added to it).

    Args:
      z_a: (N, D) projections of view a, N >= 2.
      z_b: (N, D) projections of view b, the same shape as ``z_a``.
      eps: added to the batch variance.

    References:
      Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
      ICML 2021.

    Examples:
      >>> import numpy as np
      >>> from glf_losses import align
      >>> z = np.array([[1.0, -1.0], [-1.0, 1.0]])
      >>> round(float(align.invariance(z, z, eps=0.0)), 12)
      0.0
    """
    be, z_a, z_b = _pair("z_a", z_a, "z_b", z_b, min_rows=2)
    eps = _checks.check_finite_number(eps, "eps")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    return _invariance(be, standardize(be, z_a, eps), standardize(be, z_b, eps))


# --- SwAV -----------------------------------------------------------------------------


def _swapped_prediction(
    be: ModuleType, scores_a: Any, scores_b: Any, codes_a: Any, codes_b: Any, temperature: float
) -> Any:
    xp = be.xp
    # The backend's log_softmax: one kernel forward and one backward in eager PyTorch and
    # TensorFlow, where subtracting a logsumexp allocates and traverses several (N, K)
    # temporaries each way.
    log_pa = be.log_softmax(scores_a / temperature, axis=1)
    log_pb = be.log_softmax(scores_b / temperature, axis=1)
    cross = xp.sum(codes_a * log_pb, axis=1) + xp.sum(codes_b * log_pa, axis=1)
    return -0.5 * batch_average(be, cross)


def swapped_prediction(
    scores_a: Array, scores_b: Array, codes_a: Array, codes_b: Array, temperature: float = 0.1
) -> Array:
    r"""SwAV's swapped prediction: each view predicts the other view's codes.

    $$
    -\frac{1}{2N}\sum_i \Bigl[\sum_k q^a_{ik} \log \mathrm{softmax}(s^b_i/t)_k
    + \sum_k q^b_{ik} \log \mathrm{softmax}(s^a_i/t)_k\Bigr]
    $$

    The codes are used as given; [`glf_losses.swav_loss`][glf_losses.swav_loss] computes them with
    [`glf_losses.constrain.sinkhorn`][glf_losses.constrain.sinkhorn] under stop-gradient.

    Args:
      scores_a: (N, K) prototype scores ``n(z) W^T`` of view a.
      scores_b: (N, K) prototype scores of view b.
      codes_a: (N, K) soft assignments of view a, rows summing to 1.
      codes_b: (N, K) soft assignments of view b, rows summing to 1.
      temperature: softmax temperature t > 0.

    References:
      Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
      Assignments", NeurIPS 2020.

    Examples:
      >>> import numpy as np
      >>> from glf_losses import align
      >>> s = np.zeros((4, 3))
      >>> q = np.full((4, 3), 1 / 3)
      >>> round(float(align.swapped_prediction(s, s, q, q)), 6) == round(float(np.log(3)), 6)
      True
    """
    be = _checks.backend_of(scores_a=scores_a, scores_b=scores_b, codes_a=codes_a, codes_b=codes_b)
    for name, x in (("scores_b", scores_b), ("codes_a", codes_a), ("codes_b", codes_b)):
        _checks.same_shape(scores_a, x, "scores_a", name)
    temperature = _checks.check_positive(temperature, "temperature")
    sa, sb, qa, qb = _checks.float_matrices(
        be, scores_a=scores_a, scores_b=scores_b, codes_a=codes_a, codes_b=codes_b
    )
    return _swapped_prediction(be, sa, sb, qa, qb, temperature)


# --- SimCLR ---------------------------------------------------------------------------


def _infonce_alignment(be: ModuleType, u_a: Any, u_b: Any, temperature: float) -> Any:
    return -batch_average(be, be.xp.sum(u_a * u_b, axis=1)) / temperature


def infonce_alignment(z_a: Array, z_b: Array, temperature: float = 0.2) -> Array:
    r"""The aligning half of InfoNCE / NT-Xent: minus the mean positive similarity.

    $$
    -\frac{1}{2N}\sum_{k=1}^{2N} \frac{u_k \cdot u_{k^+}}{t}
    = -\frac{1}{N}\sum_i \frac{n(z^a_i)\cdot n(z^b_i)}{t}
    $$

    Its sum with [`glf_losses.constrain.uniformity`][glf_losses.constrain.uniformity] is exactly the
    NT-Xent loss.

    Args:
      z_a: (N, D) projections of view a.
      z_b: (N, D) projections of view b, the same shape as ``z_a``.
      temperature: t > 0.

    References:
      Chen et al., "A Simple Framework for Contrastive Learning of Visual
      Representations", ICML 2020.

    Examples:
      >>> import numpy as np
      >>> from glf_losses import align
      >>> z = np.eye(3)
      >>> float(align.infonce_alignment(z, z, temperature=0.5))
      -2.0
    """
    be, z_a, z_b = _pair("z_a", z_a, "z_b", z_b)
    temperature = _checks.check_positive(temperature, "temperature")
    return _infonce_alignment(be, unit_rows(be, z_a), unit_rows(be, z_b), temperature)


# --- SimSiam --------------------------------------------------------------------------


def _negative_cosine(be: ModuleType, p: Any, z: Any) -> Any:
    xp = be.xp
    return -batch_average(be, xp.sum(unit_rows(be, p) * unit_rows(be, z), axis=1))


def negative_cosine(p: Any, z: Any) -> Any:
    r"""Minus the mean cosine similarity of paired rows (SimSiam's ``D(p, z)``).

    $$
    -\frac{1}{N}\sum_i n(p_i)\cdot n(z_i) \in [-1, 1]
    $$

    with $n$ as in ``normalized_mse`` (it equals ``normalized_mse / 2 - 1``).
    No stop-gradient is applied here: ``glf_losses.simsiam_loss`` stops the gradient
    of its targets.

    Args:
      p: (N, D) predictions.
      z: (N, D) targets, the same shape as ``p``.

    References:
      Chen and He, "Exploring Simple Siamese Representation Learning", CVPR 2021.

    Examples:
      >>> import numpy as np
      >>> from glf_losses import align
      >>> p = np.array([[1.0, 0.0], [0.0, 2.0]])
      >>> float(align.negative_cosine(p, 3 * p))
      -1.0
    """
    be, p, z = _pair("p", p, "z", z)
    return _negative_cosine(be, p, z)


# --- VICReg ---------------------------------------------------------------------------


def _mean_squared_error(be: ModuleType, z_a: Any, z_b: Any) -> Any:
    diff = z_a - z_b
    return batch_average(be, be.xp.sum(be.square(diff), axis=1)) / z_a.shape[1]


def mean_squared_error(z_a: Any, z_b: Any) -> Any:
    r"""VICReg's invariance term: the mean squared difference of the two views.

    $$
    \frac{1}{N D}\sum_{i, d} (z^a_{id} - z^b_{id})^2
    $$

    (``F.mse_loss(x, y)`` in ``facebookresearch/vicreg: main_vicreg.py``), averaged over
    the global batch under ``glf_losses.data_parallel``.

    Args:
      z_a: (N, D) embeddings of view a.
      z_b: (N, D) embeddings of view b, the same shape as ``z_a``.

    References:
      Bardes, Ponce and LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
      Self-Supervised Learning", ICLR 2022.

    Examples:
      >>> import numpy as np
      >>> from glf_losses import align
      >>> float(align.mean_squared_error(np.zeros((2, 2)), np.ones((2, 2))))
      1.0
    """
    be, z_a, z_b = _pair("z_a", z_a, "z_b", z_b)
    return _mean_squared_error(be, z_a, z_b)


# --- Alignment and uniformity (Wang and Isola) ----------------------------------------


def _alignment(be: ModuleType, u_a: Any, u_b: Any, alpha: float) -> Any:
    xp = be.xp
    diff = u_a - u_b
    sq = xp.sum(be.square(diff), axis=1)
    if alpha == 2.0:
        return batch_average(be, sq)
    # ||d||^alpha as (||d||^2)^(alpha / 2), with the official subgradient 0 at d = 0
    # (torch's norm backward) instead of 0 * inf: the power never sees a 0 base.
    positive = sq > 0.0
    powered = xp.where(positive, sq, 1.0) ** (alpha / 2.0)
    return batch_average(be, xp.where(positive, powered, 0.0))


def alignment(z_a: Any, z_b: Any, alpha: float = 2.0) -> Any:
    r"""Wang and Isola's alignment: the mean distance of positive pairs, to the alpha.

    $$
    \frac{1}{N}\sum_i \lVert n(z^a_i) - n(z^b_i)\rVert_2^\alpha
    $$

    as ``align_loss`` in ``SsnL/align_uniform`` (whose encoder ends in an L2
    normalisation; here the rows are normalised first).

    Args:
      z_a: (N, D) features of view a.
      z_b: (N, D) features of view b, the same shape as ``z_a``.
      alpha: the exponent (2). At a perfectly aligned pair the gradient is taken as 0,
        as the official ``norm`` backward does.

    References:
      Wang and Isola, "Understanding Contrastive Representation Learning through
      Alignment and Uniformity on the Hypersphere", ICML 2020.

    Examples:
      >>> import numpy as np
      >>> from glf_losses import align
      >>> float(align.alignment(np.eye(2), -np.eye(2)))
      4.0
    """
    be, z_a, z_b = _pair("z_a", z_a, "z_b", z_b)
    alpha = _checks.check_positive(alpha, "alpha")
    return _alignment(be, unit_rows(be, z_a), unit_rows(be, z_b), alpha)
