"""SimSiam, VICReg, W-MSE and MoCo v3: every backend computes the official numbers.

- values: each ``*_loss`` and ``*_parts`` on NumPy, array-api-strict, PyTorch, JAX and
  TensorFlow, float64 (1e-10) and float32 (4 sqrt(eps_float32)), against the independent
  float64 references of ``zoo_references.py`` (written from the official code), on shapes
  and hyperparameters drawn by hypothesis;
- gradients: torch, jax and tensorflow against central differences of the reference
  (1e-6) and against each other (1e-10); stop-gradient inputs get exactly zero;
- compiled: ``jax.jit``, ``tf.function(jit_compile=True)`` and ``torch.compile`` give the
  eager values and gradients;
- properties that pin the conventions down (SimSiam vs BYOL, W-MSE's whitening and
  permutations, VICReg's parts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import zoo_references as ref
from hypothesis import given
from hypothesis import strategies as st

import glf_losses
from glf_losses import align, constrain
from glf_losses.testing import (
    FLOAT64_RTOL,
    assert_close,
    available_backends,
    batch_views,
    central_difference_grad,
    compile_fn,
    dtype_name,
    to_backend,
    to_numpy,
    value_and_grad,
)
from glf_losses.whitening import cholesky_whiten

Drawn = tuple[tuple[np.ndarray, ...], dict[str, Any]]

# --- inputs -------------------------------------------------------------------------------


def _wmse_inputs(
    seed: int, d: int, extra: int, blocks: int, w_iter: int, shuffled: bool, eps: float
) -> Drawn:
    """Views whose sub-batches (w_size = 2 D + extra rows) have full-rank covariances."""
    rng = np.random.default_rng(seed)
    w_size = 2 * d + extra
    n = w_size * blocks
    base = rng.standard_normal((n, d))
    z_a = base + 0.5 * rng.standard_normal((n, d)) + rng.uniform(-1, 1)
    z_b = base + 0.5 * rng.standard_normal((n, d))
    kwargs: dict[str, Any] = {"w_size": w_size, "eps": eps}
    if not shuffled:
        return (z_a, z_b), kwargs
    perms = np.stack([rng.permutation(n) for _ in range(w_iter)]).astype(np.int64)
    return (z_a, z_b, perms), kwargs


def wmse_draws(max_d: int = 6, max_blocks: int = 3) -> st.SearchStrategy[Drawn]:
    return st.builds(
        _wmse_inputs,
        seed=st.integers(0, 2**32 - 1),
        d=st.integers(1, max_d),
        extra=st.integers(0, 4),
        blocks=st.integers(1, max_blocks),
        w_iter=st.integers(1, 3),
        shuffled=st.booleans(),
        eps=st.sampled_from([0.0, 0.0, 1e-3, 0.1]),
    )


def _with(
    arrays: st.SearchStrategy[tuple[np.ndarray, ...]],
    kwargs: st.SearchStrategy[dict[str, Any]] | None = None,
) -> st.SearchStrategy[Drawn]:
    return st.tuples(arrays, kwargs if kwargs is not None else st.just({}))


def _moco_inputs(seed: int, n: int, d: int, k: int, scale: float) -> tuple[np.ndarray, ...]:
    """Queries, keys and (for k > 0) a queue of unit keys, as the official queue holds."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, d))
    q = scale * (base + 0.5 * rng.standard_normal((n, d)))
    key = base + 0.5 * rng.standard_normal((n, d))
    if k == 0:
        return q, key
    return q, key, ref.unit_rows(rng.standard_normal((k, d)))


def moco_draws(max_n: int, max_d: int, max_k: int) -> st.SearchStrategy[Drawn]:
    arrays = st.builds(
        _moco_inputs,
        seed=st.integers(0, 2**32 - 1),
        n=st.integers(1, max_n),
        d=st.integers(1, max_d),
        k=st.integers(0, max_k),
        scale=st.floats(0.3, 3.0),
    )
    return st.tuples(arrays, moco_kwargs)


vicreg_kwargs = st.fixed_dictionaries(
    {
        "sim_coeff": st.sampled_from([25.0, 1.0]),
        "std_coeff": st.sampled_from([25.0, 0.5]),
        "cov_coeff": st.sampled_from([1.0, 3.0]),
        "eps": st.sampled_from([1e-4, 0.0, 1e-2]),
    }
)
moco_kwargs = st.fixed_dictionaries({"temperature": st.floats(0.1, 1.0)})
dclw_kwargs = st.fixed_dictionaries(
    {"temperature": st.floats(0.1, 1.0), "sigma": st.sampled_from([0.5, 0.2, 2.0])}
)


# Views with stds both below and above 1, so VICReg's hinge is active and inactive.
def quads(**options: Any) -> st.SearchStrategy[tuple[np.ndarray, ...]]:
    return batch_views(4, **options)


def pairs(**options: Any) -> st.SearchStrategy[tuple[np.ndarray, ...]]:
    return batch_views(2, **options)


@dataclass(frozen=True)
class Method:
    """A method, its independent reference, and how to draw its arguments."""

    name: str
    loss: Callable[..., Any]
    parts: Callable[..., Any] | None  # None for a term, which has no parts
    reference: Callable[..., float]
    draws: st.SearchStrategy[Drawn]
    small_draws: st.SearchStrategy[Drawn]  # for finite differences
    # Inputs behind a stop-gradient: their autodiff gradient must be exactly zero.
    stopped: tuple[int, ...] = ()
    # The reference's (align, constrain), where the official code names them apart.
    reference_parts: Callable[..., tuple[float, float]] | None = None
    # Extra reference keywords that hold constant, during finite differences, what the
    # loss holds under stop-gradient (DCLW's weights).
    frozen: Callable[..., dict[str, Any]] | None = None


def _vicreg_parts(x, y, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0, eps=1e-4):
    repr_loss, std_loss, cov_loss = ref.ref_vicreg_terms(x, y, eps)
    return sim_coeff * repr_loss, std_coeff * std_loss + cov_coeff * cov_loss


def _zero_constraint(fn: Callable[..., float]) -> Callable[..., tuple[float, float]]:
    return lambda *a, **k: (fn(*a, **k), 0.0)


_small = {"max_n": 6, "max_d": 5, "scale": (0.3, 3.0), "max_shift": 1.0}

METHODS = [
    Method(
        "simsiam",
        glf_losses.simsiam_loss,
        glf_losses.simsiam_parts,
        ref.ref_simsiam,
        _with(quads(min_n=1, max_n=48, max_d=48)),
        _with(quads(min_n=1, **_small)),
        stopped=(2, 3),
        reference_parts=_zero_constraint(ref.ref_simsiam),
    ),
    Method(
        "vicreg",
        glf_losses.vicreg_loss,
        glf_losses.vicreg_parts,
        ref.ref_vicreg,
        _with(pairs(max_n=48, max_d=24, scale=(0.05, 5.0)), vicreg_kwargs),
        _with(pairs(**{**_small, "scale": (0.1, 3.0)}), vicreg_kwargs),
        reference_parts=_vicreg_parts,
    ),
    Method(
        "wmse",
        glf_losses.wmse_loss,
        glf_losses.wmse_parts,
        ref.ref_wmse,
        wmse_draws(),
        wmse_draws(max_d=3, max_blocks=2),
        reference_parts=_zero_constraint(ref.ref_wmse),
    ),
    Method(
        "mocov3",
        glf_losses.mocov3_loss,
        glf_losses.mocov3_parts,
        ref.ref_mocov3,
        _with(quads(max_n=48, max_d=48), moco_kwargs),
        _with(quads(**_small), moco_kwargs),
        stopped=(2, 3),
    ),
]
METHODS += [
    Method(
        "moco",
        glf_losses.moco_loss,
        glf_losses.moco_parts,
        ref.ref_moco,
        moco_draws(max_n=32, max_d=32, max_k=48),
        moco_draws(max_n=5, max_d=4, max_k=4),
        stopped=(1, 2),
    ),
    Method(
        "dcl",
        glf_losses.dcl_loss,
        glf_losses.dcl_parts,
        ref.ref_dcl,
        _with(pairs(max_n=32, max_d=32), moco_kwargs),
        _with(pairs(**_small), moco_kwargs),
    ),
    Method(
        "dclw",
        glf_losses.dclw_loss,
        glf_losses.dclw_parts,
        ref.ref_dclw,
        _with(pairs(max_n=32, max_d=32), dclw_kwargs),
        _with(pairs(**_small), dclw_kwargs),
        frozen=lambda z_a, z_b, temperature, sigma: {
            "weights": ref.ref_dclw_weights(z_a, z_b, sigma)
        },
    ),
]
au_kwargs = st.fixed_dictionaries(
    {
        "alpha": st.sampled_from([2.0, 1.5, 3.0]),
        "t": st.sampled_from([2.0, 0.5, 5.0]),
        "align_weight": st.sampled_from([1.0, 0.5]),
        "uniform_weight": st.sampled_from([1.0, 2.0]),
    }
)
METHODS += [
    Method(
        "alignment_uniformity",
        glf_losses.alignment_uniformity_loss,
        glf_losses.alignment_uniformity_parts,
        ref.ref_align_uniform_loss,
        _with(pairs(max_n=32, max_d=32), au_kwargs),
        _with(pairs(**_small), au_kwargs),
        reference_parts=ref.ref_align_uniform,
    ),
    Method(
        "koleo",
        constrain.koleo,
        None,
        ref.ref_koleo,
        _with(batch_views(1, min_d=2, max_n=32, max_d=32)),
        _with(batch_views(1, min_d=2, **_small)),
        frozen=lambda z, **_: {"neighbours": ref.ref_koleo_neighbours(z)},
    ),
]


def _tico_inputs(seed: int, n: int, d: int, scale: float) -> tuple[np.ndarray, ...]:
    """Two views and a running covariance: a positive semi-definite (D, D) state."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, d))
    z_a = scale * (base + 0.5 * rng.standard_normal((n, d)))
    z_b = base + 0.5 * rng.standard_normal((n, d))
    earlier = ref.unit_rows(rng.standard_normal((2 * d, d)))
    return z_a, z_b, earlier.T @ earlier / (2 * d)


def tico_draws(max_n: int, max_d: int) -> st.SearchStrategy[Drawn]:
    arrays = st.builds(
        _tico_inputs,
        seed=st.integers(0, 2**32 - 1),
        n=st.integers(1, max_n),
        d=st.integers(1, max_d),
        scale=st.floats(0.3, 3.0),
    )
    kwargs = st.fixed_dictionaries(
        {"beta": st.sampled_from([0.9, 0.0, 0.5, 1.0]), "rho": st.sampled_from([20.0, 8.0])}
    )
    return st.tuples(arrays, kwargs)


METHODS += [
    Method(
        "tico",
        glf_losses.tico_loss,
        glf_losses.tico_parts,
        ref.ref_tico,
        tico_draws(max_n=32, max_d=32),
        tico_draws(max_n=5, max_d=4),
        stopped=(2,),
        reference_parts=ref.ref_tico_parts,
    )
]


def _mmcr_inputs(seed: int, b: int, k: int, d: int, lmbda: float) -> Drawn:
    """B samples of K noisy views each, in the official "(B N) C" row order."""
    rng = np.random.default_rng(seed)
    base = np.repeat(rng.standard_normal((b, d)), k, axis=0)
    return (base + 0.5 * rng.standard_normal((b * k, d)),), {"n_views": k, "lmbda": lmbda}


def mmcr_draws(max_b: int, max_k: int, max_d: int) -> st.SearchStrategy[Drawn]:
    return st.builds(
        _mmcr_inputs,
        seed=st.integers(0, 2**32 - 1),
        b=st.integers(1, max_b),
        k=st.integers(1, max_k),
        d=st.integers(1, max_d),
        lmbda=st.sampled_from([0.0, 0.5]),
    )


METHODS += [
    Method(
        "mmcr",
        glf_losses.mmcr_loss,
        glf_losses.mmcr_parts,
        ref.ref_mmcr,
        mmcr_draws(max_b=16, max_k=6, max_d=16),
        mmcr_draws(max_b=4, max_k=3, max_d=4),
        reference_parts=ref.ref_mmcr_parts,
    )
]


def _nnclr_inputs(seed: int, n: int, d: int, q: int, scale: float) -> tuple[np.ndarray, ...]:
    """Predictions, projections and a support set of unit rows (no near-ties)."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, d))
    views = [scale * (base + 0.5 * rng.standard_normal((n, d))) for _ in range(4)]
    return (*views, ref.unit_rows(rng.standard_normal((q, d))))


def nnclr_draws(max_n: int, max_d: int, max_q: int) -> st.SearchStrategy[Drawn]:
    arrays = st.builds(
        _nnclr_inputs,
        seed=st.integers(0, 2**32 - 1),
        n=st.integers(1, max_n),
        d=st.integers(2, max_d),
        q=st.integers(1, max_q),
        scale=st.floats(0.3, 3.0),
    )
    return st.tuples(arrays, moco_kwargs)


METHODS += [
    Method(
        "nnclr",
        glf_losses.nnclr_loss,
        glf_losses.nnclr_parts,
        ref.ref_nnclr,
        nnclr_draws(max_n=24, max_d=16, max_q=48),
        nnclr_draws(max_n=5, max_d=4, max_q=6),
        stopped=(2, 3, 4),
    )
]
def _dino_inputs(
    seed: int, v: int, g: int, n: int, k: int, scale: float
) -> tuple[np.ndarray, ...]:
    """Student logits of V crops, teacher logits of the first G, and a running centre."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, k))
    student = scale * (base + 0.7 * rng.standard_normal((v, n, k)))
    teacher = base + 0.7 * rng.standard_normal((g, n, k))
    return student, teacher, 0.3 * rng.standard_normal(k)


def dino_draws(max_v: int, max_n: int, max_k: int) -> st.SearchStrategy[Drawn]:
    arrays = st.integers(2, max_v).flatmap(
        lambda v: st.builds(
            _dino_inputs,
            seed=st.integers(0, 2**32 - 1),
            v=st.just(v),
            g=st.integers(1, min(v, 3)),
            n=st.integers(1, max_n),
            k=st.integers(2, max_k),
            scale=st.floats(0.3, 3.0),
        )
    )
    kwargs = st.fixed_dictionaries(
        {
            "student_temperature": st.sampled_from([0.1, 0.2, 0.5]),
            "teacher_temperature": st.sampled_from([0.04, 0.07, 0.3]),
        }
    )
    return st.tuples(arrays, kwargs)


def _swav_multicrop_inputs(
    seed: int, n: int, k: int, n_local: int, q: int, noise: float
) -> tuple[np.ndarray, ...]:
    """Cosine scores of 2 global and L local crops; with q > 0, queues of q rows each."""
    rng = np.random.default_rng(seed)
    prototypes = ref.unit_rows(rng.standard_normal((k, 6)))
    base = rng.standard_normal((n, 6))

    def scores(z: np.ndarray) -> np.ndarray:
        noisy = ref.unit_rows(z + noise * rng.standard_normal(z.shape))
        return np.clip(noisy @ prototypes.T, -1.0, 1.0)

    global_crops = (scores(base), scores(base))
    local = np.stack([scores(base) for _ in range(n_local)])
    if q == 0:
        return (*global_crops, local)
    earlier = rng.standard_normal((2, q, 6))
    return (*global_crops, local, scores(earlier[0]), scores(earlier[1]))


def swav_multicrop_draws(max_n: int, max_k: int, max_local: int) -> st.SearchStrategy[Drawn]:
    arrays = st.builds(
        _swav_multicrop_inputs,
        seed=st.integers(0, 2**32 - 1),
        n=st.integers(2, max_n),
        k=st.integers(2, max_k),
        n_local=st.integers(1, max_local),
        q=st.sampled_from([0, 0, 8]),
        noise=st.floats(0.05, 2.0),
    )
    kwargs = st.fixed_dictionaries(
        {
            "temperature": st.floats(0.1, 1.0),
            "epsilon": st.floats(0.05, 0.5),
            "sinkhorn_iters": st.integers(1, 4),
        }
    )
    return st.tuples(arrays, kwargs)


def swav_multicrop_loss(s_a, s_b, local, queue_a=None, queue_b=None, **kwargs: Any) -> Any:
    """``swav_loss`` with the local crops' scores third, for the positional harness."""
    return glf_losses.swav_loss(
        s_a, s_b, queue_a=queue_a, queue_b=queue_b, local_scores=local, **kwargs
    )


def swav_multicrop_parts(s_a, s_b, local, queue_a=None, queue_b=None, **kwargs: Any) -> Any:
    return glf_losses.swav_parts(
        s_a, s_b, queue_a=queue_a, queue_b=queue_b, local_scores=local, **kwargs
    )


def _swav_multicrop_codes(s_a, s_b, local, queue_a=None, queue_b=None, **kwargs: Any) -> dict:
    codes = ref.ref_swav_multicrop_codes(
        s_a, s_b, queue_a, queue_b, kwargs["epsilon"], kwargs["sinkhorn_iters"]
    )
    return {"codes": codes}


METHODS += [
    Method(
        "dino",
        glf_losses.dino_loss,
        glf_losses.dino_parts,
        ref.ref_dino,
        dino_draws(max_v=6, max_n=16, max_k=24),
        dino_draws(max_v=4, max_n=3, max_k=4),
        stopped=(1, 2),
        reference_parts=_zero_constraint(ref.ref_dino),
    ),
    Method(
        "swav_multicrop",
        swav_multicrop_loss,
        swav_multicrop_parts,
        ref.ref_swav_multicrop,
        swav_multicrop_draws(max_n=16, max_k=16, max_local=4),
        swav_multicrop_draws(max_n=4, max_k=4, max_local=2),
        stopped=(3, 4),
        reference_parts=_zero_constraint(ref.ref_swav_multicrop),
        frozen=_swav_multicrop_codes,
    ),
]
IDS = [m.name for m in METHODS]


def _method(name: str) -> Method:
    return next(m for m in METHODS if m.name == name)


def _to(backend: str, a: np.ndarray, dtype: str) -> Any:
    # Integer inputs (W-MSE's permutations) keep their dtype.
    return to_backend(backend, a, dtype if a.dtype.kind == "f" else None)


def _evaluate(backend: str, fn: Callable[..., Any], xs: list[Any], kwargs: dict) -> Any:
    if backend == "jax":
        # One jit per drawn shape: eager JAX compiles every primitive for every new shape.
        return compile_fn("jax", fn, **kwargs)(*xs)
    return fn(*xs, **kwargs)


# --- values -------------------------------------------------------------------------------


def _loss_and_parts(method: Method) -> Callable[..., Any]:
    def both(*arrays: Any, **kwargs: Any) -> tuple[Any, Any]:
        if method.parts is None:
            return method.loss(*arrays, **kwargs), None
        return method.loss(*arrays, **kwargs), method.parts(*arrays, **kwargs)

    return both


@pytest.mark.parametrize("method", METHODS, ids=IDS)
@given(data=st.data())
def test_values_match_the_official_reference(
    backend: str, method: Method, data: st.DataObject
) -> None:
    arrays, kwargs = data.draw(method.draws, label="arguments")
    want = method.reference(*arrays, **kwargs)
    want_parts = method.reference_parts(*arrays, **kwargs) if method.reference_parts else None
    for dtype in ("float64", "float32"):
        xs = [_to(backend, a, dtype) for a in arrays]
        what = f"{method.name} {backend} {dtype}"
        # One function for both, so that JAX compiles once per shape and dtype.
        loss, parts = _evaluate(backend, _loss_and_parts(method), xs, kwargs)
        assert dtype_name(loss) == dtype, what
        assert_close(loss, want, dtype, scale=1.0 + abs(want), err_msg=what)
        if parts is None:
            continue
        assert type(parts).__name__ == "GLFParts", what
        assert_close(parts.align + parts.constrain, want, dtype, scale=1.0 + abs(want))
        if want_parts is not None:
            for got, expected, name in zip(parts, want_parts, ("align", "constrain"), strict=True):
                assert_close(got, expected, dtype, scale=1.0 + abs(want), err_msg=f"{what} {name}")


# --- gradients ------------------------------------------------------------------------------

AUTODIFF = available_backends(autodiff_only=True)
_PARTNERS = {
    "torch": ("tensorflow", "jax"),
    "jax": ("torch", "tensorflow"),
    "tensorflow": ("torch", "jax"),
}
FD_RTOL = 1e-6


def _float_positions(arrays: tuple[np.ndarray, ...]) -> tuple[int, ...]:
    return tuple(i for i, a in enumerate(arrays) if a.dtype.kind == "f")


@pytest.mark.parametrize("method", METHODS, ids=IDS)
@given(data=st.data())
def test_gradients_match_the_reference_and_other_frameworks(
    autodiff_backend: str, method: Method, data: st.DataObject
) -> None:
    arrays, kwargs = data.draw(method.small_draws, label="arguments")
    argnums = _float_positions(arrays)
    value, grads = value_and_grad(
        autodiff_backend, method.loss, *arrays, argnums=argnums, jax_jit=True, **kwargs
    )
    want = method.reference(*arrays, **kwargs)
    assert_close(value, want, "float64", scale=1.0 + abs(want))

    numeric = {}
    held = method.frozen(*arrays, **kwargs) if method.frozen else {}
    for i in argnums:
        if i in method.stopped:
            continue

        def along(x: np.ndarray, i: int = i) -> float:
            args = list(arrays)
            args[i] = x
            return method.reference(*args, **kwargs, **held)

        numeric[i] = central_difference_grad(along, arrays[i])
    scale = max(max(float(np.max(np.abs(g))) for g in numeric.values()), 0.1)
    for i, grad in zip(argnums, grads, strict=True):
        assert grad.shape == arrays[i].shape
        if i in method.stopped:
            assert np.all(grad == 0.0), f"gradient reached stop-gradient input {i}"
        else:
            assert_close(
                grad,
                numeric[i],
                "float64",
                rtol=FD_RTOL,
                scale=scale,
                err_msg=f"{method.name} d/d(arg {i}) {autodiff_backend} vs finite differences",
            )

    partner = next((p for p in _PARTNERS[autodiff_backend] if p in AUTODIFF), None)
    if partner is None:
        return
    _, theirs = value_and_grad(
        partner, method.loss, *arrays, argnums=argnums, jax_jit=True, **kwargs
    )
    # Floored as against finite differences: a gradient that vanishes by cancellation
    # (one sample in one dimension, where the normalisation's Jacobian is 0) keeps the
    # rounding of the terms that cancel, which two frameworks' kernels need not share.
    scale = max(max(float(np.max(np.abs(g))) for g in theirs), 0.1)
    for i, mine, other in zip(argnums, grads, theirs, strict=True):
        assert_close(
            mine,
            other,
            "float64",
            scale=scale,
            err_msg=f"{method.name} d/d(arg {i}) {autodiff_backend} vs {partner}",
        )


# --- compiled ---------------------------------------------------------------------------------


def _fixed(method: Method, seed: int) -> Drawn:
    """A fixed argument set per method (the compiled tests use fixed shapes)."""
    rng = np.random.default_rng(seed)
    if method.name == "wmse":
        return _wmse_inputs(seed, d=4, extra=2, blocks=2, w_iter=2, shuffled=True, eps=0.0)
    if method.name == "moco":
        return _moco_inputs(seed, n=12, d=6, k=24, scale=1.0), {"temperature": 0.3}
    if method.name == "tico":
        return _tico_inputs(seed, n=12, d=6, scale=1.0), {"rho": 8.0}
    if method.name == "mmcr":
        return _mmcr_inputs(seed, b=6, k=3, d=5, lmbda=0.5)
    if method.name == "nnclr":
        return _nnclr_inputs(seed, n=12, d=6, q=20, scale=1.0), {"temperature": 0.3}
    if method.name == "koleo":
        return (rng.standard_normal((12, 6)),), {}
    if method.name == "dino":
        return _dino_inputs(seed, v=4, g=2, n=6, k=5, scale=1.0), {"teacher_temperature": 0.07}
    if method.name == "swav_multicrop":
        return _swav_multicrop_inputs(seed, n=6, k=5, n_local=2, q=8, noise=0.5), {}
    count = 4 if method.name in ("simsiam", "mocov3") else 2
    base = rng.standard_normal((12, 6))
    arrays = tuple(base + 0.6 * rng.standard_normal((12, 6)) for _ in range(count))
    kwargs = {"temperature": 0.3} if method.name in ("mocov3", "dcl", "dclw") else {}
    return arrays, kwargs


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_eager_values_match_the_reference_at_a_fixed_shape(backend: str, method: Method) -> None:
    # Eager JAX too (the drawn-shape test runs JAX under jit).
    arrays, kwargs = _fixed(method, seed=7)
    want = method.reference(*arrays, **kwargs)
    got = method.loss(*(_to(backend, a, "float64") for a in arrays), **kwargs)
    assert_close(got, want, "float64", scale=1.0 + abs(want), err_msg=f"{method.name} {backend}")


COMPILERS = [
    pytest.param(b, opts, id=ident)
    for b, opts, ident in [
        ("jax", {}, "jax.jit"),
        ("tensorflow", {"jit_compile": True}, "tf.function-xla"),
        ("torch", {"torch_backend": "aot_eager"}, "torch.compile-aot_eager"),
    ]
    if b in AUTODIFF
]


@pytest.mark.parametrize(("backend", "options"), COMPILERS)
@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_compiled_values_equal_eager(backend: str, options: dict, method: Method) -> None:
    arrays, kwargs = _fixed(method, seed=8)
    for fn, dtype in ((method.loss, "float64"), (method.parts or method.loss, "float32")):
        xs = [_to(backend, a, dtype) for a in arrays]
        eager = to_numpy(fn(*xs, **kwargs))
        compiled = compile_fn(backend, fn, **options, **kwargs)
        rtol = 1e-5 if dtype == "float32" else FLOAT64_RTOL
        for _ in range(2):  # the second call runs the cached executable
            out = to_numpy(compiled(*xs))
            for got, expected in zip(np.atleast_1d(out), np.atleast_1d(eager), strict=True):
                assert_close(got, expected, dtype, rtol=rtol, scale=1.0, err_msg=method.name)


def _compiled_value_and_grad(backend: str, method: Method, arrays, kwargs, argnums):
    fn = method.loss
    xs = [
        to_backend(backend, a, requires_grad=backend == "torch" and i in argnums)
        for i, a in enumerate(arrays)
    ]
    if backend == "jax":
        import jax

        vg = jax.jit(jax.value_and_grad(lambda *a: fn(*a, **kwargs), argnums=argnums))
        value, grads = vg(*xs)
    elif backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def vg(*a: Any) -> Any:
            with tf.GradientTape() as tape:
                wrt = [a[i] for i in argnums]
                tape.watch(wrt)
                value = fn(*a, **kwargs)
            grads = tape.gradient(value, wrt, unconnected_gradients="zero")
            return value, [tf.convert_to_tensor(g) for g in grads]

        value, grads = vg(*xs)
    else:
        compiled = compile_fn("torch", fn, torch_backend="aot_eager", **kwargs)
        value = compiled(*xs)
        value.backward()
        grads = [xs[i].grad if xs[i].grad is not None else 0 * xs[i] for i in argnums]
    return float(to_numpy(value)), [to_numpy(g) for g in grads]


# TensorFlow's XLA lowers the SVD to its own one-sided Jacobi iteration, whose singular
# vectors (and so the nuclear norm's gradient U V^T) agree with LAPACK's to ~3e-7 in
# float64 (measured: 3.3e-7 relative on MMCR's 6 x 5 centroids); its values agree to 1e-10.
COMPILED_GRAD_RTOL = {("mmcr", "tensorflow"): 1e-6}


@pytest.mark.parametrize("backend", AUTODIFF)
@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_compiled_gradients_equal_eager(backend: str, method: Method) -> None:
    arrays, kwargs = _fixed(method, seed=9)
    argnums = _float_positions(arrays)
    value, grads = _compiled_value_and_grad(backend, method, arrays, kwargs, argnums)
    eager_value, eager_grads = value_and_grad(
        backend, method.loss, *arrays, argnums=argnums, **kwargs
    )
    assert_close(value, eager_value, "float64", scale=1.0)
    scale = max(float(np.max(np.abs(g))) for g in eager_grads)
    rtol = COMPILED_GRAD_RTOL.get((method.name, backend))
    for i, g, e in zip(argnums, grads, eager_grads, strict=True):
        assert_close(g, e, "float64", rtol=rtol, scale=scale, err_msg=f"{method.name} d/d(arg {i})")


# Inductor generates and compiles C++ for each function (~10 s on a busy CPU): the methods
# whose operations are the furthest from the others' (linear algebra, a gather by argmax,
# masked log-sum-exp); every method runs under torch.compile (aot_eager) above.
INDUCTOR = ["wmse", "mmcr", "koleo", "nnclr", "dclw"]


@pytest.mark.parametrize("method", [_method(name) for name in INDUCTOR], ids=INDUCTOR)
def test_torch_inductor_equals_eager_in_float32(method: Method) -> None:
    # What users run: the default backend, generated C++ on CPU.
    pytest.importorskip("torch")
    arrays, kwargs = _fixed(method, seed=10)
    xs = [_to("torch", a, "float32") for a in arrays]
    eager = to_numpy(method.loss(*xs, **kwargs))
    compiled = compile_fn("torch", method.loss, **kwargs)
    assert_close(compiled(*xs), eager, "float32", rtol=1e-5, scale=1.0, err_msg=method.name)


# --- properties pinning the conventions down ------------------------------------------------


@given(quads(max_n=16, max_d=16))
def test_simsiam_is_byol_rescaled(arrays: tuple[np.ndarray, ...]) -> None:
    # BYOL's 2 - 2 cos per direction, summed; SimSiam's -cos per direction, averaged.
    byol = float(glf_losses.byol_loss(*arrays))
    assert_close(glf_losses.simsiam_loss(*arrays), byol / 4.0 - 1.0, "float64", scale=1.0)
    assert_close(
        align.negative_cosine(arrays[0], arrays[3]),
        align.normalized_mse(arrays[0], arrays[3]) / 2 - 1,
        "float64",
        scale=1.0,
    )


@given(wmse_draws(max_d=5))
def test_whitened_sub_batches_have_zero_mean_and_identity_covariance(drawn: Drawn) -> None:
    arrays, kwargs = drawn
    z, w_size = arrays[0], kwargs["w_size"]
    perm = arrays[2][0] if len(arrays) == 3 else None
    whitened = cholesky_whiten(z, w_size=w_size, permutation=perm)
    for block in whitened.reshape(-1, w_size, z.shape[1]):
        assert_close(block.mean(axis=0), np.zeros(z.shape[1]), "float64", scale=1.0)
        assert_close(
            np.cov(block, rowvar=False).reshape(z.shape[1], -1),
            np.eye(z.shape[1]),
            "float64",
            rtol=1e-8,
            scale=1.0,
        )


def test_wmse_conventions() -> None:
    (z_a, z_b, perms), kwargs = _wmse_inputs(
        3, d=3, extra=1, blocks=3, w_iter=3, shuffled=True, eps=0.0
    )
    w_size = kwargs["w_size"]
    # Several whitening iterations average the single-permutation losses.
    singles = [glf_losses.wmse_loss(z_a, z_b, p[None], w_size=w_size) for p in perms]
    assert_close(
        glf_losses.wmse_loss(z_a, z_b, perms, w_size=w_size), np.mean(singles), "float64", scale=1.0
    )
    # The identity permutation is the contiguous default; sub-batches do matter.
    identity = np.arange(len(z_a))[None]
    contiguous = float(glf_losses.wmse_loss(z_a, z_b, w_size=w_size))
    assert_close(
        glf_losses.wmse_loss(z_a, z_b, identity, w_size=w_size), contiguous, "float64", scale=1.0
    )
    assert abs(float(singles[0]) - contiguous) > 1e-6
    # Whitening per sub-batch undoes per-sub-batch shifts and positive column scales.
    assert_close(
        glf_losses.wmse_loss(z_a, 3.0 * z_b - 2.0, w_size=w_size), contiguous, "float64", scale=1.0
    )
    # w_size=None whitens the whole batch.
    assert_close(
        glf_losses.wmse_loss(z_a, z_b, w_size=None),
        ref.ref_wmse(z_a, z_b, w_size=len(z_a)),
        "float64",
        scale=1.0,
    )


def test_vicreg_terms_and_defaults() -> None:
    (z_a, z_b), _ = _fixed(_method("vicreg"), seed=11)
    repr_loss, std_loss, cov_loss = ref.ref_vicreg_terms(z_a, z_b)
    assert_close(align.mean_squared_error(z_a, z_b), repr_loss, "float64", scale=1.0)
    assert_close(constrain.variance(z_a, z_b), std_loss, "float64", scale=1.0)
    assert_close(constrain.covariance(z_a, z_b), cov_loss, "float64", scale=1.0)
    # The defaults are the official 25 / 25 / 1 and eps = 1e-4.
    want = 25.0 * repr_loss + 25.0 * std_loss + 1.0 * cov_loss
    assert_close(glf_losses.vicreg_loss(z_a, z_b), want, "float64", scale=1.0)
    # The hinge is active: stds below 1 are penalised, so the test can tell eps apart.
    assert std_loss > 0.0 or cov_loss > 0.0


def test_mocov3_parts_split_positive_and_log_sum_exp() -> None:
    (q_a, q_b, k_a, k_b), _ = _fixed(_method("mocov3"), seed=12)
    t = 0.2
    parts = glf_losses.mocov3_parts(q_a, q_b, k_a, k_b, temperature=t)

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    positive = -2.0 * (
        np.mean(np.sum(unit(q_a) * unit(k_b), axis=1))
        + np.mean(np.sum(unit(q_b) * unit(k_a), axis=1))
    )
    assert_close(parts.align, positive, "float64", scale=1.0)
    assert_close(parts.total, ref.ref_mocov3(q_a, q_b, k_a, k_b, t), "float64", scale=1.0)
    # The default temperature is the ResNet recipe's 1.0.
    assert_close(
        glf_losses.mocov3_loss(q_a, q_b, k_a, k_b),
        ref.ref_mocov3(q_a, q_b, k_a, k_b, 1.0),
        "float64",
        scale=1.0,
    )


def test_moco_queue_holds_the_official_ring_buffer_keys() -> None:
    # Several steps of the official (D, K) ring buffer and of the functional queue: the
    # same keys, so the same losses, step after step.
    rng = np.random.default_rng(13)
    n, d, k_size = 4, 5, 12
    ring = ref.unit_rows(rng.standard_normal((k_size, d))).T.copy()
    queue, ptr = ring.T.copy(), 0
    for _ in range(5):
        q, key = rng.standard_normal((2, n, d))
        want = ref.ref_moco(q, key, ring.T, temperature=0.2)
        assert_close(glf_losses.moco_loss(q, key, queue), want, "float64", scale=1.0)
        ptr = ref.ref_moco_ring_enqueue(ring, ptr, key)
        queue = glf_losses.moco_enqueue(queue, key)
        assert queue.shape == (k_size, d)
        got, expected = np.sort(queue, axis=0), np.sort(ring.T, axis=0)
        assert_close(got, expected, "float64", scale=1.0)
        # The ring buffer rotated by its pointer, row for row.
        assert_close(queue, np.roll(ring.T, -ptr, axis=0), "float64", scale=1.0)
    # The newest keys come last, normalised; a queue shorter than the batch keeps the
    # newest keys.
    assert_close(queue[-n:], ref.unit_rows(key), "float64", scale=1.0)
    assert_close(glf_losses.moco_enqueue(queue[:2], key), ref.unit_rows(key)[-2:], "float64")


def test_dcl_drops_the_positive_from_simclr_denominator() -> None:
    (z_a, z_b), _ = _fixed(_method("dcl"), seed=14)
    t = 0.3
    dcl = glf_losses.dcl_parts(z_a, z_b, temperature=t)
    simclr = glf_losses.simclr_parts(z_a, z_b, temperature=t)
    # Same positive term (SimCLR averages the two directions, DCL sums them) ...
    assert_close(dcl.align, 2.0 * simclr.align, "float64", scale=1.0)
    # ... and a smaller denominator: the positive is out of it.
    assert float(dcl.constrain) < 2.0 * float(simclr.constrain)
    # DCLW's weights average to 1, and equal similarities give DCL back.
    w = ref.ref_dclw_weights(z_a, z_b)
    assert_close(np.mean(w), 1.0, "float64", scale=1.0)
    same = np.eye(4)
    assert_close(glf_losses.dclw_loss(same, same), glf_losses.dcl_loss(same, same), "float64")


def test_tico_state_is_the_covariance_the_loss_used() -> None:
    (z_a, z_b, c0), _ = _fixed(_method("tico"), seed=15)
    beta = 0.9
    c1 = glf_losses.tico_covariance(z_a, c0, beta=beta)
    u = ref.unit_rows(z_a)
    assert_close(c1, beta * c0 + (1 - beta) * u.T @ u / len(u), "float64", scale=1.0)
    # The loss's contrast is u^T C' u with that same C'.
    parts = glf_losses.tico_parts(z_a, z_b, c0, beta=beta, rho=1.0)
    assert_close(parts.constrain, np.mean(np.sum((u @ c1) * u, axis=1)), "float64", scale=1.0)
    # A step from zeros, then the next step from the returned state.
    c = np.zeros_like(c0)
    for step in range(3):
        want = ref.ref_tico(z_a + step, z_b, c)
        assert_close(glf_losses.tico_loss(z_a + step, z_b, c), want, "float64", scale=1.0)
        c = glf_losses.tico_covariance(z_a + step, c)


def test_nnclr_support_set_and_neighbours() -> None:
    (p_a, p_b, z_a, _, support), _ = _fixed(_method("nnclr"), seed=16)
    # With view a's projections as the support set and as both views, each neighbour is
    # the projection itself: NNCLR is then in-batch InfoNCE of the projections against
    # the predictions, i.e. MoCo without a queue, both directions averaged.
    own = ref.unit_rows(z_a)
    got = glf_losses.nnclr_loss(p_a, p_b, z_a, z_a, own, temperature=0.2)
    want = 0.5 * (
        glf_losses.moco_loss(z_a, p_b, temperature=0.2)
        + glf_losses.moco_loss(z_a, p_a, temperature=0.2)
    )
    assert_close(got, want, "float64", scale=1.0)
    # The support set is a first-in first-out queue of view a's normalised projections.
    updated = glf_losses.nnclr_enqueue(support, z_a)
    assert_close(updated[-len(z_a) :], own, "float64", scale=1.0)
    assert_close(updated[: len(support) - len(z_a)], support[len(z_a) :], "float64")


def test_swav_without_local_crops_is_the_two_crop_loss() -> None:
    (s_a, s_b, local, q_a, q_b), _ = _fixed(_method("swav_multicrop"), seed=17)
    for queues in ({}, {"queue_a": q_a, "queue_b": q_b}):
        two_crop = glf_losses.swav_loss(s_a, s_b, **queues)
        # None is exactly today's computation, not merely close to it.
        assert float(glf_losses.swav_loss(s_a, s_b, **queues, local_scores=None)) == float(
            two_crop
        )
        # No local crops (L = 0) is the two-crop loss too, through the multi-crop path.
        empty = local[:0]
        assert_close(
            glf_losses.swav_loss(s_a, s_b, **queues, local_scores=empty), two_crop, "float64"
        )
        assert_close(
            ref.ref_swav_multicrop(s_a, s_b, empty, **queues), two_crop, "float64", scale=1.0
        )
        # Local crops change the loss.
        with_local = glf_losses.swav_loss(s_a, s_b, **queues, local_scores=local)
        assert abs(float(with_local) - float(two_crop)) > 1e-6
    # The local crops predict the global crops' codes and have none of their own: with
    # one local crop, a copy of crop a, each global crop's codes meet the 2 other crops.
    q_a, q_b = constrain.sinkhorn(s_a), constrain.sinkhorn(s_b)
    log_p_a = s_a / 0.1 - np.log(np.sum(np.exp(s_a / 0.1), axis=1, keepdims=True))
    log_p_b = s_b / 0.1 - np.log(np.sum(np.exp(s_b / 0.1), axis=1, keepdims=True))
    terms = q_a * (log_p_b + log_p_a) + q_b * (log_p_a + log_p_a)
    want = -np.mean(np.sum(terms, axis=1)) / (2 * 2)
    copied = glf_losses.swav_loss(s_a, s_b, local_scores=s_a[None])
    assert_close(copied, want, "float64", scale=1.0)
    parts = glf_losses.swav_parts(s_a, s_b, local_scores=local)
    assert float(parts.constrain) == 0.0


def test_swav_prototype_parts_scores_the_local_crops() -> None:
    rng = np.random.default_rng(18)
    z_a, z_b, w = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)), rng.normal(size=(5, 4))
    local_z = rng.normal(size=(3, 6, 4))

    def scores(z: np.ndarray) -> np.ndarray:
        return ref.unit_rows(z) @ ref.unit_rows(w).T

    local = np.stack([scores(z) for z in local_z])
    got = glf_losses.swav_prototype_parts(z_a, z_b, w, local_z=local_z)
    want = ref.ref_swav_multicrop(scores(z_a), scores(z_b), local)
    assert_close(got.total, want, "float64", scale=1.0)
    without = glf_losses.swav_prototype_parts(z_a, z_b, w)
    assert_close(without.total, glf_losses.swav_loss(scores(z_a), scores(z_b)), "float64")


def test_dino_center_is_the_official_update_and_the_loss_uses_the_old_one() -> None:
    (student, teacher, _), _ = _fixed(_method("dino"), seed=19)
    center = np.zeros(teacher.shape[2])
    for step in range(3):
        shifted = teacher + step
        want = ref.ref_dino(student, shifted, center)
        assert_close(glf_losses.dino_loss(student, shifted, center), want, "float64", scale=1.0)
        new = glf_losses.dino_center(shifted, center)
        assert_close(new, ref.ref_dino_center(shifted, center, 0.9), "float64", scale=1.0)
        center = new
    assert_close(
        glf_losses.dino_center(teacher, center, momentum=0.0),
        teacher.reshape(-1, teacher.shape[2]).mean(axis=0),
        "float64",
        scale=1.0,
    )
    assert np.array_equal(glf_losses.dino_center(teacher, center, momentum=1.0), center)
    # The state keeps its dtype; the mean is computed in the wider one.
    assert glf_losses.dino_center(teacher, center.astype(np.float32)).dtype == np.float32


def test_dino_targets_are_centred_and_sharpened() -> None:
    (student, teacher, center), _ = _fixed(_method("dino"), seed=20)
    loss = float(glf_losses.dino_loss(student, teacher, center))
    # Centring: a shift of every teacher output that the centre also made cancels.
    shift = np.linspace(-1.0, 2.0, teacher.shape[2])
    assert_close(
        glf_losses.dino_loss(student, teacher + shift, center + shift), loss, "float64", scale=1.0
    )
    # The centre matters otherwise, and so does the teacher temperature.
    assert abs(float(glf_losses.dino_loss(student, teacher, center + shift)) - loss) > 1e-6
    hot = float(glf_losses.dino_loss(student, teacher, center, teacher_temperature=1.0))
    assert abs(hot - loss) > 1e-6
    # A uniform student costs log K against any target, for every temperature.
    flat = np.zeros_like(student)
    assert_close(
        glf_losses.dino_loss(flat, teacher, center), np.log(teacher.shape[2]), "float64"
    )
