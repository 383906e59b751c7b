r"""ADC, Adaptive Distribution Calibration: a plug-in constraining term for any method.

ADC (Si, Wang and Qiang, arXiv 2508.13596) keeps neighbours in input space close in
feature space and non-neighbours apart. Over the $M = 2N$ stacked projections
$z = [z^a; z^b]$ and the stacked prior $e = [\text{prior}; \text{prior}]$ it builds, per
anchor $i$ and over $j \ne i$ only:

- squared distances $d_{ij} = \lVert n(z_i) - n(z_j) \rVert^2$ and
  $r_{ij} = \lVert e_i - e_j \rVert^2$;
- the calibration target
  $P^{\text{cal}}_{i\cdot} = \operatorname{softmax}_j(-d_{ij} / 2\sigma_i^2)$
  (stop-gradient);
- the Student-t data distribution
  $Q_{ij} \propto (1 + d_{ij} / \rho s_i^2)^{-(\rho + 1)/2}$ with
  $s_i^2 = \rho \sigma_i^2 / (\rho - 2)$;
- the prior $P^{\text{pre}}_{i\cdot} = \operatorname{softmax}_j(-r_{ij} / \tau_i)$, over
  $j$ other than $i$'s own other view by default (``prior_other_view=False``), and
  anchor weights $w_i \propto 1 / H(P^{\text{pre}}_{i\cdot})$ normalised to mean 1;

and returns $\nu L_{\text{DCM}} + \upsilon L_{\text{LPM}}$ with

$$
L_{\text{DCM}} = \operatorname{mean}_i w_i
\operatorname{KL}(P^{\text{cal}}_{i\cdot} \Vert Q_{i\cdot}), \qquad
L_{\text{LPM}} = \operatorname{mean}_i
\operatorname{KL}(P^{\text{pre}}_{i\cdot} \Vert Q_{i\cdot}).
$$

Bandwidths (``sigma^2`` and ``tau``) are a float, ``"median"`` (half the median
off-diagonal distance of the batch) or ``"perplexity"`` (one per anchor, by bisection on
its logarithm, as t-SNE calibrates neighbourhoods); all are under stop-gradient. The
formulation is ours, faithful to the paper's description: see ``docs/adc.md``.

Everything is jit-safe: fixed iteration counts, no boolean indexing, no Python branches
on values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from types import ModuleType
from typing import Any, Literal, NamedTuple

from glf_losses import _checks
from glf_losses._lib import (
    as_divisor,
    batch_average,
    entropy,
    global_rows,
    kl_divergence,
    masked_log_softmax,
    not_self,
    off_diagonal,
    rows,
    sq_distances,
    stacked_columns,
    stacked_rows,
    unit_rows,
)
from glf_losses.typing import Array

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
    """``(nu * L_DCM, upsilon * L_LPM)``; their sum is [`adc_loss`][glf_losses.adc.adc_loss]."""

    dcm: Array
    lpm: Array

    @property
    def total(self) -> Array:
        """``dcm + lpm``: what [`adc_loss`][glf_losses.adc.adc_loss] returns."""
        return self.dcm + self.lpm


# --- distances ----------------------------------------------------------------------------


class _Layout(NamedTuple):
    """Which sample each local anchor is: local rows ``[a; b]`` against the global
    columns ``[A; B]`` (the same M x M in one process)."""

    n_global: Any  # an int, or a 0-d integer array where the batch size is dynamic
    rows: Any  # (2 n_local,) global column index of each local anchor
    mask: Any  # (2 n_local, M): False at each anchor's own column


def _layout(be: ModuleType, n_local: Any, like: Any) -> _Layout:
    n_global, rows = stacked_rows(be, n_local, like)
    return _Layout(n_global, rows, not_self(be, rows, 2 * n_global, like))


def _feature_distances(
    be: ModuleType, z_a: Any, z_b: Any, layout: _Layout, normalize: bool
) -> Any:
    xp = be.xp
    if normalize:
        z_a, z_b = unit_rows(be, z_a), unit_rows(be, z_b)
    local = xp.concat([z_a, z_b], axis=0)
    return sq_distances(be, local, stacked_columns(be, z_a, z_b, local), layout.mask)


def _prior_distances(be: ModuleType, prior: Any, layout: _Layout) -> Any:
    xp = be.xp
    e = be.stop_gradient(prior)
    # Centring first keeps the Gram form accurate for priors far from the origin
    # (raw pixels 0..255): the cancellation in |a|^2 + |b|^2 - 2ab scales with |a|^2.
    e = e - be.stop_gradient(be.all_reduce_sum(xp.sum(e, axis=0, keepdims=True))) / (
        as_divisor(be, layout.n_global, e)
    )
    _, own = global_rows(be, rows(be, e), e)
    # Both views of a sample share its prior: distances between samples, computed once
    # (exactly 0 to the sample itself) and tiled to the four blocks of [a; b] x [A; B].
    r = sq_distances(
        be, e, be.stop_gradient(be.all_gather(e)), not_self(be, own, layout.n_global, e)
    )
    # Each anchor's own column (and its other view's) holds its sample's zero distance to
    # itself, so the tiles need no further masking.
    r = xp.concat([r, r], axis=1)
    return xp.concat([r, r], axis=0)


def feature_distances(z_a: Array, z_b: Array, normalize: bool = True) -> Array:
    """(M, M) squared distances between the stacked rows ``[z_a; z_b]``, zero diagonal.

    With ``normalize`` the rows are L2-normalised first (then ``d`` is in [0, 4]).
    Computed in Gram form and clamped at 0.
    """
    be, z_a, z_b = _pair(z_a, z_b)
    return _feature_distances(be, z_a, z_b, _layout(be, rows(be, z_a), z_a), normalize)


def prior_distances(prior: Array) -> Array:
    """(M, M) squared distances of the stacked prior ``[prior; prior]``, zero diagonal.

    ``prior`` has N rows of any trailing shape and any real dtype (integers are cast to
    float32); no gradient flows into it.
    """
    be = _checks.backend_of(prior=prior)
    e = _flat_prior(be, prior, None, "prior")
    return _prior_distances(be, e, _layout(be, rows(be, e), e))


# --- bandwidths ---------------------------------------------------------------------------


def _median_offdiag(be: ModuleType, dist: Any, without_partner: bool = False) -> Any:
    xp = be.xp
    # Every worker's anchor rows together form the global (M, M) matrix.
    dist = be.all_gather(be.stop_gradient(dist))
    m = rows(be, dist)
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


def median_bandwidth(distances: Array) -> Array:
    """Half the median of the off-diagonal entries of an (M, M) distance matrix (0-d).

    The median of an even count is the mean of the two middle values, as
    ``numpy.median`` computes it; found by selection where the backend has one.
    """
    be = _checks.backend_of(distances=distances)
    d = _square(be, distances, "distances")
    return _clip_tiny(be, _median_offdiag(be, d) / 2.0)


def perplexity_bandwidth(distances: Array, perplexity: float = 30.0, n_steps: int = 20) -> Array:
    """Per-anchor ``b_i`` (shape (M, 1)) with ``exp(H(softmax_j(-d_ij / b_i))) = perplexity``.

    Bisection on ``log(1 / b_i)`` for a fixed ``n_steps``, bracketed relative to each row's
    range after shifting it by its smallest off-diagonal distance. The Gaussian
    calibration uses ``sigma_i^2 = b_i / 2``; the prior uses ``tau_i = b_i``.
    """
    be = _checks.backend_of(distances=distances)
    d = _square(be, distances, "distances")
    _check_perplexity(perplexity, "perplexity", d.shape[0])
    n_steps = _checks.check_count(n_steps, "n_steps", minimum=1)
    return _perplexity_scale(be, d, off_diagonal(be, rows(be, d), d), perplexity, n_steps)


def bandwidth(
    distances: Array,
    mode: Bandwidth = "perplexity",
    *,
    perplexity: float = 30.0,
    n_steps: int = 20,
    kind: Literal["features", "prior"] = "features",
) -> Array:
    """The bandwidth rule of ADC: sigma^2 (``kind="features"``) or tau (``"prior"``).

    ``mode`` is a float (returned as is), ``"median"`` (a 0-d array) or ``"perplexity"``
    (an (M, 1) array, one per anchor). Always under stop-gradient.
    """
    be = _checks.backend_of(distances=distances)
    d = _square(be, distances, "distances")
    mode = _check_mode(mode, "mode")
    if mode == "perplexity":
        _check_perplexity(perplexity, "perplexity", d.shape[0])
    n_steps = _checks.check_count(n_steps, "n_steps", minimum=1)
    if kind not in ("features", "prior"):
        raise ValueError(
            f"kind must be 'features' (sigma^2) or 'prior' (tau), got {kind!r}: pass one of them"
        )
    factor = 2.0 if kind == "features" else 1.0
    mask = off_diagonal(be, rows(be, d), d)
    return _resolve(be, d, mask, mode, perplexity, n_steps, factor=factor)


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


def calibration_distribution(distances: Array, sigma2: Array) -> Array:
    """Gaussian calibration target ``P^cal_ij = softmax_{j != i}(-d_ij / 2 sigma^2)``.

    (M, M), zero diagonal, rows summing to 1, stop-gradient. ``sigma2`` is a float, a 0-d
    array or an (M, 1) array of per-anchor values.
    """
    be = _checks.backend_of(distances=distances)
    d = _square(be, distances, "distances")
    return _calibration(be, d, off_diagonal(be, rows(be, d), d), sigma2)[1]


def data_distribution(distances: Array, sigma2: Array, rho: float = 3.0) -> Array:
    """Student-t data distribution ``Q_ij ∝ (1 + d_ij / (rho s^2))^(-(rho+1)/2)``.

    ``s^2 = rho sigma^2 / (rho - 2)`` (the variance-matched Student-t scale), normalised
    over j != i; requires ``rho > 2``. Differentiable in ``distances``.
    """
    be = _checks.backend_of(distances=distances)
    d = _square(be, distances, "distances")
    rho = _check_rho(rho)
    return _data(be, d, off_diagonal(be, rows(be, d), d), sigma2, rho)[1]


def prior_distribution(distances: Array, tau: Array) -> Array:
    """Prior neighbour distribution ``P^pre_ij = softmax_{j != i}(-r_ij / tau)``, sg."""
    be = _checks.backend_of(distances=distances)
    r = _square(be, distances, "distances")
    return _prior(be, r, off_diagonal(be, rows(be, r), r), tau)[1]


def anchor_weights(prior_probs: Array) -> Array:
    """``w_i = (1 / H(P^pre_i)) / mean_k (1 / H(P^pre_k))``: outlier anchors count less.

    An anchor whose prior neighbourhood is spread out (high entropy) is an outlier in
    input space. Entropies are clamped below at 1e-12, so a one-hot row is finite.
    Stop-gradient; shape (M,).
    """
    be = _checks.backend_of(prior_probs=prior_probs)
    p = _square(be, prior_probs, "prior_probs")
    xp = be.xp
    # The diagonal is left out: zeroed, it adds 0 log(1e-12) = 0 to the entropies.
    p = xp.where(off_diagonal(be, rows(be, p), p), p, 0.0)
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
    layout = _layout(be, rows(be, z_a), z_a)
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


def adc_parts(z_a: Array, z_b: Array, prior: Array, **settings: Any) -> ADCParts:
    """[`adc_loss`][glf_losses.adc.adc_loss] as ``ADCParts(dcm=nu * L_DCM, lpm=upsilon * L_LPM)``.

    ``settings`` are the fields of [`ADC`][glf_losses.adc.ADC], as in
    [`adc_loss`][glf_losses.adc.adc_loss]. For the
    unweighted terms use [`dcm`][glf_losses.adc.dcm] and [`lpm`][glf_losses.adc.lpm] (or ``nu=1,
    upsilon=1`` here, which
    shares the work between them).
    """
    return ADC(**settings).parts(z_a, z_b, prior)


def adc_loss(z_a: Array, z_b: Array, prior: Array, **settings: Any) -> Array:
    r"""ADC's term $\nu L_{\text{DCM}} + \upsilon L_{\text{LPM}}$, to add to any method's loss.

    $$
    L_{\text{DCM}} = \frac{1}{M}\sum_i w_i\,\mathrm{KL}(P^{\text{cal}}_{i\cdot}\,\Vert\,
    Q_{i\cdot}),\qquad L_{\text{LPM}} = \frac{1}{M}\sum_i
    \mathrm{KL}(P^{\text{pre}}_{i\cdot}\,\Vert\,
    Q_{i\cdot})
    $$

    over the M = 2N stacked rows (see the module docstring for the distributions).

    Args:
      z_a: (N, D) projections of view a (the online branch for BYOL).
      z_b: (N, D) projections of view b, the same shape as ``z_a``.
      prior: N rows of any trailing shape, integer or float: raw inputs (pixels 0..255
        work as they are) or frozen features. Flattened, cast to the projections' dtype,
        stacked for both views; no gradient flows into it.
      **settings: the fields of [`ADC`][glf_losses.adc.ADC] (``nu``, ``upsilon``, ``rho``,
        ``bandwidth``, ``prior_bandwidth``, ``perplexity``, ``prior_perplexity``,
        ``perplexity_steps``, ``normalize``, ``prior_other_view``), each with the meaning
        and default documented there. They are the one definition of ADC's settings:
        the framework front-ends, the jitted JAX function and the trainer's flags are
        derived from them.

    Returns:
      A 0-d array of the projections' framework (float32 for float16/bfloat16 inputs).

    Cost: $O(M^2 (D + P))$ time and $O(M^2)$ memory; the prior's distances are computed for
    N rows and tiled.

    References:
      Si, Wang and Qiang, "A Generalized Learning Framework for Self-Supervised
      Contrastive Learning", arXiv 2508.13596.

    Examples:
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
    return ADC(**settings).parts(z_a, z_b, prior).total


def dcm(z_a: Array, z_b: Array, prior: Array, **settings: Any) -> Array:
    """The unweighted ``L_DCM`` (the prior supplies the anchor weights).

    ``settings`` as in [`adc_loss`][glf_losses.adc.adc_loss] (``nu`` and ``upsilon`` excluded).
    """
    return ADC(**settings, nu=1.0, upsilon=0.0).parts(z_a, z_b, prior).dcm


def lpm(z_a: Array, z_b: Array, prior: Array, **settings: Any) -> Array:
    """The unweighted ``L_LPM``. ``settings`` as in [`adc_loss`][glf_losses.adc.adc_loss]."""
    return ADC(**settings, nu=0.0, upsilon=1.0).parts(z_a, z_b, prior).lpm


def _help(sentence: str) -> dict[str, str]:
    return {"help": sentence}


@dataclass(frozen=True)
class ADC:
    """ADC's settings, the one definition of them, bound and validated once.

    [`adc_loss`][glf_losses.adc.adc_loss] and [`adc_parts`][glf_losses.adc.adc_parts] take these
    fields as keyword arguments; the
    framework front-ends take an ``ADC`` as ``adc=``; the jitted JAX front-end treats it
    as a static argument; the trainer derives its ``--adc-*`` flags from the fields.
    Values are checked when the object is made (errors name the field); what depends on
    the batch (the perplexity against the number of rows) is checked when it is called.
    Frozen and hashable, so it can be a static argument of ``jax.jit``.

    Examples:
      >>> import numpy as np
      >>> from glf_losses.adc import ADC
      >>> adc = ADC(upsilon=1.0, perplexity=4.0)
      >>> z = np.random.default_rng(0).normal(size=(8, 4))
      >>> bool(np.isfinite(adc(z, z[::-1], z)))
      True
    """

    # Each field's help sentence travels with it: the trainer's --adc-* flags print it.
    nu: float = field(default=1.0, metadata=_help("weight of DCM, the calibration term (>= 0)"))
    upsilon: float = field(default=10.0, metadata=_help("weight of LPM, the prior term (>= 0)"))
    rho: float = field(
        default=3.0, metadata=_help("degrees of freedom of the Student-t data distribution (> 2)")
    )
    bandwidth: Bandwidth = field(default="perplexity", metadata=_help(
        "sigma^2 of the features: a positive number, 'median' (half the median off-diagonal "
        "distance) or 'perplexity' (per anchor, by bisection)"
    ))
    prior_bandwidth: Bandwidth = field(default="perplexity", metadata=_help(
        "tau of the prior: a positive number, 'median' or 'perplexity'"
    ))
    perplexity: float = field(default=30.0, metadata=_help(
        "target perplexity of the feature distributions, in (1, M - 1] for M = 2N rows"
    ))
    prior_perplexity: float | None = field(default=None, metadata=_help(
        "target perplexity of the prior (default: perplexity)"
    ))
    perplexity_steps: int = field(default=20, metadata=_help(
        "bisection steps of the 'perplexity' rule (20 reach about 1e-5)"
    ))
    normalize: bool = field(default=True, metadata=_help(
        "L2-normalise the projections before taking distances"
    ))
    prior_other_view: bool = field(default=False, metadata=_help(
        "count each anchor's other view (at prior distance 0) in its prior neighbourhood; off "
        "by default, which makes the prior's perplexity lie in (1, M - 2]"
    ))

    def __post_init__(self) -> None:
        checked = {
            "nu": _checks.check_nonnegative(self.nu, "nu"),
            "upsilon": _checks.check_nonnegative(self.upsilon, "upsilon"),
            "rho": _check_rho(self.rho),
            "bandwidth": _check_mode(self.bandwidth, "bandwidth"),
            "prior_bandwidth": _check_mode(self.prior_bandwidth, "prior_bandwidth"),
            "perplexity": _check_perplexity_value(self.perplexity, "perplexity"),
            "prior_perplexity": None if self.prior_perplexity is None
            else _check_perplexity_value(self.prior_perplexity, "prior_perplexity"),
            "perplexity_steps": _checks.check_count(
                self.perplexity_steps, "perplexity_steps", minimum=1
            ),
            "normalize": _checks.check_bool(self.normalize, "normalize"),
            "prior_other_view": _checks.check_bool(self.prior_other_view, "prior_other_view"),
        }
        # Plain Python values (NumPy scalars become floats and bools), so that equal
        # settings hash equal and a jitted function compiles once for them.
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @classmethod
    def for_method(cls, method: str, **settings: Any) -> ADC:
        """ADC with the weights [`method_weights`][glf_losses.adc.method_weights] recommends for
        ``method``;
        ``settings`` set any field, the weights included."""
        nu, upsilon = method_weights(method)
        return cls(**{"nu": nu, "upsilon": upsilon, **settings})

    def parts(self, z_a: Array, z_b: Array, prior: Array) -> ADCParts:
        """``ADCParts(dcm=nu * L_DCM, lpm=upsilon * L_LPM)`` of a batch."""
        be, z_a, z_b = _pair(z_a, z_b, prior=prior)
        # M, where the batch size is static: an unknown one (None) leaves the perplexities'
        # upper bounds unchecked, as only the run-time batch knows them.
        n = z_a.shape[0]
        m = None if n is None else 2 * n * be.shard(z_a)[0]
        e = _flat_prior(be, prior, z_a, "prior")
        if self.bandwidth == "perplexity":
            _check_perplexity(self.perplexity, "perplexity", m)
        prior_perplexity = self.perplexity if self.prior_perplexity is None \
            else self.prior_perplexity
        if self.prior_bandwidth == "perplexity":
            # Without the other view a prior row has M - 2 candidates, not M - 1. Name the
            # argument the value came from: prior_perplexity defaults to perplexity.
            candidates = None if m is None else m - 1 if self.prior_other_view else m - 2
            name = "perplexity" if self.prior_perplexity is None else "prior_perplexity"
            _check_perplexity(prior_perplexity, name, m, candidates)
        return _adc(
            be, z_a, z_b, e, nu=self.nu, upsilon=self.upsilon, rho=self.rho,
            bandwidth=self.bandwidth, prior_bandwidth=self.prior_bandwidth,
            perplexity=self.perplexity, prior_perplexity=prior_perplexity,
            perplexity_steps=self.perplexity_steps, normalize=self.normalize,
            prior_other_view=self.prior_other_view,
        )

    def __call__(self, z_a: Array, z_b: Array, prior: Array) -> Array:
        """``nu * L_DCM + upsilon * L_LPM`` of a batch: [`adc_loss`][glf_losses.adc.adc_loss] with
        these settings."""
        return self.parts(z_a, z_b, prior).total

    def settings(self) -> dict[str, Any]:
        """The fields as a dict (the keyword arguments of [`adc_loss`][glf_losses.adc.adc_loss])."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


# --- weights per method -------------------------------------------------------------------


def method_weights(method: str) -> tuple[float, float]:
    """The ``(nu, upsilon)`` recommended for ADC beside ``method`` (its registry entry's).

    ``(1, 10)`` (the defaults of [`ADC`][glf_losses.adc.ADC]) for ``"byol"``, ``"swav"`` and
    ``"simclr"``; ``(100, 1000)`` for ``"barlow_twins"``, whose loss is two orders of
    magnitude larger, so that ADC's share of the gradient is comparable (measured at
    D = 128; Barlow Twins' loss grows with D, so check the share at other widths with
    ``studies/adc.py --tier shares``).

    Examples:
      >>> from glf_losses import adc
      >>> adc.method_weights("barlow_twins")
      (100.0, 1000.0)
    """
    from glf_losses import registry  # the registry imports the methods, which import ADC

    return registry.get(method).adc_weights


# --- validation ---------------------------------------------------------------------------


def _pair(z_a: Any, z_b: Any, prior: Any = None) -> tuple[ModuleType, Any, Any]:
    be = _checks.backend_of(z_a=z_a, z_b=z_b, prior=prior)
    _checks.same_shape(z_a, z_b, "z_a", "z_b")
    z_a, z_b = _checks.float_matrices(be, z_a=z_a, z_b=z_b, min_rows=2)
    return be, z_a, z_b


def _flat_prior(be: ModuleType, prior: Any, like: Any, name: str) -> Any:
    xp = be.xp
    shape = _checks.shape_of(prior)
    if len(shape) < 1:
        raise ValueError(
            f"{name} must have one row per sample, got a 0-d array: pass the batch's inputs "
            "or frozen features, shape (N, ...)"
        )
    n = shape[0]
    if like is not None and None not in (n, like.shape[0]) and n != like.shape[0]:
        raise ValueError(
            f"{name} must have N = {like.shape[0]} rows (one per sample of z_a), got "
            f"{shape[0]} (shape {shape}): pass the prior of the same batch, not of both views"
        )
    floating = _checks.is_real_floating(xp, prior.dtype)
    if not floating and not xp.isdtype(prior.dtype, ("integral", "bool")):
        raise TypeError(
            f"{name} must have a real or integer dtype, got {prior.dtype}: cast it to float32"
        )
    flat = prior
    if len(shape) != 2:
        features = shape[1:]
        if n is None and None not in features:
            # Keeps the static width where only the batch size is unknown.
            flat = xp.reshape(prior, (-1, math.prod(features)))  # type: ignore[arg-type]
        else:
            flat = xp.reshape(prior, (rows(be, prior), -1))
    target = like.dtype if like is not None else _checks.compute_dtype(xp, prior.dtype)
    if not floating:
        target = like.dtype if like is not None else xp.float32
    return flat if flat.dtype == target else xp.astype(flat, target)


def _square(be: ModuleType, x: Any, name: str) -> Any:
    x = _checks.float_matrix(be, x, name, min_rows=2)
    rows, cols = _checks.shape_of(x)
    if rows != cols:
        raise ValueError(
            f"{name} must be a square (M, M) matrix, got shape {(rows, cols)}: pass the "
            "distances of the stacked rows to each other (feature_distances, prior_distances)"
        )
    return x


def _check_rho(rho: Any) -> float:
    rho = _checks.check_finite_number(rho, "rho")
    if rho <= 2:
        raise ValueError(
            f"rho must be > 2 (the Student-t needs a finite variance), got {rho}: pass "
            "rho=3.0 (the default) or another value above 2"
        )
    return rho


def _check_mode(mode: Any, name: str) -> Bandwidth:
    if isinstance(mode, str):
        if mode not in ("median", "perplexity"):
            raise ValueError(
                f"{name} must be a positive float, 'median' or 'perplexity', got {mode!r}: "
                "pass one of them"
            )
        return mode  # type: ignore[return-value]
    return _checks.check_positive(mode, name)


def _check_perplexity_value(value: Any, name: str) -> float:
    """A perplexity is an effective neighbour count: a finite number above 1."""
    value = _checks.check_finite_number(value, name)
    if not value > 1:
        raise ValueError(f"{name} must be > 1 (an effective number of neighbours), got {value}")
    return value


def _check_perplexity(
    value: Any, name: str, m: int | None, candidates: int | None = None
) -> None:
    """A perplexity is an effective neighbour count: more than 1, at most the row's
    candidates (M - 1, or M - 2 for a prior row without the anchor's other view).

    ``m`` is None where the batch size is known only at run time: then only the lower
    bound can be checked."""
    value = _check_perplexity_value(value, name)
    if m is None:
        return
    candidates = m - 1 if candidates is None else candidates
    if not value <= candidates:
        why = "" if candidates == m - 1 else (
            " when the prior leaves out each anchor's other view (prior_other_view=False)"
        )
        # The smallest batch whose rows have `value` candidates: M - (m - candidates) >= value.
        n_min = math.ceil((value + m - candidates) / 2)
        if value > candidates:
            # A prior perplexity defaults to the features'; set the prior's on its own.
            arg = "prior_perplexity=" if name == "perplexity" and why else f"{name}="
            fix = (
                f": pass {arg} at most {candidates}, use a batch of at least {n_min} samples "
                "(M = 2N), or 'median' bandwidths, which have no such bound"
            )
        else:
            fix = f": pass {name}= above 1 (an effective number of neighbours)"
        raise ValueError(
            f"{name} must lie in (1, M - {m - candidates}] = (1, {candidates}] for M = {m} "
            f"stacked rows{why}, got {value}{fix}"
        )
