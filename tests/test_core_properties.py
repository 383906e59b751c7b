"""Properties every loss must have, whatever the backend.

- invariants: batch permutation, positive rescaling of normalised inputs, Barlow Twins
  = 0 on equal decorrelated standardised views, Sinkhorn marginals, SimCLR = NT-Xent by
  hand, BYOL's stop-gradient on its targets, parts summing to the total;
- numerics: float16 / bfloat16 computing in float32, zero rows, the smallest batch N = 2.

Drawn shapes exercise the properties in NumPy float64; fixed shapes then carry them to
every backend and to float32 (fixed shapes keep eager JAX from compiling per example).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import glf_losses
from glf_losses import align, constrain
from glf_losses.testing import (
    assert_close,
    batch_pairs,
    byol_quads,
    dtype_name,
    score_pairs,
    supports_dtype,
    to_backend,
    to_numpy,
    value_and_grad,
)

# --- inputs -----------------------------------------------------------------------------

# One batch size for most tests: eager JAX compiles each operation once per shape.
N, D, K = 8, 5, 6


def _views(rng: np.random.Generator, n: int, count: int, d: int = D) -> tuple[np.ndarray, ...]:
    base = rng.standard_normal((n, d))
    return tuple(base + 0.8 * rng.standard_normal((n, d)) for _ in range(count))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _scores(rng: np.random.Generator, n: int, count: int = 2) -> tuple[np.ndarray, ...]:
    w = _unit(rng.standard_normal((K, 4)))
    z = rng.standard_normal((n, 4))
    return tuple(_unit(z + 0.5 * rng.standard_normal((n, 4))) @ w.T for _ in range(count))


def _scores_and_codes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    s_a, s_b = _scores(rng, n)
    q_a, q_b = (np.exp(s / 0.1) / np.exp(s / 0.1).sum(axis=1, keepdims=True) for s in (s_a, s_b))
    return s_a, s_b, q_a, q_b


@dataclass(frozen=True)
class Fn:
    """A function under test, how to make its inputs for a batch of n, and its kind."""

    name: str
    fn: Callable[..., Any]
    make: Callable[[np.random.Generator, int], tuple[np.ndarray, ...]]
    # Depends on its inputs only through their L2-normalised rows.
    normalised: bool = False


def _pair(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    return _views(rng, n, 2)


def _quad(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    return _views(rng, n, 4)


METHODS = [
    Fn("byol_loss", glf_losses.byol_loss, _quad, normalised=True),
    Fn("barlow_twins_loss", glf_losses.barlow_twins_loss, _pair),
    Fn("swav_loss", glf_losses.swav_loss, _scores),
    Fn("simclr_loss", glf_losses.simclr_loss, _pair, normalised=True),
]
PARTS = [
    Fn("byol_parts", glf_losses.byol_parts, _quad, normalised=True),
    Fn("barlow_twins_parts", glf_losses.barlow_twins_parts, _pair),
    Fn("swav_parts", glf_losses.swav_parts, _scores),
    Fn("simclr_parts", glf_losses.simclr_parts, _pair, normalised=True),
]
TERMS = [
    Fn("normalized_mse", align.normalized_mse, _pair, normalised=True),
    Fn("invariance", align.invariance, _pair),
    Fn("swapped_prediction", align.swapped_prediction, _scores_and_codes),
    Fn("infonce_alignment", align.infonce_alignment, _pair, normalised=True),
    Fn("redundancy_reduction", constrain.redundancy_reduction, _pair),
    Fn("uniformity", constrain.uniformity, _pair, normalised=True),
]
SCALARS = METHODS + PARTS + TERMS
NORMALISED = [f for f in SCALARS if f.normalised]


def ids(f: Fn) -> str:
    return f.name


DTYPES = ("float64", "float32")


def _run(backend: str, f: Fn, arrays, dtype: str = "float64", **kwargs: Any) -> Any:
    return to_numpy(f.fn(*(to_backend(backend, a, dtype) for a in arrays), **kwargs))


def _close(actual: Any, desired: Any, dtype: str, what: str = "") -> None:
    if isinstance(desired, tuple):
        for a, d, name in zip(actual, desired, desired._fields, strict=True):
            assert_close(a, d, dtype, scale=1.0, err_msg=f"{what}.{name}")
    else:
        assert_close(actual, desired, dtype, scale=1.0, err_msg=what)


# --- permutation ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("f", SCALARS, ids=ids)
def test_batch_permutation_leaves_losses_unchanged(backend: str, f: Fn, dtype: str) -> None:
    arrays = f.make(np.random.default_rng(10), N)
    perm = np.random.default_rng(11).permutation(N)
    before = _run(backend, f, arrays, dtype)
    after = _run(backend, f, [a[perm] for a in arrays], dtype)
    _close(after, before, dtype, f.name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sinkhorn_codes_permute_with_the_batch(backend: str, dtype: str) -> None:
    (scores,) = _scores(np.random.default_rng(12), N, count=1)
    perm = np.random.default_rng(13).permutation(N)
    codes = to_numpy(constrain.sinkhorn(to_backend(backend, scores, dtype)))
    permuted = constrain.sinkhorn(to_backend(backend, scores[perm], dtype))
    assert_close(permuted, codes[perm], dtype)


@given(data=st.data())
def test_batch_permutation_drawn(data: st.DataObject) -> None:
    z_a, z_b = data.draw(batch_pairs(max_n=32, max_d=32))
    p_a, p_b, t_a, t_b = data.draw(byol_quads(max_n=32, max_d=32))
    s_a, s_b = data.draw(score_pairs(max_n=32, max_k=32))
    perm = np.asarray(data.draw(st.permutations(range(len(z_a)))))
    perm_q = np.asarray(data.draw(st.permutations(range(len(p_a)))))
    perm_s = np.asarray(data.draw(st.permutations(range(len(s_a)))))
    for fn in (glf_losses.barlow_twins_loss, glf_losses.simclr_loss, constrain.uniformity):
        assert_close(fn(z_a[perm], z_b[perm]), fn(z_a, z_b), "float64", scale=1.0)
    assert_close(
        glf_losses.byol_loss(p_a[perm_q], p_b[perm_q], t_a[perm_q], t_b[perm_q]),
        glf_losses.byol_loss(p_a, p_b, t_a, t_b),
        "float64",
        scale=1.0,
    )
    assert_close(
        glf_losses.swav_loss(s_a[perm_s], s_b[perm_s]),
        glf_losses.swav_loss(s_a, s_b),
        "float64",
        scale=1.0,
    )
    assert_close(constrain.sinkhorn(s_a[perm_s]), constrain.sinkhorn(s_a)[perm_s], "float64")


# --- positive rescaling -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("f", NORMALISED, ids=ids)
def test_positive_rescaling_leaves_normalised_losses_unchanged(
    backend: str, f: Fn, dtype: str
) -> None:
    arrays = f.make(np.random.default_rng(14), N)
    # A different constant per argument: each is normalised on its own.
    scaled = [c * a for c, a in zip((0.03, 40.0, 7.5, 0.2), arrays, strict=False)]
    _close(_run(backend, f, scaled, dtype), _run(backend, f, arrays, dtype), dtype, f.name)


@given(batch_pairs(min_d=2, max_n=32, max_d=32), st.floats(0.05, 50.0), st.floats(0.05, 50.0))
def test_positive_rescaling_drawn(arrays, c_a: float, c_b: float) -> None:
    z_a, z_b = arrays
    for fn in (
        glf_losses.simclr_loss,
        align.normalized_mse,
        align.infonce_alignment,
        constrain.uniformity,
    ):
        assert_close(fn(c_a * z_a, c_b * z_b), fn(z_a, z_b), "float64", scale=1.0)
    assert_close(
        glf_losses.byol_loss(c_a * z_a, c_b * z_b, c_b * z_b, c_a * z_a),
        glf_losses.byol_loss(z_a, z_b, z_b, z_a),
        "float64",
        scale=1.0,
    )


def test_rescaling_changes_unnormalised_losses() -> None:
    # The contrast that makes the invariance above meaningful: Barlow Twins standardises
    # with eps > 0, so a tiny scale (variance ~ eps) changes it.
    z_a, z_b = _pair(np.random.default_rng(15), N)
    big = glf_losses.barlow_twins_loss(z_a, z_b)
    small = glf_losses.barlow_twins_loss(1e-3 * z_a, 1e-3 * z_b)
    assert abs(float(big) - float(small)) > 1e-3


@given(batch_pairs(max_n=32, max_d=16), st.integers(0, 2**32 - 1))
def test_barlow_twins_without_eps_ignores_column_affine_maps(arrays, seed: int) -> None:
    # With eps = 0 the batch standardisation removes any positive per-column scale and
    # any per-column shift.
    z_a, z_b = arrays
    rng = np.random.default_rng(seed)
    scale_a, scale_b = rng.uniform(0.1, 10.0, (2, z_a.shape[1]))
    shift_a, shift_b = rng.uniform(-5.0, 5.0, (2, z_a.shape[1]))
    got = glf_losses.barlow_twins_parts(scale_a * z_a + shift_a, scale_b * z_b + shift_b, eps=0.0)
    want = glf_losses.barlow_twins_parts(z_a, z_b, eps=0.0)
    assert_close(got.align, want.align, "float64", rtol=1e-8, scale=1.0)
    assert_close(got.constrain, want.constrain, "float64", rtol=1e-8, scale=1.0)


# --- Barlow Twins optimum ---------------------------------------------------------------


def _decorrelated(n: int, d: int, seed: int) -> np.ndarray:
    """(n, d), zero-mean columns, biased variance 1, zero cross-correlation: sqrt(n) times
    d orthonormal columns orthogonal to the all-ones vector."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(np.column_stack([np.ones(n), rng.standard_normal((n, d))]))
    return math.sqrt(n) * q[:, 1:]


@pytest.mark.parametrize("dtype", DTYPES)
def test_barlow_twins_is_zero_on_equal_decorrelated_views(backend: str, dtype: str) -> None:
    z = _decorrelated(12, 6, seed=16)
    rng = np.random.default_rng(17)
    # Per-column positive scales and shifts standardise away: both views are z once
    # standardised.
    z_b = z * rng.uniform(0.5, 3.0, 6) + rng.uniform(-2.0, 2.0, 6)
    atol = 1e-20 if dtype == "float64" else 1e-8
    parts = glf_losses.barlow_twins_parts(
        to_backend(backend, z, dtype), to_backend(backend, z_b, dtype), lambd=1.0, eps=0.0
    )
    assert abs(float(to_numpy(parts.align))) < atol
    assert abs(float(to_numpy(parts.constrain))) < atol
    # The same views with the default eps are close to, but not at, the optimum.
    z64 = to_backend(backend, z)
    assert float(to_numpy(glf_losses.barlow_twins_loss(z64, z64))) > 1e-11


@given(st.integers(2, 40), st.integers(1, 39), st.integers(0, 2**32 - 1))
def test_barlow_twins_is_zero_on_decorrelated_views_drawn(n: int, d: int, seed: int) -> None:
    d = min(d, n - 1)  # at most n - 1 zero-mean orthogonal columns exist
    z = _decorrelated(n, d, seed)
    value = float(glf_losses.barlow_twins_loss(z, z, lambd=1.0, eps=0.0))
    assert abs(value) < 1e-20 * d * d + 1e-24


# --- Sinkhorn ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "k"), [(N, K), (5, 8)])
def test_sinkhorn_meets_both_marginals(backend: str, dtype: str, n: int, k: int) -> None:
    rng = np.random.default_rng(18)
    w = _unit(rng.standard_normal((k, 4)))
    scores = _unit(rng.standard_normal((n, 4))) @ w.T
    # Convergence is linear with a rate that degrades as epsilon shrinks (at the default
    # 0.05 a batch this small still misses the column sums by ~1e-3 after 200 iterations,
    # by ~1e-4 after 5000), so a moderate epsilon shows the fixed point itself.
    codes = to_numpy(
        constrain.sinkhorn(to_backend(backend, scores, dtype), epsilon=0.2, n_iters=200)
    )
    tol = 1e-9 if dtype == "float64" else 1e-4
    assert np.all(codes >= 0.0)
    np.testing.assert_allclose(codes.sum(axis=1), np.ones(n), rtol=tol)
    np.testing.assert_allclose(codes.sum(axis=0), np.full(k, n / k), rtol=tol)


def test_few_sinkhorn_iterations_leave_columns_unbalanced() -> None:
    # The contrast for the test above: 200 iterations are what balance the prototypes.
    scores = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.1], [0.7, 0.0, 0.3], [0.95, 0.5, 0.2]])
    codes = constrain.sinkhorn(scores, n_iters=1)
    assert np.max(np.abs(codes.sum(axis=0) - 4 / 3)) > 1e-3


# --- SimCLR by hand ---------------------------------------------------------------------


def _nt_xent_by_hand(z_a: np.ndarray, z_b: np.ndarray, t: float) -> float:
    n = len(z_a)
    u = [row / math.sqrt(sum(x * x for x in row)) for row in np.concatenate([z_a, z_b])]
    total = 0.0
    for k in range(2 * n):
        positive = (k + n) % (2 * n)
        numerator = math.exp(float(np.dot(u[k], u[positive])) / t)
        denominator = 0.0
        for l in range(2 * n):
            if l != k:
                denominator += math.exp(float(np.dot(u[k], u[l])) / t)
        total += -math.log(numerator / denominator)
    return total / (2 * n)


@pytest.mark.parametrize("temperature", [0.2, 0.5, 1.0])
def test_simclr_is_nt_xent_by_hand(backend: str, temperature: float) -> None:
    z_a, z_b = _views(np.random.default_rng(19), N, 2)
    got = glf_losses.simclr_loss(
        to_backend(backend, z_a), to_backend(backend, z_b), temperature=temperature
    )
    assert_close(got, _nt_xent_by_hand(z_a, z_b, temperature), "float64", scale=1.0)


# --- stop-gradients ---------------------------------------------------------------------


def test_byol_gradient_reaches_predictions_not_targets(autodiff_backend: str) -> None:
    arrays = _quad(np.random.default_rng(20), N)
    if autodiff_backend == "torch":
        import torch

        p_a, p_b, z_a, z_b = (torch.tensor(a, requires_grad=True) for a in arrays)
        glf_losses.byol_loss(p_a, p_b, z_a, z_b).backward()
        for z in (z_a, z_b):
            assert z.grad is None or not torch.any(z.grad != 0)
        grads = [to_numpy(p.grad) for p in (p_a, p_b)]
    else:
        _, all_grads = value_and_grad(
            autodiff_backend, glf_losses.byol_loss, *arrays, argnums=(0, 1, 2, 3)
        )
        assert np.all(all_grads[2] == 0.0) and np.all(all_grads[3] == 0.0)
        grads = list(all_grads[:2])
    for g in grads:
        assert np.all(np.isfinite(g)) and np.max(np.abs(g)) > 1e-3


def test_sinkhorn_codes_carry_no_gradient(autodiff_backend: str) -> None:
    (scores,) = _scores(np.random.default_rng(21), N, count=1)
    weights = np.random.default_rng(22).standard_normal(scores.shape)

    def weighted_codes(s: Any, w: Any) -> Any:
        return glf_losses.get_namespace(s).sum(constrain.sinkhorn(s) * w)

    _, (grad,) = value_and_grad(autodiff_backend, weighted_codes, scores, weights)
    assert np.all(grad == 0.0)


# --- parts ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("loss", "parts"), list(zip(METHODS, PARTS, strict=True)), ids=[f.name for f in METHODS]
)
def test_parts_sum_to_the_total(backend: str, loss: Fn, parts: Fn, dtype: str) -> None:
    arrays = loss.make(np.random.default_rng(23), N)
    total = _run(backend, loss, arrays, dtype)
    split = parts.fn(*(to_backend(backend, a, dtype) for a in arrays))
    assert type(split).__name__ == "GLFParts"
    assert dtype_name(split.align) == dtype_name(split.constrain) == dtype
    assert_close(to_numpy(split.align) + to_numpy(split.constrain), total, dtype, scale=1.0)
    assert_close(split.total, total, dtype, scale=1.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("f", [PARTS[0], PARTS[2]], ids=ids)
def test_byol_and_swav_constraining_parts_are_zero(backend: str, f: Fn, dtype: str) -> None:
    split = f.fn(*(to_backend(backend, a, dtype) for a in f.make(np.random.default_rng(24), N)))
    assert float(to_numpy(split.constrain)) == 0.0
    assert float(to_numpy(split.align)) > 0.0


def test_barlow_twins_scale_multiplies_both_parts() -> None:
    arrays = _pair(np.random.default_rng(25), N)
    plain = glf_losses.barlow_twins_parts(*arrays)
    scaled = glf_losses.barlow_twins_parts(*arrays, scale=0.025)
    assert_close(scaled.align, 0.025 * plain.align, "float64")
    assert_close(scaled.constrain, 0.025 * plain.constrain, "float64")


# --- narrow dtypes ----------------------------------------------------------------------

NARROW = [
    (backend, dtype)
    for backend in ("numpy", "torch", "jax", "tensorflow")
    for dtype in ("float16", "bfloat16")
    if supports_dtype(backend, dtype)
]


def _rounded(arrays, backend: str, dtype: str) -> list[np.ndarray]:
    """The float64 values a narrow-dtype input actually holds."""
    return [to_numpy(to_backend(backend, a, dtype)).astype(np.float64) for a in arrays]


@pytest.mark.parametrize(("backend_name", "dtype"), NARROW, ids=["-".join(x) for x in NARROW])
@pytest.mark.parametrize("f", [*SCALARS, Fn("sinkhorn", constrain.sinkhorn, _scores)], ids=ids)
def test_narrow_floats_compute_and_return_float32(backend_name: str, dtype: str, f: Fn) -> None:
    pytest.importorskip(backend_name)
    arrays = f.make(np.random.default_rng(26), N)
    if f.name == "sinkhorn":
        arrays = arrays[:1]
    out = f.fn(*(to_backend(backend_name, a, dtype) for a in arrays))
    reference = to_numpy(f.fn(*_rounded(arrays, backend_name, dtype)))
    outs = out if isinstance(out, tuple) else (out,)
    refs = reference if isinstance(reference, tuple) else (reference,)
    for o, r in zip(outs, refs, strict=True):
        assert dtype_name(o) == "float32"
        # Computed in float32 from the rounded inputs: ~1e-6 relative. A float16
        # computation would be off by ~1e-3, and Sinkhorn's exp(1/0.05) would overflow.
        assert_close(o, r, "float32", rtol=1e-4, scale=1.0 if np.ndim(r) == 0 else None)


# --- zero rows and tiny batches ---------------------------------------------------------


def _with_zero_row(arrays, row: int = 1) -> list[np.ndarray]:
    out = [np.array(a) for a in arrays]
    for a in out:
        a[row] = 0.0
    return out


def _unit_or_zero(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.where(norms > 0, v / np.where(norms > 0, norms, 1.0), 0.0)


def _zero_row_reference(name: str, arrays) -> float:
    # n(0) = 0: a zero row sits at the origin, at cosine 0 from everything.
    u = [_unit_or_zero(a) for a in arrays]
    if name == "normalized_mse":
        return float(np.mean(np.sum((u[0] - u[1]) ** 2, axis=1)))
    if name in ("byol_loss", "byol_parts"):
        per_sample = np.sum((u[0] - u[3]) ** 2, axis=1) + np.sum((u[1] - u[2]) ** 2, axis=1)
        return float(np.mean(per_sample))
    t = 0.2
    align_part = -float(np.mean(np.sum(u[0] * u[1], axis=1))) / t
    both = np.concatenate(u[:2])
    logits = both @ both.T / t
    np.fill_diagonal(logits, -np.inf)
    uniform_part = float(np.mean(np.log(np.sum(np.exp(logits), axis=1))))
    return {"infonce_alignment": align_part, "uniformity": uniform_part}.get(
        name, align_part + uniform_part
    )


@pytest.mark.parametrize("f", NORMALISED, ids=ids)
def test_zero_row_gives_finite_values(backend: str, f: Fn) -> None:
    arrays = _with_zero_row(f.make(np.random.default_rng(27), N))
    out = _run(backend, f, arrays)
    total = sum(out) if isinstance(out, tuple) else out
    assert np.isfinite(total)
    assert_close(total, _zero_row_reference(f.name, arrays), "float64", scale=1.0)


@pytest.mark.parametrize("f", [f for f in NORMALISED if not f.name.endswith("_parts")], ids=ids)
def test_zero_row_gives_finite_gradients(autodiff_backend: str, f: Fn) -> None:
    arrays = _with_zero_row(f.make(np.random.default_rng(28), N))
    value, grads = value_and_grad(autodiff_backend, f.fn, *arrays, argnums=range(len(arrays)))
    assert np.isfinite(value)
    for g in grads:
        assert np.all(np.isfinite(g))


@pytest.mark.parametrize("f", [*SCALARS, Fn("sinkhorn", constrain.sinkhorn, _scores)], ids=ids)
def test_batch_of_two_gives_no_nan(backend: str, f: Fn) -> None:
    arrays = f.make(np.random.default_rng(29), 2)
    if f.name == "sinkhorn":
        arrays = arrays[:1]
    for dtype in DTYPES:
        out = _run(backend, f, arrays, dtype)
        for o in out if isinstance(out, tuple) else (out,):
            assert np.all(np.isfinite(o)), f"{f.name} {dtype}: {o}"


@pytest.mark.parametrize("f", [f for f in SCALARS if not f.name.endswith("_parts")], ids=ids)
def test_batch_of_two_gives_finite_gradients(autodiff_backend: str, f: Fn) -> None:
    arrays = f.make(np.random.default_rng(30), 2)
    value, grads = value_and_grad(autodiff_backend, f.fn, *arrays, argnums=range(len(arrays)))
    assert np.isfinite(value)
    for g in grads:
        assert np.all(np.isfinite(g))
