"""Every backend computes the same numbers, and those numbers are the published losses.

- values: each method, term and ``*_parts`` function on every backend, in float64 (within
  1e-10 relative of NumPy float64) and float32 (within 4 sqrt(eps_float32) of it), on
  shapes and hyperparameters drawn by hypothesis;
- gradients: torch, jax and tensorflow agree with each other (float64, 1e-10) and with
  central finite differences of the NumPy float64 value;
- worked examples: each method against an independent plain-NumPy implementation of its
  official convention (loops, the K x N Sinkhorn orientation, the global max, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import glf_losses
from glf_losses import align, constrain
from glf_losses.testing import (
    assert_close,
    available_backends,
    batch_pairs,
    byol_quads,
    central_difference_grad,
    compile_fn,
    dtype_name,
    score_pairs,
    to_backend,
    to_numpy,
    value_and_grad,
)

# --- the functions under test -----------------------------------------------------------


def _softmax_rows(s: np.ndarray, t: float) -> np.ndarray:
    e = np.exp((s - s.max(axis=1, keepdims=True)) / t)
    return e / e.sum(axis=1, keepdims=True)


def _with_codes(pair: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, ...]:
    # Codes only need to be rows of a distribution; a sharp softmax of the other view's
    # scores looks like Sinkhorn output without depending on the code under test.
    s_a, s_b = pair
    return s_a, s_b, _softmax_rows(s_a, 0.05), _softmax_rows(s_b, 0.05)


temperatures = st.floats(0.05, 1.0)
barlow_kwargs = st.fixed_dictionaries(
    {"lambd": st.floats(0.0, 0.1), "eps": st.sampled_from([0.0, 1e-5, 1e-3])}
)
swav_kwargs = st.fixed_dictionaries(
    {
        "temperature": temperatures,
        "epsilon": st.floats(0.05, 0.5),
        "sinkhorn_iters": st.integers(1, 5),
    }
)


@dataclass(frozen=True)
class Case:
    """A function under test and how to draw its inputs and keyword hyperparameters."""

    name: str
    fn: Callable[..., Any]
    inputs: st.SearchStrategy[tuple[np.ndarray, ...]]
    kwargs: st.SearchStrategy[dict[str, Any]] = field(default=st.just({}))


VALUE_CASES = [
    Case("byol_loss", glf_losses.byol_loss, byol_quads()),
    Case("byol_parts", glf_losses.byol_parts, byol_quads()),
    Case("barlow_twins_loss", glf_losses.barlow_twins_loss, batch_pairs(), barlow_kwargs),
    Case("barlow_twins_parts", glf_losses.barlow_twins_parts, batch_pairs(), barlow_kwargs),
    Case("swav_loss", glf_losses.swav_loss, score_pairs(), swav_kwargs),
    Case("swav_parts", glf_losses.swav_parts, score_pairs(), swav_kwargs),
    Case(
        "simclr_loss",
        glf_losses.simclr_loss,
        batch_pairs(),
        st.fixed_dictionaries({"temperature": temperatures}),
    ),
    Case(
        "simclr_parts",
        glf_losses.simclr_parts,
        batch_pairs(),
        st.fixed_dictionaries({"temperature": temperatures}),
    ),
    Case("normalized_mse", align.normalized_mse, batch_pairs(min_n=1)),
    Case(
        "invariance",
        align.invariance,
        batch_pairs(),
        st.fixed_dictionaries({"eps": st.sampled_from([0.0, 1e-5, 1e-3])}),
    ),
    Case(
        "swapped_prediction",
        align.swapped_prediction,
        score_pairs().map(_with_codes),
        st.fixed_dictionaries({"temperature": temperatures}),
    ),
    Case(
        "infonce_alignment",
        align.infonce_alignment,
        batch_pairs(min_n=1),
        st.fixed_dictionaries({"temperature": temperatures}),
    ),
    Case("redundancy_reduction", constrain.redundancy_reduction, batch_pairs(), barlow_kwargs),
    Case(
        "sinkhorn",
        constrain.sinkhorn,
        score_pairs().map(lambda pair: pair[:1]),
        st.fixed_dictionaries({"epsilon": st.floats(0.05, 0.5), "n_iters": st.integers(1, 8)}),
    ),
    Case(
        "uniformity",
        constrain.uniformity,
        batch_pairs(min_n=1),
        st.fixed_dictionaries({"temperature": temperatures}),
    ),
]


def _assert_outputs_close(actual: Any, desired: Any, dtype: str, what: str) -> None:
    """Compare a 0-d loss, a GLFParts pair or an (N, K) array of codes."""
    if isinstance(desired, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(desired), what
        for field_name, a, d in zip(desired._fields, actual, desired, strict=True):
            _assert_outputs_close(a, d, dtype, f"{what}.{field_name}")
        return
    assert dtype_name(actual) == dtype, f"{what}: result dtype {dtype_name(actual)}"
    desired = np.asarray(desired)
    # A loss is of order one at least in its natural units, and a near-zero value (views
    # almost aligned) is reached by cancellation, so scalars are held to rtol (|L| + 1).
    scale = 1.0 if desired.ndim == 0 else None
    assert_close(actual, desired, dtype, scale=scale, err_msg=what)


def _evaluate(backend: str, fn: Callable[..., Any], xs: list[Any], kwargs: dict[str, Any]):
    if backend == "jax":
        # Eager JAX compiles each primitive for each new shape (~1 s a call on drawn
        # shapes); one jit per shape is several times cheaper and runs the same
        # operations. Eager JAX is held to the same numbers at fixed shapes elsewhere.
        return compile_fn("jax", fn, **kwargs)(*xs)
    return fn(*xs, **kwargs)


@pytest.mark.parametrize("case", VALUE_CASES, ids=lambda c: c.name)
@given(data=st.data())
def test_values_agree_with_numpy_float64(backend: str, case: Case, data: st.DataObject) -> None:
    arrays = data.draw(case.inputs, label="arrays")
    kwargs = data.draw(case.kwargs, label="kwargs")
    reference = to_numpy(case.fn(*arrays, **kwargs))
    for dtype in ("float64", "float32"):
        xs = [to_backend(backend, a, dtype) for a in arrays]
        out = _evaluate(backend, case.fn, xs, kwargs)
        _assert_outputs_close(out, reference, dtype, f"{case.name} {backend} {dtype}")


# --- gradients --------------------------------------------------------------------------


def _swav_with_fixed_codes(arrays: tuple[np.ndarray, ...], kwargs: dict[str, Any]) -> Any:
    # swav_loss stops the gradient of its codes, so its autodiff gradient is that of the
    # swapped prediction with the codes held at their current value.
    s_a, s_b = arrays
    codes_a = constrain.sinkhorn(s_a, kwargs["epsilon"], kwargs["sinkhorn_iters"])
    codes_b = constrain.sinkhorn(s_b, kwargs["epsilon"], kwargs["sinkhorn_iters"])
    return lambda a, b: align.swapped_prediction(a, b, codes_a, codes_b, kwargs["temperature"])


@dataclass(frozen=True)
class GradCase:
    """A scalar function, its differentiable inputs and the function finite differences
    should see (the same one, unless a stop-gradient hides part of it)."""

    name: str
    fn: Callable[..., Any]
    inputs: st.SearchStrategy[tuple[np.ndarray, ...]]
    kwargs: st.SearchStrategy[dict[str, Any]] = field(default=st.just({}))
    # Inputs behind a stop-gradient: their autodiff gradient must be exactly zero.
    stopped: tuple[int, ...] = ()
    # Builds the NumPy function of the non-stopped inputs to difference.
    numeric: Callable[[tuple[np.ndarray, ...], dict[str, Any]], Callable[..., Any]] | None = None


_small = {"max_n": 6, "max_d": 5, "scale": (0.3, 3.0), "max_shift": 1.0}
_small_scores = score_pairs(max_n=6, max_k=5, max_d=4)
_temperature = st.fixed_dictionaries({"temperature": st.floats(0.1, 1.0)})

GRAD_CASES = [
    GradCase("byol_loss", glf_losses.byol_loss, byol_quads(**_small), stopped=(2, 3)),
    GradCase("barlow_twins_loss", glf_losses.barlow_twins_loss, batch_pairs(**_small)),
    GradCase(
        "swav_loss",
        glf_losses.swav_loss,
        _small_scores,
        st.fixed_dictionaries(
            {
                "temperature": st.floats(0.1, 1.0),
                "epsilon": st.floats(0.05, 0.5),
                "sinkhorn_iters": st.integers(1, 4),
            }
        ),
        numeric=_swav_with_fixed_codes,
    ),
    GradCase("simclr_loss", glf_losses.simclr_loss, batch_pairs(**_small), _temperature),
    GradCase("normalized_mse", align.normalized_mse, batch_pairs(min_n=1, **_small)),
    GradCase("invariance", align.invariance, batch_pairs(**_small)),
    GradCase(
        "swapped_prediction",
        align.swapped_prediction,
        _small_scores.map(_with_codes),
        _temperature,
    ),
    GradCase("infonce_alignment", align.infonce_alignment, batch_pairs(**_small), _temperature),
    GradCase(
        "redundancy_reduction",
        constrain.redundancy_reduction,
        batch_pairs(**_small),
        st.fixed_dictionaries({"lambd": st.floats(0.01, 1.0)}),
    ),
    GradCase("uniformity", constrain.uniformity, batch_pairs(**_small), _temperature),
]

# Central differences with h = 1e-6 err by ~h^2 |f'''| + eps |f| / h: ~1e-9 relative on
# these inputs. The third derivative grows as 1/t^3 at temperature t and as 1/r^3 for a row
# of norm r, hence temperatures >= 0.1 and input scales >= 0.3 in the strategies above.
FD_RTOL = 1e-6


def _numeric_grads(case: GradCase, arrays: tuple[np.ndarray, ...], kwargs: dict[str, Any]):
    live = [i for i in range(len(arrays)) if i not in case.stopped]
    if case.numeric is not None:
        fn = case.numeric(arrays, kwargs)
        live_kwargs: dict[str, Any] = {}
    else:
        fn, live_kwargs = case.fn, kwargs
    grads = {}
    for i in live:

        def along_i(x: np.ndarray, i: int = i) -> Any:
            args = list(arrays)
            args[i] = x
            if case.numeric is not None:
                return fn(*(args[j] for j in live))
            return fn(*args, **live_kwargs)

        grads[i] = central_difference_grad(along_i, arrays[i])
    return grads


AUTODIFF = available_backends(autodiff_only=True)

# Whose gradients each framework's are compared with at 1e-10: torch with tensorflow and
# jax and tensorflow with torch, so every pair agrees (jax-tensorflow to within twice the
# tolerance) while the slowest to compile, jax, computes each gradient once. Without
# tensorflow, torch and jax check each other.
_PARTNERS = {
    "torch": ("tensorflow", "jax"),
    "jax": ("torch", "tensorflow"),
    "tensorflow": ("torch", "jax"),
}


def _partner(name: str) -> str | None:
    return next((p for p in _PARTNERS[name] if p in AUTODIFF), None)


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: c.name)
@given(data=st.data())
def test_gradients_match_finite_differences_and_other_frameworks(
    autodiff_backend: str, case: GradCase, data: st.DataObject
) -> None:
    arrays = data.draw(case.inputs, label="arrays")
    kwargs = data.draw(case.kwargs, label="kwargs")
    argnums = tuple(range(len(arrays)))
    value, grads = value_and_grad(
        autodiff_backend, case.fn, *arrays, argnums=argnums, jax_jit=True, **kwargs
    )
    assert_close(value, to_numpy(case.fn(*arrays, **kwargs)), "float64", scale=1.0)

    numeric = _numeric_grads(case, arrays, kwargs)
    # One scale for all inputs, relative to the largest entry; floored because a gradient
    # can vanish identically (D = 1 for normalised rows), where differences leave
    # eps |f| / h ~ 1e-8 of noise.
    scale = max(max(float(np.max(np.abs(g))) for g in numeric.values()), 0.1)
    for i, grad in enumerate(grads):
        assert grad.shape == arrays[i].shape
        if i in case.stopped:
            assert np.all(grad == 0.0), f"gradient reached stop-gradient input {i}"
        else:
            assert_close(
                grad,
                numeric[i],
                "float64",
                rtol=FD_RTOL,
                scale=scale,
                err_msg=f"{case.name} d/d(arg {i}) {autodiff_backend} vs finite differences",
            )

    partner = _partner(autodiff_backend)
    if partner is None:
        return
    _, partner_grads = value_and_grad(
        partner, case.fn, *arrays, argnums=argnums, jax_jit=True, **kwargs
    )
    # Floored: a gradient that vanishes identically carries rounding noise of ~1e-16.
    scale = max(max(float(np.max(np.abs(g))) for g in partner_grads), 1e-3)
    for i, (mine, theirs) in enumerate(zip(grads, partner_grads, strict=True)):
        assert_close(
            mine,
            theirs,
            "float64",
            scale=scale,
            err_msg=f"{case.name} d/d(arg {i}) {autodiff_backend} vs {partner}",
        )


# --- independent references: the official conventions in plain NumPy ---------------------


def ref_unit(v: np.ndarray) -> np.ndarray:
    out = np.zeros_like(v)
    for i, row in enumerate(v):
        norm = np.sqrt(np.sum(row * row))
        out[i] = row / max(norm, 1e-6)
    return out


def ref_byol(p_a, p_b, z_a, z_b) -> float:
    """DeepMind's BYOL: mean over the batch of (2 - 2 cos) for both directions."""
    total = 0.0
    for i in range(len(p_a)):
        for p, z in ((p_a[i], z_b[i]), (p_b[i], z_a[i])):
            cos = np.dot(p, z) / (np.linalg.norm(p) * np.linalg.norm(z))
            total += 2.0 - 2.0 * cos
    return total / len(p_a)


def ref_barlow_twins(z_a, z_b, lambd=0.0051, eps=1e-5) -> tuple[float, float]:
    """facebookresearch Barlow Twins: BatchNorm1d(affine=False) in training mode on each
    view, C = bn(z_a).T @ bn(z_b) / N, then on- and off-diagonal sums."""

    def batch_norm(z):
        mean = z.mean(axis=0)
        var = ((z - mean) ** 2).mean(axis=0)  # biased, as BatchNorm normalises
        return (z - mean) / np.sqrt(var + eps)

    a, b = batch_norm(z_a), batch_norm(z_b)
    n, d = a.shape
    on, off = 0.0, 0.0
    for i in range(d):
        for j in range(d):
            c_ij = sum(a[k, i] * b[k, j] for k in range(n)) / n
            if i == j:
                on += (1.0 - c_ij) ** 2
            else:
                off += c_ij**2
    return on, lambd * off


def ref_sinkhorn(scores, epsilon=0.05, n_iters=3) -> np.ndarray:
    """facebookresearch SwAV's distributed_sinkhorn on one worker: Q is K x N and is
    shifted by the global max of the scores."""
    q = np.exp((scores - scores.max()) / epsilon).T
    q = q / q.sum()
    k, n = q.shape
    for _ in range(n_iters):
        for row in range(k):
            q[row] = q[row] / q[row].sum() / k
        for col in range(n):
            q[:, col] = q[:, col] / q[:, col].sum() / n
    return (q * n).T


def ref_log_softmax(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for i, row in enumerate(x):
        m = row.max()
        out[i] = row - m - np.log(np.sum(np.exp(row - m)))
    return out


def ref_swav(s_a, s_b, temperature=0.1, epsilon=0.05, n_iters=3) -> float:
    q_a, q_b = ref_sinkhorn(s_a, epsilon, n_iters), ref_sinkhorn(s_b, epsilon, n_iters)
    log_p_a, log_p_b = ref_log_softmax(s_a / temperature), ref_log_softmax(s_b / temperature)
    per_sample = np.sum(q_a * log_p_b, axis=1) + np.sum(q_b * log_p_a, axis=1)
    return float(-0.5 * per_sample.mean())


def ref_simclr(z_a, z_b, temperature=0.2) -> float:
    """SimCLR's NT-Xent as its official implementation builds it: logits of a against b
    and a (self-similarity masked by a large number), cross-entropy with the positive
    as label, and the same for b. The official code sums the two directions; the
    convention here averages over the 2N anchors, i.e. half that sum."""
    a, b = ref_unit(z_a), ref_unit(z_b)
    n = len(a)
    large = 1e9
    logits_aa = a @ a.T / temperature - large * np.eye(n)
    logits_bb = b @ b.T / temperature - large * np.eye(n)
    logits_ab = a @ b.T / temperature
    logits_ba = b @ a.T / temperature
    labels = np.arange(n)
    loss_a = -ref_log_softmax(np.concatenate([logits_ab, logits_aa], axis=1))[labels, labels]
    loss_b = -ref_log_softmax(np.concatenate([logits_ba, logits_bb], axis=1))[labels, labels]
    return float((loss_a.mean() + loss_b.mean()) / 2.0)


# --- worked examples --------------------------------------------------------------------

WORKED_SHAPES = [(4, 3), (8, 5), (16, 8)]


def _example(n: int, d: int, count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, d))
    return [base + 0.7 * rng.standard_normal((n, d)) for _ in range(count)]


def _scores_example(n: int, k: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    w = ref_unit(rng.standard_normal((k, 6)))
    z = rng.standard_normal((n, 6))
    return [ref_unit(z + 0.5 * rng.standard_normal((n, 6))) @ w.T for _ in range(2)]


def _check(backend: str, fn: Callable[..., Any], arrays, want: float, **kwargs: Any) -> None:
    got = fn(*(to_backend(backend, a) for a in arrays), **kwargs)
    assert_close(got, want, "float64", scale=1.0, err_msg=f"{fn.__name__} on {backend}")


@pytest.mark.parametrize("shape", WORKED_SHAPES, ids=str)
def test_worked_example_byol(backend: str, shape: tuple[int, int]) -> None:
    arrays = _example(*shape, count=4, seed=1)
    _check(backend, glf_losses.byol_loss, arrays, ref_byol(*arrays))


@pytest.mark.parametrize("shape", WORKED_SHAPES, ids=str)
def test_worked_example_barlow_twins(backend: str, shape: tuple[int, int]) -> None:
    arrays = _example(*shape, count=2, seed=2)
    on, off = ref_barlow_twins(*arrays, lambd=0.0051, eps=1e-5)
    _check(backend, glf_losses.barlow_twins_loss, arrays, on + off)
    _check(backend, align.invariance, arrays, on)
    _check(backend, constrain.redundancy_reduction, arrays, off)
    # solo-learn's scale_loss multiplies the total.
    _check(backend, glf_losses.barlow_twins_loss, arrays, 0.1 * (on + off), scale=0.1)


@pytest.mark.parametrize("shape", WORKED_SHAPES, ids=str)
def test_worked_example_swav(backend: str, shape: tuple[int, int]) -> None:
    n, k = shape
    arrays = _scores_example(n, k, seed=3)
    _check(backend, glf_losses.swav_loss, arrays, ref_swav(*arrays))
    codes = constrain.sinkhorn(to_backend(backend, arrays[0]))
    assert_close(codes, ref_sinkhorn(arrays[0]), "float64", err_msg="sinkhorn codes")


@pytest.mark.parametrize("shape", WORKED_SHAPES, ids=str)
def test_worked_example_simclr(backend: str, shape: tuple[int, int]) -> None:
    arrays = _example(*shape, count=2, seed=4)
    _check(backend, glf_losses.simclr_loss, arrays, ref_simclr(*arrays))
    _check(backend, glf_losses.simclr_loss, arrays, ref_simclr(*arrays, 0.5), temperature=0.5)


# Drawn shapes against the references, in NumPy only: the agreement tests above carry
# the result to every other backend.


@given(byol_quads(max_n=24, max_d=24))
def test_byol_matches_reference(arrays: tuple[np.ndarray, ...]) -> None:
    assert_close(glf_losses.byol_loss(*arrays), ref_byol(*arrays), "float64", scale=1.0)


@given(batch_pairs(max_n=24, max_d=12), st.floats(0.0, 0.1), st.sampled_from([0.0, 1e-5]))
def test_barlow_twins_matches_reference(arrays, lambd: float, eps: float) -> None:
    on, off = ref_barlow_twins(*arrays, lambd=lambd, eps=eps)
    parts = glf_losses.barlow_twins_parts(*arrays, lambd=lambd, eps=eps)
    assert_close(parts.align, on, "float64", scale=1.0)
    assert_close(parts.constrain, off, "float64", scale=1.0)


@given(score_pairs(max_n=32, max_k=32), st.floats(0.05, 0.5), st.integers(1, 6))
def test_swav_matches_reference(arrays, epsilon: float, n_iters: int) -> None:
    want = ref_swav(*arrays, temperature=0.1, epsilon=epsilon, n_iters=n_iters)
    got = glf_losses.swav_loss(*arrays, epsilon=epsilon, sinkhorn_iters=n_iters)
    assert_close(got, want, "float64", scale=1.0)
    assert_close(
        constrain.sinkhorn(arrays[0], epsilon, n_iters),
        ref_sinkhorn(arrays[0], epsilon, n_iters),
        "float64",
    )


@given(batch_pairs(max_n=32, max_d=32), st.floats(0.05, 1.0))
def test_simclr_matches_reference(arrays, temperature: float) -> None:
    got = glf_losses.simclr_loss(*arrays, temperature=temperature)
    assert_close(got, ref_simclr(*arrays, temperature), "float64", scale=1.0)
