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
from glf_losses._lib import (
    GLFParts,
    as_divisor,
    batch_average,
    dim,
    global_rows,
    masked_logsumexp,
    matmul,
    rows,
    similarity_logits,
    stacked_columns,
    stacked_rows,
    standardize,
    unit_rows,
)
from glf_losses.adc import ADC
from glf_losses.align import (
    _alignment,
    _infonce_alignment,
    _invariance,
    _mean_squared_error,
    _negative_cosine,
    _normalized_mse,
    _pair,
    _swapped_prediction,
)
from glf_losses.constrain import (
    _centred,
    _cross_correlation,
    _log_gaussian_potential,
    _off_diagonal_covariance,
    _redundancy_reduction,
    _sinkhorn,
    _std_hinge,
    _uniformity,
)
from glf_losses.typing import Array
from glf_losses.whitening import _check_permutations, _check_w_size, _whitened

__all__ = [
    "GLFParts",
    "alignment_uniformity_loss",
    "alignment_uniformity_parts",
    "barlow_twins_loss",
    "barlow_twins_parts",
    "byol_loss",
    "byol_parts",
    "dcl_loss",
    "dcl_parts",
    "dclw_loss",
    "dclw_parts",
    "dino_center",
    "dino_loss",
    "dino_parts",
    "mmcr_loss",
    "mmcr_parts",
    "moco_enqueue",
    "moco_loss",
    "moco_parts",
    "mocov3_loss",
    "mocov3_parts",
    "nnclr_enqueue",
    "nnclr_loss",
    "nnclr_parts",
    "simclr_loss",
    "simclr_parts",
    "simsiam_loss",
    "simsiam_parts",
    "swav_loss",
    "swav_parts",
    "swav_prototype_parts",
    "tico_covariance",
    "tico_loss",
    "tico_parts",
    "vicreg_loss",
    "vicreg_parts",
    "with_adc",
    "wmse_loss",
    "wmse_parts",
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


class _UnitPrototypes:
    """Prototypes (K, D), validated once and L2-normalised once per compute dtype, to
    score any number of projections against: SwAV's two views and queues, DINO's
    student and teacher crops (normalising them once per product cost 3 normalisations
    and their backward more than native in DINO, 20 more eager operations)."""

    def __init__(self, be: Any, prototypes: Any) -> None:
        (w,) = _checks.float_matrices(be, prototypes=prototypes)
        _check_prototype_count(w, "prototypes", axis=0)
        self.be, self.prototypes = be, w
        self._unit: dict[str, Any] = {}

    def held(self) -> _UnitPrototypes:
        """The same prototypes under stop-gradient, sharing the normalisations made so
        far (a target's scores: DINO's teacher)."""
        be = self.be
        other = _UnitPrototypes.__new__(_UnitPrototypes)
        other.be, other.prototypes = be, be.stop_gradient(self.prototypes)
        other._unit = {k: be.stop_gradient(v) for k, v in self._unit.items()}
        return other

    def scores(self, z: Any, name: str, temperature: float = 1.0) -> Any:
        """``n(z) n(W)^T / temperature``: (N, K) scores of projections (N, D), the
        temperature applied to the (N, D) side when K > D (the same value to rounding,
        one (N, K) pass fewer each way).

        ``z`` is validated (errors name ``name`` and ``prototypes``) and both are
        computed in their common compute dtype, so integer projections are refused and
        float16 ones are normalised in float32, where their squared norms cannot
        overflow.
        """
        be = self.be
        _checks.backend_of(**{name: z, "prototypes": self.prototypes})
        z, w = _checks.float_matrices(be, **{name: z, "prototypes": self.prototypes})
        shape_z, shape_w = _checks.shape_of(z), _checks.shape_of(w)
        if None not in (shape_z[1], shape_w[1]) and shape_z[1] != shape_w[1]:
            raise ValueError(
                f"prototypes must have shape (K, D) with D = {shape_z[1]}, the width of "
                f"{name}, got shape {shape_w}"
            )
        key = str(w.dtype)
        if key not in self._unit:
            self._unit[key] = unit_rows(be, w)
        w_unit = self._unit[key]
        if temperature == 1.0:
            return matmul(be, unit_rows(be, z), be.xp.matrix_transpose(w_unit))
        return similarity_logits(be, unit_rows(be, z), w_unit, temperature)


def swav_parts(
    scores_a: Array,
    scores_b: Array,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    sinkhorn_iters: int = 3,
    queue_a: Array = None,
    queue_b: Array = None,
    *,
    local_scores: Array = None,
) -> GLFParts:
    """[`swav_loss`][glf_losses.methods.swav_loss] as ``GLFParts(swapped_prediction, 0)``.

    SwAV's constraint (equipartition) is enforced on the codes by Sinkhorn, not added to
    the loss, so the constraining part is 0.
    """
    be = _checks.backend_of(
        scores_a=scores_a,
        scores_b=scores_b,
        queue_a=queue_a,
        queue_b=queue_b,
        local_scores=local_scores,
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
    if local_scores is not None:
        local = _swav_local_scores(be, local_scores, sa)
        sa, sb, queue_a, queue_b, local = _promoted(be, [sa, sb, queue_a, queue_b, local])
    codes_a = _codes(be, sa, queue_a, "queue_a", epsilon, sinkhorn_iters)
    codes_b = _codes(be, sb, queue_b, "queue_b", epsilon, sinkhorn_iters)
    if local_scores is None:
        align = _swapped_prediction(be, sa, sb, codes_a, codes_b, temperature)
    else:
        align = _multi_crop_prediction(be, sa, sb, local, codes_a, codes_b, temperature)
    return GLFParts(align, _zero_like(be, align))


def swav_loss(
    scores_a: Array,
    scores_b: Array,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    sinkhorn_iters: int = 3,
    queue_a: Array = None,
    queue_b: Array = None,
    *,
    local_scores: Array = None,
) -> Array:
    r"""SwAV with two crops, or multi-crop (official facebookresearch convention).

    Codes $q^v = \mathrm{sinkhorn}(\mathrm{sg}(s^v))$, then
    [`glf_losses.align.swapped_prediction`][glf_losses.align.swapped_prediction]:

    $$
    -\frac{1}{2N}\sum_i \Bigl[\sum_k q^a_{ik}\log\mathrm{softmax}(s^b_i/t)_k +
    \sum_k q^b_{ik}\log\mathrm{softmax}(s^a_i/t)_k\Bigr]
    $$

    With local crops, $V = 2 + L$ crops in all, and each global crop's codes are
    predicted by each of the $V - 1$ other crops, as the loop of ``main_swav.py``:

    $$
    -\frac{1}{2(V - 1)N}\sum_{c \in \{a, b\}}\sum_{v \ne c}\sum_i \sum_k
    q^c_{ik}\log\mathrm{softmax}(s^v_i/t)_k
    $$

    which for $L = 0$ is the two-crop loss above.

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
      local_scores: optional (L, N, K) scores of L further (local, low-resolution)
        crops of the same images, for multi-crop. They predict both global crops'
        codes but get none of their own: codes come only from ``scores_a`` and
        ``scores_b`` (the official ``crops_for_assign``), with their queues.

    References:
      Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
      Assignments", NeurIPS 2020.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> s = np.array([[0.9, -0.2], [-0.1, 0.8], [0.7, 0.0], [0.1, 0.6]])
      >>> bool(np.isfinite(glf_losses.swav_loss(s, s)))
      True
      >>> local = np.stack([s[::-1], -s])  # L = 2 local crops
      >>> bool(np.isfinite(glf_losses.swav_loss(s, s, local_scores=local)))
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
        local_scores=local_scores,
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
    *,
    local_z: Array = None,
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
      local_z: optional (L, N, D) projections of L local crops of the same images,
        scored against the same prototypes (multi-crop: see ``swav_loss``).

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> rng = np.random.default_rng(0)
      >>> z_a, z_b, w = rng.normal(size=(8, 4)), rng.normal(size=(8, 4)), rng.normal(size=(3, 4))
      >>> parts = glf_losses.swav_prototype_parts(z_a, z_b, w)
      >>> bool(np.isfinite(parts.total))
      True
      >>> local_z = rng.normal(size=(4, 8, 4))  # 4 local crops
      >>> parts = glf_losses.swav_prototype_parts(z_a, z_b, w, local_z=local_z)
      >>> bool(np.isfinite(parts.total))
      True
    """
    be = _checks.backend_of(z_a=z_a, z_b=z_b, prototypes=prototypes, queue_a=queue_a,
                            queue_b=queue_b, local_z=local_z)
    _checks.same_shape(z_a, z_b, "z_a", "z_b")

    unit_prototypes = _UnitPrototypes(be, prototypes)

    def scores(z: Any, name: str) -> Any:
        return None if z is None else unit_prototypes.scores(z, name)

    return swav_parts(
        scores(z_a, "z_a"), scores(z_b, "z_b"), temperature, epsilon, sinkhorn_iters,
        scores(queue_a, "queue_a"), scores(queue_b, "queue_b"),
        local_scores=None if local_z is None else _local_prototype_scores(
            be, local_z, z_a, unit_prototypes
        ),
    )


# --- SimCLR ---------------------------------------------------------------------------


def simclr_parts(z_a: Array, z_b: Array, temperature: float = 0.2) -> GLFParts:
    """[`simclr_loss`][glf_losses.methods.simclr_loss] as ``GLFParts(infonce_alignment,
    uniformity)``."""
    be, z_a, z_b = _pair("z_a", z_a, "z_b", z_b, min_rows=2)
    temperature = _checks.check_positive(temperature, "temperature")
    u_a, u_b = unit_rows(be, z_a), unit_rows(be, z_b)
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


# --- SimSiam --------------------------------------------------------------------------


def simsiam_parts(p_a: Any, p_b: Any, z_a: Any, z_b: Any) -> GLFParts:
    """``simsiam_loss`` as ``GLFParts(negative_cosine, 0)``.

    SimSiam's constraint is implicit (predictor and stop-gradient, no EMA), so GLF reports
    a zero constraining part.
    """
    names = {"p_a": p_a, "p_b": p_b, "z_a": z_a, "z_b": z_b}
    be = _checks.backend_of(**names)
    for name in ("p_b", "z_a", "z_b"):
        _checks.same_shape(p_a, names[name], "p_a", name)
    p_a, p_b, z_a, z_b = (_checks.float_matrix(be, x, n) for n, x in names.items())
    target_a, target_b = be.stop_gradient(z_a), be.stop_gradient(z_b)
    align = 0.5 * (_negative_cosine(be, p_a, target_b) + _negative_cosine(be, p_b, target_a))
    return GLFParts(align, _zero_like(be, align))


def simsiam_loss(p_a: Any, p_b: Any, z_a: Any, z_b: Any) -> Any:
    r"""SimSiam's symmetrised negative cosine to stop-gradient targets.

    $$
    -\frac{1}{2N}\sum_i \bigl[n(p^a_i)\cdot n(\mathrm{sg}(z^b_i))
    + n(p^b_i)\cdot n(\mathrm{sg}(z^a_i))\bigr] \in [-1, 1]
    $$

    As ``facebookresearch/simsiam: main_simsiam.py``: ``-(cos(p1, z2).mean() +
    cos(p2, z1).mean()) * 0.5`` with ``nn.CosineSimilarity(dim=1)``, the targets detached
    in ``simsiam/builder.py``. Rows are normalised with a squared-norm floor of 1e-12
    (the official cosine floors the product of the norms at 1e-8); they agree for any row
    of norm above 1e-4.

    Args:
      p_a: (N, D) predictor outputs of view a.
      p_b: (N, D) predictor outputs of view b.
      z_a: (N, D) projections of view a (no gradient flows into them).
      z_b: (N, D) projections of view b, likewise.

    References:
      Chen and He, "Exploring Simple Siamese Representation Learning", CVPR 2021.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> z = np.eye(4)
      >>> float(glf_losses.simsiam_loss(z, z, z, z))
      -1.0
    """
    return simsiam_parts(p_a, p_b, z_a, z_b).total


# --- VICReg ---------------------------------------------------------------------------


def vicreg_parts(
    z_a: Any,
    z_b: Any,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    eps: float = 1e-4,
) -> GLFParts:
    """``vicreg_loss`` as ``GLFParts(sim_coeff * invariance, std_coeff * variance +
    cov_coeff * covariance)``."""
    be, z_a, z_b = _pair("z_a", z_a, "z_b", z_b, min_rows=2)
    sim_coeff = _checks.check_nonnegative(sim_coeff, "sim_coeff")
    std_coeff = _checks.check_nonnegative(std_coeff, "std_coeff")
    cov_coeff = _checks.check_nonnegative(cov_coeff, "cov_coeff")
    eps = _checks.check_nonnegative(eps, "eps")
    c_a, c_b = _centred(be, z_a), _centred(be, z_b)
    std = 0.5 * (_std_hinge(be, c_a, eps) + _std_hinge(be, c_b, eps))
    cov = _off_diagonal_covariance(be, c_a) + _off_diagonal_covariance(be, c_b)
    return GLFParts(
        sim_coeff * _mean_squared_error(be, z_a, z_b), std_coeff * std + cov_coeff * cov
    )


def vicreg_loss(
    z_a: Any,
    z_b: Any,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    eps: float = 1e-4,
) -> Any:
    r"""VICReg: invariance + variance + covariance (``facebookresearch/vicreg``).

    $$
    \lambda\,\mathrm{MSE}(z^a, z^b) + \mu\,\tfrac{1}{2}\bigl[v(z^a) + v(z^b)
    \bigr] + \nu\,\bigl[c(z^a) + c(z^b)\bigr]
    $$

    with $\mathrm{MSE}$ the mean over all N D entries
    (``glf_losses.align.mean_squared_error``), $v(z) = \frac{1}{D}\sum_d
    \max(0, 1 - \sqrt{\mathrm{Var}(z_{:,d}) + \epsilon})$ with the unbiased variance
    (``glf_losses.constrain.variance``) and $c(z) = \frac{1}{D}\sum_{i\ne j}
    C_{ij}^2$, $C = \bar z^\top \bar z / (N - 1)$
    (``glf_losses.constrain.covariance``), exactly as ``VICReg.forward`` in
    ``facebookresearch/vicreg: main_vicreg.py``; every statistic is over the global batch
    (the official code gathers the embeddings of all GPUs).

    Args:
      z_a: (N, D) expander outputs of view a, N >= 2.
      z_b: (N, D) expander outputs of view b, the same shape as ``z_a``.
      sim_coeff: invariance weight $\lambda$ (25).
      std_coeff: variance weight $\mu$ (25).
      cov_coeff: covariance weight $\nu$ (1).
      eps: added to the variance under the square root (1e-4).

    References:
      Bardes, Ponce and LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
      Self-Supervised Learning", ICLR 2022.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> z = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]) * np.sqrt(3)
      >>> round(float(glf_losses.vicreg_loss(z, z, eps=0.0)), 12)  # std 2, no covariance
      0.0
    """
    return vicreg_parts(
        z_a, z_b, sim_coeff=sim_coeff, std_coeff=std_coeff, cov_coeff=cov_coeff, eps=eps
    ).total


# --- W-MSE ----------------------------------------------------------------------------


def wmse_parts(
    z_a: Any, z_b: Any, permutations: Any = None, w_size: int | None = 128, eps: float = 0.0
) -> GLFParts:
    """``wmse_loss`` as ``GLFParts(normalised MSE of the whitened views, 0)``.

    W-MSE's constraint is the whitening itself, applied to the views before the aligning
    term, not a term added to it; so the constraining part is 0.
    """
    be = _checks.backend_of(z_a=z_a, z_b=z_b, permutations=permutations)
    _checks.same_shape(z_a, z_b, "z_a", "z_b")
    z_a = _checks.float_matrix(be, z_a, "z_a", min_rows=2)
    z_b = _checks.float_matrix(be, z_b, "z_b", min_rows=2)
    xp = be.xp
    n_local, d = z_a.shape
    n_global = n_local * be.shard(z_a)[0]
    w_size = _check_w_size(n_global if w_size is None else w_size, n_global, d)
    eps = _checks.check_nonnegative(eps, "eps")
    if eps >= 1.0:
        raise ValueError(f"eps must be < 1 (it shrinks the covariance toward I), got {eps}")
    if permutations is not None:
        permutations = _check_permutations(be, permutations, n_global)
    w_a, w_b = xp.unstack(_whitened(be, (z_a, z_b), w_size, eps, permutations))
    # Each worker takes its own share of the (iteration, row) terms of the global loss.
    # In one process that share is every row: no gather (whose backward is a
    # scatter-add).
    if be.shard(z_a)[0] > 1:
        _, rows = global_rows(be, n_local, z_a)
        w_a, w_b = xp.take(w_a, rows, axis=1), xp.take(w_b, rows, axis=1)
    cos = xp.sum(unit_rows(be, w_a) * unit_rows(be, w_b), axis=-1)
    w_iter = w_a.shape[0]
    align = 2.0 - 2.0 * be.all_reduce_sum(xp.sum(cos)) / (n_global * w_iter)
    return GLFParts(align, _zero_like(be, align))


def wmse_loss(
    z_a: Any, z_b: Any, permutations: Any = None, w_size: int | None = 128, eps: float = 0.0
) -> Any:
    r"""W-MSE: normalised MSE between the two views, each whitened per sub-batch.

    For each whitening iteration (one row of ``permutations``), each view is reordered by
    that permutation, cut into contiguous sub-batches of ``w_size`` rows, and each
    sub-batch is whitened by ``glf_losses.whitening.cholesky_whiten`` (inverse
    Cholesky factor of its unbiased covariance); then

    $$
    \frac{1}{w_{iter}}\sum_{it}\Bigl[2 - \frac{2}{N}\sum_i
    n(\tilde z^a_i)\cdot n(\tilde z^b_i)\Bigr] \in [0, 4]
    $$

    as ``WMSE.forward`` with ``norm_mse_loss`` in ``htdt/self-supervised: methods/w_mse.py``
    (two views). The official code draws ``torch.randperm`` inside the loss; here the
    permutations are an input, so the loss is a deterministic function of its arguments.

    Args:
      z_a: (N, D) embeddings of view a (N >= 2).
      z_b: (N, D) embeddings of view b, the same shape as ``z_a``.
      permutations: optional (w_iter, N) integer array, one permutation of ``range(N)``
        (global indices, the same array on every worker) per whitening iteration
        (``w_iter``, 1 officially). ``None``: one iteration with contiguous sub-batches.
      w_size: rows per whitening sub-batch (128 officially, with D = 64); must divide the
        global N and be at least D + 1. ``None``: whiten the whole batch at once.
      eps: shrinkage ``(1 - eps) C + eps I`` of each covariance (``w_eps``, 0).

    References:
      Ermolov, Siarohin, Sangineto and Sebe, "Whitening for Self-Supervised
      Representation Learning", ICML 2021.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> z = np.random.default_rng(0).normal(size=(8, 3))
      >>> round(float(glf_losses.wmse_loss(z, 2 * z + 1, w_size=4)), 12)  # affine: same
      0.0
    """
    return wmse_parts(z_a, z_b, permutations, w_size=w_size, eps=eps).total


# --- MoCo v3 --------------------------------------------------------------------------


def _mocov3_direction(be: Any, u_q: Any, u_k: Any, temperature: float) -> tuple[Any, Any]:
    """(align, constrain) of one direction, both scaled by 2T as the official loss."""
    xp = be.xp
    keys = be.to_local(be.all_gather(u_k))  # every worker's keys are negatives
    logits = similarity_logits(be, u_q, keys, temperature)
    align = -2.0 * batch_average(be, xp.sum(u_q * u_k, axis=1))
    constrain = 2.0 * temperature * batch_average(be, be.logsumexp(logits, axis=1))
    return align, constrain


def mocov3_parts(
    q_a: Any, q_b: Any, k_a: Any, k_b: Any, temperature: float = 1.0
) -> GLFParts:
    """``mocov3_loss`` as ``GLFParts(positive term, log-sum-exp over keys)``."""
    names = {"q_a": q_a, "q_b": q_b, "k_a": k_a, "k_b": k_b}
    be = _checks.backend_of(**names)
    for name in ("q_b", "k_a", "k_b"):
        _checks.same_shape(q_a, names[name], "q_a", name)
    q_a, q_b, k_a, k_b = (_checks.float_matrix(be, x, n) for n, x in names.items())
    temperature = _checks.check_positive(temperature, "temperature")
    u_qa, u_qb = unit_rows(be, q_a), unit_rows(be, q_b)
    u_ka = unit_rows(be, be.stop_gradient(k_a))
    u_kb = unit_rows(be, be.stop_gradient(k_b))
    align_ab, constrain_ab = _mocov3_direction(be, u_qa, u_kb, temperature)
    align_ba, constrain_ba = _mocov3_direction(be, u_qb, u_ka, temperature)
    return GLFParts(align_ab + align_ba, constrain_ab + constrain_ba)


def mocov3_loss(q_a: Any, q_b: Any, k_a: Any, k_b: Any, temperature: float = 1.0) -> Any:
    r"""MoCo v3: symmetrised InfoNCE against the momentum keys of the batch, times 2T.

    $$
    2T\,\Bigl[\mathrm{CE}\bigl(n(q^a) n(\mathrm{sg}\,k^b)^\top / T\bigr) +
    \mathrm{CE}\bigl(n(q^b) n(\mathrm{sg}\,k^a)^\top / T\bigr)\Bigr]
    $$

    where $\mathrm{CE}(L) = \frac{1}{N}\sum_i \bigl[\log\sum_j e^{L_{ij}} -
    L_{ii}\bigr]$ takes the keys of the global batch as the columns (the official code
    gathers them from every GPU) and the matching key as the positive, exactly as
    ``MoCo.contrastive_loss`` in ``facebookresearch/moco-v3: moco/builder.py``.
    The align part is the positive term $-2\,\overline{n(q)\cdot n(k^+)}$ per
    direction; the constrain part is $2T$ times the mean log-sum-exp.

    Args:
      q_a: (N, D) online (predictor) outputs of view a.
      q_b: (N, D) online outputs of view b.
      k_a: (N, D) momentum-encoder outputs of view a (no gradient flows into them).
      k_b: (N, D) momentum-encoder outputs of view b, likewise.
      temperature: T (1.0 officially for ResNet-50; the ViT recipes use 0.2).

    References:
      Chen, Xie and He, "An Empirical Study of Training Self-Supervised Vision
      Transformers", ICCV 2021.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> q = np.eye(2)
      >>> loss = glf_losses.mocov3_loss(q, q, q, q)  # 2 * 2 * (log(e + 1) - 1)
      >>> bool(np.isclose(float(loss), 4 * (np.log(np.e + 1) - 1)))
      True
    """
    return mocov3_parts(q_a, q_b, k_a, k_b, temperature=temperature).total


# --- MoCo v2 --------------------------------------------------------------------------


def _moco_queue(be: Any, queue: Any, width: int, dtype: Any) -> Any:
    queue = _checks.float_matrix(be, queue, "queue")
    if _checks.shape_of(queue)[1] != width:
        raise ValueError(
            f"queue must have one column per embedding dimension ({width}), got shape "
            f"{_checks.shape_of(queue)}; it holds earlier keys as rows, shape (K, D)"
        )
    return be.xp.astype(be.stop_gradient(queue), dtype)


def moco_parts(q: Any, k: Any, queue: Any = None, temperature: float = 0.2) -> GLFParts:
    """``moco_loss`` as ``GLFParts(positive term, log-sum-exp over the keys)``."""
    be = _checks.backend_of(q=q, k=k, queue=queue)
    _checks.same_shape(q, k, "q", "k")
    q = _checks.float_matrix(be, q, "q")
    k = _checks.float_matrix(be, k, "k")
    temperature = _checks.check_positive(temperature, "temperature")
    xp = be.xp
    u_q, u_k = unit_rows(be, q), unit_rows(be, be.stop_gradient(k))
    positive = xp.sum(u_q * u_k, axis=1) / temperature
    if queue is None:
        # In-batch negatives: every key of the global batch, the positive among them.
        keys = be.to_local(be.all_gather(u_k))
        logits = similarity_logits(be, u_q, keys, temperature)
    else:
        negatives = _moco_queue(be, queue, q.shape[1], q.dtype)
        logits = xp.concat(
            [positive[:, None], similarity_logits(be, u_q, negatives, temperature)],
            axis=1,
        )
    lse = be.logsumexp(logits, axis=1)
    return GLFParts(-batch_average(be, positive), batch_average(be, lse))


def moco_loss(q: Any, k: Any, queue: Any = None, temperature: float = 0.2) -> Any:
    r"""MoCo v2: InfoNCE of the queries against their momentum key and a queue of keys.

    $$
    \frac{1}{N}\sum_i \Bigl[-\frac{u_i\cdot v_i}{T} + \log\Bigl(e^{u_i\cdot
    v_i/T} + \sum_{j=1}^{K} e^{u_i\cdot Q_j/T}\Bigr)\Bigr], \quad u = n(q),\ v =
    n(\mathrm{sg}(k))
    $$

    as ``MoCo.forward`` in ``facebookresearch/moco: moco/builder.py`` (logits
    ``[l_pos, l_neg] / T``, cross-entropy with label 0). The queue rows are used as
    given (the official queue holds normalised keys; ``moco_enqueue`` stores them
    so), under stop-gradient. With ``queue=None`` the negatives are the other keys of
    the (global) batch instead, the positive included in the denominator.

    Args:
      q: (N, D) queries of the online encoder.
      k: (N, D) keys of the momentum encoder for the same images, other augmentations
        (no gradient flows into them).
      queue: optional (K, D) keys of earlier batches, one per row (the official
        ``queue`` is its transpose, (D, K)); K = 65536 officially.
      temperature: T (0.2 for MoCo v2; MoCo v1 used 0.07).

    References:
      He et al., "Momentum Contrast for Unsupervised Visual Representation Learning",
      CVPR 2020; Chen et al., "Improved Baselines with Momentum Contrastive Learning",
      arXiv 2003.04297.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> q = np.eye(2)
      >>> queue = np.array([[-1.0, 0.0]])  # one negative, opposite to q[0]
      >>> loss = glf_losses.moco_loss(q, q, queue, temperature=1.0)
      >>> want = (np.log(np.e + np.exp(-1)) - 1 + np.log(np.e + 1) - 1) / 2
      >>> bool(np.isclose(float(loss), want))
      True
    """
    return moco_parts(q, k, queue, temperature=temperature).total


def moco_enqueue(queue: Any, k: Any) -> Any:
    r"""MoCo's queue after a step: the normalised keys of the global batch in, the oldest out.

    Returns the last K rows of ``concat([queue, n(sg(k_global))])``: a first-in first-out
    queue whose newest keys are its last rows. The official ``_dequeue_and_enqueue``
    overwrites a ring buffer at a moving pointer instead (K a multiple of the global
    batch size, which it asserts); started from the same queue, this one is always that
    ring buffer rotated by its pointer, so it holds the same keys at every step, and the
    loss does not depend on their order. Under ``glf_losses.data_parallel`` the keys
    of every worker are enqueued, in worker order, and every worker returns the same
    queue.

    Args:
      queue: (K, D) keys of earlier batches.
      k: (N, D) this step's keys (the local shard under data parallelism).

    Returns:
      (K, D) the new queue, in ``queue``'s dtype, without gradient.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> queue = np.zeros((4, 2))
      >>> np.round(glf_losses.moco_enqueue(queue, np.array([[3.0, 4.0]]))[-2:], 9).tolist()
      [[0.0, 0.0], [0.6, 0.8]]
    """
    be = _checks.backend_of(queue=queue, k=k)
    k = _checks.float_matrix(be, k, "k")
    queue = _checks.float_matrix(be, queue, "queue")
    if _checks.shape_of(queue)[1] != _checks.shape_of(k)[1]:
        raise ValueError(
            f"queue must have one column per embedding dimension ({_checks.shape_of(k)[1]}"
            f"), got shape {_checks.shape_of(queue)}"
        )
    xp = be.xp
    keys = unit_rows(be, be.stop_gradient(be.all_gather(k)))
    stacked = xp.concat([be.stop_gradient(queue), xp.astype(keys, queue.dtype)], axis=0)
    return stacked[keys.shape[0] :, ...]  # the last K of the K + N rows


# --- DCL and DCLW ---------------------------------------------------------------------


def _dcl(be: Any, u_a: Any, u_b: Any, temperature: float, sigma: float | None) -> GLFParts:
    xp = be.xp
    n_local = u_a.shape[0]
    n_global, rows = stacked_rows(be, n_local, u_a)
    anchors = xp.concat([u_a, u_b], axis=0)
    columns = stacked_columns(be, u_a, u_b, anchors)
    logits = similarity_logits(be, anchors, columns, temperature)
    # Decoupled: neither the anchor itself nor its positive is in the denominator.
    positive_column = (rows + n_global) % (2 * n_global)
    column = xp.arange(2 * n_global, device=be.device(u_a))
    mask = (column[None, :] != rows[:, None]) & (column[None, :] != positive_column[:, None])
    lse = masked_logsumexp(be, logits, mask)
    cos = xp.sum(u_a * u_b, axis=1)
    weight = 1.0
    if sigma is not None:
        # 2 - N softmax over the global batch, under stop-gradient (a sample weight).
        s = be.stop_gradient(cos) / sigma
        m = be.all_reduce_max(xp.max(s, keepdims=True))
        total = be.all_reduce_sum(xp.sum(xp.exp(s - m), keepdims=True))
        weight = 2.0 - n_global * xp.exp(s - m) / total
    align = -2.0 * batch_average(be, weight * cos) / temperature
    constrain = batch_average(be, lse[:n_local] + lse[n_local:])
    return GLFParts(align, constrain)


def dcl_parts(z_a: Any, z_b: Any, temperature: float = 0.1) -> GLFParts:
    """``dcl_loss`` as ``GLFParts(positive term, decoupled log-sum-exp)``."""
    be, z_a, z_b = _pair("z_a", z_a, "z_b", z_b, min_rows=2)
    temperature = _checks.check_positive(temperature, "temperature")
    return _dcl(be, unit_rows(be, z_a), unit_rows(be, z_b), temperature, None)


def dcl_loss(z_a: Any, z_b: Any, temperature: float = 0.1) -> Any:
    r"""Decoupled contrastive loss: NT-Xent without the positive in the denominator.

    $$
    \sum_{v \in \{a, b\}} \frac{1}{N}\sum_i \Bigl[-\frac{u^v_i\cdot
    u^{\bar v}_i}{t} + \log \sum_{k \ne i} \bigl(e^{u^v_i\cdot u^a_k/t} +
    e^{u^v_i\cdot u^b_k/t}\bigr)\Bigr], \qquad u^v = n(z^v)
    $$

    (the two one-way losses summed, each over the 2N - 2 negatives of the global batch).
    The authors released no code; this follows the paper's equation and the
    implementation the paper's users follow (``raminnakhli/Decoupled-Contrastive-Learning:
    loss/dcl.py``, as ``lightly.loss.DCLLoss``), with rows L2-normalised as lightly does
    and as that repository's SimCLR experiment feeds them.

    Args:
      z_a: (N, D) projections of view a, N >= 2.
      z_b: (N, D) projections of view b, the same shape as ``z_a``.
      temperature: t (0.1).

    References:
      Yeh et al., "Decoupled Contrastive Learning", ECCV 2022.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> z = np.eye(2)  # two orthogonal negatives per anchor: 2 (-1/t + log 2)
      >>> loss = glf_losses.dcl_loss(z, z, temperature=0.5)
      >>> bool(np.isclose(float(loss), 2 * (-2 + np.log(2))))
      True
    """
    return dcl_parts(z_a, z_b, temperature=temperature).total


def dclw_parts(z_a: Any, z_b: Any, temperature: float = 0.1, sigma: float = 0.5) -> GLFParts:
    """``dclw_loss`` as ``GLFParts(weighted positive term, decoupled log-sum-exp)``."""
    be, z_a, z_b = _pair("z_a", z_a, "z_b", z_b, min_rows=2)
    temperature = _checks.check_positive(temperature, "temperature")
    sigma = _checks.check_positive(sigma, "sigma")
    return _dcl(be, unit_rows(be, z_a), unit_rows(be, z_b), temperature, sigma)


def dclw_loss(z_a: Any, z_b: Any, temperature: float = 0.1, sigma: float = 0.5) -> Any:
    r"""``dcl_loss`` with von Mises-Fisher weights on the positive term (DCLW).

    The positive term of sample i is multiplied by

    $$
    w_i = 2 - N\,\frac{e^{u^a_i\cdot u^b_i/\sigma}}{\sum_j e^{u^a_j\cdot
    u^b_j/\sigma}}
    $$

    (the paper's $2 - e^{s_i/\sigma} / \mathbb{E}_j e^{s_j/\sigma}$, over the global
    batch), held constant: no gradient flows through the weights, as in
    ``lightly.loss.dcl_loss.negative_mises_fisher_weights``.
    ``raminnakhli/Decoupled-Contrastive-Learning`` differs in two ways: it leaves out the
    factor N (so its weights are all close to 2) and differentiates through them.

    Args:
      z_a: (N, D) projections of view a, N >= 2.
      z_b: (N, D) projections of view b, the same shape as ``z_a``.
      temperature: t (0.1).
      sigma: the weights' temperature (0.5).

    References:
      Yeh et al., "Decoupled Contrastive Learning", ECCV 2022.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> z = np.eye(2)  # equal similarities: every weight is 1, as in DCL
      >>> loss = glf_losses.dclw_loss(z, z, temperature=0.5)
      >>> bool(np.isclose(float(loss), 2 * (-2 + np.log(2))))
      True
    """
    return dclw_parts(z_a, z_b, temperature=temperature, sigma=sigma).total


# --- Alignment and uniformity (Wang and Isola) ----------------------------------------


def alignment_uniformity_parts(
    z_a: Any,
    z_b: Any,
    alpha: float = 2.0,
    t: float = 2.0,
    align_weight: float = 1.0,
    uniform_weight: float = 1.0,
) -> GLFParts:
    """``alignment_uniformity_loss`` as ``GLFParts(align_weight * alignment,
    uniform_weight * gaussian_uniformity)``."""
    be, z_a, z_b = _pair("z_a", z_a, "z_b", z_b, min_rows=2)
    alpha = _checks.check_positive(alpha, "alpha")
    t = _checks.check_positive(t, "t")
    align_weight = _checks.check_nonnegative(align_weight, "align_weight")
    uniform_weight = _checks.check_nonnegative(uniform_weight, "uniform_weight")
    u_a, u_b = unit_rows(be, z_a), unit_rows(be, z_b)
    uniform = 0.5 * (_log_gaussian_potential(be, u_a, t) + _log_gaussian_potential(be, u_b, t))
    return GLFParts(align_weight * _alignment(be, u_a, u_b, alpha), uniform_weight * uniform)


def alignment_uniformity_loss(
    z_a: Any,
    z_b: Any,
    alpha: float = 2.0,
    t: float = 2.0,
    align_weight: float = 1.0,
    uniform_weight: float = 1.0,
) -> Any:
    r"""Wang and Isola's objective: alignment of positive pairs + uniformity of each view.

    $$
    w_a\,\frac{1}{N}\sum_i \lVert u^a_i - u^b_i\rVert^\alpha + w_u\,\frac{1}{2}
    \sum_{v} \log \frac{1}{N(N-1)}\sum_{i\ne j} e^{-t\lVert u^v_i - u^v_j\rVert^2}
    $$

    with $u = n(z)$ (``glf_losses.align.alignment``,
    ``glf_losses.constrain.gaussian_uniformity``), as the training loss of
    ``SsnL/align_uniform: main.py`` (``align_loss * align_w + (uniform_loss(x) +
    uniform_loss(y)) / 2 * unif_w``, defaults ``align_alpha=2``, ``unif_t=2``,
    ``align_w=unif_w=1``).

    Args:
      z_a: (N, D) features of view a, N >= 2.
      z_b: (N, D) features of view b, the same shape as ``z_a``.
      alpha: alignment exponent (2).
      t: uniformity scale (2).
      align_weight: w_a (1).
      uniform_weight: w_u (1).

    References:
      Wang and Isola, "Understanding Contrastive Representation Learning through
      Alignment and Uniformity on the Hypersphere", ICML 2020.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> z = np.array([[1.0, 0.0], [-1.0, 0.0]])  # aligned, antipodal: 0 + log e^-8
      >>> float(glf_losses.alignment_uniformity_loss(z, z))
      -8.0
    """
    return alignment_uniformity_parts(
        z_a, z_b, alpha=alpha, t=t, align_weight=align_weight, uniform_weight=uniform_weight
    ).total


# --- TiCo -----------------------------------------------------------------------------


def _tico_batch_covariance(be: Any, u_a: Any) -> Any:
    """(D, D) second moment of view a's unit rows over the global batch, for local terms."""
    xp = be.xp
    n_global = u_a.shape[0] * be.shard(u_a)[0]
    return be.to_local(be.all_reduce_sum(matmul(be, xp.matrix_transpose(u_a), u_a)) / n_global)


def _tico_state(be: Any, covariance: Any, d: int, dtype: Any) -> Any:
    covariance = _checks.float_matrix(be, covariance, "covariance")
    if _checks.shape_of(covariance) != (d, d):
        raise ValueError(
            f"covariance must have shape (D, D) = ({d}, {d}) for embeddings of D = {d} "
            f"columns, got shape {_checks.shape_of(covariance)}; start from zeros((D, D))"
        )
    return be.xp.astype(be.stop_gradient(covariance), dtype)


def _tico_checked(
    z_a: Any, z_b: Any, covariance: Any, beta: float
) -> tuple[Any, Any, Any, Any, float]:
    be = _checks.backend_of(z_a=z_a, z_b=z_b, covariance=covariance)
    _checks.same_shape(z_a, z_b, "z_a", "z_b")
    z_a = _checks.float_matrix(be, z_a, "z_a")
    z_b = _checks.float_matrix(be, z_b, "z_b")
    beta = _checks.check_nonnegative(beta, "beta")
    if beta > 1.0:
        raise ValueError(f"beta must be in [0, 1] (an EMA coefficient), got {beta}")
    state = _tico_state(be, covariance, z_a.shape[1], z_a.dtype)
    return be, z_a, z_b, state, beta


def tico_parts(
    z_a: Any, z_b: Any, covariance: Any, beta: float = 0.9, rho: float = 20.0
) -> GLFParts:
    """``tico_loss`` as ``GLFParts(-mean cosine, rho * covariance contrast)``."""
    be, z_a, z_b, state, beta = _tico_checked(z_a, z_b, covariance, beta)
    rho = _checks.check_nonnegative(rho, "rho")
    xp = be.xp
    u_a, u_b = unit_rows(be, z_a), unit_rows(be, z_b)
    # The current batch's second moment enters with its gradient, as in the paper's
    # pseudo-code (the state is detached only after the step).
    c = beta * state + (1.0 - beta) * _tico_batch_covariance(be, u_a)
    contrast = batch_average(be, xp.sum(matmul(be, u_a, c) * u_a, axis=1))
    align = -batch_average(be, xp.sum(u_a * u_b, axis=1))
    return GLFParts(align, rho * contrast)


def tico_loss(
    z_a: Any, z_b: Any, covariance: Any, beta: float = 0.9, rho: float = 20.0
) -> Any:
    r"""TiCo: invariance plus a contrast against a running covariance (the state).

    $$
    C' = \beta C + (1 - \beta)\tfrac{1}{N} u^{a\top} u^a, \qquad
    -\frac{1}{N}\sum_i u^a_i\cdot u^b_i + \rho\,\frac{1}{N}\sum_i u^{a\top}_i C' u^a_i,
    \qquad u = n(z)
    $$

    as Algorithm 1 of the paper (no code was released by the authors): the new
    covariance $C'$ is used with the gradient of the current batch's term, and is
    the state the caller keeps for the next step (``tico_covariance``, detached).
    ``lightly.loss.TiCoLoss`` differs: it adds the constant 1 and detaches the batch term.
    Under ``glf_losses.data_parallel`` the batch term is over the global batch.

    Args:
      z_a: (N, D) projections of view a (the one in the covariance, as the paper).
      z_b: (N, D) projections of view b.
      covariance: (D, D) running covariance C of earlier steps (zeros at the start), no
        gradient.
      beta: EMA coefficient (0.9).
      rho: weight of the covariance contrast (20 for ImageNet; the paper uses 8 on CIFAR).

    References:
      Zhu et al., "TiCo: Transformation Invariance and Covariance Contrast for
      Self-Supervised Visual Representation Learning", arXiv 2206.10698.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> z = np.eye(2)
      >>> c = glf_losses.tico_covariance(z, np.zeros((2, 2)))  # 0.1 * I / 2
      >>> bool(np.isclose(float(glf_losses.tico_loss(z, z, c)), -1 + 20 * 0.095))
      True
    """
    return tico_parts(z_a, z_b, covariance, beta=beta, rho=rho).total


def tico_covariance(z_a: Any, covariance: Any, beta: float = 0.9) -> Any:
    r"""TiCo's state after a step: $\beta C + (1 - \beta)\frac{1}{N} u^\top u$.

    The covariance ``tico_loss`` used, without gradient, over the global batch under
    ``glf_losses.data_parallel`` (every worker returns the same matrix).

    Args:
      z_a: (N, D) projections of view a (the local shard under data parallelism).
      covariance: (D, D) the running covariance before the step.
      beta: EMA coefficient (0.9).

    Returns:
      (D, D) the new running covariance.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> glf_losses.tico_covariance(np.eye(2), np.eye(2), beta=0.5).tolist()
      [[0.75, 0.0], [0.0, 0.75]]
    """
    be = _checks.backend_of(z_a=z_a, covariance=covariance)
    z_a = _checks.float_matrix(be, z_a, "z_a")
    beta = _checks.check_nonnegative(beta, "beta")
    if beta > 1.0:
        raise ValueError(f"beta must be in [0, 1] (an EMA coefficient), got {beta}")
    state = _tico_state(be, covariance, z_a.shape[1], z_a.dtype)
    u_a = unit_rows(be, be.stop_gradient(z_a))
    xp = be.xp
    n_global = u_a.shape[0] * be.shard(u_a)[0]
    batch = be.all_reduce_sum(matmul(be, xp.matrix_transpose(u_a), u_a)) / n_global
    return be.stop_gradient(beta * state + (1.0 - beta) * batch)


# --- MMCR -----------------------------------------------------------------------------


def mmcr_parts(z: Any, n_views: int, lmbda: float = 0.0) -> GLFParts:
    """``mmcr_loss`` as ``GLFParts(lmbda * mean local nuclear norm, -centroid nuclear
    norm)``."""
    be = _checks.backend_of(z=z)
    z = _checks.float_matrix(be, z, "z")
    n_views = _checks.check_count(n_views, "n_views", minimum=1)
    lmbda = _checks.check_nonnegative(lmbda, "lmbda")
    rows = _checks.shape_of(z)[0]
    if rows is not None and rows % n_views != 0:
        raise ValueError(
            f"z must hold n_views = {n_views} consecutive rows per sample (the official "
            f"'(B N) C' layout), but its {rows} rows are not a multiple of {n_views}"
        )
    xp = be.xp
    world = be.shard(z)[0]
    views = xp.reshape(unit_rows(be, z), (z.shape[0] // n_views, n_views, z.shape[1]))
    centroids = xp.mean(views, axis=1)
    # The nuclear norm couples every sample of the global batch: each worker computes it
    # on the gathered centroids and contributes 1/world of it to a sum, so that the value
    # is the global one and each worker's gradient reaches its own centroids exactly once.
    everyone = be.to_local(be.all_gather(centroids))
    global_nuc = be.all_reduce_sum(xp.sum(xp.linalg.svdvals(everyone)) / world)
    if lmbda == 0.0:
        # As the official code: the per-sample nuclear norms are not computed at all.
        return GLFParts(_zero_like(be, global_nuc), -global_nuc)
    local_nuc = xp.sum(xp.linalg.svdvals(views), axis=1)
    return GLFParts(lmbda * batch_average(be, local_nuc), -global_nuc)


def mmcr_loss(z: Any, n_views: int, lmbda: float = 0.0) -> Any:
    r"""MMCR: maximise the nuclear norm of the per-sample centroids of the views.

    $$
    \frac{\lambda}{B}\sum_b \lVert U_b\rVert_* - \lVert C\rVert_*, \qquad
    C_b = \frac{1}{K}\sum_{k} U_{b,k}, \quad U_{b,k} = n(z_{bK + k})
    $$

    for B samples of K = ``n_views`` views each, as ``MMCR_Loss`` in
    ``ThomasYerxa/mmcr: mmcr/cifar_stl/loss_mmcr.py`` (rows in its ``(B N) C`` order:
    the K views of a sample are consecutive rows; the local term is computed only when
    lambda is not 0, as there). Under ``glf_losses.data_parallel`` each worker holds
    whole samples and C is the centroids of the global batch, as the official gather.
    GLF: the local term pulls each sample's views together (align); the centroid norm
    spreads the samples (constrain), though it also rewards aligned views, since a centroid
    of unit vectors is longest when they agree.

    Args:
      z: (B * n_views, D) projections, the views of each sample in consecutive rows.
      n_views: K, views per sample (40 on CIFAR officially).
      lmbda: weight of the per-sample nuclear norms (0 officially).

    References:
      Yerxa et al., "Learning Efficient Coding of Natural Images with Maximum Manifold
      Capacity Representations", NeurIPS 2023.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> z = np.repeat(np.eye(3), 2, axis=0)  # 3 samples, 2 identical views each
      >>> float(glf_losses.mmcr_loss(z, n_views=2))  # centroids I: nuclear norm 3
      -3.0
    """
    return mmcr_parts(z, n_views, lmbda=lmbda).total


def mmcr_pair_parts(z_a: Any, z_b: Any, lmbda: float = 0.0) -> GLFParts:
    """MMCR's parts for two views given as two arrays, as the two-view trainers produce.

    ``mmcr_parts`` of the rows ``z_a[0], z_b[0], z_a[1], z_b[1], ...`` with
    ``n_views=2``: each sample's two views become consecutive rows, the layout
    ``mmcr_loss`` takes. Under ``glf_losses.data_parallel`` each worker's rows are then
    whole samples, as there.

    Examples:
      >>> import numpy as np
      >>> from glf_losses.methods import mmcr_pair_parts
      >>> z = np.eye(3)
      >>> float(mmcr_pair_parts(z, z).total)  # the centroids are I: nuclear norm 3
      -3.0
    """
    be = _checks.backend_of(z_a=z_a, z_b=z_b)
    _checks.same_shape(z_a, z_b, "z_a", "z_b")
    z_a = _checks.float_matrix(be, z_a, "z_a")
    z_b = _checks.float_matrix(be, z_b, "z_b")
    xp = be.xp
    rows = xp.reshape(xp.stack([z_a, z_b], axis=1), (2 * z_a.shape[0], z_a.shape[1]))
    return mmcr_parts(rows, 2, lmbda=lmbda)


# --- NNCLR ----------------------------------------------------------------------------


def _nnclr_direction(be: Any, u_z: Any, u_p: Any, support: Any, temperature: float) -> GLFParts:
    """One direction: the support-set neighbours of ``u_z`` against the global ``u_p``."""
    xp = be.xp
    # Neighbours under stop-gradient: the support set is a constant, and which element is
    # nearest is piecewise constant in z.
    scores = matmul(be, be.stop_gradient(u_z), xp.matrix_transpose(support))
    neighbours = unit_rows(be, xp.take(support, xp.argmax(scores, axis=1), axis=0))
    columns = be.to_local(be.all_gather(u_p))
    logits = similarity_logits(be, neighbours, columns, temperature)
    positive = xp.sum(neighbours * u_p, axis=1) / temperature
    return GLFParts(
        -0.5 * batch_average(be, positive),
        0.5 * batch_average(be, be.logsumexp(logits, axis=1)),
    )


def nnclr_parts(
    p_a: Any, p_b: Any, z_a: Any, z_b: Any, support: Any, temperature: float = 0.1
) -> GLFParts:
    """``nnclr_loss`` as ``GLFParts(positive term, log-sum-exp over the batch)``."""
    names = {"p_a": p_a, "p_b": p_b, "z_a": z_a, "z_b": z_b}
    be = _checks.backend_of(**names, support=support)
    for name in ("p_b", "z_a", "z_b"):
        _checks.same_shape(p_a, names[name], "p_a", name)
    p_a, p_b, z_a, z_b = (_checks.float_matrix(be, x, n) for n, x in names.items())
    temperature = _checks.check_positive(temperature, "temperature")
    support = _checks.float_matrix(be, support, "support")
    if _checks.shape_of(support)[1] != _checks.shape_of(z_a)[1]:
        raise ValueError(
            f"support must have one column per embedding dimension "
            f"({_checks.shape_of(z_a)[1]}), got shape {_checks.shape_of(support)}; it holds "
            f"earlier projections as rows, shape (Q, D)"
        )
    xp = be.xp
    support = xp.astype(be.stop_gradient(support), z_a.dtype)
    u_za, u_zb = unit_rows(be, z_a), unit_rows(be, z_b)
    u_pa, u_pb = unit_rows(be, p_a), unit_rows(be, p_b)
    ab = _nnclr_direction(be, u_za, u_pb, support, temperature)
    ba = _nnclr_direction(be, u_zb, u_pa, support, temperature)
    return GLFParts(ab.align + ba.align, ab.constrain + ba.constrain)


def nnclr_loss(
    p_a: Any, p_b: Any, z_a: Any, z_b: Any, support: Any, temperature: float = 0.1
) -> Any:
    r"""NNCLR: InfoNCE between each view's nearest support-set neighbour and the other
    view's prediction.

    $$
    \frac{1}{2}\Bigl[\mathrm{CE}\bigl(n(\mathrm{NN}(z^a)) n(p^b)^\top/T\bigr) +
    \mathrm{CE}\bigl(n(\mathrm{NN}(z^b)) n(p^a)^\top/T\bigr)\Bigr], \quad
    \mathrm{NN}(z_i) = Q_{\arg\max_j n(z_i)\cdot Q_j}
    $$

    with $\mathrm{CE}(L) = \frac{1}{N}\sum_i [\log\sum_k e^{L_{ik}} - L_{ii}]$ over
    the predictions of the global batch (eq. 3 of the paper). The authors released no
    code; this follows the paper, as solo-learn's ``nnclr_loss_func`` does (negatives:
    the other view's predictions only). ``lightly`` differs: its ``NTXentLoss`` puts both
    views in the denominator. The neighbours are constants (no gradient reaches ``z``
    or the support set); ``nnclr_enqueue`` adds view a's projections to the support
    set afterwards.

    Args:
      p_a: (N, D) predictor outputs of view a.
      p_b: (N, D) predictor outputs of view b.
      z_a: (N, D) projections of view a (used only to find neighbours).
      z_b: (N, D) projections of view b, likewise.
      support: (Q, D) support set of earlier projections, one per row, normalised
        (98304 rows in the paper).
      temperature: T (0.1).

    References:
      Dwibedi et al., "With a Little Help from My Friends: Nearest-Neighbor Contrastive
      Learning of Visual Representations", ICCV 2021.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> q = np.eye(2)  # each projection's neighbour is itself; predictions orthogonal
      >>> loss = glf_losses.nnclr_loss(q, q, q, q, q, temperature=1.0)
      >>> bool(np.isclose(float(loss), np.log(np.e + 1) - 1))
      True
    """
    return nnclr_parts(p_a, p_b, z_a, z_b, support, temperature=temperature).total


def nnclr_enqueue(support: Any, z: Any) -> Any:
    """NNCLR's support set after a step: view a's normalised projections in, the oldest
    out, first-in first-out over the global batch (see ``moco_enqueue``, which this
    is, with the support set as the queue).

    Args:
      support: (Q, D) the support set.
      z: (N, D) this step's projections of view a (the local shard under data
        parallelism).

    Returns:
      (Q, D) the new support set, without gradient.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> glf_losses.nnclr_enqueue(np.zeros((3, 2)), np.array([[0.0, 2.0]]))[-1].tolist()
      [0.0, 1.0]
    """
    be = _checks.backend_of(support=support, z=z)
    z = _checks.float_matrix(be, z, "z")
    support = _checks.float_matrix(be, support, "support")
    if _checks.shape_of(support)[1] != _checks.shape_of(z)[1]:
        raise ValueError(
            f"support must have one column per embedding dimension ({_checks.shape_of(z)[1]}"
            f"), got shape {_checks.shape_of(support)}"
        )
    return moco_enqueue(support, z)


def _check_adc(adc: Any) -> ADC | None:
    """``adc`` itself if it is an [`ADC`][glf_losses.methods.ADC] or None: what every front-end
    accepts."""
    if adc is None or isinstance(adc, ADC):
        return adc
    raise TypeError(
        "adc must be a glf_losses.ADC (e.g. ADC() or ADC.for_method('simclr')) or None, "
        f"got {_checks.type_name(adc)} {adc!r}"
    )


# --- Multi-crop: stacks of crops -------------------------------------------------------


def _crop_stack(be: Any, x: Any, name: str, layout: str) -> Any:
    """``x`` checked to be a 3-D floating-point stack of crops and cast to its compute
    dtype (narrow floats to float32, as `_checks.float_matrix` does for matrices)."""
    shape = _checks.shape_of(x)
    if len(shape) != 3:
        raise ValueError(
            f"{name} must be a 3-D array of shape {layout}, one slice per crop, "
            f"got shape {shape}: stack the crops' outputs along a new first axis, e.g. "
            f"xp.stack([crop_1, crop_2, ...])"
        )
    if not _checks.is_real_floating(be.xp, x.dtype):
        raise TypeError(
            f"{name} must have a real floating-point dtype (float16, bfloat16, float32 or "
            f"float64), got {x.dtype}: cast it to float32 first"
        )
    target = _checks.compute_dtype(be.xp, x.dtype)
    return x if x.dtype == target else be.xp.astype(x, target)


def _promoted(be: Any, arrays: list[Any]) -> list[Any]:
    """Arrays already in their compute dtypes, cast to the common one: float64 if any is
    (the array API's promotion), else they are all float32. ``None`` stays ``None``."""
    xp = be.xp
    if not any(x is not None and x.dtype == xp.float64 for x in arrays):
        return arrays
    return [x if x is None or x.dtype == xp.float64 else xp.astype(x, xp.float64)
            for x in arrays]


def _matching(shape: tuple[int | None, ...], want: tuple[int | None, ...]) -> bool:
    """Equal sizes where both are known (``None``: unknown until the graph runs)."""
    return len(shape) == len(want) and all(
        a is None or b is None or a == b for a, b in zip(shape, want, strict=True)
    )


def _swav_local_scores(be: Any, local_scores: Any, sa: Any) -> Any:
    local = _crop_stack(be, local_scores, "local_scores", "(L, N, K)")
    n, k = _checks.shape_of(sa)
    shape = _checks.shape_of(local)
    if not _matching(shape[1:], (n, k)):
        raise ValueError(
            f"local_scores must have shape (L, N, K) = (L, {n}, {k}), the rows and "
            f"prototypes of scores_a, got shape {shape}: score each local crop of the same "
            f"images against the same prototypes"
        )
    return local


def _local_prototype_scores(
    be: Any, local_z: Any, z_a: Any, prototypes: _UnitPrototypes, temperature: float = 1.0
) -> Any:
    """(L, N, K) scores of the (L, N, D) local crops' projections against the prototypes."""
    xp = be.xp
    local_z = _crop_stack(be, local_z, "local_z", "(L, N, D)")
    shape, n_d = _checks.shape_of(local_z), _checks.shape_of(z_a)
    if not _matching(shape[1:], n_d):
        raise ValueError(
            f"local_z must have shape (L, N, D) = (L, {n_d[0]}, {n_d[1]}), the rows and "
            f"width of z_a, got shape {shape}: project each local crop of the same images "
            f"with the same head"
        )
    # One (L * N, D) product instead of L: the rows of every crop against the prototypes.
    flat = prototypes.scores(xp.reshape(local_z, (-1, shape[2])), "local_z", temperature)
    return xp.reshape(flat, (shape[0], -1, flat.shape[1]))


def _multi_crop_prediction(
    be: Any, sa: Any, sb: Any, local: Any, codes_a: Any, codes_b: Any, temperature: float
) -> Any:
    """SwAV's loss over 2 global crops (the only ones with codes) and L local ones."""
    xp = be.xp
    log_pa = be.log_softmax(sa / temperature, axis=-1)
    log_pb = be.log_softmax(sb / temperature, axis=-1)
    # Every local crop predicts both global crops' codes: their log-probabilities are
    # summed once, and each code row meets the sum.
    log_local = xp.sum(be.log_softmax(local / temperature, axis=-1), axis=0)
    cross = xp.sum(codes_a * log_pb + codes_b * log_pa + (codes_a + codes_b) * log_local, axis=1)
    n_crops = 2 + local.shape[0]
    return -batch_average(be, cross) / (2.0 * (n_crops - 1))


# --- DINO -----------------------------------------------------------------------------


def _dino_center_state(be: Any, center: Any, k: int | None, dtype: Any) -> Any:
    """The (K,) centre, checked, under stop-gradient and in ``dtype``."""
    shape = _checks.shape_of(center)
    if len(shape) != 1 or (None not in (k, shape[0]) and shape[0] != k):
        raise ValueError(
            f"center must have shape (K,) = ({k},), one entry per output dimension of the "
            f"teacher, got shape {shape}: start from zeros((K,)) (the official (1, K) "
            f"buffer, reshaped to (K,))"
        )
    if not _checks.is_real_floating(be.xp, center.dtype):
        raise TypeError(
            f"center must have a real floating-point dtype (float16, bfloat16, float32 or "
            f"float64), got {center.dtype}: start from zeros((K,), dtype=float32)"
        )
    return be.xp.astype(be.stop_gradient(center), dtype)


def _check_momentum(momentum: Any) -> float:
    momentum = _checks.check_finite_number(momentum, "momentum")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(
            f"momentum must be in [0, 1] (an EMA coefficient: the weight of the old "
            f"centre), got {momentum}: 0.9 is the paper's"
        )
    return momentum


def _dino_checked(
    student: Any, teacher: Any, center: Any
) -> tuple[Any, Any, Any, Any]:
    be = _checks.backend_of(student=student, teacher=teacher, center=center)
    s = _crop_stack(be, student, "student", "(V, N, K)")
    t = _crop_stack(be, teacher, "teacher", "(G, N, K)")
    s, t = _promoted(be, [s, t])
    (v, n, k), (g, n_t, k_t) = _checks.shape_of(s), _checks.shape_of(t)
    if v is None or v < 2:
        raise ValueError(
            f"student must hold at least 2 crops along its first axis (V >= 2), got shape "
            f"{_checks.shape_of(s)}: each teacher crop is compared with the student's "
            f"other crops, so one crop gives no pair"
        )
    if g is None or not 1 <= g <= v:
        raise ValueError(
            f"teacher must hold 1 to V = {v} crops along its first axis (the student's "
            f"first G crops, the global ones, in the same order), got shape "
            f"{_checks.shape_of(t)}: pass the teacher's outputs of the global crops only"
        )
    if not _matching((n_t, k_t), (n, k)):
        raise ValueError(
            f"teacher must have shape (G, N, K) = (G, {n}, {k}), the rows and output "
            f"dimensions of student, got shape {_checks.shape_of(t)}: pass the two "
            f"networks' outputs for the same images, from heads of the same width"
        )
    return be, s, t, _dino_center_state(be, center, k, s.dtype)


def dino_parts(
    student: Any,
    teacher: Any,
    center: Any,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
) -> GLFParts:
    """``dino_loss`` as ``GLFParts(cross-entropy, 0)``.

    As for SwAV, the constraint against collapse acts on the targets, not in the loss:
    centring (no output dimension may dominate) and sharpening (the targets may not
    be uniform) of the stop-gradient teacher, so the constraining part is 0.
    """
    be, s, t, c = _dino_checked(student, teacher, center)
    student_temperature = _checks.check_positive(student_temperature, "student_temperature")
    teacher_temperature = _checks.check_positive(teacher_temperature, "teacher_temperature")
    xp = be.xp
    # (unstack, not indexing: in PyTorch eager each indexed slice's backward is a zero
    # (V, N, K) array, unstack's is one stack.)
    align = _dino_cross_entropy(
        be,
        xp.unstack(s / student_temperature, axis=0),
        xp.unstack((be.stop_gradient(t) - c) / teacher_temperature, axis=0),
    )
    return GLFParts(align, _zero_like(be, align))


def _dino_cross_entropy(be: Any, student: list[Any], teacher: list[Any]) -> Any:
    """DINO's mean cross-entropy from the V student crops' tempered logits (N, K) and the
    G teacher crops' centred, tempered logits (no gradient), the first G student crops
    being the teacher's, in order."""
    xp = be.xp
    n_crops, n_global = len(student), len(teacher)
    crops = [be.log_softmax(s, axis=-1) for s in student]
    targets = [xp.exp(be.log_softmax(be.stop_gradient(t), axis=-1)) for t in teacher]
    if 2 * n_global * (n_crops - 1) <= (n_crops - 1) + 3 * n_global:
        # Few crops (two global ones and no local ones, the common case): each pair as
        # a product and a row sum, 2 G (V - 1) (N, K) passes against the V - 1 + 3 G of
        # the form below (7 against 4 at G = V = 2, a quarter of the eager time at
        # N = 4096 with its backward).
        pairs = [xp.sum(q * crops[v], axis=-1)
                 for i, q in enumerate(targets) for v in range(n_crops) if v != i]
        per_sample = pairs[0]
        for pair in pairs[1:]:
            per_sample = per_sample + pair
    else:
        # Teacher crop i meets every student crop but its own: the sum over all crops
        # less crop i's, G passes instead of G (V - 1) pairs. The sums over crops are
        # additions of (N, K) slices rather than reductions over a crop axis: the same
        # arithmetic, but XLA on CPU fused a crop-axis reduction into each of its
        # consumers and recomputed it (JAX jit 2.3x native's time at N = 1024, K = 300;
        # see docs/benchmarks.md).
        all_crops = crops[0]
        for crop in crops[1:]:
            all_crops = all_crops + crop
        per_sample = xp.sum(targets[0] * (all_crops - crops[0]), axis=-1)
        for i in range(1, n_global):
            per_sample = per_sample + xp.sum(targets[i] * (all_crops - crops[i]), axis=-1)
    return -batch_average(be, per_sample) / (n_global * (n_crops - 1))


def dino_loss(
    student: Any,
    teacher: Any,
    center: Any,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
) -> Any:
    r"""DINO: each crop of the student predicts the centred, sharpened teacher of the
    other global crops.

    $$
    \frac{1}{G(V - 1)}\sum_{i=1}^{G}\sum_{v \ne i}\frac{1}{N}\sum_n\Bigl[-\sum_k
    q^i_{nk}\log p^v_{nk}\Bigr], \quad p^v = \mathrm{softmax}(s^v/\tau_s),\ q^i =
    \mathrm{softmax}\bigl(\mathrm{sg}(t^i - c)/\tau_t\bigr)
    $$

    as ``DINOLoss.forward`` in ``facebookresearch/dino: main_dino.py`` (its student
    output is this ``student`` with the crops concatenated, its teacher output this
    ``teacher``'s global crops, ``chunk`` undone). The centre $c$ is the state from
    before the step; ``dino_center`` gives the next one, as the official
    ``update_center`` after the loss. The official warm-up of the teacher temperature
    (linear from ``warmup_teacher_temp`` to ``teacher_temp`` over the first epochs,
    e.g. 0.04 to 0.07 over 30) is a schedule: the caller passes each step's
    ``teacher_temperature``. Under ``glf_losses.data_parallel`` the mean is over the
    global batch.

    Args:
      student: (V, N, K) student outputs (logits) of V >= 2 crops of N images; the
        first G are the global crops, in the teacher's order, the rest local crops.
      teacher: (G, N, K) teacher outputs of the G global crops, 1 <= G <= V (2 in the
        paper); no gradient flows into them.
      center: (K,) the running centre of the teacher outputs (zeros at the start; the
        official buffer is its (1, K) row), no gradient.
      student_temperature: $\tau_s$ (0.1).
      teacher_temperature: $\tau_t$ (0.04, the official default; values above 0.07
        are unstable, the official help says).

    References:
      Caron et al., "Emerging Properties in Self-Supervised Vision Transformers",
      ICCV 2021.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> s = np.zeros((3, 2, 4))  # a uniform student: log 4 against any target
      >>> t = np.ones((2, 2, 4))
      >>> loss = glf_losses.dino_loss(s, t, np.zeros(4))
      >>> bool(np.isclose(float(loss), np.log(4)))
      True
    """
    return dino_parts(
        student,
        teacher,
        center,
        student_temperature=student_temperature,
        teacher_temperature=teacher_temperature,
    ).total


def dino_center(teacher: Any, center: Any, momentum: float = 0.9) -> Any:
    r"""DINO's centre after a step: $m\,c + (1 - m)\,\bar t$.

    $\bar t$ is the mean of the teacher's (G, N, K) outputs over its crops and rows,
    over the global batch under ``glf_losses.data_parallel`` (the official
    ``update_center`` all-reduces it), so every worker returns the same centre.

    Args:
      teacher: (G, N, K) teacher outputs of the global crops (the local shard under
        data parallelism).
      center: (K,) the centre before the step.
      momentum: m, the EMA coefficient (0.9).

    Returns:
      (K,) the new centre, in ``center``'s dtype, without gradient.

    Examples:
      >>> import numpy as np
      >>> import glf_losses
      >>> t = np.stack([np.eye(2), np.ones((2, 2))])  # mean over 4 rows: [0.75, 0.75]
      >>> glf_losses.dino_center(t, np.zeros(2), momentum=0.5).tolist()
      [0.375, 0.375]
    """
    be = _checks.backend_of(teacher=teacher, center=center)
    t = _crop_stack(be, teacher, "teacher", "(G, N, K)")
    momentum = _check_momentum(momentum)
    xp = be.xp
    # Computed in the wider of the two dtypes, stored in the state's own.
    dtype = xp.float64 if xp.float64 in (t.dtype, center.dtype) else t.dtype
    c = _dino_center_state(be, center, _checks.shape_of(t)[2], dtype)
    t = xp.astype(be.stop_gradient(t), dtype)
    count = t.shape[0] * dim(be, t, 1) * be.shard(t)[0]
    mean = be.all_reduce_sum(xp.sum(t, axis=(0, 1))) / as_divisor(be, count, t)
    return be.stop_gradient(xp.astype(momentum * c + (1.0 - momentum) * mean, center.dtype))


def _dino_teacher_scores(be: Any, t_a: Any, t_b: Any, prototypes: Any) -> Any:
    """(2, N, K) teacher scores of both views against the prototypes, without gradient."""
    xp = be.xp
    held = _UnitPrototypes(be, be.stop_gradient(prototypes))
    return be.stop_gradient(xp.stack([
        held.scores(be.stop_gradient(t_a), "t_a"),
        held.scores(be.stop_gradient(t_b), "t_b"),
    ]))


def dino_prototype_parts(
    z_a: Any,
    z_b: Any,
    t_a: Any,
    t_b: Any,
    center: Any,
    prototypes: Any,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
    center_momentum: float = 0.9,
    *,
    local_z: Any = None,
) -> GLFParts:
    r"""DINO on two global crops (and optional local crops) with its last layer as unit
    prototypes: the form the front-ends and the reference trainers use.

    DINO's head ends in an L2-normalised bottleneck and a weight-normalised linear layer
    with its norms fixed to 1 (``norm_last_layer=True``), so its outputs are the cosine
    scores $n(z) n(W)^\top$ of the bottleneck against K unit prototypes, as SwAV's.
    Here the student's outputs are the scores of the online projections ``z_a, z_b``
    and the teacher's those of the momentum target's ``t_a, t_b`` against the same
    ``prototypes`` under stop-gradient: the prototypes belong to the loss, not to the
    momentum target, so the teacher's last layer is the student's of this step rather
    than its moving average. Then ``dino_parts(student, teacher, center)`` with crops
    (a, b) for the teacher and (a, b, then the local crops) for the student.

    ``center_momentum`` is not used by the loss; it is the method's setting that
    ``dino_prototype_center`` reads.

    Args:
      z_a: (N, D) the student's (online) projections of the first global crop.
      z_b: (N, D) the student's projections of the second global crop.
      t_a: (N, D) the teacher's (momentum target's) projections of the first crop.
      t_b: (N, D) the teacher's projections of the second crop.
      center: (K,) the running centre of the teacher's scores.
      prototypes: (K, D) the last layer's rows (L2-normalised here).
      student_temperature: the student's softmax temperature, as ``dino_loss``'s.
      teacher_temperature: the teacher's, as ``dino_loss``'s.
      center_momentum: the centre's EMA coefficient (read by ``dino_prototype_center``).
      local_z: optional (L, N, D) student projections of L local crops of the same
        images (multi-crop): scored against the same prototypes, they predict both
        global crops' teacher targets; the teacher never sees them, as in DINO.

    Examples:
      >>> import numpy as np
      >>> from glf_losses.methods import dino_prototype_parts
      >>> rng = np.random.default_rng(0)
      >>> z_a, z_b, t_a, t_b = rng.normal(size=(4, 8, 5))
      >>> w, center = rng.normal(size=(6, 5)), np.zeros(6)
      >>> two = dino_prototype_parts(z_a, z_b, t_a, t_b, center, w)
      >>> multi = dino_prototype_parts(z_a, z_b, t_a, t_b, center, w,
      ...                              local_z=rng.normal(size=(3, 8, 5)))
      >>> bool(np.isfinite(multi.total)), bool(multi.total != two.total)
      (True, True)
    """
    be = _checks.backend_of(z_a=z_a, z_b=z_b, t_a=t_a, t_b=t_b, prototypes=prototypes,
                            local_z=local_z)
    xp = be.xp
    student_temperature = _checks.check_positive(student_temperature, "student_temperature")
    teacher_temperature = _checks.check_positive(teacher_temperature, "teacher_temperature")
    _check_momentum(center_momentum)
    for name, x in (("z_b", z_b), ("t_a", t_a), ("t_b", t_b)):
        _checks.same_shape(z_a, x, "z_a", name)
    # dino_parts's cross-entropy on the crops as (N, K) slices, never stacked: no copies
    # into a (V, N, K) array and out again, and the temperatures applied to the (N, D)
    # side of each product.
    # The prototypes normalised once, for the student crops and (without gradient: they
    # belong to the loss, not to the momentum target) the teacher's.
    unit_prototypes = _UnitPrototypes(be, prototypes)
    student = [unit_prototypes.scores(z, name, student_temperature)
               for name, z in (("z_a", z_a), ("z_b", z_b))]
    if local_z is not None:
        # After the global crops, in the teacher's order: the cross-entropy pairs by index.
        student += xp.unstack(_local_prototype_scores(
            be, local_z, z_a, unit_prototypes, student_temperature
        ), axis=0)
    held = unit_prototypes.held()
    teacher = [held.scores(be.stop_gradient(t), name, teacher_temperature)
               for name, t in (("t_a", t_a), ("t_b", t_b))]
    crops = _promoted(be, student + teacher)
    c = _dino_center_state(be, center, _checks.shape_of(crops[0])[1], crops[0].dtype)
    shift = c / teacher_temperature
    align = _dino_cross_entropy(be, crops[:-2], [t - shift for t in crops[-2:]])
    return GLFParts(align, _zero_like(be, align))


def dino_prototype_center(
    center: Any, t_a: Any, t_b: Any, prototypes: Any, center_momentum: float = 0.9
) -> Any:
    """``dino_center`` of the teacher scores that ``dino_prototype_parts`` computes.

    Examples:
      >>> import numpy as np
      >>> from glf_losses.methods import dino_prototype_center
      >>> t = np.array([[1.0, 0.0], [1.0, 0.0]])  # every row scores (1, 0)
      >>> dino_prototype_center(np.zeros(2), t, t, np.eye(2), 0.5).tolist()
      [0.5, 0.0]
    """
    be = _checks.backend_of(center=center, t_a=t_a, t_b=t_b, prototypes=prototypes)
    return dino_center(_dino_teacher_scores(be, t_a, t_b, prototypes), center,
                       momentum=center_momentum)
