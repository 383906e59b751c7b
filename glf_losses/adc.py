r"""ADC, Adaptive Distribution Calibration: a plug-in constraining term for any method.

ADC (Si, Wang and Qiang, arXiv 2508.13596) keeps neighbours in input space close in
feature space and non-neighbours apart. Over the M = 2N stacked projections
``z = [z_a; z_b]`` and the stacked prior ``e = [prior; prior]`` it builds, per anchor i
and over j != i only:

- squared distances ``d_ij = |n(z_i) - n(z_j)|^2`` and ``r_ij = |e_i - e_j|^2``;
- the calibration target ``P^cal_i = softmax_j(-d_ij / 2 sigma_i^2)`` (stop-gradient);
- the Student-t data distribution
  ``Q_ij ∝ (1 + d_ij / (rho s_i^2))^(-(rho + 1) / 2)``, ``s_i^2 = rho sigma_i^2 / (rho - 2)``;
- the prior ``P^pre_i = softmax_j(-r_ij / tau_i)``, over j other than i's own other
  view by default (``prior_other_view=False``), and anchor weights
  ``w_i ∝ 1 / H(P^pre_i)`` normalised to mean 1;

and returns ``nu * L_DCM + upsilon * L_LPM`` with
``L_DCM = mean_i w_i KL(P^cal_i || Q_i)`` and ``L_LPM = mean_i KL(P^pre_i || Q_i)``.

Bandwidths (``sigma^2`` and ``tau``) are a float, ``"median"`` (half the median
off-diagonal distance of the batch) or ``"perplexity"`` (one per anchor, by bisection on
its logarithm, as t-SNE calibrates neighbourhoods); all are under stop-gradient. The
formulation is ours, faithful to the paper's description: see ``docs/adc.md``.

Everything is jit-safe: fixed iteration counts, no boolean indexing, no Python branches
on values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, NamedTuple

from glf_losses import _checks
from glf_losses._lib import (
    batch_average,
    entropy,
    global_rows,
    kl_divergence,
    l2_normalize,
    masked_log_softmax,
    not_self,
    off_diagonal,
    sq_distances,
    stacked_columns,
    stacked_rows,
)

__all__ = [
    "ADC",
    "ADCParts",
    "Bandwidth",
    "adc_loss",
    "adc_parts",
    "anchor_weights",
    "bandwidth",
    "calibration_distribution",
    "data_distribution",
    "dcm",
    "feature_distances",
    "lpm",
    "median_bandwidth",
    "method_weights",
    "perplexity_bandwidth",
    "prior_distances",
    "prior_distribution",
]

Bandwidth = float | Literal["median", "perplexity"]

# Floor of every bandwidth and entropy: identical rows then give a uniform distribution
# and a one-hot prior row a large but finite weight, never 0/0.
_TINY = 1e-12

# Stands for "not a neighbour" in the bisection: exp(-beta * _FAR) is exactly 0 for every
# beta it tries, in float32 as in float64.
_FAR = 1e30

# Bisection bracket for log(beta * row_range): beta * range = e^-10 is flat to ~5e-5
# relative, e^20 separates neighbours 1e-8 of the range apart.
_LOG_BETA_LO, _LOG_BETA_HI = -10.0, 20.0


class ADCParts(NamedTuple):
    """``(nu * L_DCM, upsilon * L_LPM)``; their sum is :func:`adc_loss`."""

    dcm: Any
    lpm: Any

    @property
    def total(self) -> Any:
        return self.dcm + self.lpm


# --- distances ----------------------------------------------------------------------------


class _Layout(NamedTuple):
    """Which sample each local anchor is: local rows ``[a; b]`` against the global
    columns ``[A; B]`` (the same M x M in one process)."""

    n_global: int
    rows: Any  # (2 n_local,) global column index of each local anchor
    mask: Any  # (2 n_local, M): False at each anchor's own column


def _layout(be: ModuleType, n_local: int, like: Any) -> _Layout:
    n_global, rows = stacked_rows(be, n_local, like)
    return _Layout(n_global, rows, not_self(be, rows, 2 * n_global, like))


def _feature_distances(
    be: ModuleType, z_a: Any, z_b: Any, layout: _Layout, normalize: bool
) -> Any:
    xp = be.xp
    if normalize:
        z_a, z_b = l2_normalize(xp, z_a), l2_normalize(xp, z_b)
    local = xp.concat([z_a, z_b], axis=0)
    return sq_distances(xp, local, stacked_columns(be, z_a, z_b), layout.mask)


def _prior_distances(be: ModuleType, prior: Any, layout: _Layout) -> Any:
    xp = be.xp
    e = be.stop_gradient(prior)
    # Centring first keeps the Gram form accurate for priors far from the origin
    # (raw pixels 0..255): the cancellation in |a|^2 + |b|^2 - 2ab scales with |a|^2.
    e = e - be.stop_gradient(be.all_reduce_sum(xp.sum(e, axis=0, keepdims=True))) / (
        layout.n_global
    )
    n_local = e.shape[0]
    _, own = global_rows(be, n_local, e)
    # Both views of a sample share its prior: distances between samples, computed once
    # (exactly 0 to the sample itself) and tiled to the four blocks of [a; b] x [A; B].
    r = sq_distances(
        xp, e, be.stop_gradient(be.all_gather(e)), not_self(be, own, layout.n_global, e)
    )
    # Each anchor's own column (and its other view's) holds its sample's zero distance to
    # itself, so the tiles need no further masking.
    r = xp.concat([r, r], axis=1)
    return xp.concat([r, r], axis=0)


def feature_distances(z_a: Any, z_b: Any, normalize: bool = True) -> Any:
    """(M, M) squared distances between the stacked rows ``[z_a; z_b]``, zero diagonal.

    With ``normalize`` the rows are L2-normalised first (then ``d`` is in [0, 4]).
    Computed in Gram form and clamped at 0.
    """
    be, z_a, z_b = _pair(z_a, z_b)
    return _feature_distances(be, z_a, z_b, _layout(be, z_a.shape[0], z_a), normalize)


def prior_distances(prior: Any) -> Any:
    """(M, M) squared distances of the stacked prior ``[prior; prior]``, zero diagonal.

    ``prior`` has N rows of any trailing shape and any real dtype (integers are cast to
    float32); no gradient flows into it.
    """
    be = _checks.backend_of(prior=prior)
    e = _flat_prior(be, prior, None, "prior")
    return _prior_distances(be, e, _layout(be, e.shape[0], e))


# --- bandwidths ---------------------------------------------------------------------------


def _median_offdiag(be: ModuleType, dist: Any, without_partner: bool = False) -> Any:
    xp = be.xp
    # Every worker's anchor rows together form the global (M, M) matrix.
    dist = be.all_gather(be.stop_gradient(dist))
    m = dist.shape[0]
    flat = xp.reshape(dist, (-1,))
    # The diagonal holds m exact zeros and every off-diagonal entry is >= 0, so the
    # off-diagonal order statistics sit m places up in the full sorted array. The prior's
    # partner entries (each anchor's other view) are m more exact zeros.
    excluded = 2 * m if without_partner else m
    k = excluded + (m * m - excluded) // 2 - 1
    lower = be.select_kth(flat, (k,))[0]
    # The next order statistic without a second selection: it equals ``lower`` when more
    # than k + 1 entries are <= lower (ties), else it is the smallest entry above it.
    above = xp.min(xp.where(flat > lower, flat, math.inf))
    upper = xp.where(xp.sum(xp.astype(flat <= lower, xp.int32)) > k + 1, lower, above)
    return (lower + upper) / 2.0


def _perplexity_scale(be: ModuleType, dist: Any, mask: Any, perplexity: float, n_steps: int) -> Any:
    """Per-row b with exp(H(softmax_j(-d_ij / b))) = perplexity; shape (rows, 1)."""
    xp = be.xp
    d = be.stop_gradient(dist)
    # Masked entries sit at a huge distance: their weight exp(-beta * far) is exactly 0 and
    # 0 * far adds nothing, so the loop below needs no mask. After the shift each row's
    # nearest neighbour has weight exp(0) = 1, so the normaliser is >= 1. One masked copy,
    # shifted in place (no gradient here): far exceeds every distance, so it is not a row
    # minimum, and far - row_min still weighs exactly 0.
    shifted = xp.where(mask, d, _FAR)
    row_min = xp.min(shifted, axis=1, keepdims=True)
    shifted -= row_min
    row_range = xp.max(xp.where(mask, shifted, 0.0), axis=1, keepdims=True)
    base = -xp.log(xp.clip(row_range, min=_TINY))
    target = math.log(perplexity)

    def bisect(bracket: tuple[Any, Any]) -> tuple[Any, Any]:
        lo, hi = bracket
        mid = (lo + hi) / 2.0
        beta = xp.exp(mid)
        weights = xp.exp(-beta * shifted)
        norm = xp.sum(weights, axis=1, keepdims=True)
        # H(p) for p = w / Z with w = exp(-beta d): beta E_p[d] + log Z. The product
        # w d is taken in place: everything here is under stop-gradient, and in eager
        # PyTorch a fresh (M, M) result per step (40 in all) costs more in page faults
        # than the product itself. Immutable arrays (JAX, TensorFlow) just rebind.
        weights *= shifted
        h = beta * xp.sum(weights, axis=1, keepdims=True) / norm + xp.log(norm)
        too_flat = h > target
        return xp.where(too_flat, mid, lo), xp.where(too_flat, hi, mid)

    lo, hi = be.fori_loop(n_steps, bisect, (base + _LOG_BETA_LO, base + _LOG_BETA_HI))
    return xp.clip(xp.exp(-(lo + hi) / 2.0), min=_TINY)


def _resolve(
    be: ModuleType,
    dist: Any,
    mask: Any,
    mode: Bandwidth,
    perplexity: float,
    n_steps: int,
    *,
    factor: float,
    without_partner: bool = False,
) -> Any:
    """The bandwidth used as ``softmax(-dist / (factor * bw))``: sigma^2 (factor 2) or tau.

    ``without_partner``: ``mask`` also leaves out each anchor's other view, whose entries
    of ``dist`` are exact zeros (the prior's), and the median leaves them out too.
    """
    if isinstance(mode, str):
        if mode == "median":
            return _clip_tiny(be, _median_offdiag(be, dist, without_partner) / 2.0)
        return _clip_tiny(be, _perplexity_scale(be, dist, mask, perplexity, n_steps) / factor)
    return mode


def _clip_tiny(be: ModuleType, x: Any) -> Any:
    return be.xp.clip(x, min=_TINY)


def median_bandwidth(distances: Any) -> Any:
    """Half the median of the off-diagonal entries of an (M, M) distance matrix (0-d).

    The median of an even count is the mean of the two middle values, as
    ``numpy.median`` computes it; found by selection where the backend has one.
    """
    be = _checks.backend_of(distances=distances)
    d = _square(be, distances, "distances")
    return _clip_tiny(be, _median_offdiag(be, d) / 2.0)


def perplexity_bandwidth(distances: Any, perplexity: float = 30.0, n_steps: int = 20) -> Any:
    """Per-anchor ``b_i`` (shape (M, 1)) with ``exp(H(softmax_j(-d_ij / b_i))) = perplexity``.

    Bisection on ``log(1 / b_i)`` for a fixed ``n_steps``, bracketed relative to each row's
    range after shifting it by its smallest off-diagonal distance. The Gaussian
    calibration uses ``sigma_i^2 = b_i / 2``; the prior uses ``tau_i = b_i``.
    """
    be = _checks.backend_of(distances=distances)
    d = _square(be, distances, "distances")
    m = d.shape[0]
    _check_perplexity(perplexity, "perplexity", m)
    n_steps = _checks.check_count(n_steps, "n_steps", minimum=1)
    return _perplexity_scale(be, d, off_diagonal(be, m, d), perplexity, n_steps)


def bandwidth(
    distances: Any,
    mode: Bandwidth = "perplexity",
    *,
    perplexity: float = 30.0,
    n_steps: int = 20,
    kind: Literal["features", "prior"] = "features",
) -> Any:
    """The bandwidth rule of ADC: sigma^2 (``kind="features"``) or tau (``"prior"``).

    ``mode`` is a float (returned as is), ``"median"`` (a 0-d array) or ``"perplexity"``
    (an (M, 1) array, one per anchor). Always under stop-gradient.
    """
    be = _checks.backend_of(distances=distances)
    d = _square(be, distances, "distances")
    m = d.shape[0]
    mode = _check_mode(mode, "mode")
    if mode == "perplexity":
        _check_perplexity(perplexity, "perplexity", m)
    n_steps = _checks.check_count(n_steps, "n_steps", minimum=1)
    if kind not in ("features", "prior"):
        raise ValueError(f"kind must be 'features' or 'prior', got {kind!r}")
    factor = 2.0 if kind == "features" else 1.0
    return _resolve(be, d, off_diagonal(be, m, d), mode, perplexity, n_steps, factor=factor)


# --- distributions ------------------------------------------------------------------------


def _calibration(be: ModuleType, d: Any, mask: Any, sigma2: Any) -> tuple[Any, Any]:
    # Stop-gradient before the arithmetic, so that no autograd record is made of it.
    logits = be.stop_gradient(-be.stop_gradient(d) / (2.0 * sigma2))
    return masked_log_softmax(be, logits, mask, no_grad=True)


def _data(be: ModuleType, d: Any, mask: Any, sigma2: Any, rho: float) -> tuple[Any, Any]:
    # d / (rho s^2) with s^2 = rho sigma^2 / (rho - 2)
    scaled = d * ((rho - 2.0) / (rho * rho)) / sigma2
    return masked_log_softmax(be, -0.5 * (rho + 1.0) * be.xp.log1p(scaled), mask)


def _prior(be: ModuleType, r: Any, mask: Any, tau: Any) -> tuple[Any, Any]:
    return masked_log_softmax(be, be.stop_gradient(-r / tau), mask, no_grad=True)


def _anchor_weights(be: ModuleType, p_pre: Any, log_p_pre: Any) -> Any:
    # p_pre is exactly 0 off its mask and log_p_pre finite there (see entropy).
    xp = be.xp
    inv_h = 1.0 / xp.clip(entropy(xp, p_pre, log_p_pre), min=_TINY)
    return be.stop_gradient(inv_h / batch_average(be, inv_h))


def calibration_distribution(distances: Any, sigma2: Any) -> Any:
    """Gaussian calibration target ``P^cal_ij = softmax_{j != i}(-d_ij / 2 sigma^2)``.

    (M, M), zero diagonal, rows summing to 1, stop-gradient. ``sigma2`` is a float, a 0-d
    array or an (M, 1) array of per-anchor values.
    """
    be = _checks.backend_of(distances=distances)
    d = _square(be, distances, "distances")
    return _calibration(be, d, off_diagonal(be, d.shape[0], d), sigma2)[1]


def data_distribution(distances: Any, sigma2: Any, rho: float = 3.0) -> Any:
    """Student-t data distribution ``Q_ij ∝ (1 + d_ij / (rho s^2))^(-(rho+1)/2)``.

    ``s^2 = rho sigma^2 / (rho - 2)`` (the variance-matched Student-t scale), normalised
    over j != i; requires ``rho > 2``. Differentiable in ``distances``.
    """
    be = _checks.backend_of(distances=distances)
    d = _square(be, distances, "distances")
    rho = _check_rho(rho)
    return _data(be, d, off_diagonal(be, d.shape[0], d), sigma2, rho)[1]


def prior_distribution(distances: Any, tau: Any) -> Any:
    """Prior neighbour distribution ``P^pre_ij = softmax_{j != i}(-r_ij / tau)``, sg."""
    be = _checks.backend_of(distances=distances)
    r = _square(be, distances, "distances")
    return _prior(be, r, off_diagonal(be, r.shape[0], r), tau)[1]


def anchor_weights(prior_probs: Any) -> Any:
    """``w_i = (1 / H(P^pre_i)) / mean_k (1 / H(P^pre_k))``: outlier anchors count less.

    An anchor whose prior neighbourhood is spread out (high entropy) is an outlier in
    input space. Entropies are clamped below at 1e-12, so a one-hot row is finite.
    Stop-gradient; shape (M,).
    """
    be = _checks.backend_of(prior_probs=prior_probs)
    p = _square(be, prior_probs, "prior_probs")
    xp = be.xp
    # The diagonal is left out: zeroed, it adds 0 log(1e-12) = 0 to the entropies.
    p = xp.where(off_diagonal(be, p.shape[0], p), p, 0.0)
    log_p = xp.log(xp.clip(p, min=_TINY))
    return _anchor_weights(be, p, log_p)


# --- the loss -----------------------------------------------------------------------------


def _adc(
    be: ModuleType,
    z_a: Any,
    z_b: Any,
    e: Any,
    *,
    nu: float,
    upsilon: float,
    rho: float,
    bandwidth: Bandwidth,
    prior_bandwidth: Bandwidth,
    perplexity: float,
    prior_perplexity: float,
    perplexity_steps: int,
    normalize: bool,
    prior_other_view: bool,
) -> ADCParts:
    xp = be.xp
    layout = _layout(be, z_a.shape[0], z_a)
    mask = layout.mask
    d = _feature_distances(be, z_a, z_b, layout, normalize)
    r = _prior_distances(be, e, layout)
    prior_mask = mask
    if not prior_other_view:
        # The anchor's other view sits at prior distance 0 and would take the largest
        # share of P^pre; without it, the prior speaks of other samples only.
        m = 2 * layout.n_global
        partner = (layout.rows + layout.n_global) % m
        prior_mask = xp.logical_and(mask, not_self(be, partner, m, z_a))
    sigma2 = _resolve(be, d, mask, bandwidth, perplexity, perplexity_steps, factor=2.0)
    tau = _resolve(
        be, r, prior_mask, prior_bandwidth, prior_perplexity, perplexity_steps, factor=1.0,
        without_partner=not prior_other_view,
    )
    log_q, _ = _data(be, d, mask, sigma2, rho)
    log_pre, p_pre = _prior(be, r, prior_mask, tau)
    log_cal, p_cal = _calibration(be, d, mask, sigma2)
    weights = _anchor_weights(be, p_pre, log_pre)
    l_dcm = batch_average(be, weights * kl_divergence(xp, p_cal, log_cal, log_q))
    l_lpm = batch_average(be, kl_divergence(xp, p_pre, log_pre, log_q))
    return ADCParts(nu * l_dcm, upsilon * l_lpm)


def adc_parts(
    z_a: Any,
    z_b: Any,
    prior: Any,
    *,
    nu: float = 1.0,
    upsilon: float = 10.0,
    rho: float = 3.0,
    bandwidth: Bandwidth = "perplexity",
    prior_bandwidth: Bandwidth = "perplexity",
    perplexity: float = 30.0,
    prior_perplexity: float | None = None,
    perplexity_steps: int = 20,
    normalize: bool = True,
    prior_other_view: bool = False,
) -> ADCParts:
    """:func:`adc_loss` as ``ADCParts(dcm=nu * L_DCM, lpm=upsilon * L_LPM)``.

    Same arguments as :func:`adc_loss`. For the unweighted terms use :func:`dcm` and
    :func:`lpm` (or ``nu=1, upsilon=1`` here, which shares the work between them).
    """
    be, z_a, z_b = _pair(z_a, z_b, prior=prior)
    m = 2 * z_a.shape[0] * be.shard(z_a)[0]
    e = _flat_prior(be, prior, z_a, "prior")
    nu = _checks.check_nonnegative(nu, "nu")
    upsilon = _checks.check_nonnegative(upsilon, "upsilon")
    rho = _check_rho(rho)
    bandwidth = _check_mode(bandwidth, "bandwidth")
    prior_bandwidth = _check_mode(prior_bandwidth, "prior_bandwidth")
    if bandwidth == "perplexity":
        _check_perplexity(perplexity, "perplexity", m)
    for name, flag in (("normalize", normalize), ("prior_other_view", prior_other_view)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    if prior_bandwidth == "perplexity":
        # Without the other view a prior row has M - 2 candidates, not M - 1. Name the
        # argument the value came from: prior_perplexity defaults to perplexity.
        candidates = m - 1 if prior_other_view else m - 2
        if prior_perplexity is None:
            _check_perplexity(perplexity, "perplexity", m, candidates)
        else:
            _check_perplexity(prior_perplexity, "prior_perplexity", m, candidates)
    if prior_perplexity is None:
        prior_perplexity = perplexity
    perplexity_steps = _checks.check_count(perplexity_steps, "perplexity_steps", minimum=1)
    return _adc(
        be,
        z_a,
        z_b,
        e,
        nu=nu,
        upsilon=upsilon,
        rho=rho,
        bandwidth=bandwidth,
        prior_bandwidth=prior_bandwidth,
        perplexity=float(perplexity),
        prior_perplexity=float(prior_perplexity),
        perplexity_steps=perplexity_steps,
        normalize=normalize,
        prior_other_view=prior_other_view,
    )


def adc_loss(
    z_a: Any,
    z_b: Any,
    prior: Any,
    *,
    nu: float = 1.0,
    upsilon: float = 10.0,
    rho: float = 3.0,
    bandwidth: Bandwidth = "perplexity",
    prior_bandwidth: Bandwidth = "perplexity",
    perplexity: float = 30.0,
    prior_perplexity: float | None = None,
    perplexity_steps: int = 20,
    normalize: bool = True,
    prior_other_view: bool = False,
) -> Any:
    r"""ADC's constraining term ``nu * L_DCM + upsilon * L_LPM``, to add to any method.

    .. math:: L_{DCM} = \frac{1}{M}\sum_i w_i\,\mathrm{KL}(P^{cal}_{i\cdot}\,\Vert\,
       Q_{i\cdot}),\qquad L_{LPM} = \frac{1}{M}\sum_i \mathrm{KL}(P^{pre}_{i\cdot}\,\Vert\,
       Q_{i\cdot})

    over the M = 2N stacked rows (see the module docstring for the distributions).

    Args:
      z_a: (N, D) projections of view a (the online branch for BYOL).
      z_b: (N, D) projections of view b, the same shape as ``z_a``.
      prior: N rows of any trailing shape, integer or float: raw inputs (pixels 0..255
        work as they are) or frozen features. Flattened, cast to the projections' dtype,
        stacked for both views; no gradient flows into it.
      nu: weight of DCM (>= 0).
      upsilon: weight of LPM (>= 0).
      rho: Student-t degrees of freedom, > 2.
      bandwidth: sigma^2 of the features: a float, ``"median"`` or ``"perplexity"``.
      prior_bandwidth: tau of the prior, likewise.
      perplexity: target perplexity of the feature distributions, in (1, M - 1].
      prior_perplexity: the prior's target perplexity (default: ``perplexity``).
      perplexity_steps: bisection steps of the ``"perplexity"`` rule (20 reach ~1e-5).
      normalize: L2-normalise the projections before taking distances.
      prior_other_view: whether each anchor's other view belongs to its prior
        neighbourhood. It sits at prior distance 0 (both views share the input), so it
        takes a large share of ``P^pre`` (~44% at perplexity 30 on MNIST batches),
        which turns LPM partly into a second aligning term. ``False`` (the default)
        leaves it out of the prior, its bandwidth and the anchor weights; the prior's
        perplexity then lies in (1, M - 2]. The default comes from the ADC study
        (docs/study.md): leaving it out was as good or better for every method.

    Returns:
      A 0-d array of the projections' framework (float32 for float16/bfloat16 inputs).

    Cost: O(M^2 (D + P)) time and O(M^2) memory; the prior's distances are computed for
    N rows and tiled.

    References:
      Si, Wang and Qiang, "A Generalized Learning Framework for Self-Supervised
      Contrastive Learning", arXiv 2508.13596.

    Example:
      >>> import numpy as np
      >>> import glf_losses
      >>> rng = np.random.default_rng(0)
      >>> z_a, z_b = rng.normal(size=(16, 8)), rng.normal(size=(16, 8))
      >>> pixels = rng.integers(0, 256, size=(16, 1, 8, 8))
      >>> loss = glf_losses.barlow_twins_loss(z_a, z_b) + glf_losses.adc_loss(
      ...     z_a, z_b, pixels, perplexity=5.0)
      >>> bool(np.isfinite(loss))
      True
    """
    return adc_parts(
        z_a,
        z_b,
        prior,
        nu=nu,
        upsilon=upsilon,
        rho=rho,
        bandwidth=bandwidth,
        prior_bandwidth=prior_bandwidth,
        perplexity=perplexity,
        prior_perplexity=prior_perplexity,
        perplexity_steps=perplexity_steps,
        normalize=normalize,
        prior_other_view=prior_other_view,
    ).total


def dcm(z_a: Any, z_b: Any, prior: Any, **kwargs: Any) -> Any:
    """The unweighted ``L_DCM`` (the prior supplies the anchor weights).

    Keyword arguments as in :func:`adc_loss` (``nu`` and ``upsilon`` excluded).
    """
    return adc_parts(z_a, z_b, prior, nu=1.0, upsilon=0.0, **kwargs).dcm


def lpm(z_a: Any, z_b: Any, prior: Any, **kwargs: Any) -> Any:
    """The unweighted ``L_LPM``. Keyword arguments as in :func:`adc_loss`."""
    return adc_parts(z_a, z_b, prior, nu=0.0, upsilon=1.0, **kwargs).lpm


@dataclass(frozen=True)
class ADC:
    """ADC's hyperparameters, bound once; what the framework front-ends take as ``adc=``.

    Example:
      >>> import numpy as np
      >>> from glf_losses.adc import ADC
      >>> adc = ADC(upsilon=1.0, perplexity=4.0)
      >>> z = np.random.default_rng(0).normal(size=(8, 4))
      >>> bool(np.isfinite(adc(z, z[::-1], z)))
      True
    """

    nu: float = 1.0
    upsilon: float = 10.0
    rho: float = 3.0
    bandwidth: Bandwidth = "perplexity"
    prior_bandwidth: Bandwidth = "perplexity"
    perplexity: float = 30.0
    prior_perplexity: float | None = None
    perplexity_steps: int = 20
    normalize: bool = True
    prior_other_view: bool = False

    @classmethod
    def for_method(cls, method: str, **kwargs: Any) -> ADC:
        """ADC with the weights :func:`method_weights` recommends for ``method``;
        ``kwargs`` set any field, the weights included."""
        nu, upsilon = method_weights(method)
        return cls(**{"nu": nu, "upsilon": upsilon, **kwargs})

    def parts(self, z_a: Any, z_b: Any, prior: Any) -> ADCParts:
        return adc_parts(z_a, z_b, prior, **self.__dict__)

    def __call__(self, z_a: Any, z_b: Any, prior: Any) -> Any:
        return self.parts(z_a, z_b, prior).total


# --- weights per method -------------------------------------------------------------------

# (nu, upsilon) per method, from the ADC study (docs/study.md, mnist5k, D = 128): nu = 1,
# upsilon = 10 give ADC 76 to 95% of the gradient at initialisation beside BYOL, SwAV and
# SimCLR, but 4% beside Barlow Twins, whose loss sums D^2 terms; scaled by 100 (81%) it
# gained more (linear probe +5.3 against +3.4 points, kNN +29.6 against +16.3).
_DEFAULT_WEIGHTS = (1.0, 10.0)
_METHOD_WEIGHTS = {
    "byol": _DEFAULT_WEIGHTS,
    "barlow_twins": (100.0, 1000.0),
    "swav": _DEFAULT_WEIGHTS,
    "simclr": _DEFAULT_WEIGHTS,
}


def method_weights(method: str) -> tuple[float, float]:
    """The ``(nu, upsilon)`` recommended for ADC beside ``method``.

    ``(1, 10)`` (the defaults of :func:`adc_loss`) for ``"byol"``, ``"swav"`` and
    ``"simclr"``; ``(100, 1000)`` for ``"barlow_twins"``, whose loss is two orders of
    magnitude larger, so that ADC's share of the gradient is comparable (measured at
    D = 128; Barlow Twins' loss grows with D, so check the share at other widths with
    ``studies/adc.py --tier shares``).

    Example:
      >>> from glf_losses import adc
      >>> adc.method_weights("barlow_twins")
      (100.0, 1000.0)
    """
    if method not in _METHOD_WEIGHTS:
        raise ValueError(f"method must be one of {sorted(_METHOD_WEIGHTS)}, got {method!r}")
    return _METHOD_WEIGHTS[method]


# --- validation ---------------------------------------------------------------------------


def _pair(z_a: Any, z_b: Any, prior: Any = None) -> tuple[ModuleType, Any, Any]:
    be = _checks.backend_of(z_a=z_a, z_b=z_b, prior=prior)
    _checks.same_shape(z_a, z_b, "z_a", "z_b")
    z_a = _checks.float_matrix(be, z_a, "z_a", min_rows=2)
    z_b = _checks.float_matrix(be, z_b, "z_b", min_rows=2)
    return be, z_a, z_b


def _flat_prior(be: ModuleType, prior: Any, like: Any, name: str) -> Any:
    xp = be.xp
    shape = _checks.shape_of(prior)
    if len(shape) < 1:
        raise ValueError(f"{name} must have one row per sample, got a 0-d array")
    if like is not None and shape[0] is not None and shape[0] != like.shape[0]:
        raise ValueError(
            f"{name} must have N = {like.shape[0]} rows (one per sample of z_a), got "
            f"{shape[0]} (shape {shape})"
        )
    if not xp.isdtype(prior.dtype, ("real floating", "integral", "bool")):
        raise TypeError(f"{name} must have a real or integer dtype, got {prior.dtype}")
    n = shape[0]
    flat = xp.reshape(prior, (n, -1)) if len(shape) != 2 else prior
    target = like.dtype if like is not None else _checks.compute_dtype(xp, prior.dtype)
    if not xp.isdtype(prior.dtype, "real floating"):
        target = like.dtype if like is not None else xp.float32
    return flat if flat.dtype == target else xp.astype(flat, target)


def _square(be: ModuleType, x: Any, name: str) -> Any:
    x = _checks.float_matrix(be, x, name, min_rows=2)
    rows, cols = _checks.shape_of(x)
    if rows != cols:
        raise ValueError(f"{name} must be a square (M, M) matrix, got shape {(rows, cols)}")
    return x


def _check_rho(rho: Any) -> float:
    rho = _checks.check_finite_number(rho, "rho")
    if rho <= 2:
        raise ValueError(f"rho must be > 2 (the Student-t needs a finite variance), got {rho}")
    return rho


def _check_mode(mode: Any, name: str) -> Bandwidth:
    if isinstance(mode, str):
        if mode not in ("median", "perplexity"):
            raise ValueError(
                f"{name} must be a positive float, 'median' or 'perplexity', got {mode!r}"
            )
        return mode  # type: ignore[return-value]
    return _checks.check_positive(mode, name)


def _check_perplexity(value: Any, name: str, m: int, candidates: int | None = None) -> None:
    """A perplexity is an effective neighbour count: more than 1, at most the row's
    candidates (M - 1, or M - 2 for a prior row without the anchor's other view)."""
    value = _checks.check_finite_number(value, name)
    candidates = m - 1 if candidates is None else candidates
    if not 1 < value <= candidates:
        why = "" if candidates == m - 1 else (
            " when the prior leaves out each anchor's other view (prior_other_view=False)"
        )
        raise ValueError(
            f"{name} must lie in (1, M - {m - candidates}] = (1, {candidates}] for M = {m} "
            f"stacked rows{why}, got {value}"
        )
