"""ADC computes the same numbers on every backend, compiled or not, and they are the
formulas of the spec.

- values: ``adc_parts`` on every backend, float64 within 1e-10 of NumPy float64 and
  float32 within 4 sqrt(eps_float32) of it, for the three bandwidth rules (a float,
  ``"median"``, ``"perplexity"``), on drawn values and hyperparameters, with integer
  (uint8, int64) and float priors of several trailing shapes;
- gradients: torch, jax and tensorflow agree with each other (float64, 1e-10) and with
  central differences of an independent NumPy implementation in which the quantities
  under stop-gradient (bandwidths, calibration target, anchor weights) are held fixed;
  no gradient reaches the prior;
- compilers: ``jax.jit``, ``tf.function(jit_compile=True)`` and ``torch.compile``
  reproduce the eager values and gradients of all three rules;
- an independent NumPy implementation written from the formulas (loops over anchors, the
  diagonal skipped explicitly, ``numpy.median``, a root find of its own for the
  perplexity) matches ``adc_parts`` and every public building block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
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
    central_difference_grad,
    compile_fn,
    dtype_name,
    to_backend,
    to_numpy,
    value_and_grad,
)

AUTODIFF = available_backends(autodiff_only=True)
MODES = ("float", "median", "perplexity")

# --- an independent implementation, from the formulas -----------------------------------


def ref_unit(v: np.ndarray) -> np.ndarray:
    """Rows scaled by rsqrt(max(|v|^2, 1e-12)), as every normalisation in the spec."""
    out = np.zeros_like(v, dtype=np.float64)
    for i, row in enumerate(v):
        out[i] = row / math.sqrt(max(float(np.sum(row * row)), 1e-12))
    return out


def ref_sq_distances(x: np.ndarray) -> np.ndarray:
    """Squared distances by explicit differences (not the Gram form), zero diagonal."""
    m = len(x)
    d = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            if j != i:
                d[i, j] = float(np.sum((x[i] - x[j]) ** 2))
    return d


def others(m: int, i: int) -> list[int]:
    return [j for j in range(m) if j != i]


def ref_softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()


def ref_entropy(p: np.ndarray) -> float:
    return -sum(pj * math.log(pj) for pj in p if pj > 0.0)


def ref_kl(p: np.ndarray, log_q: np.ndarray) -> float:
    return sum(pj * (math.log(pj) - lq) for pj, lq in zip(p, log_q, strict=True) if pj > 0.0)


def ref_offdiag(dist: np.ndarray) -> np.ndarray:
    m = len(dist)
    return np.array([dist[i, j] for i in range(m) for j in others(m, i)])


def ref_median_bandwidth(dist: np.ndarray) -> float:
    return max(float(np.median(ref_offdiag(dist))) / 2.0, 1e-12)


def ref_calibrated(row: np.ndarray, perplexity: float, factor: float) -> float:
    """The s with exp(H(softmax(-row / (factor s)))) = perplexity.

    The entropy grows with s, so a bisection on log s over a bracket much wider than any
    row needs, run until it no longer moves, finds the root to float64 precision.
    """
    target = math.log(perplexity)
    centre = math.log(max(float(row.max() - row.min()), 1e-300))
    lo, hi = centre - 60.0, centre + 60.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if ref_entropy(ref_softmax(-row / (factor * math.exp(mid)))) > target:
            hi = mid
        else:
            lo = mid
    return math.exp(0.5 * (lo + hi))


def ref_scales(dist: np.ndarray, mode: Any, perplexity: float, factor: float) -> np.ndarray:
    """Per-anchor sigma^2 (factor 2: softmax(-d / 2 sigma^2)) or tau (factor 1)."""
    m = len(dist)
    if mode == "median":
        return np.full(m, ref_median_bandwidth(dist))
    if mode == "perplexity":
        return np.array(
            [ref_calibrated(dist[i, others(m, i)], perplexity, factor) for i in range(m)]
        )
    return np.full(m, float(mode))


def ref_log_q(d_row: np.ndarray, sigma2: float, rho: float) -> np.ndarray:
    """log of the Student-t data distribution over j != i, with s^2 = rho sigma^2/(rho-2)."""
    s2 = rho * sigma2 / (rho - 2.0)
    log_kernel = -(rho + 1.0) / 2.0 * np.log1p(d_row / (rho * s2))
    top = log_kernel.max()
    return log_kernel - top - math.log(float(np.sum(np.exp(log_kernel - top))))


@dataclass
class RefADC:
    d: np.ndarray
    r: np.ndarray
    sigma2: np.ndarray
    tau: np.ndarray
    p_cal: list[np.ndarray]
    p_pre: list[np.ndarray]
    weights: np.ndarray
    dcm: float  # unweighted L_DCM
    lpm: float  # unweighted L_LPM


def ref_stack(z_a: np.ndarray, z_b: np.ndarray, normalize: bool) -> np.ndarray:
    z = np.concatenate([z_a, z_b]).astype(np.float64)
    return ref_unit(z) if normalize else z


def ref_adc(
    z_a: np.ndarray,
    z_b: np.ndarray,
    prior: np.ndarray,
    *,
    rho: float = 3.0,
    bandwidth: Any = "perplexity",
    prior_bandwidth: Any = "perplexity",
    perplexity: float = 30.0,
    prior_perplexity: float | None = None,
    normalize: bool = True,
    prior_other_view: bool = False,
) -> RefADC:
    n = len(z_a)
    m = 2 * n
    e = np.asarray(prior, dtype=np.float64).reshape(n, -1)
    d = ref_sq_distances(ref_stack(z_a, z_b, normalize))
    r = ref_sq_distances(np.concatenate([e, e]))
    pp = perplexity if prior_perplexity is None else prior_perplexity

    def prior_js(i: int) -> list[int]:
        """The prior's candidates for anchor i: without its other view unless asked."""
        return [j for j in others(m, i) if prior_other_view or j != (i + n) % m]

    sigma2 = ref_scales(d, bandwidth, perplexity, 2.0)
    if prior_bandwidth == "median":
        values = [r[i, j] for i in range(m) for j in prior_js(i)]
        tau = np.full(m, max(float(np.median(values)) / 2.0, 1e-12))
    elif prior_bandwidth == "perplexity":
        tau = np.array([ref_calibrated(r[i, prior_js(i)], pp, 1.0) for i in range(m)])
    else:
        tau = np.full(m, float(prior_bandwidth))
    p_cal, p_pre, dcm_i, lpm_i, inv_h = [], [], [], [], []
    for i in range(m):
        js = others(m, i)
        log_q = ref_log_q(d[i, js], sigma2[i], rho)
        p_cal.append(ref_softmax(-d[i, js] / (2.0 * sigma2[i])))
        row = np.zeros(len(js))  # over j != i; the left-out other view keeps mass 0
        kept = [js.index(j) for j in prior_js(i)]
        row[kept] = ref_softmax(-r[i, prior_js(i)] / tau[i])
        p_pre.append(row)
        dcm_i.append(ref_kl(p_cal[i], log_q))
        lpm_i.append(ref_kl(p_pre[i], log_q))
        inv_h.append(1.0 / max(ref_entropy(p_pre[i]), 1e-12))
    weights = np.array(inv_h) / np.mean(inv_h)
    return RefADC(
        d, r, sigma2, tau, p_cal, p_pre, weights,
        dcm=float(np.mean(weights * np.array(dcm_i))), lpm=float(np.mean(lpm_i)),
    )


def ref_frozen_objective(
    z_a: np.ndarray, z_b: np.ndarray, state: RefADC, *, nu: float, upsilon: float,
    rho: float, normalize: bool,
) -> float:
    """nu L_DCM + upsilon L_LPM as a function of z with every stop-gradient quantity of
    ``state`` held fixed: what automatic differentiation must differentiate."""
    d = ref_sq_distances(ref_stack(z_a, z_b, normalize))
    m = len(d)
    dcm_i, lpm_i = [], []
    for i in range(m):
        log_q = ref_log_q(d[i, others(m, i)], state.sigma2[i], rho)
        dcm_i.append(ref_kl(state.p_cal[i], log_q))
        lpm_i.append(ref_kl(state.p_pre[i], log_q))
    return nu * float(np.mean(state.weights * np.array(dcm_i))) + upsilon * float(np.mean(lpm_i))


# --- inputs -------------------------------------------------------------------------------

PRIOR_KINDS = ("uint8 (N,1,8,8)", "int64 (N,5)", "float (N,5)", "float (N,2,3)", "float (N,)")


def make_prior(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "uint8 (N,1,8,8)":
        return rng.integers(0, 256, size=(n, 1, 8, 8)).astype(np.uint8)
    if kind == "int64 (N,5)":
        return rng.integers(-1000, 1000, size=(n, 5)).astype(np.int64)
    shape = {"float (N,5)": (n, 5), "float (N,2,3)": (n, 2, 3), "float (N,)": (n,)}[kind]
    return 10.0 ** rng.uniform(-1.0, 2.0) * rng.standard_normal(shape)


@dataclass
class ADCCase:
    z_a: np.ndarray
    z_b: np.ndarray
    prior: np.ndarray
    kwargs: dict[str, Any]

    def on(self, backend: str, dtype: str) -> list[Any]:
        """The inputs in ``backend``: z in ``dtype``, a float prior too, an integer one as is."""
        prior_dtype = dtype if self.prior.dtype.kind == "f" else None
        return [
            to_backend(backend, self.z_a, dtype),
            to_backend(backend, self.z_b, dtype),
            to_backend(backend, self.prior, prior_dtype),
        ]


def half_median(dist: np.ndarray) -> float:
    return ref_median_bandwidth(dist)


# A prior bandwidth far below the prior's distances makes every P^pre row nearly one-hot
# (each anchor's other view sits at distance 0); test_near_one_hot_prior_rows_keep_accuracy
# covers that regime with its own examples, the drawn factor stays in the usual one.
PRIOR_FACTORS = (0.5, 10.0)


@st.composite
def adc_cases(
    draw: st.DrawFn,
    mode: str,
    shapes: tuple[tuple[int, int], ...],
    prior_kinds: tuple[str, ...] = PRIOR_KINDS,
    max_frac: float = 1.0,
) -> ADCCase:
    """Inputs and hyperparameters for one bandwidth rule, at one of a few fixed shapes.

    Shapes are few because eager JAX compiles every primitive anew for each shape; the
    values, the prior's kind, the weights, rho and the perplexities are drawn. A float
    bandwidth is drawn relative to half the median distance, so that it is neither flat
    nor one-hot whatever the scale of the data. Perplexities lie in [1.5, M - 1]
    (``max_frac`` < 1 keeps them inside: at M - 1 the root is at infinite bandwidth).
    """
    n, d = draw(st.sampled_from(shapes), label="(N, D)")
    z_a, z_b = draw(batch_pairs(n, n, d, d), label="views")
    kind = draw(st.sampled_from(prior_kinds), label="prior kind")
    prior = make_prior(kind, n, draw(st.integers(0, 2**32 - 1), label="prior seed"))
    normalize = draw(st.booleans(), label="normalize")
    kwargs: dict[str, Any] = {
        "nu": draw(st.floats(0.1, 3.0), label="nu"),
        "upsilon": draw(st.floats(0.1, 10.0), label="upsilon"),
        "rho": draw(st.floats(2.2, 8.0), label="rho"),
        "normalize": normalize,
        "prior_other_view": draw(st.booleans(), label="prior_other_view"),
    }
    m = 2 * n
    if mode == "float":
        e = np.asarray(prior, dtype=np.float64).reshape(n, -1)
        d_feat = ref_sq_distances(ref_stack(z_a, z_b, normalize))
        r_prior = ref_sq_distances(np.concatenate([e, e]))
        kwargs["bandwidth"] = draw(st.floats(0.1, 10.0)) * half_median(d_feat)
        kwargs["prior_bandwidth"] = draw(st.floats(*PRIOR_FACTORS)) * half_median(r_prior)
    elif mode == "median":
        kwargs["bandwidth"] = kwargs["prior_bandwidth"] = "median"
    else:
        top = 1.5 + max_frac * (m - 2.5)
        # A prior row without the other view has one candidate fewer.
        prior_top = top if kwargs["prior_other_view"] else 1.5 + max_frac * (m - 3.5)
        kwargs["bandwidth"] = kwargs["prior_bandwidth"] = "perplexity"
        kwargs["perplexity"] = draw(st.floats(1.5, top), label="perplexity")
        kwargs["prior_perplexity"] = draw(st.floats(1.5, prior_top), label="prior_perplexity")
    return ADCCase(z_a, z_b, prior, kwargs)


# The shape every gradient and compiler test uses, so that eager JAX compiles it once.
GRAD_SHAPE = ((4, 3),)
VALUE_SHAPES = ((3, 5), (9, 6))


# --- values -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_adc_values_agree_with_numpy_float64(backend: str, mode: str, data: st.DataObject):
    case = data.draw(adc_cases(mode, VALUE_SHAPES), label="case")
    want = to_numpy(glf_losses.adc_parts(case.z_a, case.z_b, case.prior, **case.kwargs))
    for dtype in ("float64", "float32"):
        got = glf_losses.adc_parts(*case.on(backend, dtype), **case.kwargs)
        assert isinstance(got, glf_losses.ADCParts)
        for name, g, w in zip(got._fields, got, want, strict=True):
            what = f"adc_parts.{name} {mode} {backend} {dtype}"
            assert dtype_name(g) == dtype, f"{what}: result dtype {dtype_name(g)}"
            # Losses are of order one in their natural units; a small term is reached by
            # cancellation in the KL, so errors are measured against |L| + 1.
            assert_close(g, w, dtype, scale=1.0, err_msg=what)


def _near_one_hot_example(seed: int) -> ADCCase:
    """Unnormalised features with a sharp calibration and a prior bandwidth a tenth of the
    rule of thumb: each P^pre row puts all but ~1e-10 of its mass on the anchor's other
    view, so H(P^pre) is tiny and the anchor weights 1 / H vary widely."""
    rng = np.random.default_rng(seed)
    n = 9
    prior = rng.integers(-1000, 1000, size=(n, 5))
    z_a = 0.1 * rng.standard_normal((n, 6))
    z_b = z_a + 0.05 * rng.standard_normal((n, 6))
    e = prior.astype(np.float64)
    kwargs = {
        "bandwidth": 0.1 * half_median(ref_sq_distances(np.concatenate([z_a, z_b]))),
        "prior_bandwidth": 0.1 * half_median(ref_sq_distances(np.concatenate([e, e]))),
        "normalize": False, "nu": 1.0, "upsilon": 1.0, "prior_other_view": True,
    }
    return ADCCase(z_a, z_b, prior, kwargs)


def test_near_one_hot_prior_rows_keep_accuracy():
    # The entropy of a nearly one-hot row is tiny; computed as log(1 + tiny) it would lose
    # most of its digits and the anchor weights 1 / H with it.
    failures = []
    # Seed 27: every backend's float32 L_DCM is ~1.6e-3 off the float64 one.
    # Seed 5: float64 L_DCM differs by ~1e-8 between backends (NumPy against JAX and TF).
    for seed, dtypes in ((27, ("float32",)), (5, ("float64",))):
        case = _near_one_hot_example(seed)
        want = to_numpy(glf_losses.adc_parts(case.z_a, case.z_b, case.prior, **case.kwargs))
        for name in available_backends():
            for dtype in dtypes:
                got = glf_losses.adc_parts(*case.on(name, dtype), **case.kwargs)
                try:
                    assert_close(got.dcm, want.dcm, dtype, scale=1.0,
                                 err_msg=f"seed {seed} {name} {dtype} dcm")
                except AssertionError as error:
                    failures.append(str(error))
    assert not failures, "\n".join(failures)


# --- gradients ----------------------------------------------------------------------------

# Central differences with h = 1e-6 are good to ~1e-9 relative here; the third
# derivative of the Student-t at small bandwidths needs a little more room.
FD_RTOL = 1e-6
# 60 bisection steps resolve the perplexity bandwidth to float64 precision, so the
# reference's own root and the implementation's coincide and the comparison can be tight.
EXACT_STEPS = 60


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_adc_gradients_agree_across_frameworks_and_with_finite_differences(
    mode: str, data: st.DataObject
):
    case = data.draw(
        adc_cases(mode, GRAD_SHAPE, ("float (N,5)",), max_frac=0.8), label="case"
    )
    kw = case.kwargs
    state = ref_adc(
        case.z_a, case.z_b, case.prior, rho=kw["rho"], normalize=kw["normalize"],
        bandwidth=kw["bandwidth"], prior_bandwidth=kw["prior_bandwidth"],
        perplexity=kw.get("perplexity", 30.0), prior_perplexity=kw.get("prior_perplexity"),
        prior_other_view=kw["prior_other_view"],
    )
    frozen = {k: kw[k] for k in ("nu", "upsilon", "rho", "normalize")}
    numeric = (
        central_difference_grad(
            lambda x: ref_frozen_objective(x, case.z_b, state, **frozen), case.z_a
        ),
        central_difference_grad(
            lambda x: ref_frozen_objective(case.z_a, x, state, **frozen), case.z_b
        ),
    )
    want_value = kw["nu"] * state.dcm + kw["upsilon"] * state.lpm
    scale = max(float(np.max(np.abs(g))) for g in numeric)
    results = {}
    for name in AUTODIFF:
        value, grads = value_and_grad(
            name, glf_losses.adc_loss, case.z_a, case.z_b, case.prior,
            argnums=(0, 1, 2), perplexity_steps=EXACT_STEPS, **kw,
        )
        results[name] = value, grads
        assert_close(value, want_value, "float64", scale=1.0, err_msg=f"{name} value")
        for i in (0, 1):
            assert_close(
                grads[i], numeric[i], "float64", rtol=FD_RTOL, scale=scale,
                err_msg=f"{mode} d/d(z_{'ab'[i]}) {name} vs finite differences",
            )
        assert np.all(grads[2] == 0.0), f"{name}: a gradient reached the prior"
    for first, second in combinations(results, 2):
        assert_close(results[first][0], results[second][0], "float64", scale=1.0)
        for i in (0, 1):
            assert_close(
                results[first][1][i], results[second][1][i], "float64", scale=scale,
                err_msg=f"{mode} d/d(z_{'ab'[i]}) {first} vs {second}",
            )


# --- compilers ----------------------------------------------------------------------------

COMPILE_KWARGS = {
    "float": {"bandwidth": 0.3, "prior_bandwidth": 2.0e5},
    "median": {"bandwidth": "median", "prior_bandwidth": "median"},
    "perplexity": {"perplexity": 5.0, "prior_perplexity": 3.5},
}


def _all_modes(z_a: Any, z_b: Any, prior: Any, **kwargs: Any) -> Any:
    """(3, 2): (nu L_DCM, upsilon L_LPM) for each rule. One graph for the three rules
    keeps it to one compilation per backend."""
    xp = glf_losses.get_namespace(z_a)
    rows = [
        xp.stack(list(glf_losses.adc_parts(z_a, z_b, prior, **COMPILE_KWARGS[mode], **kwargs)))
        for mode in MODES
    ]
    return xp.stack(rows)


def compiled_values_and_grads(name: str, arrays: list[np.ndarray], **options: Any):
    """Values (3, 2) and, per rule, the gradients of its total with respect to z_a and
    z_b, the backward pass included in what the backend's compiler builds."""
    if name == "torch":
        import torch

        fn = compile_fn("torch", _all_modes, **options)
        xs = [to_backend("torch", a, requires_grad=i < 2) for i, a in enumerate(arrays)]
        values = fn(*xs)
        totals = values.sum(dim=1)
        grads = [
            torch.autograd.grad(totals[k], xs[:2], retain_graph=True) for k in range(len(MODES))
        ]
        return to_numpy(values), [[to_numpy(g) for g in pair] for pair in grads]
    if name == "jax":
        import jax

        def jax_fn(z_a: Any, z_b: Any, prior: Any) -> Any:
            def totals(a: Any, b: Any) -> Any:
                return _all_modes(a, b, prior).sum(axis=1)

            return _all_modes(z_a, z_b, prior), jax.jacrev(totals, argnums=(0, 1))(z_a, z_b)

        values, (jac_a, jac_b) = compile_fn("jax", jax_fn, **options)(
            *(to_backend("jax", a) for a in arrays)
        )
        return to_numpy(values), [
            [to_numpy(jac_a[k]), to_numpy(jac_b[k])] for k in range(len(MODES))
        ]
    import tensorflow as tf

    def tf_fn(z_a: Any, z_b: Any, prior: Any) -> Any:
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([z_a, z_b])
            values = _all_modes(z_a, z_b, prior)
            totals = [tf.reduce_sum(values[k]) for k in range(len(MODES))]
        return values, [tape.gradient(t, [z_a, z_b]) for t in totals]

    values, grads = compile_fn("tensorflow", tf_fn, **options)(
        *(to_backend("tensorflow", a) for a in arrays)
    )
    return to_numpy(values), [[to_numpy(g) for g in pair] for pair in grads]


def _compile_inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    (n, d), = GRAD_SHAPE
    z_a = rng.standard_normal((n, d))
    z_b = z_a + 0.5 * rng.standard_normal((n, d))
    # Raw pixels: the integer cast happens inside the compiled graph.
    prior = rng.integers(0, 256, size=(n, 1, 8, 8)).astype(np.uint8)
    return [z_a, z_b, prior]


# torch.compile's inductor generates and builds C++ (tens of seconds for ADC on a CPU), so
# it runs once, below; here ``aot_eager`` traces the same full graph, backward included.
COMPILERS = [
    pytest.param(b, opts, id=ident)
    for b, opts, ident in [
        ("jax", {}, "jax.jit"),
        ("tensorflow", {"jit_compile": True}, "tf.function-xla"),
        ("torch", {"torch_backend": "aot_eager"}, "torch.compile-aot_eager"),
    ]
    if b in AUTODIFF
]


@pytest.mark.parametrize(("name", "options"), COMPILERS)
def test_adc_compiled_equals_eager(name: str, options: dict[str, Any]):
    z_a, z_b, prior = arrays = _compile_inputs()
    values, grads = compiled_values_and_grads(name, arrays, **options)
    for k, mode in enumerate(MODES):
        want = to_numpy(glf_losses.adc_parts(z_a, z_b, prior, **COMPILE_KWARGS[mode]))
        assert_close(values[k], np.asarray(want), "float64", scale=1.0,
                     err_msg=f"compiled {name} {mode} values")
        _, eager = value_and_grad(
            name, glf_losses.adc_loss, z_a, z_b, prior, argnums=(0, 1), **COMPILE_KWARGS[mode]
        )
        scale = max(float(np.max(np.abs(g))) for g in eager)
        assert scale > 0.0
        for i in (0, 1):
            assert_close(grads[k][i], eager[i], "float64", scale=scale,
                         err_msg=f"compiled {name} {mode} d/d(z_{'ab'[i]})")


# Compiled float32 code may reorder reductions and fuse operations: a few ulps of each
# intermediate, far below the float32-vs-float64 tolerance.
FLOAT32_COMPILED_RTOL = 1e-5


def test_adc_torch_inductor_equals_eager_in_float32():
    # What users run: the default backend, generated C++, float32. Four bisection steps
    # instead of twenty: every step is the same code, and the C++ build time grows with
    # the number of unrolled steps.
    pytest.importorskip("torch")
    arrays = _compile_inputs()
    xs = [to_backend("torch", a, "float32" if i < 2 else None) for i, a in enumerate(arrays)]
    eager = to_numpy(_all_modes(*xs, perplexity_steps=4))
    compiled = compile_fn("torch", _all_modes, perplexity_steps=4)
    for _ in range(2):  # the second call runs the cached kernel, not the tracing path
        got = compiled(*xs)
        assert dtype_name(got) == "float32"
        assert_close(got, eager, "float32", rtol=FLOAT32_COMPILED_RTOL, scale=1.0,
                     err_msg="torch inductor, float32")


# --- the reference ------------------------------------------------------------------------


@given(
    case=st.sampled_from(MODES).flatmap(
        lambda mode: adc_cases(mode, ((2, 3), (3, 4), (6, 2)), max_frac=0.8)
    ),
    prior_mode=st.sampled_from(MODES),
)
def test_adc_parts_matches_reference(case: ADCCase, prior_mode: str):
    kw = dict(case.kwargs)
    m = 2 * len(case.z_a)
    # Mix the rules: the prior's rule is drawn independently of the features'.
    if prior_mode == "float":
        e = np.asarray(case.prior, dtype=np.float64).reshape(len(case.z_a), -1)
        kw["prior_bandwidth"] = 0.7 * half_median(ref_sq_distances(np.concatenate([e, e])))
    else:
        kw["prior_bandwidth"] = prior_mode
    kw.setdefault("perplexity", min(2.5, m - 1.5))
    kw.setdefault("prior_perplexity", min(1.8, m - 1.5))
    state = ref_adc(
        case.z_a, case.z_b, case.prior,
        **{k: kw[k] for k in ("rho", "normalize", "bandwidth", "prior_bandwidth",
                              "perplexity", "prior_perplexity", "prior_other_view")},
    )
    want = (kw["nu"] * state.dcm, kw["upsilon"] * state.lpm)
    got = glf_losses.adc_parts(case.z_a, case.z_b, case.prior, perplexity_steps=EXACT_STEPS, **kw)
    assert_close(got.dcm, want[0], "float64", scale=1.0, err_msg="dcm")
    assert_close(got.lpm, want[1], "float64", scale=1.0, err_msg="lpm")
    # The default 20 bisection steps resolve log(bandwidth) to ~1.4e-5, which moves the
    # loss by about as much relative to its size.
    default = glf_losses.adc_parts(case.z_a, case.z_b, case.prior, **kw)
    assert_close(default.dcm, want[0], "float64", rtol=1e-4, scale=1.0, err_msg="dcm, 20 steps")
    assert_close(default.lpm, want[1], "float64", rtol=1e-4, scale=1.0, err_msg="lpm, 20 steps")


def test_building_blocks_match_reference(backend: str):
    rng = np.random.default_rng(3)
    n = 4
    z_a, z_b = rng.standard_normal((n, 3)), rng.standard_normal((n, 3))
    prior = rng.integers(0, 256, size=(n, 2, 3)).astype(np.uint8)
    # The public building blocks take the full (M, M) mask: the other view included.
    state = ref_adc(z_a, z_b, prior, perplexity=3.0, prior_perplexity=2.0,
                    prior_other_view=True)
    m = 2 * n

    za, zb, pr = (to_backend(backend, a) for a in (z_a, z_b, prior))
    d = adc.feature_distances(za, zb)
    assert_close(d, state.d, "float64", scale=4.0, err_msg="feature_distances")
    raw = ref_sq_distances(np.concatenate([z_a, z_b]))
    assert_close(adc.feature_distances(za, zb, normalize=False), raw, "float64",
                 err_msg="feature_distances, not normalised")
    # An integer prior comes back as float32 distances (the dtype integers are cast to).
    r = adc.prior_distances(pr)
    assert dtype_name(r) == "float32"
    assert_close(r, state.r, "float32", err_msg="prior_distances")
    r = adc.prior_distances(to_backend(backend, prior, "float64"))
    assert_close(r, state.r, "float64", err_msg="prior_distances, float64")

    assert_close(adc.median_bandwidth(d), ref_median_bandwidth(state.d), "float64",
                 err_msg="median_bandwidth")
    b_feat = adc.perplexity_bandwidth(d, 3.0, n_steps=EXACT_STEPS)
    b_prior = adc.perplexity_bandwidth(r, 2.0, n_steps=EXACT_STEPS)
    assert tuple(b_feat.shape) == (m, 1)
    # sigma^2 = b / 2 for the features, tau = b for the prior.
    assert_close(to_numpy(b_feat)[:, 0] / 2.0, state.sigma2, "float64", err_msg="sigma^2")
    assert_close(to_numpy(b_prior)[:, 0], state.tau, "float64", err_msg="tau")
    sigma2 = adc.bandwidth(d, "perplexity", perplexity=3.0, n_steps=EXACT_STEPS)
    tau = adc.bandwidth(r, "perplexity", perplexity=2.0, n_steps=EXACT_STEPS, kind="prior")
    assert_close(to_numpy(sigma2)[:, 0], state.sigma2, "float64", err_msg="bandwidth features")
    assert_close(to_numpy(tau)[:, 0], state.tau, "float64", err_msg="bandwidth prior")
    for kind in ("features", "prior"):
        assert_close(adc.bandwidth(d, "median", kind=kind), ref_median_bandwidth(state.d),
                     "float64", err_msg=f"bandwidth median {kind}")
        assert adc.bandwidth(d, 0.25, kind=kind) == 0.25

    def rows(dist_rows: list[np.ndarray]) -> np.ndarray:
        """Per-anchor rows over j != i, placed back in an (M, M) matrix, zero diagonal."""
        out = np.zeros((m, m))
        for i, row in enumerate(dist_rows):
            out[i, others(m, i)] = row
        return out

    p_cal = adc.calibration_distribution(d, sigma2)
    assert_close(p_cal, rows(state.p_cal), "float64", err_msg="calibration_distribution")
    p_pre = adc.prior_distribution(r, tau)
    assert_close(p_pre, rows(state.p_pre), "float64", err_msg="prior_distribution")
    assert_close(adc.anchor_weights(p_pre), state.weights, "float64", err_msg="anchor_weights")
    for rho in (2.5, 3.0, 9.0):
        q = adc.data_distribution(d, sigma2, rho)
        want = rows([np.exp(ref_log_q(state.d[i, others(m, i)], state.sigma2[i], rho))
                     for i in range(m)])
        assert_close(q, want, "float64", err_msg=f"data_distribution rho={rho}")
    # Scalar bandwidths broadcast over every anchor.
    p_flat = adc.calibration_distribution(d, 0.4)
    want = rows([ref_softmax(-state.d[i, others(m, i)] / 0.8) for i in range(m)])
    assert_close(p_flat, want, "float64", err_msg="calibration_distribution, scalar sigma^2")
