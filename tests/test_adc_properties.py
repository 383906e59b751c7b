"""Properties of ADC that hold whatever the backend, and how it fails on bad input.

- invariances: permuting the samples together with their priors, or swapping the two
  views, leaves L_DCM and L_LPM unchanged;
- L_DCM >= 0 and L_LPM >= 0;
- the "perplexity" rule reaches the requested perplexity, for the features and the prior;
- finite values and gradients on degenerate batches (duplicates, identical rows, zero
  rows, N = 2, identical, one-hot and large priors, half-precision inputs);
- one gradient step pulls prior-space neighbours together relative to far samples;
- zero weights give exactly zero; parts, unweighted terms, ``ADC``, ``with_adc`` and the
  torch front-ends compose exactly as documented; the median bandwidth is numpy's;
- bad arguments raise errors that name them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import glf_losses
from glf_losses import adc
from glf_losses.testing import (
    assert_close,
    available_backends,
    batch_pairs,
    dtype_name,
    supports_dtype,
    to_backend,
    to_numpy,
    value_and_grad,
)

AUTODIFF = available_backends(autodiff_only=True)
MODES = ("float", "median", "perplexity")


def stacked_prior_distances(prior: np.ndarray) -> np.ndarray:
    e = np.asarray(prior, dtype=np.float64).reshape(len(prior), -1)
    e = np.concatenate([e, e])
    return np.sum((e[:, None, :] - e[None, :, :]) ** 2, axis=-1)


def offdiag(dist: np.ndarray) -> np.ndarray:
    return dist[~np.eye(len(dist), dtype=bool)]


def rule(mode: str, prior: np.ndarray, m: int, perplexity: float | None = None) -> dict:
    """Keyword arguments selecting a bandwidth rule for both distributions.

    A float prior bandwidth is taken relative to the prior's distances (raw pixels and
    unit-scale features differ by orders of magnitude); a perplexity defaults to the
    largest allowed below 5.
    """
    if mode == "float":
        half_median = float(np.median(offdiag(stacked_prior_distances(prior)))) / 2.0
        return {"bandwidth": 0.5, "prior_bandwidth": max(half_median, 1e-3)}
    if mode == "median":
        return {"bandwidth": "median", "prior_bandwidth": "median"}
    if perplexity is None:
        perplexity = min(5.0, m - 1.0)
    # By default a prior row leaves out the anchor's other view: one candidate fewer.
    return {"bandwidth": "perplexity", "prior_bandwidth": "perplexity",
            "perplexity": perplexity, "prior_perplexity": min(perplexity, m - 2.0)}


@st.composite
def batches(
    draw: st.DrawFn, max_n: int = 10, min_d: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z_a, z_b, prior): views from the shared strategy and a float or integer prior."""
    z_a, z_b = draw(batch_pairs(min_d=min_d, max_n=max_n, max_d=6), label="views")
    n = len(z_a)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="prior seed"))
    kind = draw(st.sampled_from(["pixels", "float"]), label="prior kind")
    if kind == "pixels":
        prior = rng.integers(0, 256, size=(n, 1, 3, 3)).astype(np.uint8)
    else:
        prior = rng.standard_normal((n, 4))
    return z_a, z_b, prior


def perplexities(m: int) -> st.SearchStrategy[float]:
    return st.floats(1.0, m - 1.0, exclude_min=True)


# --- invariances and signs ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@given(batch=batches(), data=st.data())
def test_permuting_samples_or_swapping_views_leaves_terms_unchanged(
    mode: str, batch: tuple[np.ndarray, ...], data: st.DataObject
):
    z_a, z_b, prior = batch
    n = len(z_a)
    kwargs = rule(mode, prior, 2 * n, data.draw(perplexities(2 * n), label="perplexity"))
    perm = np.array(data.draw(st.permutations(range(n)), label="permutation"))
    want = glf_losses.adc_parts(z_a, z_b, prior, nu=1.0, upsilon=1.0, **kwargs)
    permuted = glf_losses.adc_parts(
        z_a[perm], z_b[perm], prior[perm], nu=1.0, upsilon=1.0, **kwargs
    )
    swapped = glf_losses.adc_parts(z_b, z_a, prior, nu=1.0, upsilon=1.0, **kwargs)
    for name, w, p, s in zip(want._fields, want, permuted, swapped, strict=True):
        assert_close(p, w, "float64", scale=1.0, err_msg=f"{name}, samples permuted")
        assert_close(s, w, "float64", scale=1.0, err_msg=f"{name}, views swapped")


@pytest.mark.parametrize("mode", MODES)
@given(batch=batches(), data=st.data())
def test_both_terms_are_nonnegative(mode: str, batch: tuple[np.ndarray, ...], data):
    z_a, z_b, prior = batch
    m = 2 * len(z_a)
    kwargs = rule(mode, prior, m, data.draw(perplexities(m), label="perplexity"))
    rho = data.draw(st.floats(2.05, 20.0), label="rho")
    parts = glf_losses.adc_parts(z_a, z_b, prior, rho=rho, **kwargs)
    assert float(parts.dcm) >= 0.0
    assert float(parts.lpm) >= 0.0


# --- the perplexity rule ------------------------------------------------------------------


def row_perplexities(p: Any) -> np.ndarray:
    p = np.asarray(to_numpy(p), dtype=np.float64)
    safe = np.where(p > 0.0, p, 1.0)
    return np.exp(-np.sum(p * np.log(safe), axis=1))


# At D = 1 normalised rows are +-1 and every distance is 0 or 4: ties that no bandwidth
# can separate, so a low perplexity may be out of reach. From D = 2 on, no ties.
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@given(batch=batches(max_n=16, min_d=2), data=st.data())
def test_perplexity_bandwidths_reach_the_requested_perplexity(
    dtype: str, batch: tuple[np.ndarray, ...], data: st.DataObject
):
    z_a, z_b, prior = batch
    m = 2 * len(z_a)
    target = data.draw(perplexities(m), label="perplexity")
    prior_target = data.draw(perplexities(m), label="prior_perplexity")
    za, zb = to_backend("numpy", z_a, dtype), to_backend("numpy", z_b, dtype)
    pr = to_backend("numpy", prior, dtype if prior.dtype.kind == "f" else None)

    d = adc.feature_distances(za, zb)
    b = adc.perplexity_bandwidth(d, target)
    reached = row_perplexities(adc.calibration_distribution(d, b / 2.0))
    np.testing.assert_allclose(reached, target, rtol=1e-3, err_msg="features")
    # The rule the loss uses (sigma^2 = b / 2) is the same bandwidth.
    sigma2 = adc.bandwidth(d, "perplexity", perplexity=target)
    assert_close(sigma2, to_numpy(b) / 2.0, dtype, rtol=0.0, atol=0.0)

    r = adc.prior_distances(pr)
    tau = adc.perplexity_bandwidth(r, prior_target)
    reached = row_perplexities(adc.prior_distribution(r, tau))
    np.testing.assert_allclose(reached, prior_target, rtol=1e-3, err_msg="prior")
    tau_rule = adc.bandwidth(r, "perplexity", perplexity=prior_target, kind="prior")
    assert_close(tau_rule, tau, dtype, rtol=0.0, atol=0.0)


# --- degenerate batches -------------------------------------------------------------------


def _degenerate_cases() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, str, dict]]:
    """name -> (z_a, z_b, prior, dtype of z, extra keyword arguments)."""
    rng = np.random.default_rng(11)
    n, d = 4, 3
    z = rng.standard_normal((n, d))
    z_b = z + 0.3 * rng.standard_normal((n, d))
    prior = rng.standard_normal((n, 5))
    dup_a, dup_b, dup_prior = z.copy(), z_b.copy(), prior.copy()
    dup_a[1], dup_b[1], dup_prior[1] = dup_a[0], dup_b[0], dup_prior[0]
    dup_b[2] = dup_a[2]  # a sample whose two views coincide
    same = np.tile(z[:1], (n, 1))
    labels = np.array([0, 1, 1, 2])
    return {
        "duplicate rows": (dup_a, dup_b, dup_prior, "float64", {}),
        "identical feature rows": (same, same.copy(), prior, "float64", {}),
        "zero feature rows": (np.zeros((n, d)), np.zeros((n, d)), prior, "float64", {}),
        "N = 2": (z[:2], z_b[:2], prior[:2], "float64", {}),
        "identical priors": (z, z_b, np.tile(prior[:1], (n, 1)), "float64", {}),
        "one-hot priors": (z, z_b, np.eye(3)[labels], "float64", {}),
        # tau far below every prior distance: each P^pre row is one-hot on the sample's
        # other view, its entropy 0 and its anchor weight at the clamp.
        "one-hot prior distributions": (z, z_b, prior, "float64", {"prior_bandwidth": 1e-9}),
        "pixels 0 and 255": (
            z, z_b, (255 * rng.integers(0, 2, size=(n, 1, 8, 8))).astype(np.uint8),
            "float32", {},
        ),
        "prior of magnitude 1e4": (
            z, z_b, 1e4 + 1e4 * rng.standard_normal((n, 5)), "float32", {},
        ),
        "float16 inputs": (z, z_b, prior, "float16", {}),
        "bfloat16 inputs": (z, z_b, prior, "bfloat16", {}),
    }


DEGENERATE = _degenerate_cases()


def _as_bfloat16(x: Any) -> Any:
    """Cast a framework array to bfloat16 inside the differentiated function, so that the
    gradient with respect to the float32 input flows through the cast (NumPy has no
    bfloat16 to hand over)."""
    module = type(x).__module__.split(".", 1)[0]
    if module == "torch":
        import torch

        return x.to(torch.bfloat16)
    if module in ("jax", "jaxlib"):
        import jax.numpy as jnp

        return x.astype(jnp.bfloat16)
    import tensorflow as tf

    return tf.cast(x, tf.bfloat16)


def _bfloat16_loss(z_a: Any, z_b: Any, prior: Any, **kwargs: Any) -> Any:
    return glf_losses.adc_loss(_as_bfloat16(z_a), _as_bfloat16(z_b), prior, **kwargs)


@pytest.mark.parametrize("name", list(DEGENERATE))
@pytest.mark.parametrize("backend_name", AUTODIFF)
def test_degenerate_batches_give_finite_values_and_gradients(backend_name: str, name: str):
    z_a, z_b, prior, dtype, extra = DEGENERATE[name]
    m = 2 * len(z_a)
    fn, input_dtype = glf_losses.adc_loss, dtype
    if dtype == "bfloat16":
        fn, input_dtype = _bfloat16_loss, "float32"
    inputs = [x.astype(input_dtype) for x in (z_a, z_b)]
    for mode in MODES:
        kwargs = {**rule(mode, prior, m), **extra}
        value, grads = value_and_grad(
            backend_name, fn, *inputs, prior, argnums=(0, 1), **kwargs
        )
        what = f"{name}, {mode}, {backend_name}"
        assert math.isfinite(value) and value >= 0.0, f"{what}: loss {value}"
        for g in grads:
            assert g.dtype == np.dtype(input_dtype), what
            assert np.all(np.isfinite(g)), f"{what}: gradient {g}"


@pytest.mark.parametrize("name", list(DEGENERATE))
def test_degenerate_batches_give_finite_nonnegative_parts_in_numpy(name: str):
    z_a, z_b, prior, dtype, extra = DEGENERATE[name]
    if dtype == "bfloat16":
        dtype = "float32"  # NumPy has no bfloat16; the case still runs at float32
    for mode in MODES:
        kwargs = {**rule(mode, prior, 2 * len(z_a)), **extra}
        parts = glf_losses.adc_parts(z_a.astype(dtype), z_b.astype(dtype), prior, **kwargs)
        for part in parts:
            assert np.isfinite(part) and part >= 0.0, f"{name}, {mode}: {parts}"


HALF_CASES = [
    (name, half)
    for name in available_backends()
    for half in ("float16", "bfloat16")
    if supports_dtype(name, half)
]


@pytest.mark.parametrize(("backend_name", "half"), HALF_CASES)
def test_half_precision_inputs_compute_in_float32(backend_name: str, half: str):
    rng = np.random.default_rng(5)
    z_a, z_b = rng.standard_normal((2, 4, 3))
    prior = rng.integers(0, 256, size=(4, 6)).astype(np.uint8)
    xs = [to_backend(backend_name, x, half) for x in (z_a, z_b)]
    # The reference sees exactly the rounded inputs.
    rounded = [to_numpy(x).astype(np.float64) for x in xs]
    pr = to_backend(backend_name, prior)
    for mode in MODES:
        kwargs = rule(mode, prior, 8)
        got = glf_losses.adc_parts(*xs, pr, **kwargs)
        want = glf_losses.adc_parts(*rounded, prior, **kwargs)
        for g, w in zip(got, want, strict=True):
            assert dtype_name(g) == "float32"
            assert_close(g, w, half, scale=1.0, err_msg=f"{half} {mode}")


# --- what a gradient step does ------------------------------------------------------------


def _log_neighbour_ratio(z_a: np.ndarray, z_b: np.ndarray, prior: np.ndarray) -> float:
    """Mean over anchors of log(d(anchor, nearest prior neighbour) / d(anchor, farthest)).

    Neighbours exclude the anchor's own other view (at prior distance 0 by construction).
    A sample and its other view tie in prior space, so both count, averaged.
    """
    n = len(z_a)
    d = np.asarray(to_numpy(adc.feature_distances(z_a, z_b)))
    r = stacked_prior_distances(prior)
    logs = []
    for i in range(2 * n):
        js = np.array([j for j in range(2 * n) if j % n != i % n])
        near = js[r[i, js] == r[i, js].min()]
        far = js[r[i, js] == r[i, js].max()]
        logs.append(math.log(d[i, near].mean() / d[i, far].mean()))
    return float(np.mean(logs))


@pytest.mark.parametrize("mode", MODES)
def test_a_gradient_step_pulls_prior_neighbours_together(mode: str):
    # Two tight clusters in prior space, unrelated features: ADC should move every
    # anchor's feature toward its prior-space neighbours relative to the other cluster.
    # Averaged over anchors and seeds: a single random batch can go the other way
    # through the Student-t's repulsion between features that happen to be close.
    if not AUTODIFF:
        pytest.skip("no framework with automatic differentiation is installed")
    name = AUTODIFF[0]
    n, d = 4, 3
    changes = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        centres = np.where((np.arange(n) % 2 == 1)[:, None], 5.0, -5.0)
        prior = centres + 0.1 * rng.standard_normal((n, 5))
        z_a = rng.standard_normal((n, d))
        z_b = z_a + 0.3 * rng.standard_normal((n, d))
        kwargs = rule(mode, prior, 2 * n, perplexity=3.0)
        value, (g_a, g_b) = value_and_grad(
            name, glf_losses.adc_loss, z_a, z_b, prior, argnums=(0, 1), **kwargs
        )
        # A step of 0.1% of the features' norm: small enough to be first order.
        step = 1e-3 * math.sqrt(np.sum(z_a**2) + np.sum(z_b**2))
        step /= math.sqrt(np.sum(g_a**2) + np.sum(g_b**2))
        new_a, new_b = z_a - step * g_a, z_b - step * g_b
        assert float(glf_losses.adc_loss(new_a, new_b, prior, **kwargs)) < value
        changes.append(
            _log_neighbour_ratio(new_a, new_b, prior) - _log_neighbour_ratio(z_a, z_b, prior)
        )
    assert np.mean(changes) < 0.0, changes


# --- exact compositions ---------------------------------------------------------------------


def _small_batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    z_a = rng.standard_normal((4, 3))
    return z_a, z_a + 0.4 * rng.standard_normal((4, 3)), rng.standard_normal((4, 5))


@pytest.mark.parametrize("backend_name", AUTODIFF)
def test_zero_weights_give_zero_loss_and_exactly_zero_gradient(backend_name: str):
    z_a, z_b, prior = _small_batch()
    for mode in MODES:
        kwargs = {**rule(mode, prior, 8), "nu": 0.0, "upsilon": 0.0}
        value, grads = value_and_grad(
            backend_name, glf_losses.adc_loss, z_a, z_b, prior, argnums=(0, 1), **kwargs
        )
        assert value == 0.0, mode
        for g in grads:
            assert np.all(g == 0.0), f"{mode}: {g}"
        assert float(glf_losses.adc_loss(z_a, z_b, prior, **kwargs)) == 0.0


def test_parts_terms_and_weights_compose(backend: str):
    z_a, z_b, prior = _small_batch()
    xs = [to_backend(backend, a) for a in (z_a, z_b, prior)]
    for mode in MODES:
        kwargs = rule(mode, prior, 8)
        parts = glf_losses.adc_parts(*xs, nu=2.5, upsilon=0.4, **kwargs)
        assert isinstance(parts, glf_losses.ADCParts)
        loss = glf_losses.adc_loss(*xs, nu=2.5, upsilon=0.4, **kwargs)
        assert dtype_name(loss) == "float64"
        assert_close(loss, to_numpy(parts.dcm) + to_numpy(parts.lpm), "float64", scale=1.0,
                     err_msg=f"{mode}: adc_parts sums to adc_loss")
        assert_close(parts.total, to_numpy(loss), "float64", scale=1.0)
        unit = glf_losses.adc_parts(*xs, nu=1.0, upsilon=1.0, **kwargs)
        dcm, lpm = adc.dcm(*xs, **kwargs), adc.lpm(*xs, **kwargs)
        assert_close(dcm, to_numpy(unit.dcm), "float64", scale=1.0, err_msg=f"{mode}: dcm")
        assert_close(lpm, to_numpy(unit.lpm), "float64", scale=1.0, err_msg=f"{mode}: lpm")
        assert_close(parts.dcm, 2.5 * to_numpy(dcm), "float64", scale=1.0,
                     err_msg=f"{mode}: nu scales L_DCM")
        assert_close(parts.lpm, 0.4 * to_numpy(lpm), "float64", scale=1.0,
                     err_msg=f"{mode}: upsilon scales L_LPM")
        # Both terms carry weight in this batch, so the checks above can tell them apart.
        assert float(to_numpy(dcm)) > 1e-6 and float(to_numpy(lpm)) > 1e-6


def test_adc_object_binds_the_hyperparameters():
    z_a, z_b, prior = _small_batch()
    kwargs = {"nu": 0.3, "upsilon": 4.0, "rho": 5.0, "bandwidth": "median",
              "prior_bandwidth": "perplexity", "perplexity": 3.0, "prior_perplexity": 2.0,
              "perplexity_steps": 12, "normalize": False}
    bound = glf_losses.ADC(**kwargs)
    assert bound(z_a, z_b, prior) == glf_losses.adc_loss(z_a, z_b, prior, **kwargs)
    assert bound.parts(z_a, z_b, prior) == glf_losses.adc_parts(z_a, z_b, prior, **kwargs)
    # Each field matters: changing one changes the result.
    for field, other in [("rho", 3.0), ("normalize", True), ("prior_perplexity", 4.0)]:
        changed = glf_losses.ADC(**{**kwargs, field: other})
        assert changed(z_a, z_b, prior) != bound(z_a, z_b, prior), field


def _tied_distances(rng: np.random.Generator, m: int) -> np.ndarray:
    """A symmetric (m, m) matrix of small integers: many ties, zero diagonal."""
    upper = np.triu(rng.integers(0, 4, size=(m, m)).astype(np.float64), 1)
    return upper + upper.T


def test_median_bandwidth_is_half_numpys_median_of_the_off_diagonal(backend: str):
    rng = np.random.default_rng(4)
    z_a, z_b = rng.standard_normal((2, 5, 3))
    binary_prior = rng.integers(0, 2, size=(5, 3)).astype(np.int64)
    cases = {
        "feature distances": to_numpy(adc.feature_distances(z_a, z_b)),
        "prior distances, ties": stacked_prior_distances(binary_prior),
        "small integers, ties": _tied_distances(rng, 7),
        "asymmetric": np.abs(rng.standard_normal((6, 6))) * (1 - np.eye(6)),
    }
    for name, dist in cases.items():
        got = adc.median_bandwidth(to_backend(backend, dist))
        assert tuple(got.shape) == ()
        want = np.median(offdiag(dist)) / 2.0
        assert_close(got, want, "float64", err_msg=name)
    # The rule as the loss applies it to the prior.
    r = adc.prior_distances(to_backend(backend, binary_prior))
    want = np.median(offdiag(stacked_prior_distances(binary_prior))) / 2.0
    assert_close(adc.median_bandwidth(r), want, "float32", err_msg="prior_distances")
    # All distances zero: the clamp keeps the bandwidth positive.
    assert float(to_numpy(adc.median_bandwidth(to_backend(backend, np.zeros((4, 4)))))) == 1e-12


# --- plugging ADC into a method -------------------------------------------------------------


def test_with_adc_adds_exactly_adc_to_the_constraining_part():
    z_a, z_b, prior = _small_batch()
    bound = glf_losses.ADC(perplexity=4.0, upsilon=3.0)
    for method in (glf_losses.simclr_parts, glf_losses.barlow_twins_parts):
        parts = method(z_a, z_b)
        out = glf_losses.with_adc(parts, bound, z_a, z_b, prior)
        assert isinstance(out, glf_losses.GLFParts)
        assert out.align == parts.align
        assert out.constrain == parts.constrain + bound(z_a, z_b, prior)
        assert glf_losses.with_adc(parts, None, z_a, z_b, None) is parts
        with pytest.raises(ValueError, match="prior"):
            glf_losses.with_adc(parts, bound, z_a, z_b, None)


def test_torch_front_ends_add_adc_and_backpropagate():
    torch = pytest.importorskip("torch")
    from glf_losses.backends import torch as tb

    rng = np.random.default_rng(8)
    n, d = 6, 4
    views = [torch.tensor(rng.standard_normal((n, d))) for _ in range(4)]
    prior = torch.tensor(rng.integers(0, 256, size=(n, 1, 4, 4)).astype(np.uint8))
    bound = glf_losses.ADC(perplexity=4.0, upsilon=2.0, prior_bandwidth="median")
    swav = tb.SwAVLoss(d, 5).double()
    swav_with = tb.SwAVLoss(d, 5, adc=bound).double()
    swav_with.load_state_dict(swav.state_dict())
    # (name, base, with ADC, arguments); ADC acts on the first two arguments, which for
    # BYOL are the online predictions, the only outputs with gradient.
    cases = [
        ("BarlowTwinsLoss", tb.BarlowTwinsLoss(lambd=0.01),
         tb.BarlowTwinsLoss(lambd=0.01, adc=bound), views[:2]),
        ("SimCLRLoss", tb.SimCLRLoss(0.3), tb.SimCLRLoss(0.3, adc=bound), views[:2]),
        ("BYOLLoss", tb.BYOLLoss(), tb.BYOLLoss(adc=bound), views),
        ("SwAVLoss", swav, swav_with, views[:2]),
    ]
    for name, base, with_adc, args in cases:
        leaves = [a.clone().requires_grad_(True) for a in args]
        loss = with_adc(*leaves, prior=prior)
        loss.backward()
        ref_leaves = [a.clone().requires_grad_(True) for a in args]
        want = base(*ref_leaves) + glf_losses.adc_loss(
            ref_leaves[0], ref_leaves[1], prior, **bound.__dict__
        )
        want.backward()
        assert_close(loss, to_numpy(want), "float64", scale=1.0, err_msg=name)
        assert float(to_numpy(loss - base(*args))) > 1e-6, f"{name}: ADC added nothing"
        for k, (leaf, ref) in enumerate(zip(leaves, ref_leaves, strict=True)):
            if ref.grad is None:  # BYOL's targets are behind a stop-gradient
                assert leaf.grad is None or not torch.any(leaf.grad), f"{name} arg {k}"
                continue
            assert_close(leaf.grad, to_numpy(ref.grad), "float64",
                         err_msg=f"{name} d/d(arg {k})")
        with pytest.raises(ValueError, match="prior"):
            with_adc(*args)
    module = tb.ADCLoss(bound)
    assert_close(module(views[0], views[1], prior),
                 to_numpy(bound(views[0], views[1], prior)), "float64")


# --- bad input ------------------------------------------------------------------------------


def _call(fn: Any = glf_losses.adc_loss, **overrides: Any) -> Any:
    """``fn`` on a valid small batch with ``overrides`` the only departure from it."""
    z_a, z_b, prior = _small_batch()
    args = {"z_a": z_a, "z_b": z_b, "prior": prior, "perplexity": 3.0, **overrides}
    return fn(args.pop("z_a"), args.pop("z_b"), args.pop("prior"), **args)


M = 8  # 2 N for _small_batch


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"prior": np.zeros((5, 5))}, r"^prior"),
        ({"prior": np.zeros((3, 5))}, r"^prior"),
        ({"prior": np.float64(1.0)}, r"^prior"),
        ({"rho": 2.0}, r"^rho"),
        ({"rho": 1.0}, r"^rho"),
        ({"rho": -3.0}, r"^rho"),
        ({"nu": -0.1}, r"^nu"),
        ({"upsilon": -1.0}, r"^upsilon"),
        ({"bandwidth": "mean"}, r"^bandwidth"),
        ({"bandwidth": 0.0}, r"^bandwidth"),
        ({"bandwidth": -1.0}, r"^bandwidth"),
        ({"prior_bandwidth": "auto"}, r"^prior_bandwidth"),
        ({"prior_bandwidth": 0.0}, r"^prior_bandwidth"),
        ({"prior_bandwidth": -2.0}, r"^prior_bandwidth"),
        ({"perplexity": 1.0}, r"^perplexity"),
        ({"perplexity": 0.5}, r"^perplexity"),
        ({"perplexity": M - 1 + 1e-6}, r"^perplexity"),
        ({"perplexity": 30.0}, r"^perplexity"),  # the default, above M - 1 here
        ({"perplexity": math.nan}, r"^perplexity"),
        ({"perplexity": 3.0, "prior_perplexity": 1.0}, r"^prior_perplexity"),
        ({"perplexity": 3.0, "prior_perplexity": float(M)}, r"^prior_perplexity"),
        # Without the anchor's other view (the default) a prior row has M - 2 candidates.
        ({"perplexity": 3.0, "prior_perplexity": float(M - 1)}, r"^prior_perplexity.*M - 2"),
        ({"perplexity": float(M - 1)}, r"^perplexity .*M - 2"),
        ({"bandwidth": "median", "prior_perplexity": 0.9}, r"^prior_perplexity"),
        ({"perplexity": 3.0, "perplexity_steps": 0}, r"^perplexity_steps"),
    ],
    ids=lambda v: v if isinstance(v, str) else ",".join(
        f"{k}={getattr(x, 'shape', x)}" for k, x in v.items()
    ),
)
def test_bad_arguments_raise_value_errors_naming_them(overrides: dict, pattern: str):
    with pytest.raises(ValueError, match=pattern):
        _call(**overrides)
    with pytest.raises(ValueError, match=pattern):
        _call(glf_losses.adc_parts, **overrides)


def test_the_perplexity_range_is_inclusive_at_its_upper_end():
    assert np.isfinite(_call(perplexity=float(M - 1), prior_perplexity=float(M - 2)))
    assert np.isfinite(_call(perplexity=float(M - 1), prior_other_view=True))
    assert np.isfinite(_call(perplexity=3.0, prior_perplexity=float(M - 1),
                             prior_other_view=True))


@pytest.mark.parametrize("which", ["z_a", "z_b"])
def test_integer_features_raise_type_errors_naming_them(which: str):
    z_a, _, _ = _small_batch()
    with pytest.raises(TypeError, match=rf"^{which}"):
        _call(**{which: np.round(10 * z_a).astype(np.int64)})


def test_mixed_frameworks_raise_type_errors():
    others = [b for b in available_backends() if b != "numpy"]
    if not others:
        pytest.skip("only NumPy is installed")
    z_a, z_b, prior = _small_batch()
    other = others[0]
    with pytest.raises(TypeError, match="z_b"):
        glf_losses.adc_loss(z_a, to_backend(other, z_b), prior, perplexity=3.0)
    with pytest.raises(TypeError, match="prior"):
        glf_losses.adc_loss(z_a, z_b, to_backend(other, prior), perplexity=3.0)


def test_building_blocks_validate_their_arguments():
    z_a, z_b, _ = _small_batch()
    d = adc.feature_distances(z_a, z_b)
    with pytest.raises(ValueError, match=r"^perplexity"):
        adc.perplexity_bandwidth(d, float(M))
    with pytest.raises(ValueError, match=r"^perplexity"):
        adc.bandwidth(d, "perplexity", perplexity=1.0)
    with pytest.raises(ValueError, match=r"^mode"):
        adc.bandwidth(d, "mean")
    with pytest.raises(ValueError, match=r"^distances"):
        adc.median_bandwidth(d[:, :-1])
    with pytest.raises(ValueError, match=r"^rho"):
        adc.data_distribution(d, 0.5, rho=2.0)
    with pytest.raises(TypeError, match=r"^distances"):
        adc.median_bandwidth(np.zeros((4, 4), dtype=np.int64))


def test_prior_without_other_view_gives_it_no_mass() -> None:
    """``prior_other_view=False`` (the default) removes exactly the partner column from
    P^pre, and the loss then differs from ``True``'s."""
    from glf_losses import adc as adc_module

    rng = np.random.default_rng(3)
    n = 6
    z_a, z_b = rng.normal(size=(n, 4)), rng.normal(size=(n, 4))
    prior = rng.normal(size=(n, 5))
    with_view = glf_losses.adc_loss(z_a, z_b, prior, perplexity=3.0, prior_other_view=True)
    without = glf_losses.adc_loss(z_a, z_b, prior, perplexity=3.0, prior_other_view=False)
    assert without == glf_losses.adc_loss(z_a, z_b, prior, perplexity=3.0)
    assert np.isfinite(without) and abs(without - with_view) > 1e-6
    # With the view, the partner (prior distance 0) holds a large share of the prior.
    be = glf_losses.get_backend(z_a)
    layout = adc_module._layout(be, n, z_a)
    r = adc_module._prior_distances(be, prior, layout)
    partner = (np.arange(2 * n) + n) % (2 * n)
    _, p_with = adc_module._prior(be, r, layout.mask, 1.0)
    assert np.all(p_with[np.arange(2 * n), partner] > 0.05)
    with pytest.raises(TypeError, match="prior_other_view must be a bool"):
        glf_losses.adc_loss(  # type: ignore[arg-type]
            z_a, z_b, prior, perplexity=3.0, prior_other_view=1
        )


def test_weights_per_method_follow_the_loss_scale() -> None:
    """Barlow Twins' loss is ~100x the others': its recommended weights are 100x too."""
    from glf_losses import adc as adc_module

    for method in ("byol", "swav", "simclr"):
        assert adc_module.method_weights(method) == (1.0, 10.0)
        assert glf_losses.ADC.for_method(method) == glf_losses.ADC()
    assert adc_module.method_weights("barlow_twins") == (100.0, 1000.0)
    bound = glf_losses.ADC.for_method("barlow_twins", perplexity=3.0)
    assert (bound.nu, bound.upsilon, bound.perplexity) == (100.0, 1000.0, 3.0)
    assert glf_losses.ADC.for_method("barlow_twins", nu=2.0).nu == 2.0
    z_a, z_b, prior = _small_batch()
    assert float(bound(z_a, z_b, prior)) == pytest.approx(
        float(glf_losses.adc_loss(z_a, z_b, prior, nu=100.0, upsilon=1000.0, perplexity=3.0))
    )
    with pytest.raises(ValueError, match="method must be one of"):
        adc_module.method_weights("mocov4")
