"""SSL methods as GLF compositions: ``loss = align + constrain``.

Each method has two entry points: ``<method>_loss(...)`` returns the 0-d total, and
``<method>_parts(...)`` returns [`GLFParts`][glf_losses.methods.GLFParts] ``(align, constrain)``
whose sum is that
total (for logging the two parts, as every SSL training loop wants). Both validate their
inputs once and compute the shared pieces (normalised rows, the cross-correlation,
Sinkhorn codes) once.
"""

from __future__ import annotations

from typing import Any

from glf_losses import _checks
from glf_losses._lib import GLFParts, l2_normalize, matmul, rows, standardize
from glf_losses.adc import ADC
from glf_losses.align import (
    _infonce_alignment,
    _invariance,
    _normalized_mse,
    _pair,
    _swapped_prediction,
)
from glf_losses.constrain import _cross_correlation, _redundancy_reduction, _sinkhorn, _uniformity
from glf_losses.typing import Array

__all__ = [
    "GLFParts",
    "barlow_twins_loss",
    "barlow_twins_parts",
    "byol_loss",
    "byol_parts",
    "simclr_loss",
    "simclr_parts",
    "swav_loss",
    "swav_parts",
    "swav_prototype_parts",
    "with_adc",
]


def _zero_like(be: Any, x: Any) -> Any:
    return be.xp.zeros((), dtype=x.dtype, device=be.device(x))


# --- BYOL -----------------------------------------------------------------------------


def byol_parts(p_a: Array, p_b: Array, z_a: Array, z_b: Array) -> GLFParts:
    """[`byol_loss`][glf_losses.methods.byol_loss] as ``GLFParts(align, constrain)``; ``constrain``
    is 0.

    BYOL's constraint is implicit (predictor, EMA target, stop-gradient), so GLF reports a
    zero constraining part.
    """
    names = {"p_a": p_a, "p_b": p_b, "z_a": z_a, "z_b": z_b}
    be = _checks.backend_of(**names)
    for name in ("p_b", "z_a", "z_b"):
        _checks.same_shape(p_a, names[name], "p_a", name)
    p_a, p_b, z_a, z_b = _checks.float_matrices(be, **names)
    target_a, target_b = be.stop_gradient(z_a), be.stop_gradient(z_b)
    align = _normalized_mse(be, p_a, target_b) + _normalized_mse(be, p_b, target_a)
    return GLFParts(align, _zero_like(be, align))


def byol_loss(p_a: Array, p_b: Array, z_a: Array, z_b: Array) -> Array:
    r"""BYOL's symmetrised loss with stop-gradient targets (official DeepMind convention).

    $$
    \frac{1}{N}\sum_i \bigl[\lVert n(p^a_i) - n(\mathrm{sg}(z^b_i))\rVert^2
    + \lVert n(p^b_i) - n(\mathrm{sg}(z^a_i))\rVert^2\bigr] \in [0, 8]
    $$

    Args:
      p_a: (N, D) online predictions of view a.
      p_b: (N, D) online predictions of view b.
      z_a: (N, D) target projections of view a (from the EMA network; no gradient
        flows into them).
      z_b: (N, D) target projections of view b, likewise.

    References:
      Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> z = np.eye(4)
      >>> float(glf_losses.byol_loss(z, z, z, z))
      0.0
    """
    return byol_parts(p_a, p_b, z_a, z_b).total


# --- Barlow Twins ---------------------------------------------------------------------


def barlow_twins_parts(
    z_a: Array, z_b: Array, lambd: float = 0.0051, eps: float = 1e-5, scale: float = 1.0
) -> GLFParts:
    """[`barlow_twins_loss`][glf_losses.methods.barlow_twins_loss] as ``GLFParts(invariance,
    redundancy_reduction)``.

    Both parts are multiplied by ``scale``, so they sum to the loss.
    """
    be, z_a, z_b = _pair("z_a", z_a, "z_b", z_b, min_rows=2)
    lambd = _checks.check_nonnegative(lambd, "lambd")
    eps = _checks.check_nonnegative(eps, "eps")
    scale = _checks.check_finite_number(scale, "scale")
    zn_a, zn_b = standardize(be, z_a, eps), standardize(be, z_b, eps)
    c = _cross_correlation(be, zn_a, zn_b)
    align = _invariance(be, zn_a, zn_b)
    constrain = _redundancy_reduction(be, c, lambd)
    if scale != 1.0:
        align, constrain = scale * align, scale * constrain
    return GLFParts(align, constrain)


def barlow_twins_loss(
    z_a: Array, z_b: Array, lambd: float = 0.0051, eps: float = 1e-5, scale: float = 1.0
) -> Array:
    r"""Barlow Twins (official facebookresearch convention).

    $$
    \mathrm{scale}\Bigl[\sum_i (1 - C_{ii})^2 + \lambda \sum_{i\ne j} C_{ij}^2
    \Bigr], \qquad C = \tfrac{1}{N}\,\hat z^{a\top}\hat z^b
    $$

    where $\hat z$ is each view standardised over the batch like
    ``BatchNorm1d(affine=False)`` in training mode (biased variance, ``eps``).

    Args:
      z_a: (N, D) projections of view a, N >= 2.
      z_b: (N, D) projections of view b, the same shape as ``z_a``.
      lambd: off-diagonal weight (0.0051 in the paper).
      eps: added to the batch variance.
      scale: multiplies the total (solo-learn's ``scale_loss``); 1.0 is the paper's.

    References:
      Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
      ICML 2021.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> z = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
      >>> round(float(glf_losses.barlow_twins_loss(z, z, eps=0.0)), 9)
      0.0
    """
    return barlow_twins_parts(z_a, z_b, lambd=lambd, eps=eps, scale=scale).total


# --- SwAV -----------------------------------------------------------------------------


def _codes(
    be: Any, scores: Any, queue: Any, name: str, epsilon: float, n_iters: int
) -> Any:
    """Sinkhorn codes of ``scores``; ``queue``, validated and of the scores' dtype, is
    prepended to Sinkhorn's batch when given."""
    if queue is None:
        return _sinkhorn(be, scores, epsilon, n_iters)
    if _checks.shape_of(queue)[1] != _checks.shape_of(scores)[1]:
        raise ValueError(
            f"{name} must have one column per prototype ({_checks.shape_of(scores)[1]}), "
            f"got shape {_checks.shape_of(queue)}"
        )
    # The queue only enlarges Sinkhorn's batch (so small batches can still spread over
    # every prototype); the current batch's codes are the last rows.
    stacked = be.xp.concat([queue, scores], axis=0)
    return _sinkhorn(be, stacked, epsilon, n_iters)[rows(be, queue) :, ...]


def _check_prototype_count(x: Any, name: str, axis: int) -> None:
    """At least two prototypes along ``axis`` of ``x`` (where that size is static)."""
    shape = _checks.shape_of(x)
    size = shape[axis]
    if size is not None and size < 2:
        where = "rows" if axis == 0 else "columns"
        raise ValueError(
            f"{name} must have at least 2 {where}, one per prototype (with fewer, every "
            f"code is 1 and the loss is identically 0), got shape {shape}"
        )


def _prototype_scores(z: Any, prototypes: Any, name: str) -> Any:
    """``n(z) n(W)^T``: (N, K) scores of projections (N, D) against prototypes (K, D).

    What the SwAV front-ends of every framework call: ``z`` and ``prototypes`` are
    validated (errors name ``name`` and ``prototypes``) and computed in their common
    compute dtype, so integer projections are refused and float16 ones are normalised in
    float32, where their squared norms cannot overflow.
    """
    be = _checks.backend_of(**{name: z, "prototypes": prototypes})
    z, w = _checks.float_matrices(be, **{name: z, "prototypes": prototypes})
    shape_z, shape_w = _checks.shape_of(z), _checks.shape_of(w)
    if None not in (shape_z[1], shape_w[1]) and shape_z[1] != shape_w[1]:
        raise ValueError(
            f"prototypes must have shape (K, D) with D = {shape_z[1]}, the width of {name}, "
            f"got shape {shape_w}"
        )
    _check_prototype_count(w, "prototypes", axis=0)
    xp = be.xp
    return matmul(be, l2_normalize(xp, z), xp.matrix_transpose(l2_normalize(xp, w)))


def swav_parts(
    scores_a: Array,
    scores_b: Array,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    sinkhorn_iters: int = 3,
    queue_a: Array = None,
    queue_b: Array = None,
) -> GLFParts:
    """[`swav_loss`][glf_losses.methods.swav_loss] as ``GLFParts(swapped_prediction, 0)``.

    SwAV's constraint (equipartition) is enforced on the codes by Sinkhorn, not added to
    the loss, so the constraining part is 0.
    """
    be = _checks.backend_of(
        scores_a=scores_a, scores_b=scores_b, queue_a=queue_a, queue_b=queue_b
    )
    _checks.same_shape(scores_a, scores_b, "scores_a", "scores_b")
    # Queues join the scores' common dtype: float64 anywhere computes in float64.
    sa, sb, queue_a, queue_b = _checks.float_matrices(
        be, scores_a=scores_a, scores_b=scores_b, queue_a=queue_a, queue_b=queue_b
    )
    _check_prototype_count(sa, "scores_a", axis=1)
    temperature = _checks.check_positive(temperature, "temperature")
    epsilon = _checks.check_positive(epsilon, "epsilon")
    sinkhorn_iters = _checks.check_count(sinkhorn_iters, "sinkhorn_iters", minimum=1)
    codes_a = _codes(be, sa, queue_a, "queue_a", epsilon, sinkhorn_iters)
    codes_b = _codes(be, sb, queue_b, "queue_b", epsilon, sinkhorn_iters)
    align = _swapped_prediction(be, sa, sb, codes_a, codes_b, temperature)
    return GLFParts(align, _zero_like(be, align))


def swav_loss(
    scores_a: Array,
    scores_b: Array,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    sinkhorn_iters: int = 3,
    queue_a: Array = None,
    queue_b: Array = None,
) -> Array:
    r"""SwAV with two crops (official facebookresearch convention).

    Codes $q^v = \mathrm{sinkhorn}(\mathrm{sg}(s^v))$, then
    [`glf_losses.align.swapped_prediction`][glf_losses.align.swapped_prediction]:

    $$
    -\frac{1}{2N}\sum_i \Bigl[\sum_k q^a_{ik}\log\mathrm{softmax}(s^b_i/t)_k +
    \sum_k q^b_{ik}\log\mathrm{softmax}(s^a_i/t)_k\Bigr]
    $$

    Args:
      scores_a: (N, K) scores ``n(z) W^T`` of view a against L2-normalised prototypes
        (normalising is the caller's job; the framework front-ends do it).
      scores_b: (N, K) scores of view b, likewise.
      temperature: softmax temperature (0.1).
      epsilon: Sinkhorn regularisation (0.05).
      sinkhorn_iters: Sinkhorn iterations (3).
      queue_a: optional (Q, K) scores of earlier batches' projections of view a
        against the current prototypes, prepended to Sinkhorn's input; only the
        current batch's codes are used (SwAV's queue for small batches).
      queue_b: the same for view b.

    References:
      Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
      Assignments", NeurIPS 2020.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> s = np.array([[0.9, -0.2], [-0.1, 0.8], [0.7, 0.0], [0.1, 0.6]])
      >>> bool(np.isfinite(glf_losses.swav_loss(s, s)))
      True
    """
    return swav_parts(
        scores_a,
        scores_b,
        temperature=temperature,
        epsilon=epsilon,
        sinkhorn_iters=sinkhorn_iters,
        queue_a=queue_a,
        queue_b=queue_b,
    ).total


def swav_prototype_parts(
    z_a: Array,
    z_b: Array,
    prototypes: Array,
    queue_a: Array = None,
    queue_b: Array = None,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    sinkhorn_iters: int = 3,
) -> GLFParts:
    """SwAV from projections and prototypes: [`swav_parts`][glf_losses.methods.swav_parts] of ``n(z)
    n(W)^T``.

    Args:
      z_a: (N, D) projections of view a.
      z_b: (N, D) projections of view b, the same shape as ``z_a``.
      prototypes: (K, D) prototype matrix; its rows are L2-normalised here, as the
        projections are (the official code keeps the stored rows normalised too).
      queue_a: optional (Q, D) earlier projections of view a, scored against the current
        prototypes and prepended to Sinkhorn's input (SwAV's queue).
      queue_b: the same for view b.
      temperature: softmax temperature (0.1).
      epsilon: Sinkhorn regularisation (0.05).
      sinkhorn_iters: Sinkhorn iterations (3).

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> rng = np.random.default_rng(0)
      >>> z_a, z_b, w = rng.normal(size=(8, 4)), rng.normal(size=(8, 4)), rng.normal(size=(3, 4))
      >>> parts = glf_losses.swav_prototype_parts(z_a, z_b, w)
      >>> bool(np.isfinite(parts.total))
      True
    """
    _checks.backend_of(z_a=z_a, z_b=z_b, prototypes=prototypes, queue_a=queue_a,
                       queue_b=queue_b)
    _checks.same_shape(z_a, z_b, "z_a", "z_b")

    def scores(z: Any, name: str) -> Any:
        return None if z is None else _prototype_scores(z, prototypes, name)

    return swav_parts(
        scores(z_a, "z_a"), scores(z_b, "z_b"), temperature, epsilon, sinkhorn_iters,
        scores(queue_a, "queue_a"), scores(queue_b, "queue_b"),
    )


# --- SimCLR ---------------------------------------------------------------------------


def simclr_parts(z_a: Array, z_b: Array, temperature: float = 0.2) -> GLFParts:
    """[`simclr_loss`][glf_losses.methods.simclr_loss] as ``GLFParts(infonce_alignment,
    uniformity)``."""
    be, z_a, z_b = _pair("z_a", z_a, "z_b", z_b, min_rows=2)
    temperature = _checks.check_positive(temperature, "temperature")
    xp = be.xp
    u_a, u_b = l2_normalize(xp, z_a), l2_normalize(xp, z_b)
    return GLFParts(
        _infonce_alignment(be, u_a, u_b, temperature), _uniformity(be, u_a, u_b, temperature)
    )


def simclr_loss(z_a: Array, z_b: Array, temperature: float = 0.2) -> Array:
    r"""SimCLR's NT-Xent loss, split as InfoNCE alignment + uniformity.

    $$
    \frac{1}{2N}\sum_{k=1}^{2N} -\log \frac{\exp(u_k\cdot u_{k^+}/t)}
    {\sum_{l\ne k}\exp(u_k\cdot u_l/t)}, \qquad u = [n(z^a); n(z^b)]
    $$

    Args:
      z_a: (N, D) projections of view a, N >= 2.
      z_b: (N, D) projections of view b, the same shape as ``z_a``.
      temperature: t (0.2 here; papers use 0.1 to 0.5 by dataset).

    References:
      Chen et al., "A Simple Framework for Contrastive Learning of Visual
      Representations", ICML 2020.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> z = np.eye(3)
      >>> loss = glf_losses.simclr_loss(z, z, temperature=1.0)
      >>> round(float(loss), 6) == round(float(-1 + np.log(np.e + 4)), 6)
      True
    """
    return simclr_parts(z_a, z_b, temperature=temperature).total


# --- ADC as a plug-in -----------------------------------------------------------------------


def with_adc(parts: GLFParts, adc: ADC | None, z_a: Array, z_b: Array, prior: Array) -> GLFParts:
    """Add ADC to a method's constraining part (ADC is a constraining term).

    The one place the framework front-ends plug ADC in, so that
    ``parts.total == method_loss + adc(z_a, z_b, prior)``. With ``adc=None`` the parts are
    returned unchanged and ``prior`` is ignored.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> rng = np.random.default_rng(0)
      >>> z_a, z_b, x = rng.normal(size=(3, 8, 4))
      >>> adc = glf_losses.ADC(perplexity=4.0)
      >>> parts = with_adc(glf_losses.simclr_parts(z_a, z_b), adc, z_a, z_b, x)
      >>> bool(np.isclose(parts.total, glf_losses.simclr_loss(z_a, z_b) + adc(z_a, z_b, x)))
      True
    """
    adc = _check_adc(adc)
    if adc is None:
        return parts
    if prior is None:
        raise ValueError("prior is required when adc is set (the raw inputs or frozen features)")
    return GLFParts(parts.align, parts.constrain + adc(z_a, z_b, prior))


def _check_adc(adc: Any) -> ADC | None:
    """``adc`` itself if it is an [`ADC`][glf_losses.methods.ADC] or None: what every front-end
    accepts."""
    if adc is None or isinstance(adc, ADC):
        return adc
    raise TypeError(
        "adc must be a glf_losses.ADC (e.g. ADC() or ADC.for_method('simclr')) or None, "
        f"got {_checks.type_name(adc)} {adc!r}"
    )
