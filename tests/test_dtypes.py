"""Dtypes: float16 and bfloat16 compute in float32 (inside PyTorch's autocast too), mixed
float64 and float32 promote to float64 in every backend, and the SwAV front-ends refuse
integer projections and normalise float16 ones without overflow."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import glf_losses
from glf_losses import adc, align, constrain
from glf_losses.testing import available_backends, dtype_name, to_backend, to_numpy

N, D, K = 8, 6, 5


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _views(n: int = N, d: int = D, seed: int = 0) -> list[np.ndarray]:
    rng = _rng(seed)
    return [rng.normal(size=(n, d)) for _ in range(4)]


def _pixels(n: int = N, seed: int = 1) -> np.ndarray:
    """Raw 8-bit pixels, the prior whose distance products overflow float16."""
    return _rng(seed).integers(0, 256, size=(n, 1, 8, 8))


# --- float64 mixed with float32: promoted, in every backend -------------------------------

_SCORES = {"scores_a", "scores_b", "codes_a", "codes_b", "scores"}

# name -> (function, its array arguments)
MIXED_CASES: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
    "byol_loss": (glf_losses.byol_loss, ("p_a", "p_b", "z_a", "z_b")),
    "barlow_twins_loss": (glf_losses.barlow_twins_loss, ("z_a", "z_b")),
    "barlow_twins_parts": (glf_losses.barlow_twins_parts, ("z_a", "z_b")),
    "simclr_loss": (glf_losses.simclr_loss, ("z_a", "z_b")),
    "swav_loss": (glf_losses.swav_loss, ("scores_a", "scores_b")),
    "swav_loss.queue": (
        lambda a, b, qa, qb: glf_losses.swav_loss(a, b, queue_a=qa, queue_b=qb),
        ("scores_a", "scores_b", "scores_a", "scores_b"),
    ),
    "normalized_mse": (align.normalized_mse, ("p", "z")),
    "invariance": (align.invariance, ("z_a", "z_b")),
    "infonce_alignment": (align.infonce_alignment, ("z_a", "z_b")),
    "swapped_prediction": (
        align.swapped_prediction, ("scores_a", "scores_b", "codes_a", "codes_b")
    ),
    "redundancy_reduction": (constrain.redundancy_reduction, ("z_a", "z_b")),
    "uniformity": (constrain.uniformity, ("z_a", "z_b")),
    "adc_loss": (
        lambda z_a, z_b: adc.adc_loss(z_a, z_b, _pixels(), perplexity=4.0), ("z_a", "z_b")
    ),
}


def _mixed_inputs(names: tuple[str, ...]) -> list[np.ndarray]:
    arrays = _views()
    out = []
    for i, name in enumerate(names):
        a = arrays[i % 4]
        if name.startswith("codes"):
            a = np.exp(a[:, :K]) / np.exp(a[:, :K]).sum(axis=1, keepdims=True)
        elif name in _SCORES:
            a = np.tanh(a[:, :K])
        out.append(a)
    return out


def _with_backend(backend: str, f: Callable[..., Any]) -> Callable[..., Any]:
    """``f`` with its ADC prior (a NumPy array) converted to ``backend`` too."""
    if f is MIXED_CASES["adc_loss"][0]:
        return lambda z_a, z_b: adc.adc_loss(
            z_a, z_b, to_backend(backend, _pixels()), perplexity=4.0
        )
    return f


@pytest.mark.parametrize("case", sorted(MIXED_CASES))
def test_float64_mixed_with_float32_promotes_to_float64(backend: str, case: str) -> None:
    f, names = MIXED_CASES[case]
    f = _with_backend(backend, f)
    arrays = _mixed_inputs(names)
    # The float32 argument's value, as the float64 computation must see it.
    rounded = [a.astype(np.float32).astype(np.float64) for a in arrays]
    for i in range(len(names)):
        args = [
            to_backend(backend, r, "float32" if j == i else "float64")
            for j, r in enumerate(rounded)
        ]
        got = f(*args)
        want = f(*(to_backend(backend, r, "float64") for r in rounded))
        for g, w in zip(got if isinstance(got, tuple) else (got,),
                        want if isinstance(want, tuple) else (want,), strict=True):
            assert dtype_name(g) == "float64", f"{names[i]} as float32"
            np.testing.assert_allclose(to_numpy(g), to_numpy(w), rtol=1e-12, atol=1e-15)


# --- PyTorch autocast -------------------------------------------------------------------

torch_only = pytest.mark.skipif("torch" not in available_backends(), reason="needs PyTorch")


def _torch_cases() -> dict[str, Callable[..., Any]]:
    """name -> loss of four (N, D) views and a raw-pixel prior (each loss takes its own)."""
    import torch
    from glf_losses.backends import torch as tb

    torch.manual_seed(0)
    rule = glf_losses.ADC(perplexity=4.0)
    swav = tb.SwAVLoss(D, K, adc=rule)
    return {
        "byol_loss": lambda a, b, c, d, x: glf_losses.byol_loss(a, b, c, d),
        "barlow_twins_loss": lambda a, b, c, d, x: glf_losses.barlow_twins_loss(a, b),
        "simclr_loss": lambda a, b, c, d, x: glf_losses.simclr_loss(a, b),
        "swav_loss": lambda a, b, c, d, x: glf_losses.swav_loss(torch.tanh(a), torch.tanh(b)),
        "adc_loss": lambda a, b, c, d, x: adc.adc_loss(a, b, x, perplexity=4.0),
        "adc_loss.median": lambda a, b, c, d, x: adc.adc_loss(
            a, b, x, bandwidth="median", prior_bandwidth="median"
        ),
        "uniformity": lambda a, b, c, d, x: constrain.uniformity(a, b),
        "redundancy_reduction": lambda a, b, c, d, x: constrain.redundancy_reduction(a, b),
        "BYOLLoss": lambda a, b, c, d, x: tb.BYOLLoss(adc=rule)(a, b, c, d, prior=x),
        "BarlowTwinsLoss": lambda a, b, c, d, x: tb.BarlowTwinsLoss(adc=rule)(a, b, prior=x),
        "SimCLRLoss": lambda a, b, c, d, x: tb.SimCLRLoss(adc=rule)(a, b, prior=x),
        "SwAVLoss": lambda a, b, c, d, x: swav(a, b, prior=x),
        "SwAVLoss.queue": lambda a, b, c, d, x: swav.parts(a, b, c, d, prior=x).total,
        "ADCLoss": lambda a, b, c, d, x: tb.ADCLoss(rule)(a, b, x),
    }


TORCH_CASES = sorted(
    ["byol_loss", "barlow_twins_loss", "simclr_loss", "swav_loss", "adc_loss",
     "adc_loss.median", "uniformity", "redundancy_reduction", "BYOLLoss", "BarlowTwinsLoss",
     "SimCLRLoss", "SwAVLoss", "SwAVLoss.queue", "ADCLoss"]
)


@torch_only
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("case", TORCH_CASES)
def test_torch_autocast_computes_in_float32(case: str, dtype: str) -> None:
    import torch

    f = _torch_cases()[case]
    prior = torch.tensor(_pixels())

    def run(autocast: bool) -> tuple[Any, list[Any]]:
        views = [torch.tensor(v, dtype=torch.float32, requires_grad=True) for v in _views()]
        with torch.autocast("cpu", dtype=getattr(torch, dtype), enabled=autocast):
            loss = f(*views, prior)
        loss.backward()
        return loss, [v.grad for v in views]

    loss, grads = run(autocast=True)
    ref, ref_grads = run(autocast=False)
    # float32 inputs inside autocast: the same float32 computation as outside it.
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-7)
    for g, r in zip(grads, ref_grads, strict=True):
        if r is None:
            assert g is None
        else:
            torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-7)


@torch_only
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_torch_autocast_adc_with_a_raw_pixel_prior(dtype: str) -> None:
    # An encoder run under autocast hands the loss float16 (or bfloat16) features; the
    # loss is finite and differs from the float32 run only by their rounding.
    import torch

    torch.manual_seed(0)
    encoder = torch.nn.Linear(64, 16)
    pixels = torch.tensor(_pixels(64, seed=2))
    flat = pixels.reshape(64, -1).float() / 255.0
    noise = 0.05 * torch.randn(2, 64, 64)

    def run(autocast: bool) -> tuple[float, Any]:
        encoder.zero_grad()
        with torch.autocast("cpu", dtype=getattr(torch, dtype), enabled=autocast):
            z_a, z_b = encoder(flat + noise[0]), encoder(flat + noise[1])
            loss = adc.adc_loss(z_a, z_b, pixels)
        loss.backward()
        assert loss.dtype == torch.float32
        return float(loss.detach()), encoder.weight.grad.clone()

    value, grad = run(autocast=True)
    ref, ref_grad = run(autocast=False)
    assert np.isfinite(value) and bool(torch.isfinite(grad).all())
    rtol = 1e-2 if dtype == "float16" else 5e-2
    np.testing.assert_allclose(value, ref, rtol=rtol)
    assert float((grad - ref_grad).norm() / ref_grad.norm()) < 10 * rtol


# --- SwAV front-ends: integer and float16 projections -------------------------------------


def _swav_fronts() -> dict[str, Callable[..., Any]]:
    """framework -> SwAV front-end loss of (z_a, z_b), its prototypes fixed (float32)."""
    fronts: dict[str, Callable[..., Any]] = {}
    w = _rng(3).normal(size=(K, D)).astype(np.float32)
    backends = available_backends()
    if "torch" in backends:
        import torch
        from glf_losses.backends import torch as tb

        layer = tb.SwAVLoss(D, K)
        with torch.no_grad():
            layer.prototypes.copy_(torch.tensor(w))
        fronts["torch"] = layer
    if "tensorflow" in backends:
        from glf_losses.backends import tensorflow as tfb

        keras_layer = tfb.SwAVLoss(D, K)
        keras_layer.prototypes.assign(w)
        fronts["tensorflow"] = keras_layer
    if "jax" in backends:
        import jax.numpy as jnp
        from glf_losses.backends import jax as jb

        fronts["jax"] = lambda z_a, z_b: jb.swav_loss(z_a, z_b, jnp.asarray(w))
    return fronts


SWAV_FRAMEWORKS = [b for b in ("torch", "tensorflow", "jax") if b in available_backends()]


@pytest.mark.parametrize("framework", SWAV_FRAMEWORKS)
@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"])
def test_swav_front_ends_refuse_integer_projections(framework: str, dtype: str) -> None:
    loss = _swav_fronts()[framework]
    z = np.ones((N, D))
    good = to_backend(framework, z, "float32")
    with pytest.raises(TypeError, match=r"z_a must have a real floating-point dtype"):
        loss(to_backend(framework, z, dtype), good)
    with pytest.raises(TypeError, match=r"z_b must have a real floating-point dtype"):
        loss(good, to_backend(framework, z, dtype))


@pytest.mark.parametrize("framework", SWAV_FRAMEWORKS)
def test_swav_front_ends_normalise_float16_in_float32(framework: str) -> None:
    # Row norms of about 300: their squares (~9e4) overflow float16's 65504.
    z_a, z_b = (300.0 * v / np.linalg.norm(v, axis=1, keepdims=True) for v in _views()[:2])
    z_a[0] *= 0.01  # and one small row, to show nothing else changed
    loss = _swav_fronts()[framework]
    half = [to_backend(framework, z, "float16") for z in (z_a, z_b)]
    # The same float16 values, given as float32: no overflow possible.
    single = [to_backend(framework, to_numpy(h), "float32") for h in half]
    got, want = loss(*half), loss(*single)
    assert dtype_name(got) == "float32"
    np.testing.assert_allclose(to_numpy(got), to_numpy(want), rtol=1e-6)
    assert abs(float(to_numpy(got)) - np.log(K)) > 1e-3  # not the collapsed value log K


@pytest.mark.parametrize("framework", SWAV_FRAMEWORKS)
def test_swav_front_ends_promote_float64_projections(framework: str) -> None:
    loss = _swav_fronts()[framework]
    z_a, z_b = _views()[:2]
    got = loss(to_backend(framework, z_a, "float64"), to_backend(framework, z_b, "float64"))
    assert dtype_name(got) == "float64"
    w = to_numpy(_prototypes_of(framework, loss)).astype(np.float64)

    def scores(z: np.ndarray) -> np.ndarray:
        u = z / np.linalg.norm(z, axis=1, keepdims=True)
        return u @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T

    np.testing.assert_allclose(
        to_numpy(got), glf_losses.swav_loss(scores(z_a), scores(z_b)), rtol=1e-10
    )


def _prototypes_of(framework: str, loss: Any) -> Any:
    if framework == "jax":
        return _rng(3).normal(size=(K, D)).astype(np.float32)
    return loss.owned_arrays()["prototypes"]


# --- NumPy arrays of ml_dtypes' bfloat16 ----------------------------------------------------


def test_numpy_bfloat16_computes_in_float32() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    z_a, z_b = (v.astype(ml_dtypes.bfloat16) for v in _views()[:2])
    pixels = _pixels().astype(ml_dtypes.bfloat16)
    for f, args, ref_args in (
        (glf_losses.simclr_loss, (z_a, z_b), (z_a.astype(np.float32), z_b.astype(np.float32))),
        (
            lambda a, b, x: adc.adc_loss(a, b, x, perplexity=4.0),
            (z_a, z_b, pixels),
            (z_a.astype(np.float32), z_b.astype(np.float32), pixels.astype(np.float32)),
        ),
    ):
        got = f(*args)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, f(*ref_args), rtol=1e-6)
